//! `secretsync controller`: keeps every ExternalSecret's Secret in step with its
//! store, every SealedSecret's Secret decrypted, and every store's Ready
//! condition current.
//!
//! Cost is designed in: one watch per kind, decoded leniently (`objects`);
//! stores and namespaces read from caches, never a GET per reconcile; managed
//! Secrets cached as metadata only (`secretsync.io/managed=true`, no data);
//! refreshes grouped store by store in cycles (`refresh`); reconciles and API
//! requests bounded in number (`--api-concurrency`).

mod events;
pub mod external_secret;
mod kube_auth;
pub mod leader;
mod metrics;
pub mod objects;
pub mod refresh;
pub mod reload;
pub mod sealed_secret;
pub mod store;
mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};

use crate::api::{ExternalSecretStatus, SealedSecret};
use crate::provider::aws::RetrySettings;
use crate::provider::{ProviderContext, Providers};
use crate::sync::MANAGED_LABEL;
pub use metrics::Metrics;
use objects::{
    ESO, Flavor, SECRETSYNC, WatchedClusterSecretStore, WatchedExternalSecret, WatchedSealedSecret,
    WatchedSecretStore,
};
use refresh::Refresher;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "secretsync";

/// Kubernetes API requests in flight at once, by default: well under a real
/// API server's in-flight limit (400 read, 200 write), enough to keep a
/// 10,000-object fleet moving.
pub const DEFAULT_API_CONCURRENCY: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("serving health and metrics on {address}: {source}")]
    Serve {
        address: SocketAddr,
        source: std::io::Error,
    },
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
    /// Kubernetes API requests in flight at once (reconciles: twice that).
    pub api_concurrency: usize,
    /// templates: deadline and output cap for each object's templates.
    pub template_limits: crate::template::RenderLimits,
    /// Restart opted-in workloads when their Secrets and ConfigMaps change.
    pub reload: Option<reload::Settings>,
}

/// What the ExternalSecret reconciles of one flavor read from.
pub struct StoreCaches {
    pub secret_stores: Store<WatchedSecretStore>,
    pub cluster_secret_stores: Store<WatchedClusterSecretStore>,
}

/// The object an ExternalSecret reconcile is woken with.
pub type ExternalSecretRef = ObjectRef<WatchedExternalSecret>;

