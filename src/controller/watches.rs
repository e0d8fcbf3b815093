//! Which watches and controllers run: one set for the whole cluster, or one
//! per namespace of `--namespaces` (a controller confined to some namespaces
//! has no list or watch access elsewhere). Cluster-scoped kinds, namespaces
//! and ClusterSecretStores, are watched once either way.
//!
//! Built in two steps, because the reconcilers' shared context holds the
//! caches: [`Plan::new`] makes every cache, then [`Plan::start`] the watches
//! that fill them and the controllers that read them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::external_secret_cache::{CachedExternalSecret, ExternalSecretCache};
use super::queue::Queue;

use super::managed::ManagedSecret;
use super::objects::{
    Flavor, SECRETSYNC, WatchedBitnamiSealedSecret, WatchedClusterExternalSecret,
    WatchedClusterPushSecret, WatchedClusterSecretStore, WatchedExternalSecret, WatchedPushSecret,
    WatchedSealedSecret, WatchedSecretStore,
};
use super::refresh::Refresher;
use super::{
    Context, Filled, StoreCaches, bitnami_sealed_secret, cluster_external_secret,
    cluster_push_secret, error_policy, external_secret, in_own_task, objects, push_secret, runner,
    sealed_secret, store, writer_of,
};
use crate::provider::StoreIdentity;
use crate::sync::MANAGED_LABEL;

/// Where namespaced objects are watched.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Cluster,
    Namespace(String),
}

impl Scope {
    /// The scopes `--namespaces` asks for: the cluster when it lists none.
    pub fn all(namespaces: &[String]) -> Vec<Scope> {
        if namespaces.is_empty() {
            vec![Scope::Cluster]
        } else {
            namespaces.iter().cloned().map(Scope::Namespace).collect()
        }
    }

    fn dynamic<K>(&self, client: &kube::Client, flavor: Flavor) -> Api<K>
    where
        K: kube::Resource<DynamicType = Flavor, Scope = kube::core::DynamicResourceScope>,
    {
        match self {
            Scope::Cluster => Api::all_with(client.clone(), &flavor),
            Scope::Namespace(namespace) => Api::namespaced_with(client.clone(), namespace, &flavor),
        }
    }

    fn secrets(&self, client: &kube::Client) -> Api<PartialObjectMeta<Secret>> {
        match self {
            Scope::Cluster => Api::all(client.clone()),
            Scope::Namespace(namespace) => Api::namespaced(client.clone(), namespace),
        }
    }

    /// Whether an object of `namespace` is watched here.
    fn holds(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespace(own) => own == namespace,
        }
    }
}

/// The line of an ExternalSecret controller: keys ([`objects::flavored_key`],
/// shared with the refresher's members) waiting for a reconcile.
type Line = Arc<Queue<Arc<str>>>;

/// The caches of one scope, and the channels that wake its controllers.
struct Scoped {
    scope: Scope,
    managed: reflector::store::Writer<ManagedSecret>,
    secret_stores: Vec<(Flavor, reflector::store::Writer<WatchedSecretStore>)>,
    /// Per flavor: the line of its ExternalSecret controller, and its cache.
    woken: Vec<(Flavor, Line, Arc<ExternalSecretCache>)>,
    sealed_woken: UnboundedReceiver<ObjectRef<WatchedSealedSecret>>,
    /// With `--bitnami-compat`: Bitnami's SealedSecrets' cache, and the
    /// channel that wakes them when the keys change.
    bitnami: Option<(
        reflector::store::Writer<WatchedBitnamiSealedSecret>,
        UnboundedReceiver<ObjectRef<WatchedBitnamiSealedSecret>>,
    )>,
}

/// Where a reconcile trigger goes: the controller of its flavor and scope.
#[derive(Clone, Default)]
struct Routes {
    external: Vec<(Flavor, Scope, Line)>,
    sealed: Vec<(Scope, UnboundedSender<ObjectRef<WatchedSealedSecret>>)>,
    /// Per flavor: the ClusterExternalSecrets' controller, and their cache.
    cluster_external: Vec<(
        Flavor,
        UnboundedSender<ObjectRef<WatchedClusterExternalSecret>>,
        Store<WatchedClusterExternalSecret>,
    )>,
    /// Per scope: Bitnami's SealedSecrets' controller, and their cache.
    bitnami: Vec<(
        UnboundedSender<ObjectRef<WatchedBitnamiSealedSecret>>,
        Store<WatchedBitnamiSealedSecret>,
    )>,
}

