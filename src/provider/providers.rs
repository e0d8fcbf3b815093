//! Each store's provider, built from its spec (an AWS client, or the fake
//! provider) and kept while the spec is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

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
}

impl Providers {
    pub fn new(context: ProviderContext) -> Self {
        Self {
            aws_base: OnceCell::new_with(context.aws_base.clone()),
            context,
            calls: Arc::new(CallCounts::default()),
            cache: Mutex::new(HashMap::new()),
            building: tokio::sync::Mutex::new(()),
        }
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
        let provider = Arc::new(Cached::new(provider));
        self.lock()
            .insert(identity.clone(), (spec.clone(), provider.clone()));
        Ok(provider)
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