/// What every reconcile shares.
pub struct Context {
    /// Bounded to `api_concurrency` requests in flight.
    pub client: kube::Client,
    pub providers: Providers,
    pub refresher: Arc<Refresher<ExternalSecretRef>>,
    events: events::Events,
    pub metrics: Arc<Metrics>,
    pub sealing_keys: Option<sealed_secret::SealingKeys>,
    /// Stores by flavor group.
    stores: HashMap<&'static str, StoreCaches>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    managed_secrets: Store<PartialObjectMeta<Secret>>,
    filled: Filled,
    failures: Mutex<HashMap<String, u32>>,
    /// Per ExternalSecret: the status this process last wrote, which the
    /// cached object may not show yet.
    statuses: Mutex<HashMap<String, ExternalSecretStatus>>,
    /// templates: each object's templates render within these limits, on
    /// blocking threads from this pool.
    pub template_limits: crate::template::RenderLimits,
    pub render_pool: crate::template::RenderPool,
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
        self.stores.get(flavor.group)
    }

    /// A managed Secret's metadata, from the cache (no request).
    fn managed_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<PartialObjectMeta<Secret>>> {
        self.managed_secrets
            .get(&ObjectRef::new(name).within(namespace))
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

    fn status_record(&self, key: &str) -> Option<ExternalSecretStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn record_status(&self, key: &str, status: &ExternalSecretStatus) {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), status.clone());
    }

    fn forget_status(&self, key: &str) {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
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

/// The object (same namespace, named by `annotation`) that writes this Secret.
pub(crate) fn writer_of<K>(
    secret: &PartialObjectMeta<Secret>,
    annotation: &str,
    resource: &ApiResource,
) -> Option<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ApiResource>,
{
    let name = secret.metadata.annotations.as_ref()?.get(annotation)?;
    let namespace = secret.metadata.namespace.as_deref()?;
    Some(ObjectRef::new_with(name, resource.clone()).within(namespace))
}

/// 1s, 2s, 4s, ... after successive failures, capped at
/// [`external_secret::MAX_BACKOFF`] (about five minutes).
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(16)).min(external_secret::MAX_BACKOFF)
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
    });
    let metrics = Arc::new(Metrics::new(providers.call_counts()));
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
    // Watches run as long as the process; controllers until shutdown, when
    // they stop taking work and finish what runs.
    let mut watches: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    let mut controllers: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();

    // Managed Secrets, namespaces, and two store kinds per flavor.
    let filled = Filled::new(2 + 2 * flavors.len());

    // Every reconcile trigger that is not the objects' own watch (a managed
    // Secret changed or deleted, a cycle took an ExternalSecret along) goes
    // through one channel per controller.
    let mut external_triggers = HashMap::new();
    let mut external_woken = HashMap::new();
    for flavor in &flavors {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ExternalSecretRef>();
        external_triggers.insert(flavor.group, tx);
        external_woken.insert(flavor.group, rx);
    }
    let (sealed_trigger, sealed_woken) =
        tokio::sync::mpsc::unbounded_channel::<ObjectRef<WatchedSealedSecret>>();
    let sealed = ApiResource::erase::<SealedSecret>(&());

    // Managed Secrets, metadata only: one watch fills the cache and wakes
    // whoever writes a Secret that changed or went away.
    let (managed_secrets, managed_writer) = reflector::store();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"));
    let route = {
        let external_triggers = external_triggers.clone();
        let flavors = flavors.clone();
        let sealed = sealed.clone();
        move |secret: PartialObjectMeta<Secret>| {
            for flavor in &flavors {
                let writer = writer_of::<WatchedExternalSecret>(
                    &secret,
                    external_secret::EXTERNAL_SECRET_ANNOTATION,
                    &flavor.external_secrets(),
                );
                if let (Some(writer), Some(tx)) = (writer, external_triggers.get(flavor.group)) {
                    let _ = tx.send(writer);
                }
            }
            if let Some(writer) = writer_of::<WatchedSealedSecret>(
                &secret,
                sealed_secret::SEALED_SECRET_ANNOTATION,
                &sealed,
            ) {
                let _ = sealed_trigger.send(writer);
            }
        }
    };
    watches.push(
        watcher(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            managed,
        )
        .default_backoff()
        .modify(|secret| secret.metadata.managed_fields = None)
        .inspect_ok(filled.marker())
        .reflect(managed_writer)
        .touched_objects()
        .for_each(move |secret| {
            if let Ok(secret) = secret {
                route(secret);
            }
            futures::future::ready(())
        })
        .boxed(),
    );
    metrics.track_managed_secrets(managed_secrets.clone());

    // Namespaces, metadata only: their labels select ClusterSecretStores.
    let (namespaces, namespace_writer) = reflector::store();
    watches.push(
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|namespace| namespace.metadata.managed_fields = None)
        .inspect_ok(filled.marker())
        .reflect(namespace_writer)
        .for_each(|_| futures::future::ready(()))
        .boxed(),
    );

    // Stores: the store reconcilers' own watches fill the caches the
    // ExternalSecrets' lookups read.
    let (refresher, mut woken) = Refresher::<ExternalSecretRef>::new();
    let mut stores = HashMap::new();
    let mut watched_stores = Vec::new();
    for flavor in &flavors {
        let namespaced_writer: reflector::store::Writer<WatchedSecretStore> =
            reflector::store::Writer::new(flavor.secret_stores());
        let cluster_writer: reflector::store::Writer<WatchedClusterSecretStore> =
            reflector::store::Writer::new(flavor.cluster_secret_stores());
        stores.insert(
            flavor.group,
            StoreCaches {
                secret_stores: namespaced_writer.as_reader(),
                cluster_secret_stores: cluster_writer.as_reader(),
            },
        );
        watched_stores.push((*flavor, namespaced_writer, cluster_writer));
    }

    let ctx = Arc::new(Context {
        client: client.clone(),
        providers,
        refresher: refresher.clone(),
        events: events::Events::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: settings.leader.as_ref().map(|l| l.identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        sealing_keys: settings.sealing_keys.clone(),
        stores,
        namespaces: namespaces.clone(),
        managed_secrets: managed_secrets.clone(),
        filled: filled.clone(),
        failures: Mutex::default(),
        statuses: Mutex::default(),
        template_limits: settings.template_limits,
        render_pool: crate::template::RenderPool::for_this_machine(),
    });

    // Who a cycle took along is woken in its own flavor's controller.
    watches.push(
        async move {
            while let Some(object) = woken.recv().await {
                if let Some(tx) = external_triggers.get(object.dyntype.group.as_str()) {
                    let _ = tx.send(object);
                }
            }
        }
        .boxed(),
    );

    for (flavor, namespaced_writer, cluster_writer) in watched_stores {
        let caches = ctx.stores_of(flavor).expect("every flavor has its stores");
        // Store reconcilers run on spec changes and on their own recheck
        // timer, not on their own status writes.
        let namespaced_stores = watcher(
            Api::<WatchedSecretStore>::all_with(client.clone(), &flavor.secret_stores()),
            watcher::Config::default(),
        )
        .default_backoff()
        .inspect_ok(ctx.filled.marker())
        .reflect(namespaced_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
        controllers.push(
            Controller::for_stream_with(
                namespaced_stores,
                caches.secret_stores.clone(),
                flavor.secret_stores(),
            )
            .graceful_shutdown_on(when_stopped())
            .run(store::reconcile_namespaced, error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()))
            .boxed(),
        );
        let cluster_stores = watcher(
            Api::<WatchedClusterSecretStore>::all_with(
                client.clone(),
                &flavor.cluster_secret_stores(),
            ),
            watcher::Config::default(),
        )
        .default_backoff()
        .inspect_ok(ctx.filled.marker())
        .reflect(cluster_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
        controllers.push(
            Controller::for_stream_with(
                cluster_stores,
                caches.cluster_secret_stores.clone(),
                flavor.cluster_secret_stores(),
            )
            .graceful_shutdown_on(when_stopped())
            .run(store::reconcile_cluster, error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()))
            .boxed(),
        );

        // ExternalSecrets of this flavor; the watch also tells the refresher
        // who is in which store.
        let resource = flavor.external_secrets();
        let writer = reflector::store::Writer::new(resource.clone());
        let reader = writer.as_reader();
        let observer = {
            let ctx = ctx.clone();
            move |event: &watcher::Event<WatchedExternalSecret>| {
                external_secret::observe(&ctx, flavor, event)
            }
        };
        let external_secrets = watcher(
            Api::<WatchedExternalSecret>::all_with(client.clone(), &resource),
            watcher::Config::default(),
        )
        .default_backoff()
        .inspect_ok(observer)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(asked_for_sync, Default::default());
        let users_of_namespaced = {
            let refresher = refresher.clone();
            move |store: WatchedSecretStore| {
                refresher.members_of(&store::identity_of_namespaced(flavor, &store))
            }
        };
        let users_of_cluster = {
            let refresher = refresher.clone();
            move |store: WatchedClusterSecretStore| {
                refresher.members_of(&store::identity_of_cluster(flavor, &store))
            }
        };
        let woken = external_woken
            .remove(flavor.group)
            .map(stream_of)
            .unwrap_or_else(|| futures::stream::empty().boxed());
        controllers.push(
            Controller::for_stream_with(external_secrets, reader, resource.clone())
                .with_config(controller_config.clone())
                .watches_stream_with(
                    spec_changes(Api::<WatchedSecretStore>::all_with(
                        client.clone(),
                        &flavor.secret_stores(),
                    )),
                    users_of_namespaced,
                    flavor.secret_stores(),
                )
                .watches_stream_with(
                    spec_changes(Api::<WatchedClusterSecretStore>::all_with(
                        client.clone(),
                        &flavor.cluster_secret_stores(),
                    )),
                    users_of_cluster,
                    flavor.cluster_secret_stores(),
                )
                .reconcile_on(woken)
                .graceful_shutdown_on(when_stopped())
                .run(external_secret::reconcile, error_policy, ctx.clone())
                .for_each(|_| futures::future::ready(()))
                .boxed(),
        );
    }

    // SealedSecrets.
    let sealed_writer = reflector::store::Writer::new(sealed.clone());
    let sealed_reader = sealed_writer.as_reader();
    let sealed_secrets = watcher(
        Api::<WatchedSealedSecret>::all_with(client.clone(), &sealed),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(sealed_writer)
    .applied_objects();
    controllers.push(
        Controller::for_stream_with(sealed_secrets, sealed_reader, sealed)
            .with_config(controller_config)
            .reconcile_on(stream_of(sealed_woken))
            .graceful_shutdown_on(when_stopped())
            .run(sealed_secret::reconcile, error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()))
            .boxed(),
    );

    if let Some(reload) = settings.reload.clone() {
        controllers.push(
            reload::run(
                client.clone(),
                reload,
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

    ready.store(true, Ordering::SeqCst);
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = futures::future::join_all(watches) => {}
    }
    Ok(())
}

/// What a user changes to ask for a sync: the spec (generation), labels and
/// annotations (`secretsync.io/force-sync`), not the status this controller
/// writes itself.
fn asked_for_sync(object: &WatchedExternalSecret) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.metadata.generation.hash(&mut hasher);
    object.metadata.labels.hash(&mut hasher);
    object.metadata.annotations.hash(&mut hasher);
    Some(hasher.finish())
}

/// A watch of `api` yielding objects whose generation changed (spec edits,
/// not status writes).
fn spec_changes<K>(
    api: Api<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ApiResource>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
}

fn stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed()
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

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (0..12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