impl Routes {
    /// Wakes every Bitnami SealedSecret: the keys changed.
    fn every_bitnami_sealed_secret(&self) {
        for (tx, cache) in &self.bitnami {
            bitnami_sealed_secret::wake_all(std::slice::from_ref(cache), tx);
        }
    }

    /// Puts the ExternalSecret of a [`objects::flavored_key`] in line.
    fn external_secret(&self, key: Arc<str>) {
        let Some((flavor, namespace, _)) = objects::parts_of_key(&key) else {
            return;
        };
        let found = self
            .external
            .iter()
            .find(|(f, scope, _)| *f == flavor && scope.holds(namespace));
        if let Some((_, _, queue)) = found {
            queue.push(key);
        }
    }

    fn sealed_secret(&self, object: ObjectRef<WatchedSealedSecret>) {
        let namespace = object.namespace.clone().unwrap_or_default();
        if let Some((_, tx)) = self
            .sealed
            .iter()
            .find(|(scope, _)| scope.holds(&namespace))
        {
            let _ = tx.send(object);
        }
    }

    /// Wakes every ClusterExternalSecret: a namespace changed.
    fn every_cluster_external_secret(&self) {
        for (_, tx, cache) in &self.cluster_external {
            for object in cache.state() {
                let _ = tx.send(ObjectRef::from_obj_with(object.as_ref(), object.flavor));
            }
        }
    }

    /// Wakes the ClusterExternalSecret of this flavor named `name`.
    fn cluster_external_secret(&self, flavor: Flavor, name: &str) {
        if let Some((_, tx, _)) = self.cluster_external.iter().find(|(f, _, _)| *f == flavor) {
            let _ = tx.send(ObjectRef::new_with(name, flavor));
        }
    }

    /// Wakes whoever writes this Secret.
    fn writers_of(&self, secret: &ManagedSecret, flavors: &[Flavor]) {
        for flavor in flavors {
            if let Some(writer) = secret.external_secret() {
                let key = objects::flavored_key_of(*flavor, Some(secret.namespace()), writer);
                self.external_secret(key.into());
            }
        }
        if let Some(writer) =
            writer_of::<WatchedSealedSecret>(secret, secret.sealed_secret(), SECRETSYNC)
        {
            self.sealed_secret(writer);
        }
    }
}

/// Every cache and channel, made before the context that holds the caches.
pub struct Plan {
    flavors: Vec<Flavor>,
    scoped: Vec<Scoped>,
    namespaces: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    cluster_stores: Vec<(Flavor, reflector::store::Writer<WatchedClusterSecretStore>)>,
    cluster_external: Vec<(
        Flavor,
        reflector::store::Writer<WatchedClusterExternalSecret>,
        UnboundedReceiver<ObjectRef<WatchedClusterExternalSecret>>,
    )>,
    routes: Routes,
    pub refresher: Arc<Refresher>,
    refresher_woken: UnboundedReceiver<Arc<str>>,
    pub filled: Filled,
}

