//! `secretsync controller`: keeps every ExternalSecret's Secret in step with its
//! store, every SealedSecret's Secret decrypted, and every store's Ready
//! condition current.
//!
//! Cost is designed in: one watch per kind, decoded leniently (`objects`);
//! stores and namespaces read from caches, never a GET per reconcile; managed
//! Secrets cached as metadata only (`secretsync.io/managed=true`, no data);
//! refreshes grouped store by store in cycles (`refresh`); reconciles and API
//! requests bounded in number (`--api-concurrency`); ExternalSecrets kept in
//! a compact cache of our own (`external_secret_cache`), waiting for a
//! reconcile in a line of our own (`queue`) and reconciled by a runner of our
//! own (`runner`) rather than by kube-runtime's reflector, scheduler and
//! controller, whose copies and tables took a third of the memory at
//! 100,000 ExternalSecrets.

mod bitnami_metrics;
pub mod bitnami_sealed_secret;
pub mod change_events;
pub mod cluster_external_secret;
pub mod cluster_push_secret;
mod eso_metrics;
mod events;
pub mod external_secret;
mod external_secret_cache;
mod finalizers;
mod generated;
mod kube_auth;
pub mod leader;
mod managed;
pub mod memory;
mod metrics;
pub mod objects;
pub mod push_secret;
mod queue;
pub mod refresh;
pub mod reload;
mod runner;
pub mod sealed_secret;
pub mod store;
mod target;
mod watches;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::ExternalSecretStatus;
use crate::provider::aws::RetrySettings;
use crate::provider::{ProviderContext, Providers};
pub use metrics::Metrics;
use objects::{ESO, Flavor, SECRETSYNC, WatchedClusterSecretStore, WatchedSecretStore};
use refresh::Refresher;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "secretsync";

/// Kubernetes API requests in flight at once, by default: well under a real
/// API server's in-flight limit (400 read, 200 write), enough to keep a
/// 10,000-object fleet moving.
pub const DEFAULT_API_CONCURRENCY: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {}", external_secret::kube_error(.0))]
    Kube(#[source] kube::Error),
    #[error("serving health and metrics on {address}: {source}")]
    Serve {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the reconcile panicked")]
    Panicked,
    #[error("cleaning up: {0}")]
    Cleanup(String),
}

/// Lease-based leader election.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

#[derive(Clone)]
pub struct Settings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub health_address: SocketAddr,
    pub leader: Option<LeaderSettings>,
    pub retry: RetrySettings,
    /// AWS base config; `None` reads the environment (IRSA) as the SDK does.
    pub aws_base: Option<SdkConfig>,
    /// Also serve ESO's `external-secrets.io` ExternalSecrets and stores.
    pub eso_compat: bool,
    /// The Secret holding the identities SealedSecrets are decrypted with.
    pub sealing_keys: Option<sealed_secret::SealingKeys>,
    /// `--bitnami-compat`: serve Bitnami's SealedSecrets, with the keys of
    /// this namespace.
    pub bitnami_keys_namespace: Option<String>,
    /// Kubernetes API requests in flight at once (reconciles: twice that).
    pub api_concurrency: usize,
    /// Watch only these namespaces (cluster-scoped kinds everywhere); empty:
    /// the whole cluster.
    pub namespaces: Vec<String>,
    /// templates: deadline and output cap for each object's templates.
    pub template_limits: crate::template::RenderLimits,
    /// Restart opted-in workloads when their Secrets and ConfigMaps change.
    pub reload: Option<reload::Settings>,
    /// SQS queues of AWS change events (`--change-events-queue`).
    pub change_events_queues: Vec<String>,
}

/// What the ExternalSecret reconciles of one flavor read from: SecretStores
/// of each watched scope, and ClusterSecretStores.
pub struct StoreCaches {
    pub secret_stores: Vec<Store<WatchedSecretStore>>,
    pub cluster_secret_stores: Store<WatchedClusterSecretStore>,
}

