//! Each store's provider, built from its spec (an AWS client, or the fake
//! provider) and kept while the spec is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use tokio::sync::OnceCell;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{Cached, CallCounts, Provider, ProviderError, StoreIdentity, aws, fake};
use crate::api::StoreProvider;

/// What building a provider needs from outside the store's spec.
pub struct ProviderContext {
    /// The Kubernetes side of `auth.jwt` and `auth.secretRef`.
    pub kube: Arc<dyn aws::KubernetesAuth>,
    /// Base AWS config (endpoints, default credential chain); `None` loads it
    /// from the environment the first time an AWS store is used.
    pub aws_base: Option<SdkConfig>,
    pub retry: aws::RetrySettings,
    /// Whether the identity may call BatchGetSecretValue, when every store
    /// acts as one identity (the CSI provider's pod); `None`: each store
    /// finds out for itself.
    pub batch_permission: Option<Arc<aws::BatchPermission>>,
}

impl Default for ProviderContext {
    fn default() -> Self {
        Self {
            kube: Arc::new(aws::NoKubernetes),
            aws_base: None,
            retry: aws::RetrySettings::default(),
            batch_permission: None,
        }
    }
}

/// An AWS store as [`Providers::aws_stores`] lists it.
pub struct AwsStore {
    pub identity: StoreIdentity,
    pub service: crate::api::AwsService,
    pub region: String,
    pub prefix: String,
    pub provider: Arc<Cached>,
}

/// Each store's provider, with the spec it was built from.
type ProviderCache = HashMap<StoreIdentity, (StoreProvider, Arc<Cached>)>;

/// Providers by store, built once and reused while the store's spec is
/// unchanged, so clients, their cached credentials and the answers kept for
/// change detection live across refreshes.
pub struct Providers {
    context: ProviderContext,
    aws_base: OnceCell<SdkConfig>,
    calls: Arc<CallCounts>,
    cache: Mutex<ProviderCache>,
    /// Held while a provider is built, so two reconciles asking at once for
    /// a new store build it once (one client, one set of credentials).
    building: tokio::sync::Mutex<()>,
    /// Where a store whose change detection pauses is named, once someone
    /// listens ([`Providers::detection_pauses`]).
    pauses: PauseListener,
}

type PauseListener = Arc<Mutex<Option<UnboundedSender<StoreIdentity>>>>;

impl Providers {
    pub fn new(context: ProviderContext) -> Self {
        Self {
            aws_base: OnceCell::new_with(context.aws_base.clone()),
            context,
            calls: Arc::new(CallCounts::default()),
            cache: Mutex::new(HashMap::new()),
            building: tokio::sync::Mutex::new(()),
            pauses: PauseListener::default(),
        }
    }

    /// The stores whose change detection pauses from now on (say, listing
    /// was just denied), each as it pauses: the controller wakes their
    /// reconcile, so their status says so at once. One listener at a time.
    pub fn detection_pauses(&self) -> UnboundedReceiver<StoreIdentity> {
        let (tx, rx) = unbounded_channel();
        *self.pauses.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Every provider API call made through these providers.
    pub fn calls(&self) -> &CallCounts {
        &self.calls
    }

    /// The same counters, shared (for metrics).
    pub fn call_counts(&self) -> Arc<CallCounts> {
        self.calls.clone()
    }

    /// The base AWS config (endpoints, default credential chain), loaded on
    /// first use (in `region` then); generators build their clients on it.
    pub async fn aws_base(&self, region: &str) -> &SdkConfig {
        self.aws_base
            .get_or_init(|| async {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(region.to_string()))
                    .load()
                    .await
            })
            .await
    }

    /// The Kubernetes side of `auth.jwt` and `auth.secretRef`, for generators.
    pub fn kubernetes_auth(&self) -> Arc<dyn aws::KubernetesAuth> {
        self.context.kube.clone()
    }

    /// The provider for a store, built on first use or when its spec changed.
    pub async fn for_store(
        &self,
        identity: &StoreIdentity,
        spec: &StoreProvider,
    ) -> Result<Arc<Cached>, ProviderError> {
        if let Some(provider) = self.built(identity, spec) {
            return Ok(provider);
        }
        let _building = self.building.lock().await;
        if let Some(provider) = self.built(identity, spec) {
            return Ok(provider);
        }
        let provider: Arc<dyn Provider> = match (&spec.aws, &spec.fake) {
            (None, Some(fake)) => Arc::new(fake::FakeProvider::new(fake, self.calls.clone())),
            (Some(aws), None) => {
                let base = self.aws_base(&aws.region).await;
                Arc::new(
                    aws::AwsProvider::connect(
                        aws,
                        identity.namespace.as_deref(),
                        base,
                        self.context.kube.clone(),
                        &self.context.retry.for_store(spec.retry.as_ref()),
                        self.calls.clone(),
                        self.context.batch_permission.clone().unwrap_or_default(),
                    )
                    .await?,
                )
            }
            _ => {
                return Err(ProviderError::Unsupported(
                    "spec.provider: exactly one of aws or fake is required".into(),
                ));
            }
        };
        let (pauses, paused) = (self.pauses.clone(), identity.clone());
        let provider = Arc::new(Cached::new(provider).with_pause_notice(Arc::new(move || {
            if let Some(tx) = pauses.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = tx.send(paused.clone());
            }
        })));
        self.lock()
            .insert(identity.clone(), (spec.clone(), provider.clone()));
        Ok(provider)
    }

    /// Every AWS store built so far (those some ExternalSecret read from),
    /// with what tells which of its keys an AWS change event concerns.
    pub fn aws_stores(&self) -> Vec<AwsStore> {
        self.lock()
            .iter()
            .filter_map(|(identity, (spec, provider))| {
                let aws = spec.aws.as_ref()?;
                Some(AwsStore {
                    identity: identity.clone(),
                    service: aws.service,
                    region: aws.region.clone(),
                    prefix: aws.prefix.clone().unwrap_or_default(),
                    provider: provider.clone(),
                })
            })
            .collect()
    }

    fn built(&self, identity: &StoreIdentity, spec: &StoreProvider) -> Option<Arc<Cached>> {
        let cache = self.lock();
        let (cached_spec, provider) = cache.get(identity)?;
        (cached_spec == spec).then(|| provider.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProviderCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