impl Plan {
    /// `reconciles`: how many reconciles each ExternalSecret controller runs
    /// at once.
    pub fn new(flavors: &[Flavor], scopes: &[Scope], reconciles: usize, bitnami: bool) -> Plan {
        // The line hands out as many as run at once (`runner`).
        let slots = reconciles;
        let mut routes = Routes::default();
        let scoped = scopes
            .iter()
            .map(|scope| {
                let mut woken = Vec::new();
                for flavor in flavors {
                    let queue = Arc::new(Queue::new(slots));
                    routes
                        .external
                        .push((*flavor, scope.clone(), queue.clone()));
                    woken.push((*flavor, queue, Arc::default()));
                }
                let (tx, sealed_woken) = unbounded_channel();
                routes.sealed.push((scope.clone(), tx));
                let bitnami = bitnami.then(|| {
                    let writer = reflector::store::Writer::new(SECRETSYNC);
                    let (tx, woken) = unbounded_channel();
                    routes.bitnami.push((tx, writer.as_reader()));
                    (writer, woken)
                });
                Scoped {
                    scope: scope.clone(),
                    managed: reflector::store::Writer::default(),
                    secret_stores: flavors
                        .iter()
                        .map(|f| (*f, reflector::store::Writer::new(*f)))
                        .collect(),
                    woken,
                    sealed_woken,
                    bitnami,
                }
            })
            .collect();
        let (refresher, refresher_woken) = Refresher::new(reconciles);
        let cluster_external = flavors
            .iter()
            .map(|flavor| {
                let writer = reflector::store::Writer::new(*flavor);
                let (tx, woken) = unbounded_channel();
                routes
                    .cluster_external
                    .push((*flavor, tx, writer.as_reader()));
                (*flavor, writer, woken)
            })
            .collect();
        Plan {
            flavors: flavors.to_vec(),
            scoped,
            namespaces: reflector::store::Writer::default(),
            cluster_stores: flavors
                .iter()
                .map(|f| (*f, reflector::store::Writer::new(*f)))
                .collect(),
            cluster_external,
            routes,
            refresher,
            refresher_woken,
            // Per scope: managed Secrets and one store kind per flavor; once:
            // namespaces and ClusterSecretStores per flavor.
            filled: Filled::new(scopes.len() * (1 + flavors.len()) + 1 + flavors.len()),
        }
    }