impl StoreCaches {
    pub fn secret_store(
        &self,
        flavor: Flavor,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<WatchedSecretStore>> {
        let key = ObjectRef::new_with(name, flavor).within(namespace);
        self.secret_stores.iter().find_map(|store| store.get(&key))
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Bounded to `api_concurrency` requests in flight.
    pub client: kube::Client,
    pub providers: Providers,
    pub refresher: Arc<Refresher>,
    events: events::Events,
    pub metrics: Arc<Metrics>,
    pub sealing_keys: Option<sealed_secret::SealingKeys>,
    /// With `--bitnami-compat`: Bitnami's keys, and what was unsealed.
    pub bitnami: Option<Arc<bitnami_sealed_secret::BitnamiState>>,
    /// Stores by flavor group.
    stores: HashMap<&'static str, StoreCaches>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    managed_secrets: Vec<Store<managed::ManagedSecret>>,
    external_secrets: Vec<Arc<external_secret_cache::ExternalSecretCache>>,
    filled: Filled,
    failures: Mutex<HashMap<String, u32>>,
    /// Per ExternalSecret whose spec does not decode: a hash of what a user
    /// changes to ask again (the refresher keeps this for the valid ones).
    invalid: Mutex<HashMap<String, u64>>,
    /// Per ExternalSecret: the status this process last wrote, which the
    /// cached object may not show yet.
    /// Keyed by the refresher's own key for it (shared, not copied: one
    /// string fewer per ExternalSecret).
    statuses: Mutex<HashMap<Arc<str>, StatusRecord>>,
    /// templates: each object's templates render within these limits, on
    /// blocking threads from this pool.
    pub template_limits: crate::template::RenderLimits,
    pub render_pool: crate::template::RenderPool,
    /// Kubernetes API requests in flight at once.
    pub api_concurrency: usize,
    /// `--namespaces`: the only namespaces watched; empty: all.
    watched_namespaces: Vec<String>,
    /// What ClusterExternalSecrets' reconciles wrote.
    children: Mutex<cluster_external_secret::WrittenChildren>,
    /// What ExternalSecrets' generators made, kept between refreshes.
    generated: generated::GeneratedMemory,
    /// What PushSecrets' reconciles pushed, by remote key.
    pushed: Mutex<push_secret::PushedKeys>,
    /// `--change-events-queue`: the queues, for the stores' conditions.
    pub change_events: Option<Arc<change_events::ChangeEvents>>,
}

/// A status as a merge patch sends it: `cleared` are its fields that go as
/// null when absent, since a merge patch keeps what it does not name (and
/// replaces lists whole).
fn status_body(status: &impl serde::Serialize, cleared: &[&str]) -> serde_json::Value {
    let mut body = serde_json::to_value(status).unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        for field in cleared {
            fields
                .entry(field.to_string())
                .or_insert(serde_json::Value::Null);
        }
    }
    body
}

/// What this process last wrote to an ExternalSecret's status: fingerprints
/// of that status and of the one it replaced (a cached copy still showing
/// that one lags behind the write), and the status itself as JSON text until
/// the cache shows it, from when on the cache is the copy. So in a steady
/// fleet a record is two numbers, not a second copy of every status (at
/// 10,000 ExternalSecrets, megabytes).
struct StatusRecord {
    written: u64,
    replaced: Option<u64>,
    text: Option<Box<str>>,
}

/// A status as a record keeps it. Serialising this type cannot fail; were
/// it ever to, the record is empty and simply never matches.
fn status_text(status: &ExternalSecretStatus) -> String {
    serde_json::to_string(status).unwrap_or_default()
}

/// A fingerprint of a status, to tell whether a copy shows it.
fn fingerprint(status: &ExternalSecretStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    status_text(status).hash(&mut hasher);
    hasher.finish()
}

impl Context {
    /// The wait before the next retry of this object; each failure doubles it.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_string()).or_default();
        let delay = backoff(*count);
        *count = count.saturating_add(1);
        delay
    }

    pub fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Waits until every cache an ExternalSecret reads from has been filled
    /// once, so nothing is judged missing just because the list is not in.
    async fn caches_filled(&self) {
        self.filled.wait().await;
    }

    fn stores_of(&self, flavor: Flavor) -> Option<&StoreCaches> {
        self.stores.get(flavor.group())
    }