    /// The store caches of each flavor, for the reconcilers' lookups.
    pub fn store_caches(&self) -> HashMap<&'static str, StoreCaches> {
        self.flavors
            .iter()
            .map(|flavor| {
                let secret_stores = self
                    .scoped
                    .iter()
                    .flat_map(|s| &s.secret_stores)
                    .filter(|(f, _)| f == flavor)
                    .map(|(_, writer)| writer.as_reader())
                    .collect();
                let cluster_secret_stores = self
                    .cluster_stores
                    .iter()
                    .find(|(f, _)| f == flavor)
                    .map(|(_, writer)| writer.as_reader())
                    .expect("a ClusterSecretStore cache per flavor");
                (
                    flavor.group(),
                    StoreCaches {
                        secret_stores,
                        cluster_secret_stores,
                    },
                )
            })
            .collect()
    }

    /// Every ExternalSecret cache (one per scope and flavor).
    pub fn external_secrets(&self) -> Vec<Arc<ExternalSecretCache>> {
        self.scoped
            .iter()
            .flat_map(|s| &s.woken)
            .map(|(_, _, cache)| cache.clone())
            .collect()
    }

    pub fn managed_secrets(&self) -> Vec<Store<ManagedSecret>> {
        self.scoped.iter().map(|s| s.managed.as_reader()).collect()
    }

    pub fn namespaces(&self) -> Store<PartialObjectMeta<Namespace>> {
        self.namespaces.as_reader()
    }

    /// Every watch (running as long as the process) and every controller
    /// (running until `stopped`; bound them with `until_stopped`).
    pub fn start<S, F>(
        self,
        client: &kube::Client,
        ctx: &Arc<Context>,
        config: controller::Config,
        stopped: S,
    ) -> (Vec<BoxFuture<'static, ()>>, Vec<BoxFuture<'static, ()>>)
    where
        S: Fn() -> F,
        F: Future<Output = ()> + Send + Sync + 'static,
    {
        let mut watches: Vec<BoxFuture<'static, ()>> = Vec::new();
        let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
        let Plan {
            flavors,
            scoped,
            namespaces,
            cluster_stores,
            cluster_external,
            routes,
            refresher,
            mut refresher_woken,
            filled,
        } = self;

        // Namespaces, metadata only: their labels select ClusterSecretStores
        // and ClusterExternalSecrets, and each change after the first list
        // wakes every ClusterExternalSecret.
        watches.push({
            let routes = routes.clone();
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .modify(|namespace| namespace.metadata.managed_fields = None)
            .inspect_ok(filled.marker())
            .reflect(namespaces)
            .for_each(move |event| {
                if let Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) = event {
                    routes.every_cluster_external_secret();
                }
                futures::future::ready(())
            })
            .boxed()
        });

        for (flavor, writer, woken) in cluster_external {
            let reader = writer.as_reader();
            let stream = watcher(
                Api::<WatchedClusterExternalSecret>::all_with(client.clone(), &flavor),
                watcher::Config::default(),
            )
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(cluster_external_secret::wakes, Default::default());
            controllers.push(
                Controller::for_stream_with(stream, reader, flavor)
                    .with_config(config.clone())
                    .reconcile_on(stream_of(woken))
                    .graceful_shutdown_on(stopped())
                    .run(
                        in_own_task(cluster_external_secret::reconcile),
                        error_policy,
                        ctx.clone(),
                    )
                    .for_each(|_| futures::future::ready(()))
                    .boxed(),
            );
        }

        for flavor in &flavors {
            controllers.push(cluster_push_secrets(
                client,
                ctx,
                *flavor,
                config.clone(),
                stopped(),
            ));
        }

        // The refresher wakes whoever falls due; who a cycle took along, or
        // the clock woke, is woken in its own flavor's and scope's controller.
        watches.push(refresher.clone().run_clock().boxed());
        watches.push({
            let routes = routes.clone();
            async move {
                while let Some(object) = refresher_woken.recv().await {
                    routes.external_secret(object);
                }
            }
            .boxed()
        });

        // A store whose change detection pauses (its listing was just
        // denied) is reconciled at once, so its status says so.
        let mut paused = PausedStores::default();
        for (flavor, writer) in cluster_stores {
            let (tx, woken) = unbounded_channel();
            paused.cluster.push((flavor, tx));
            controllers.push(stores(
                Api::all_with(client.clone(), &flavor),
                flavor,
                writer,
                woken,
                &filled,
                store::reconcile_cluster,
                wake_users(
                    &refresher,
                    &routes,
                    move |store: &WatchedClusterSecretStore| {
                        store::identity_of_cluster(flavor, store)
                    },
                ),
                ctx,
                stopped(),
            ));
        }

        for scoped in scoped {
            let Scoped {
                scope,
                managed,
                secret_stores,
                woken,
                sealed_woken,
                bitnami,
            } = scoped;

            // Managed Secrets, metadata only, and of that only what is kept
            // (`ManagedSecret`): one watch fills the cache and wakes whoever
            // writes a Secret that changed or went away.
            let labels = watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"));
            let route = {
                let routes = routes.clone();
                let flavors = flavors.clone();
                move |secret: ManagedSecret| routes.writers_of(&secret, &flavors)
            };
            let mut managed = managed;
            watches.push(
                watcher(scope.secrets(client), labels)
                    .default_backoff()
                    .map_ok(ManagedSecret::event_of)
                    .inspect_ok(filled.marker())
                    .inspect_ok(move |event| managed.apply_watcher_event(event))
                    .touched_objects()
                    .for_each(move |secret| {
                        if let Ok(secret) = secret {
                            route(secret);
                        }
                        futures::future::ready(())
                    })
                    .boxed(),
            );

            for (flavor, writer) in secret_stores {
                let (tx, woken) = unbounded_channel();
                paused.namespaced.push((flavor, scope.clone(), tx));
                controllers.push(stores(
                    scope.dynamic(client, flavor),
                    flavor,
                    writer,
                    woken,
                    &filled,
                    store::reconcile_namespaced,
                    wake_users(&refresher, &routes, move |store: &WatchedSecretStore| {
                        store::identity_of_namespaced(flavor, store)
                    }),
                    ctx,
                    stopped(),
                ));
            }

            for (flavor, queue, cache) in woken {
                let (watch, controller) = external_secrets(
                    client,
                    ctx,
                    &routes,
                    flavor,
                    &scope,
                    queue,
                    cache,
                    stopped(),
                );
                watches.push(watch);
                controllers.push(controller);
            }

            // SealedSecrets have secretsync's flavor only.
            let sealed = SECRETSYNC;
            let writer = reflector::store::Writer::new(sealed);
            let reader = writer.as_reader();
            let stream = watcher(
                scope.dynamic::<WatchedSealedSecret>(client, sealed),
                watcher::Config::default(),
            )
            .default_backoff()
            .reflect(writer)
            .applied_objects();
            controllers.push(
                Controller::for_stream_with(stream, reader, sealed)
                    .with_config(config.clone())
                    .reconcile_on(stream_of(sealed_woken))
                    .graceful_shutdown_on(stopped())
                    .run(
                        in_own_task(sealed_secret::reconcile),
                        error_policy,
                        ctx.clone(),
                    )
                    .for_each(|_| futures::future::ready(()))
                    .boxed(),
            );

            for flavor in &flavors {
                controllers.push(push_secrets(
                    client,
                    ctx,
                    *flavor,
                    &scope,
                    config.clone(),
                    stopped(),
                ));
            }

            if let Some((writer, woken)) = bitnami {
                controllers.push(bitnami_sealed_secrets(
                    client,
                    ctx,
                    &scope,
                    writer,
                    woken,
                    config.clone(),
                    stopped(),
                ));
            }
        }

        if let Some(state) = ctx.bitnami.clone() {
            watches.push(bitnami_keys(client, state, routes.clone()));
        }
        watches.push({
            let mut pauses = ctx.providers.detection_pauses();
            async move {
                while let Some(identity) = pauses.recv().await {
                    paused.wake(&identity);
                }
            }
            .boxed()
        });
        (watches, controllers)
    }
}

/// The store controllers, to wake a store whose change detection paused.
#[derive(Default)]
struct PausedStores {
    cluster: Vec<(
        Flavor,
        UnboundedSender<ObjectRef<WatchedClusterSecretStore>>,
    )>,
    namespaced: Vec<(
        Flavor,
        Scope,
        UnboundedSender<ObjectRef<WatchedSecretStore>>,
    )>,
}

impl PausedStores {
    /// Wakes the store object(s) a provider's identity may stand for: its
    /// name as each flavor spells it ([`Flavor::store_name`]); a name that
    /// fits two flavors wakes both, which costs a reconcile and no call.
    fn wake(&self, identity: &StoreIdentity) {
        let name_in = |flavor: Flavor| -> Option<String> {
            if flavor == SECRETSYNC {
                Some(identity.name.clone())
            } else {
                let suffix = format!(".{}", flavor.group());
                identity.name.strip_suffix(&suffix).map(str::to_string)
            }
        };
        match &identity.namespace {
            None => {
                for (flavor, tx) in &self.cluster {
                    if let Some(name) = name_in(*flavor) {
                        let _ = tx.send(ObjectRef::new_with(&name, *flavor));
                    }
                }
            }
            Some(namespace) => {
                for (flavor, scope, tx) in &self.namespaced {
                    if !scope.holds(namespace) {
                        continue;
                    }
                    if let Some(name) = name_in(*flavor) {
                        let _ = tx.send(ObjectRef::new_with(&name, *flavor).within(namespace));
                    }
                }
            }
        }
    }
}