    /// What this process last pushed to a remote key (see `push_secret`).
    fn pushed(&self, memo: &str) -> Option<push_secret::Pushed> {
        self.pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(memo)
            .cloned()
    }

    fn remember_pushed(&self, memo: &str, version: &str, fingerprint: [u8; 32]) {
        self.pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                memo.to_string(),
                push_secret::Pushed::new(version, fingerprint),
            );
    }

    /// Forgets every remote key one PushSecret (`key`) pushed.
    fn forget_pushed(&self, key: &str) {
        let prefix = format!("{key}\0");
        self.pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|memo, _| !memo.starts_with(&prefix));
    }

    /// Names of the stores of `kind` a namespace's object may pick by
    /// label: its namespace's SecretStores, or every ClusterSecretStore.
    fn stores_matching(
        &self,
        flavor: Flavor,
        namespace: &str,
        kind: crate::api::StoreKind,
        selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Vec<String> {
        use kube::core::{Selector, SelectorExt};
        let Ok(selector) = Selector::try_from(selector.clone()) else {
            return Vec::new();
        };
        let Some(caches) = self.stores_of(flavor) else {
            return Vec::new();
        };
        let matches = |labels: Option<std::collections::BTreeMap<String, String>>| {
            selector.matches(&labels.unwrap_or_default())
        };
        let mut names: Vec<String> = match kind {
            crate::api::StoreKind::SecretStore => caches
                .secret_stores
                .iter()
                .flat_map(|store| store.state())
                .filter(|store| store.metadata.namespace.as_deref() == Some(namespace))
                .filter(|store| matches(store.labels_and_annotations().0))
                .filter_map(|store| store.metadata.name.clone())
                .collect(),
            crate::api::StoreKind::ClusterSecretStore => caches
                .cluster_secret_stores
                .state()
                .into_iter()
                .filter(|store| matches(store.labels_and_annotations().0))
                .filter_map(|store| store.metadata.name.clone())
                .collect(),
        };
        names.sort();
        names.dedup();
        names
    }

    /// A managed Secret's metadata, from the cache (no request).
    fn managed_secret(&self, namespace: &str, name: &str) -> Option<Arc<managed::ManagedSecret>> {
        managed::ManagedSecret::find(&self.managed_secrets, namespace, name)
    }

    /// A namespace's labels, from the cache, as the API server sets them.
    fn namespace_labels(&self, namespace: &str) -> std::collections::BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        labels
    }

    /// The status the cache shows now for the ExternalSecret of this
    /// [`objects::flavored_key`] (a reconcile's own copy may be older).
    fn cached_status(&self, key: &str) -> Option<ExternalSecretStatus> {
        self.external_secret(key)?.status()
    }

    /// The ExternalSecret of this [`objects::flavored_key`], as cached now.
    fn external_secret(
        &self,
        key: &str,
    ) -> Option<Arc<external_secret_cache::CachedExternalSecret>> {
        self.external_secrets
            .iter()
            .find_map(|cache| cache.get(key))
    }

    /// The status this process last wrote for the ExternalSecret (`key`,
    /// `reference`): from its record, or, once the cache shows it, from the
    /// cache. `None` when this process has written none.
    fn last_status(&self, key: &str) -> Option<ExternalSecretStatus> {
        let text = {
            let statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
            let record = statuses.get(key)?;
            record.text.as_ref().map(|text| serde_json::from_str(text))
        };
        match text {
            Some(decoded) => decoded.ok(),
            None => self.cached_status(key),
        }
    }

    /// The watch shows `shown` for this ExternalSecret: once that is what
    /// this process wrote, its record lets go of the text. (`shown` is only
    /// decoded while a record keeps text.)
    fn status_shown(&self, key: &str, shown: impl FnOnce() -> Option<ExternalSecretStatus>) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        let Some(record) = statuses.get_mut(key).filter(|r| r.text.is_some()) else {
            return;
        };
        if shown().as_ref().map(fingerprint) == Some(record.written) {
            record.text = None;
        }
    }

    /// Whether `shown` is only a lagging copy of what this process wrote as
    /// `status`: the status the object had just before that write.
    fn status_lags(
        &self,
        key: &str,
        status: &ExternalSecretStatus,
        shown: Option<&ExternalSecretStatus>,
    ) -> bool {
        let shown = shown.map(fingerprint);
        let status = fingerprint(status);
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|record| record.written == status && record.replaced == shown)
    }

    /// `written` is now this ExternalSecret's status, `replaced` what it was;
    /// `shown`: the cache shows it already, so no text is kept.
    fn record_status(
        &self,
        key: &str,
        written: &ExternalSecretStatus,
        replaced: Option<&ExternalSecretStatus>,
        shown: bool,
    ) {
        let record = StatusRecord {
            written: fingerprint(written),
            replaced: replaced.map(fingerprint),
            text: (!shown).then(|| status_text(written).into_boxed_str()),
        };
        if let Some(slot) = self
            .statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(key)
        {
            *slot = record;
            return;
        }
        // Looked up before the records are locked: never both locks at once.
        let key = self
            .refresher
            .shared_key(key)
            .unwrap_or_else(|| Arc::from(key));
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, record);
    }

    /// Whether an ExternalSecret whose spec does not decode is new here or
    /// was changed by a user (`asked`: generation, labels, annotations).
    fn invalid_changed(&self, key: &str, asked: u64) -> bool {
        self.invalid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), asked)
            != Some(asked)
    }

    fn forget_invalid(&self, key: &str) {
        let mut invalid = self.invalid.lock().unwrap_or_else(|e| e.into_inner());
        if invalid.remove(key).is_some() && invalid.is_empty() {
            invalid.shrink_to_fit();
        }
    }

    fn forget_status(&self, key: &str) {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Whether objects of `namespace` are watched (and so may be written).
    fn watches_namespace(&self, namespace: &str) -> bool {
        self.watched_namespaces.is_empty() || self.watched_namespaces.iter().any(|n| n == namespace)
    }

    fn children(&self) -> std::sync::MutexGuard<'_, cluster_external_secret::WrittenChildren> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What this process wrote for the ClusterExternalSecret `key`, by namespace.
    fn children_written(&self, key: &str) -> Vec<(String, cluster_external_secret::Written)> {
        self.children()
            .get(key)
            .map(|by_namespace| {
                by_namespace
                    .iter()
                    .map(|(n, w)| (n.clone(), w.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn child_written(
        &self,
        key: &str,
        namespace: &str,
    ) -> Option<cluster_external_secret::Written> {
        self.children().get(key)?.get(namespace).cloned()
    }

    fn remember_child(
        &self,
        key: &str,
        namespace: &str,
        written: cluster_external_secret::Written,
    ) {
        self.children()
            .entry(key.to_string())
            .or_default()
            .insert(namespace.to_string(), written);
    }

    fn forget_child(&self, key: &str, namespace: &str) {
        if let Some(by_namespace) = self.children().get_mut(key) {
            by_namespace.remove(namespace);
        }
    }

    fn forget_children(&self, key: &str) {
        self.children().remove(key);
    }

    pub(crate) async fn publish(
        &self,
        regarding: &k8s_openapi::api::core::v1::ObjectReference,
        type_: kube::runtime::events::EventType,
        action: &str,
        reason: &str,
        note: &str,
    ) {
        self.events
            .publish(regarding, type_, action, reason, note)
            .await;
    }
}

/// Whether every cache has had its first list. (kube-runtime's
/// `Store::wait_until_ready` wakes only one of several waiters.)
#[derive(Clone)]
struct Filled {
    count: Arc<tokio::sync::watch::Sender<usize>>,
    caches: usize,
}

impl Filled {
    fn new(caches: usize) -> Self {
        Self {
            count: Arc::new(tokio::sync::watch::Sender::new(0)),
            caches,
        }
    }

    /// Watches the events of one cache's stream; counts its first full list.
    fn marker<K>(&self) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
        let count = self.count.clone();
        let mut done = false;
        move |event| {
            if !done && matches!(event, watcher::Event::InitDone) {
                done = true;
                count.send_modify(|n| *n += 1);
            }
        }
    }

    async fn wait(&self) {
        let mut count = self.count.subscribe();
        let _ = count.wait_for(|n| *n >= self.caches).await;
    }
}

/// The object named `writer` (in the Secret's namespace) that writes this Secret.
pub(crate) fn writer_of<K>(
    secret: &managed::ManagedSecret,
    writer: Option<&str>,
    flavor: Flavor,
) -> Option<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = Flavor>,
{
    Some(ObjectRef::new_with(writer?, flavor).within(secret.namespace()))
}

/// 1s, 2s, 4s, ... after successive failures, capped at
/// [`external_secret::MAX_BACKOFF`] (about five minutes).
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(16)).min(external_secret::MAX_BACKOFF)
}

/// Runs each reconcile as a task of its own. kube-runtime polls every
/// reconcile inside its controller's one task: as tasks they spread over the
/// workers when there are several (`--worker-threads`), and a reconcile that
/// panics fails alone (its object backs off) instead of taking the
/// controller with it.
fn in_own_task<K, C, R, F, O>(
    mut reconcile: R,
) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<O, Error>>
where
    R: FnMut(Arc<K>, Arc<C>) -> F,
    F: Future<Output = Result<O, Error>> + Send + 'static,
    O: Send + 'static,
{
    move |object, ctx| {
        let task = tokio::spawn(reconcile(object, ctx));
        async move { task.await.unwrap_or(Err(Error::Panicked)) }.boxed()
    }
}

fn error_policy<K: kube::Resource>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = objects::key_of(object.as_ref());
    tracing::warn!(object = %key, %error, "reconcile failed");
    Action::requeue(ctx.next_backoff(&key))
}

/// Runs until `shutdown` resolves (or leadership is lost): then stops taking
/// work, lets running reconciles finish, and returns.
pub async fn run(
    config: kube::Config,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // The Lease is renewed on a client of its own, so renewals never queue
    // behind a burst of other requests.
    let lease_client = kube::Client::try_from(config.clone()).map_err(Error::Kube)?;
    // Watches on a client of their own: each holds its request open for
    // good, and under the concurrency limit below enough of them (two
    // flavors, every kind) would take every slot and starve the reconciles.
    let watch_client = kube::Client::try_from(config.clone()).map_err(Error::Kube)?;
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(Error::Kube)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(
            settings.api_concurrency.max(1),
        ))
        .build();
    let providers = Providers::new(ProviderContext {
        kube: Arc::new(kube_auth::ClusterAuth {
            client: client.clone(),
        }),
        aws_base: settings.aws_base.clone(),
        retry: settings.retry.clone(),
        batch_permission: None,
    });
    let metrics = Arc::new(Metrics::new(
        providers.call_counts(),
        settings.eso_compat,
        settings.bitnami_keys_namespace.is_some(),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        }
    });
    let when_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };

    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(settings.health_address)
        .await
        .map_err(|source| Error::Serve {
            address: settings.health_address,
            source,
        })?;
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /healthz, /readyz and /metrics");
    tokio::spawn(serve_health(
        listener,
        metrics.clone(),
        ready.clone(),
        when_stopped(),
    ));

    if let Some(leader) = settings.leader.clone() {
        let election = Arc::new(leader::LeaderElection::new(
            lease_client,
            &leader.namespace,
            &leader.name,
            &leader.identity,
            leader.duration,
        ));
        tracing::info!(identity = %leader.identity, lease = %format!("{}/{}", leader.namespace, leader.name), "waiting to lead");
        tokio::select! {
            _ = election.acquire() => {}
            _ = when_stopped() => return Ok(()),
        }
        tracing::info!(identity = %leader.identity, "leading");
        let stop = stop.clone();
        tokio::spawn(async move {
            election.hold().await;
            tracing::error!("lost the leader lease: stopping");
            let _ = stop.send(true);
        });
    }

    let flavors: Vec<Flavor> = if settings.eso_compat {
        vec![SECRETSYNC, ESO]
    } else {
        vec![SECRETSYNC]
    };
    let reconciles = u16::try_from(settings.api_concurrency.saturating_mul(2))
        .unwrap_or(u16::MAX)
        .max(1);
    let controller_config = controller::Config::default().concurrency(reconciles);
    let scopes = watches::Scope::all(&settings.namespaces);
    let bitnami = settings
        .bitnami_keys_namespace
        .clone()
        .map(|namespace| Arc::new(bitnami_sealed_secret::BitnamiState::new(namespace)));
    let plan = watches::Plan::new(
        &flavors,
        &scopes,
        usize::from(reconciles),
        bitnami.is_some(),
    );
    metrics.track_managed_secrets(plan.managed_secrets());
    // Change events are read with the controller's own identity, in the
    // region of each queue (or the environment's).
    let change_events_base = if settings.change_events_queues.is_empty() {
        None
    } else {
        Some(match settings.aws_base.clone() {
            Some(base) => base,
            None => {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await
            }
        })
    };
    let change_events = change_events_base.as_ref().map(|base| {
        Arc::new(change_events::ChangeEvents::new(
            &settings.change_events_queues,
            base.region().map(|r| r.as_ref()),
        ))
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        providers,
        refresher: plan.refresher.clone(),
        events: events::Events::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: settings.leader.as_ref().map(|l| l.identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        sealing_keys: settings.sealing_keys.clone(),
        bitnami,
        stores: plan.store_caches(),
        namespaces: plan.namespaces(),
        managed_secrets: plan.managed_secrets(),
        external_secrets: plan.external_secrets(),
        filled: plan.filled.clone(),
        failures: Mutex::default(),
        invalid: Mutex::default(),
        statuses: Mutex::default(),
        template_limits: settings.template_limits,
        render_pool: crate::template::RenderPool::for_this_machine(),
        api_concurrency: settings.api_concurrency.max(1),
        watched_namespaces: settings.namespaces.clone(),
        children: Mutex::default(),
        generated: generated::GeneratedMemory::default(),
        pushed: Mutex::default(),
        change_events: change_events.clone(),
    });
    // Watches run as long as the process; controllers until shutdown, when
    // they stop taking work and finish what runs.
    let (watches, mut controllers) =
        plan.start(&watch_client, &ctx, controller_config, when_stopped.clone());

    if let Some(reload) = settings.reload.clone() {
        // One restarter per scope; the cluster-wide rate is shared among them.
        let share = reload::Settings {
            rate: reload.rate / scopes.len().max(1) as f64,
            ..reload
        };
        for scope in &scopes {
            let namespace = match scope {
                watches::Scope::Cluster => None,
                watches::Scope::Namespace(namespace) => Some(namespace.clone()),
            };
            controllers.push(
                reload::run(
                    client.clone(),
                    share.clone(),
                    namespace,
                    metrics.clone(),
                    Reporter {
                        controller: FIELD_MANAGER.into(),
                        instance: settings.leader.as_ref().map(|l| l.identity.clone()),
                    },
                    when_stopped(),
                )
                .boxed(),
            );
        }
    }

    if let Some(events) = change_events {
        tokio::spawn(change_events::run(ctx.clone(), events, change_events_base));
    }
    tokio::spawn(memory::trim_periodically());
    ready.store(true, Ordering::SeqCst);
    // Every controller ends at shutdown, within a grace even if its cache
    // was never filled (watches::until_stopped).
    let controllers = watches::until_stopped(
        futures::future::join_all(controllers).map(drop).boxed(),
        when_stopped(),
    );
    tokio::select! {
        _ = controllers => {}
        _ = futures::future::join_all(watches) => {}
    }
    Ok(())
}

async fn serve_health(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        metrics.render(),
                    )
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(error = %e, "health server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reconcile_that_panics_fails_alone() {
        let mut reconcile = in_own_task(|n: Arc<u32>, _: Arc<()>| async move {
            assert!(*n != 13, "unlucky");
            Ok(Action::await_change())
        });
        let panicked = reconcile(Arc::new(13), Arc::new(())).await;
        assert!(matches!(panicked, Err(Error::Panicked)), "{panicked:?}");
        let fine = reconcile(Arc::new(7), Arc::new(())).await;
        assert!(fine.is_ok(), "{fine:?}");
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (0..12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