/// How long a controller may take to finish its reconciles at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ends `controller` at shutdown, after a grace, even if it never started.
/// kube-runtime's graceful shutdown ends a controller's input stream, which
/// also feeds its cache; a controller whose cache was not filled yet (the
/// stop came early in start-up, or with `--eso-compat` on a cluster without
/// ESO's PushSecret CRDs it never is) waits for it forever.
pub(super) fn until_stopped(
    controller: BoxFuture<'static, ()>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> BoxFuture<'static, ()> {
    let stopped = Box::pin(async move {
        stopped.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    });
    async move {
        futures::future::select(controller, stopped).await;
    }
    .boxed()
}

/// Bitnami's SealedSecrets of one scope (`--bitnami-compat`). Reconciled
/// when the generation or the scope annotations change (not on status
/// writes), or when the keys change.
fn bitnami_sealed_secrets(
    client: &kube::Client,
    ctx: &Arc<Context>,
    scope: &Scope,
    writer: reflector::store::Writer<WatchedBitnamiSealedSecret>,
    woken: UnboundedReceiver<ObjectRef<WatchedBitnamiSealedSecret>>,
    config: controller::Config,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let reader = writer.as_reader();
    let gone = ctx.clone();
    let stream = watcher(
        scope.dynamic::<WatchedBitnamiSealedSecret>(client, SECRETSYNC),
        watcher::Config::default(),
    )
    .default_backoff()
    .inspect_ok(move |event| {
        if let watcher::Event::Delete(object) = event {
            gone.metrics.bitnami_deleted(&object.full_metadata());
            if let Some(state) = &gone.bitnami {
                state.forget(&objects::key_of(object));
            }
        }
    })
    .reflect(writer)
    .applied_objects()
    .predicate_filter(bitnami_sealed_secret::wakes, Default::default());
    // As Bitnami's controller does, a deleted Secret is made again: Secrets'
    // metadata is watched (nothing kept), and a deletion wakes the
    // SealedSecret that controlled it or that it was annotated `managed` for.
    let deleted = watcher(scope.secrets(client), watcher::Config::default())
        .default_backoff()
        .filter_map(|event| {
            futures::future::ready(match event {
                Ok(watcher::Event::Delete(secret)) => {
                    bitnami_sealed_secret::owner_of_deleted(&secret)
                }
                _ => None,
            })
        });
    Controller::for_stream_with(stream, reader, SECRETSYNC)
        .with_config(config)
        .reconcile_on(futures::stream::select(stream_of(woken), deleted))
        .graceful_shutdown_on(stopped)
        .run(
            in_own_task(bitnami_sealed_secret::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

/// Bitnami's sealing keys: the labelled Secrets of the keys namespace, read
/// again on every change; a change after the first list wakes every
/// Bitnami SealedSecret (one that failed may decrypt now).
fn bitnami_keys(
    client: &kube::Client,
    state: Arc<bitnami_sealed_secret::BitnamiState>,
    routes: Routes,
) -> BoxFuture<'static, ()> {
    let writer = reflector::store::Writer::<Secret>::default();
    let reader = writer.as_reader();
    let keys = Api::<Secret>::namespaced(client.clone(), &state.keys_namespace);
    let selector = watcher::Config::default().labels(&bitnami_sealed_secret::keys_selector());
    let mut first = true;
    watcher(keys, selector)
        .default_backoff()
        .reflect(writer)
        .for_each(move |event| {
            let changed = matches!(
                event,
                Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_))
            );
            let (state, reader, routes) = (state.clone(), reader.clone(), routes.clone());
            // The first list is what reconciles wait for; later changes wake
            // (the first too, if a reconcile could not wait for it).
            let wake = changed && (!first || state.gave_up_waiting());
            if changed {
                first = false;
            }
            async move {
                if changed {
                    state.load_keys(reader.state()).await;
                    if wake {
                        routes.every_bitnami_sealed_secret();
                    }
                }
            }
        })
        .boxed()
}

/// The PushSecret controller of one flavor and scope. Besides its own kind
/// (spec edits and deletions, not its status writes), it watches Secrets'
/// metadata: a source Secret's change is pushed within seconds, not at the
/// next interval.
fn push_secrets(
    client: &kube::Client,
    ctx: &Arc<Context>,
    flavor: Flavor,
    scope: &Scope,
    config: controller::Config,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let writer = reflector::store::Writer::new(flavor);
    let reader = writer.as_reader();
    let index = Arc::new(push_secret::SourceIndex::default());
    let stream = watcher(
        scope.dynamic::<WatchedPushSecret>(client, flavor),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .inspect_ok({
        let index = index.clone();
        move |event| index.apply(event)
    })
    .applied_objects()
    .predicate_filter(push_secret::wakes, Default::default());
    let secrets = scope.secrets(client);
    let sources = while_on(index.reading(), move || {
        watcher(secrets.clone(), watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .filter_map(|secret| futures::future::ready(secret.ok()))
            .boxed()
    })
    .flat_map(move |secret| futures::stream::iter(index.readers_of(flavor, &secret)));
    Controller::for_stream_with(stream, reader, flavor)
        .with_config(config)
        .reconcile_on(sources)
        .graceful_shutdown_on(stopped)
        .run(
            in_own_task(push_secret::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

/// The ClusterPushSecret controller of one flavor: woken by its own spec
/// changes and by every namespace change (a namespace labelled to match is
/// served within seconds).
fn cluster_push_secrets(
    client: &kube::Client,
    ctx: &Arc<Context>,
    flavor: Flavor,
    config: controller::Config,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let writer = reflector::store::Writer::new(flavor);
    let reader = writer.as_reader();
    let stream = watcher(
        Api::<WatchedClusterPushSecret>::all_with(client.clone(), &flavor),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(cluster_push_secret::wakes, Default::default());
    let cache = reader.clone();
    let namespaces = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
    .filter_map(|namespace| futures::future::ready(namespace.ok()))
    .flat_map(move |_| futures::stream::iter(cluster_push_secret::every(&cache)));
    Controller::for_stream_with(stream, reader, flavor)
        .with_config(config)
        .reconcile_on(namespaces)
        .graceful_shutdown_on(stopped)
        .run(
            in_own_task(cluster_push_secret::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

/// A store controller, whose watch also fills the cache the ExternalSecrets'
/// lookups read. It reconciles on spec changes and on its own recheck timer,
/// not on its own status writes.
#[allow(clippy::too_many_arguments)]
fn stores<K, R, F>(
    api: Api<K>,
    flavor: Flavor,
    writer: reflector::store::Writer<K>,
    woken: UnboundedReceiver<ObjectRef<K>>,
    filled: &Filled,
    reconcile: R,
    spec_changed: impl Fn(&K) + Send + 'static,
    ctx: &Arc<Context>,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()>
where
    K: kube::Resource<DynamicType = Flavor>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> F + Send + 'static,
    F: Future<Output = Result<kube::runtime::controller::Action, super::Error>> + Send + 'static,
{
    let reader = writer.as_reader();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .inspect_ok(filled.marker())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
        // After the cache: a user woken by the change reads the new spec.
        .inspect_ok(spec_changed);
    // A change-event queue that became readable or not: every store of its
    // region says so, so all are looked at again.
    let queues_changed = match &ctx.change_events {
        Some(events) => futures::stream::unfold(events.changes(), |mut changes| async move {
            changes.changed().await.ok()?;
            Some(((), changes))
        })
        .boxed(),
        None => futures::stream::pending().boxed(),
    };
    Controller::for_stream_with(stream, reader, flavor)
        .reconcile_all_on(queues_changed)
        .reconcile_on(stream_of(woken))
        .graceful_shutdown_on(stopped)
        .run(in_own_task(reconcile), error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

/// The ExternalSecret controller of one flavor and scope, and the watch that
/// feeds its line: its own kind, which also fills its cache and tells the
/// refresher who is in which store (the stores' own watches wake their
/// users: `wake_users`). The line's keys are reconciled by `runner`, a few
/// at a time (see `queue`).
#[allow(clippy::too_many_arguments)]
fn external_secrets(
    client: &kube::Client,
    ctx: &Arc<Context>,
    routes: &Routes,
    flavor: Flavor,
    scope: &Scope,
    queue: Line,
    cache: Arc<ExternalSecretCache>,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, BoxFuture<'static, ()>) {
    let own = watcher(
        scope.dynamic::<WatchedExternalSecret>(client, flavor),
        watcher::Config::default(),
    )
    .default_backoff()
    .for_each({
        let ctx = ctx.clone();
        let queue = queue.clone();
        let routes = routes.clone();
        let cache = cache.clone();
        move |event| {
            if let Ok(event) = event {
                observe_external_secret(&ctx, &cache, &routes, &queue, flavor, event);
            }
            futures::future::ready(())
        }
    });
    let watches = own.boxed();
    let controller = runner::run(queue, cache, ctx.clone(), stopped).boxed();
    (watches, controller)
}

/// One event of an ExternalSecret watch: the cache first (whoever sees the
/// observer's effects, a status record dropped, finds the object already
/// as the event shows it), then the refresher and the line.
fn observe_external_secret(
    ctx: &Context,
    cache: &ExternalSecretCache,
    routes: &Routes,
    queue: &Line,
    flavor: Flavor,
    event: watcher::Event<WatchedExternalSecret>,
) {
    let gone = |key: &str, object: &CachedExternalSecret| {
        // A ClusterExternalSecret's child deleted: its writer checks it.
        if let Some(writer) = cluster_external_secret::writer_of_child(flavor, object) {
            routes.cluster_external_secret(flavor, &writer);
        }
        external_secret::observe_deleted(ctx, key);
    };
    let applied = |object: WatchedExternalSecret, listed: bool| {
        let key = cache.key(&objects::flavored_key(flavor, &object));
        let object = Arc::new(object.into_cached());
        cache.keep(key.clone(), object.clone());
        // A ClusterExternalSecret's child seen first (after a restart, say):
        // its writer checks it.
        if listed && let Some(writer) = cluster_external_secret::writer_of_child(flavor, &object) {
            routes.cluster_external_secret(flavor, &writer);
        }
        if external_secret::observe_applied(ctx, &key, &object) {
            queue.push(key);
        }
    };
    match event {
        watcher::Event::Init => cache.listing_starts(),
        watcher::Event::InitDone => {
            for (key, object) in cache.listing_done() {
                gone(&key, &object);
            }
        }
        watcher::Event::Apply(object) => applied(object, false),
        watcher::Event::InitApply(object) => applied(object, true),
        watcher::Event::Delete(object) => {
            let key = objects::flavored_key(flavor, &object);
            if let Some(cached) = cache.remove(&key) {
                gone(&key, &cached);
            } else {
                external_secret::observe_deleted(ctx, &key);
            }
        }
    }
}

/// For a store's spec change (seen after the store's cache shows it):
/// every ExternalSecret that reads the store gets in line.
fn wake_users<K, F>(
    refresher: &Arc<Refresher>,
    routes: &Routes,
    identity_of: F,
) -> impl Fn(&K) + Send + 'static + use<K, F>
where
    F: Fn(&K) -> crate::provider::StoreIdentity + Send + 'static,
{
    let refresher = refresher.clone();
    let routes = routes.clone();
    move |store| {
        for user in refresher.members_of(&identity_of(store)) {
            routes.external_secret(user);
        }
    }
}

/// `make()`'s stream while `on` shows true, nothing while it shows false:
/// then the stream is dropped (its watch ends) and made anew once `on`
/// shows true again.
fn while_on<T: Send + 'static>(
    on: tokio::sync::watch::Receiver<bool>,
    make: impl Fn() -> futures::stream::BoxStream<'static, T> + Send + 'static,
) -> futures::stream::BoxStream<'static, T> {
    let current: Option<futures::stream::BoxStream<'static, T>> = None;
    futures::stream::unfold(
        (on, current, make),
        |(mut on, mut current, make)| async move {
            loop {
                if !*on.borrow_and_update() {
                    current = None;
                } else if current.is_none() {
                    current = Some(make());
                }
                match current.as_mut() {
                    None => on.changed().await.ok()?,
                    Some(stream) => tokio::select! {
                        item = stream.next() => match item {
                            Some(item) => return Some((item, (on, current, make))),
                            // Ended by itself (a watch never does): again on the next change.
                            None => {
                                current = None;
                                on.changed().await.ok()?;
                            }
                        },
                        changed = on.changed() => changed.ok()?,
                    },
                }
            }
        },
    )
    .boxed()
}

fn stream_of<T: Send + 'static>(
    mut receiver: UnboundedReceiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    async fn next(
        stream: &mut futures::stream::BoxStream<'static, (usize, u32)>,
    ) -> Option<(usize, u32)> {
        tokio::time::timeout(Duration::from_millis(50), stream.next())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn a_stream_runs_only_while_it_is_on() {
        let (on, receiver) = tokio::sync::watch::channel(false);
        let made = Arc::new(AtomicUsize::new(0));
        let mut stream = while_on(receiver, {
            let made = made.clone();
            move || {
                let round = made.fetch_add(1, Ordering::SeqCst);
                futures::stream::iter((0..).map(move |n| (round, n))).boxed()
            }
        });
        assert_eq!(next(&mut stream).await, None, "off: nothing, nothing made");
        assert_eq!(made.load(Ordering::SeqCst), 0);
        on.send_replace(true);
        assert_eq!(next(&mut stream).await, Some((0, 0)));
        assert_eq!(next(&mut stream).await, Some((0, 1)));
        on.send_replace(false);
        assert_eq!(next(&mut stream).await, None, "off again");
        on.send_replace(true);
        assert_eq!(next(&mut stream).await, Some((1, 0)), "made anew");
    }
}
