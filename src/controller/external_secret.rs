//! ExternalSecret -> Secret. A refresh fetches as part of its store's cycle
//! (see `refresh`), renders through the sync core and writes by server-side
//! apply; between refreshes, a Secret changed or deleted by hand is rebuilt
//! from the answers kept. A failure of any kind leaves the existing Secret
//! exactly as it was and says why in the status, which is built from what
//! this process last wrote (never from a cached copy that may lag).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::external_secret_cache::CachedExternalSecret;
use super::objects::{self, Flavor, WatchedExternalSecret};
use super::refresh::{self, Admit, Observed, SpecHash};
use super::{Context, Error, generated, target};
use crate::SecretValue;
use crate::api::{
    Condition, CreationPolicy, DeletionPolicy, ExternalSecret, ExternalSecretSpec,
    ExternalSecretStatus, RefreshPolicy, SecretStoreRef, StoreKind, StoreProvider,
};
use crate::provider::{FetchResults, Fetched, ProviderError, RemoteRequest, StoreIdentity};
use crate::sync::{self, SyncError, TemplateSources};

/// Annotation on a Secret naming the ExternalSecret (same namespace) that writes it.
pub const EXTERNAL_SECRET_ANNOTATION: &str = "secretsync.io/external-secret";
/// Longest wait between retries after a failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait before an ExternalSecret is looked at again, whatever its
/// interval (Go's durations reach 292 years; timers need not).
pub const MAX_REQUEUE: Duration = Duration::from_secs(24 * 3600);

/// Why a sync did not happen, as a Ready=False condition.
pub(super) struct Failure {
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// What a sync that went through leaves in the status.
struct Synced {
    reason: &'static str,
    message: &'static str,
    refreshed_at: Option<jiff::Timestamp>,
    resource_version: Option<String>,
    content_hash: Option<String>,
    spec_hash: SpecHash,
    /// The provider (`Cached::id`) the values came through, when it took any.
    through: Option<u64>,
    action: Next,
}

/// Keeps the refresher's picture of who reads which store in step with the
/// watch, and says whether the object as the watch shows it now (cached
/// under `key`, an [`objects::flavored_key`]) asks for a reconcile: an
/// ExternalSecret new here, or whose spec, labels or annotations
/// (`secretsync.io/force-sync`) changed; not one whose status changed, which
/// this controller writes.
pub fn observe_applied(ctx: &Context, key: &Arc<str>, object: &CachedExternalSecret) -> bool {
    ctx.status_shown(key, || object.status());
    match object.spec() {
        Ok(spec) => {
            ctx.forget_invalid(key);
            ctx.refresher
                .observe(key, observed(ctx, object.flavor, key, object, &spec))
        }
        Err(_) => {
            ctx.refresher.forget(key);
            ctx.invalid_changed(key, asked_for_sync(object))
        }
    }
}

/// The ExternalSecret of `key` is gone: forgets everything kept for it.
pub fn observe_deleted(ctx: &Context, key: &str) {
    ctx.refresher.forget(key);
    ctx.generated.forget(key);
    ctx.forget_status(key);
    ctx.forget_invalid(key);
    ctx.reset_backoff(key);
    if let Some((_, namespace, name)) = objects::parts_of_key(key) {
        ctx.metrics.external_secret_deleted(namespace, name);
    }
}

/// What a user changes to ask for a sync of an object whose spec does not
/// decode: its generation, labels and annotations.
fn asked_for_sync(object: &CachedExternalSecret) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.generation().hash(&mut hasher);
    object.labels_and_annotations().hash(&mut hasher);
    hasher.finish()
}

fn observed(
    ctx: &Context,
    flavor: Flavor,
    key: &str,
    object: &CachedExternalSecret,
    spec: &ExternalSecretSpec,
) -> Observed {
    let namespace = objects::parts_of_key(key)
        .map(|(_, namespace, _)| namespace)
        .unwrap_or_default();
    let status = object.status();
    let status = status.as_ref();
    let spec_source = object.spec_source();
    Observed {
        store: store_identity(ctx, flavor, namespace, spec),
        requests: sync::remote_requests(spec),
        interval: periodic_interval(spec),
        refreshed_at: status
            .and_then(|s| s.refresh_time.as_ref())
            .and_then(|t| refresh::instant_of(t.0)),
        refreshed_at_wall: status.and_then(|s| s.refresh_time.as_ref()).map(|t| t.0),
        refreshed_spec: status.and_then(|s| SpecHash::parse(s.spec_hash.as_deref()?)),
        spec_hash: ctx
            .refresher
            .known_spec_hash(key, spec_source)
            .unwrap_or_else(|| {
                let (labels, annotations) = object.labels_and_annotations();
                spec_hash(
                    spec,
                    &labels.unwrap_or_default(),
                    &annotations.unwrap_or_default(),
                )
            }),
        spec_source,
        windowed: spec.sync_windows.is_some() && periodic_interval(spec).is_some(),
    }
}

/// The store an ExternalSecret of `namespace` reads through. A
/// ClusterSecretStore whose session tags name the namespace served
/// (`sessionTagsPolicy`) is a store of its own for each namespace.
fn store_identity(
    ctx: &Context,
    flavor: Flavor,
    namespace: &str,
    spec: &ExternalSecretSpec,
) -> StoreIdentity {
    named_store_identity(ctx, flavor, namespace, &spec.secret_store_ref)
}

/// [`store_identity`] of a store reference.
fn named_store_identity(
    ctx: &Context,
    flavor: Flavor,
    namespace: &str,
    reference: &SecretStoreRef,
) -> StoreIdentity {
    let cluster = reference.kind == StoreKind::ClusterSecretStore;
    let per_namespace = cluster
        && ctx.stores_of(flavor).is_some_and(|caches| {
            caches
                .cluster_secret_stores
                .get(&ObjectRef::new_with(&reference.name, flavor))
                .and_then(|store| store.shared_spec().ok())
                .is_some_and(|spec| {
                    spec.provider
                        .aws
                        .as_ref()
                        .is_some_and(|aws| aws.tags_name_the_namespace())
                })
        });
    StoreIdentity {
        kind: reference.kind,
        namespace: (!cluster).then(|| namespace.to_string()),
        name: flavor.store_name(&reference.name),
        tenant: per_namespace.then(|| namespace.to_string()),
    }
}

/// The refresh interval, when refreshes follow one.
fn periodic_interval(spec: &ExternalSecretSpec) -> Option<Duration> {
    let interval = refresh_interval(spec);
    (spec.refresh_policy == RefreshPolicy::Periodic && !interval.is_zero()).then_some(interval)
}

fn refresh_interval(spec: &ExternalSecretSpec) -> Duration {
    spec.refresh_interval.into()
}

pub async fn reconcile(
    object: Arc<WatchedExternalSecret>,
    ctx: Arc<Context>,
) -> Result<Next, Error> {
    let flavor = object.flavor;
    let key = objects::flavored_key(flavor, object.as_ref());
    ctx.caches_filled().await;
    let started = Instant::now();
    let outcome = match object.typed() {
        Ok(es) => sync_one(&es, &ctx, flavor, &key).await,
        Err(message) if flavor == objects::ESO => Err(Failure::new(
            "InvalidSpec",
            format!("not supported by secretsync: {message}"),
        )),
        Err(message) => Err(Failure::new("InvalidSpec", message)),
    };
    let took = started.elapsed();
    ctx.metrics.observe_reconcile(took);
    let (namespace, name) = (
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default(),
    );
    ctx.metrics
        .external_secret_reconciled(namespace, name, outcome.is_ok(), took);
    let mut status = ctx
        .last_status(&key)
        .or_else(|| object.status())
        .unwrap_or_default();
    status.observed_generation = object.metadata.generation;
    match outcome {
        Ok(synced) => {
            ctx.reset_backoff(&key);
            ctx.refresher
                .succeeded(&key, synced.spec_hash, synced.through);
            if let Some(at) = synced.refreshed_at {
                // Never backwards, whatever a lagging copy said.
                let later = status.refresh_time.as_ref().is_none_or(|t| t.0 < at);
                if later {
                    status.refresh_time = Some(api_time(at));
                }
            }
            if synced.resource_version.is_some() {
                status.synced_resource_version = synced.resource_version;
            }
            if synced.content_hash.is_some() {
                status.content_hash = synced.content_hash;
            }
            status.spec_hash = Some(synced.spec_hash.to_string());
            set_ready(&mut status, "True", synced.reason, synced.message);
            write_status(&object, &ctx, flavor, &key, status).await?;
            ctx.metrics.count_sync(true);
            Ok(synced.action)
        }
        // Deleted while woken (its Secret's garbage collection wakes it
        // before the watch shows the deletion): nothing to write anywhere.
        Err(failure) if failure.reason == GONE => Ok(Next::Change),
        Err(failure) => {
            ctx.refresher.failed(&key);
            ctx.metrics.count_sync(false);
            tracing::warn!(external_secret = %key, reason = failure.reason, message = %failure.message, "sync failed");
            // The same failure again (the status this process last wrote,
            // or the object shows, says it already): no write, no Event.
            let before = ready_condition(&status).cloned();
            set_ready(&mut status, "False", failure.reason, &failure.message);
            let changed = before.as_ref() != ready_condition(&status);
            write_status(&object, &ctx, flavor, &key, status).await?;
            if changed {
                publish(
                    &ctx,
                    object.as_ref(),
                    flavor,
                    EventType::Warning,
                    "UpdateFailed",
                    &failure.message,
                )
                .await;
            }
            if failure.reason == "InvalidSpec" {
                // Nothing changes until the spec does.
                return Ok(Next::Change);
            }
            // Back off up to the cap; from then on, retry on the refresh interval
            // (when that is longer), so a broken reference does not keep calling.
            let delay = ctx.next_backoff(&key);
            let interval = object
                .spec()
                .ok()
                .as_ref()
                .and_then(periodic_interval)
                .unwrap_or(Duration::ZERO);
            Ok(Next::After(if delay >= MAX_BACKOFF && interval > delay {
                interval
            } else {
                delay
            }))
        }
    }
}

/// When a reconcile wants its ExternalSecret back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Only on a change (or when the refresher's clock wakes it).
    Change,
    /// After this long, whatever happens meanwhile.
    After(Duration),
}

/// The reason of a sync that found its ExternalSecret deleted.
const GONE: &str = "Gone";

/// One sync: what goes into the status and when to come back, or why it failed.
async fn sync_one(
    es: &ExternalSecret,
    ctx: &Arc<Context>,
    flavor: Flavor,
    key: &str,
) -> Result<Synced, Failure> {
    sync::check(es).map_err(|e| Failure::new("InvalidSpec", e.to_string()))?;
    let namespace = es.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let target_name = es.target_name().to_string();
    let policy = es.spec.target.creation_policy;
    let refresh_policy = es.spec.refresh_policy;
    let (identity, spec) = if es.spec.reads_a_store() {
        resolve_store(es, ctx, flavor)?
    } else {
        // Generators only: refreshes still go by the refresher (its times are
        // what says a refresh is due), through a store with nothing in it.
        (
            store_identity(ctx, flavor, &namespace, &es.spec),
            StoreProvider {
                fake: Some(Default::default()),
                ..Default::default()
            },
        )
    };
    let provider = ctx
        .providers
        .for_store(&identity, &spec)
        .await
        .map_err(|e| Failure::new("StoreNotReady", format!("{identity}: {e}")))?;

    // Whether the target exists: the managed cache knows Secrets this process
    // writes; one it has not labelled yet (Merge) is read.
    let cached = ctx.managed_secret(&namespace, &target_name);
    let mut live: Option<Option<Secret>> = None;
    if cached.is_none()
        && (policy == CreationPolicy::Merge || refresh_policy == RefreshPolicy::CreatedOnce)
    {
        live = Some(read_secret(&secrets, &namespace, &target_name).await?);
    }
    let exists = cached.is_some() || live.as_ref().is_some_and(Option::is_some);
    if !exists
        && policy == CreationPolicy::Owner
        && es.status.as_ref().is_some_and(|s| s.refresh_time.is_some())
    {
        // Its Secret went after a sync: the garbage collector's doing when
        // the ExternalSecret itself was deleted, which the cache may not show
        // yet. One GET tells, before the Secret is written back.
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &flavor.external_secrets());
        let here = api.get_metadata_opt(&es.name_any()).await.map_err(|e| {
            Failure::new(
                "SecretSyncedError",
                format!("reading the ExternalSecret: {}", kube_error(&e)),
            )
        })?;
        let same = here.is_some_and(|found| {
            found.metadata.uid == es.metadata.uid && found.metadata.deletion_timestamp.is_none()
        });
        if !same {
            return Err(Failure::new(GONE, "the ExternalSecret is gone".to_string()));
        }
    }
    let refreshed = ctx.refresher.refreshed(key);
    let spec_hash = refreshed
        .current_spec
        .unwrap_or_else(|| spec_hash(&es.spec, es.labels(), es.annotations()));
    let status = es.status.clone().unwrap_or_default();

    if refresh_policy == RefreshPolicy::CreatedOnce
        && exists
        && (refreshed.at.is_some() || status.refresh_time.is_some())
    {
        return Ok(Synced {
            reason: "SecretSynced",
            message: "Secret was created once; CreatedOnce does not update it",
            refreshed_at: None,
            resource_version: None,
            content_hash: None,
            spec_hash,
            through: None,
            action: Next::Change,
        });
    }
    if policy == CreationPolicy::Merge && !exists {
        return Err(Failure::new(
            "SecretMissing",
            format!(
                "creationPolicy Merge: Secret {namespace}/{target_name} does not exist, so there is nothing to merge into"
            ),
        ));
    }

    let interval = periodic_interval(&es.spec);
    // The store's spec changed since this process last took values through
    // it (a new provider): its values may differ, so a periodic refresh is
    // due now (a reconcile that raced the change may have fetched through
    // the old), as sync windows allow; OnChange and CreatedOnce wait.
    let provider_id = provider.id();
    let store_changed = refreshed
        .through
        .is_some_and(|through| through != provider_id);
    let asked = refreshed.at.is_none()
        || refreshed.failed
        || refreshed.spec != Some(spec_hash)
        || !exists && refresh_policy == RefreshPolicy::CreatedOnce;
    let periodic =
        interval.is_some_and(|i| store_changed || refreshed.at.is_some_and(|at| at.elapsed() >= i));
    let held_back = !asked && periodic && !within_sync_windows(ctx, key, &es.spec).await;
    let mut due = asked || periodic && !held_back;
    let generators = es.spec.has_generators();
    let mut remembered = generators
        .then(|| ctx.generated.get(key, spec_hash))
        .flatten();
    if generators && !due {
        match &remembered {
            Some(made) => {
                // Values that expire are renewed before they do, whatever
                // the interval; and a store cycle that took this one along
                // (refreshed it without a reconcile) is its refresh too.
                let renew = made.renew_at.is_some_and(|at| at <= Instant::now());
                let pulled_in = matches!(
                    (refreshed.at, made.refreshed_at),
                    (Some(at), Some(made_in)) if at > made_in
                );
                due = renew || pulled_in;
            }
            // Nothing to keep: a new Secret gets new values.
            None if !exists && policy != CreationPolicy::None => due = true,
            None if generated::any_expires(es, ctx, flavor).await => due = true,
            None => {
                // After a restart: the Secret holds what was made.
                let marker = generated::Remembered {
                    spec: spec_hash,
                    values: None,
                    refreshed_at: refreshed.at,
                    renew_at: None,
                };
                ctx.generated.remember(key, marker.clone());
                remembered = Some(marker);
            }
        }
    }
    let renew_at = remembered.as_ref().and_then(|r| r.renew_at);
    let kept_generated = remembered.and_then(|r| r.values);
    if generators && !due && kept_generated.is_none() {
        // Not due, and what the generators made lives only in the Secret:
        // it is left as it is (rebuilding it would make new values).
        return Ok(Synced {
            reason: "SecretSynced",
            message: "Secret is synced",
            refreshed_at: None,
            resource_version: None,
            content_hash: None,
            spec_hash,
            through: None,
            action: next_refresh(interval, refreshed.at),
        });
    }
    let requests = sync::remote_requests(&es.spec);
    // Held back by its sync windows, it takes no value that another
    // ExternalSecret's refresh brought in either (unless its Secret needs
    // repair, below).
    let kept = if due || held_back {
        None
    } else {
        provider.cached(&requests, interval.unwrap_or(Duration::MAX))
    };
    if kept.is_none() && !due && target_in_place(ctx, key, &status, cached.as_deref()) {
        // Not due, and the Secret is as last written (after a restart, say):
        // nothing to fetch, nothing to write.
        return Ok(Synced {
            reason: "SecretSynced",
            message: "Secret is synced",
            refreshed_at: None,
            resource_version: None,
            content_hash: None,
            spec_hash,
            through: None,
            action: generated::with_renewal(
                next_refresh(interval, refreshed.at),
                interval,
                refreshed.at,
                renew_at,
            ),
        });
    }
    let fetched = match kept {
        Some(kept) => kept,
        None => {
            let admit = admission(ctx, flavor, &identity);
            ctx.refresher
                .refresh(&identity, key, requests, provider, admit)
                .await
        }
    };
    let refreshed_at = ctx.refresher.refreshed(key).at_wall;
    let (generated, renew_at) = if !generators {
        (Arc::default(), None)
    } else if due {
        let (made, renew_at) = generated::generate_all(es, ctx, flavor).await?;
        let made = Arc::new(made);
        ctx.generated.remember(
            key,
            generated::Remembered {
                spec: spec_hash,
                values: Some(made.clone()),
                refreshed_at: refreshed_at_instant(ctx, key),
                renew_at,
            },
        );
        (made, renew_at)
    } else {
        (kept_generated.unwrap_or_default(), renew_at)
    };

    let sources = template_sources(es, ctx).await?;
    let (effective, gone) = apply_deletion_policy(es, &fetched);
    if gone && es.spec.target.deletion_policy == DeletionPolicy::Delete || effective.is_none() {
        // Every remote value is gone and the policy says to follow.
        if exists && policy == CreationPolicy::Owner {
            secrets
                .delete(&target_name, &DeleteParams::background())
                .await
                .map_err(|e| {
                    Failure::new(
                        "SecretSyncedError",
                        format!(
                            "deleting Secret {namespace}/{target_name}: {}",
                            kube_error(&e)
                        ),
                    )
                })?;
            publish(
                ctx,
                es,
                flavor,
                EventType::Normal,
                "Deleted",
                "every remote value is gone: Secret deleted (deletionPolicy)",
            )
            .await;
        }
        return Ok(Synced {
            reason: "SecretDeleted",
            message: "every remote value is gone; the Secret was deleted (deletionPolicy)",
            refreshed_at,
            resource_version: None,
            content_hash: None,
            spec_hash,
            through: None,
            action: next_refresh(interval, refreshed_at_instant(ctx, key)),
        });
    }
    let effective = effective.unwrap_or_else(|| es.clone());
    let limits = ctx.template_limits;
    let desired = if renders_in_place(&effective, &fetched) {
        sync::desired_secret_with_generated(&effective, &fetched, &generated, &sources, &limits)
    } else {
        // CPU work (templates, regular expressions), so on a blocking thread,
        // within limits.
        ctx.render_pool
            .run(move || {
                sync::desired_secret_with_generated(
                    &effective, &fetched, &generated, &sources, &limits,
                )
            })
            .await
            .map_err(|e| Failure::new("SecretSyncedError", e.to_string()))?
    }
    .map_err(|e| Failure::new(reason_of(&e), e.to_string()))?;

    let synced_version = ctx
        .last_status(key)
        .and_then(|s| s.synced_resource_version)
        .or(status.synced_resource_version.clone());
    let written = target::write(
        es,
        ctx,
        flavor,
        &desired,
        cached.as_deref(),
        synced_version.as_deref(),
        live,
    )
    .await?;
    let resource_version = match written {
        target::Outcome::Unchanged { resource_version } => resource_version,
        target::Outcome::Written {
            resource_version,
            created,
        } => {
            let (reason, note) = if created {
                ("Created", "Secret created")
            } else {
                ("Updated", "Secret updated")
            };
            publish(ctx, es, flavor, EventType::Normal, reason, note).await;
            resource_version
        }
        target::Outcome::NotWritten => None,
    };
    Ok(Synced {
        reason: "SecretSynced",
        message: "Secret is synced",
        refreshed_at,
        resource_version,
        content_hash: Some(desired.content_hash.clone()),
        spec_hash,
        through: Some(provider_id),
        action: generated::with_renewal(
            next_refresh(interval, refreshed_at_instant(ctx, key)),
            interval,
            refreshed_at_instant(ctx, key),
            renew_at,
        ),
    })
}

/// Most fetched bytes an ExternalSecret's Secret is built from on the async
/// thread (see [`renders_in_place`]).
const IN_PLACE_RENDER_BYTES: usize = 64 * 1024;

/// Whether building the Secret is light enough to do here rather than on the
/// render pool: no templates and no rewrites (regular expressions), only
/// copying and JSON field lookups over at most [`IN_PLACE_RENDER_BYTES`],
/// which takes microseconds. Handing it to a blocking thread and back costs
/// more than that: two thread wake-ups, at 10,000 ExternalSecrets a tenth of
/// a first sync's CPU.
fn renders_in_place(es: &ExternalSecret, fetched: &FetchResults) -> bool {
    let fetched_bytes = fetched
        .values()
        .map(|answer| match answer {
            Ok(Fetched::Value(value)) => value.len(),
            Ok(Fetched::Found(found)) => found
                .iter()
                .map(|(name, value)| name.len().saturating_add(value.len()))
                .fold(0, usize::saturating_add),
            Err(_) => 0,
        })
        .fold(0, usize::saturating_add);
    es.spec.target.template.is_none()
        && es.spec.data_from.iter().all(|item| item.rewrite.is_empty())
        && fetched_bytes <= IN_PLACE_RENDER_BYTES
}

/// Whether the target Secret is exactly what this ExternalSecret last wrote:
/// same resourceVersion and content hash as its status records.
fn target_in_place(
    ctx: &Context,
    key: &str,
    status: &ExternalSecretStatus,
    cached: Option<&super::managed::ManagedSecret>,
) -> bool {
    let status = ctx.last_status(key).unwrap_or_else(|| status.clone());
    let Some(cached) = cached else {
        return false;
    };
    status.synced_resource_version.is_some()
        && cached.resource_version() == status.synced_resource_version.as_deref()
        && status.content_hash.is_some()
        && cached.content_hash() == status.content_hash.as_deref()
}

fn refreshed_at_instant(ctx: &Context, key: &str) -> Option<Instant> {
    ctx.refresher.refreshed(key).at
}

/// Whether the sync windows let a periodic refresh happen now. When they
/// hold it back, the refresher wakes the ExternalSecret again once they let
/// it (or in a day, when they never do). Cron search is CPU work, so off
/// the async threads.
async fn within_sync_windows(ctx: &Context, key: &str, spec: &ExternalSecretSpec) -> bool {
    let Some(windows) = &spec.sync_windows else {
        return true;
    };
    let Ok(schedule) = crate::api::SyncWindowSchedule::compile(windows) else {
        // validate() has turned it away already.
        return true;
    };
    let now = jiff::Timestamp::now();
    let next = tokio::task::spawn_blocking(move || schedule.next_allowed(now))
        .await
        .ok()
        .flatten();
    if next == Some(now) {
        return true;
    }
    let wait = next
        .and_then(|next| next.duration_since(now).try_into().ok())
        .unwrap_or(SYNC_WINDOW_RECHECK)
        .min(SYNC_WINDOW_RECHECK);
    tracing::debug!(external_secret = %key, wait_secs = wait.as_secs(), "periodic refresh held back by syncWindows");
    ctx.refresher.defer(key, Instant::now() + wait);
    false
}

/// The longest the refresher waits before it asks the sync windows again.
const SYNC_WINDOW_RECHECK: Duration = Duration::from_secs(24 * 3600);

/// When to come back. The refresher's clock wakes an ExternalSecret it has a
/// refresh for when the next one falls due (a store's cycle may take it along
/// a little earlier), so that needs no requeue here; one without comes back
/// after its interval; one not refreshed on a schedule only on a change.
fn next_refresh(interval: Option<Duration>, refreshed: Option<Instant>) -> Next {
    match (interval, refreshed) {
        (Some(_), Some(_)) | (None, _) => Next::Change,
        (Some(interval), None) => Next::After(interval.min(MAX_REQUEUE)),
    }
}

fn reason_of(error: &SyncError) -> &'static str {
    match error {
        SyncError::InvalidSpec(_) => "InvalidSpec",
        _ => "SecretSyncedError",
    }
}

/// Hash of what a user changes to ask for a new sync: spec, labels, annotations
/// (`secretsync.io/force-sync` among them).
fn spec_hash(
    spec: &ExternalSecretSpec,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> SpecHash {
    let text = json!({"spec": spec, "labels": labels, "annotations": annotations}).to_string();
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    SpecHash(u128::from_be_bytes(first))
}

/// With `deletionPolicy: Merge`, references whose remote value is gone are
/// dropped; `None` when nothing is left. The flag says every value is gone.
fn apply_deletion_policy(
    es: &ExternalSecret,
    fetched: &FetchResults,
) -> (Option<ExternalSecret>, bool) {
    let missing = |request: &RemoteRequest| {
        matches!(
            fetched.get(request),
            Some(Err(ProviderError::NotFound { .. }))
        )
    };
    let requests = sync::remote_requests(&es.spec);
    let all_gone = !requests.is_empty() && requests.iter().all(missing);
    if es.spec.target.deletion_policy != DeletionPolicy::Merge {
        return (Some(es.clone()), all_gone);
    }
    let mut kept = es.clone();
    kept.spec.data.retain(|d| !missing(&sync::data_request(d)));
    kept.spec
        .data_from
        .retain(|d| !sync::data_from_request(d).is_some_and(|r| missing(&r)));
    if kept.spec.data.is_empty() && kept.spec.data_from.is_empty() {
        return (None, all_gone);
    }
    (Some(kept), all_gone)
}

/// The store an ExternalSecret names, in its own API group, if it may use it:
/// from the store caches, no request.
fn resolve_store(
    es: &ExternalSecret,
    ctx: &Context,
    flavor: Flavor,
) -> Result<(StoreIdentity, StoreProvider), Failure> {
    let namespace = es.namespace().unwrap_or_default();
    resolve_named_store(
        ctx,
        flavor,
        &namespace,
        &es.spec.secret_store_ref,
        "spec.secretStoreRef",
        "an ExternalSecret",
    )
    .map_err(|message| Failure::new("StoreNotReady", message))
}

/// The store `reference` (at `field` of its spec) names for an object
/// (`user`: "a" and its kind) of `namespace`, if that object may use it; or
/// why not.
pub(super) fn resolve_named_store(
    ctx: &Context,
    flavor: Flavor,
    namespace: &str,
    reference: &SecretStoreRef,
    field: &str,
    user: &str,
) -> Result<(StoreIdentity, StoreProvider), String> {
    let namespace = namespace.to_string();
    let caches = ctx
        .stores_of(flavor)
        .ok_or_else(|| format!("stores of {} are not watched", flavor.group()))?;
    let identity = named_store_identity(ctx, flavor, &namespace, reference);
    let provider = match reference.kind {
        StoreKind::SecretStore => {
            let described = format!("SecretStore {namespace}/{}", reference.name);
            let store = caches
                .secret_store(flavor, &namespace, &reference.name)
                .ok_or_else(|| {
                    format!(
                        "{field}: SecretStore {:?} not found in namespace {namespace:?} ({user} can only use a SecretStore of its own namespace)",
                        reference.name
                    )
                })?;
            let spec = store
                .shared_spec()
                .map_err(|e| format!("{described}: {e}"))?;
            spec.validate(Some(&namespace))
                .map_err(|e| format!("{described}: {e}"))?;
            spec.provider_to_build()
                .serving(&namespace, &reference.name, "SecretStore")
        }
        StoreKind::ClusterSecretStore => {
            let described = format!("ClusterSecretStore {}", reference.name);
            let store = caches
                .cluster_secret_stores
                .get(&ObjectRef::new_with(&reference.name, flavor))
                .ok_or_else(|| {
                    format!("{field}: ClusterSecretStore {:?} not found", reference.name)
                })?;
            let spec = store
                .shared_spec()
                .map_err(|e| format!("{described}: {e}"))?;
            spec.validate().map_err(|e| format!("{described}: {e}"))?;
            if !sync::cluster_store_admits(&spec, &namespace, &ctx.namespace_labels(&namespace)) {
                return Err(format!(
                    "{field}: ClusterSecretStore {:?} does not admit namespace {namespace:?} (see its spec.conditions)",
                    reference.name
                ));
            }
            spec.provider_to_build()
                .serving(&namespace, &reference.name, "ClusterSecretStore")
        }
    };
    Ok((identity, provider))
}

/// Whether a store's cycle may take an ExternalSecret along: a
/// ClusterSecretStore only for namespaces its conditions admit.
fn admission(ctx: &Arc<Context>, flavor: Flavor, identity: &StoreIdentity) -> Admit {
    if identity.kind == StoreKind::SecretStore {
        return Arc::new(|_| true);
    }
    let ctx = ctx.clone();
    let name = reference_name(flavor, &identity.name);
    // Looked up once per cycle, not once per ExternalSecret it takes along.
    let store = std::sync::OnceLock::new();
    Arc::new(move |key: &str| {
        // Keys are `group/namespace/name`.
        let Some(namespace) = key.split('/').nth(1) else {
            return false;
        };
        let spec = store.get_or_init(|| {
            ctx.stores_of(flavor)?
                .cluster_secret_stores
                .get(&ObjectRef::new_with(&name, flavor))?
                .spec()
                .ok()
        });
        spec.as_ref().is_some_and(|spec| {
            sync::cluster_store_admits(spec, namespace, &ctx.namespace_labels(namespace))
        })
    })
}

/// The store's own name, from the name its identity carries.
fn reference_name(flavor: Flavor, identity_name: &str) -> String {
    let suffix = format!(".{}", flavor.group());
    if flavor == objects::SECRETSYNC {
        identity_name.to_string()
    } else {
        identity_name
            .strip_suffix(&suffix)
            .unwrap_or(identity_name)
            .to_string()
    }
}

async fn read_secret(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, Failure> {
    secrets.get_opt(name).await.map_err(|e| {
        Failure::new(
            "SecretSyncedError",
            format!("reading Secret {namespace}/{name}: {}", kube_error(&e)),
        )
    })
}

/// The ConfigMaps and Secrets `templateFrom` names, from the ExternalSecret's namespace.
async fn template_sources(es: &ExternalSecret, ctx: &Context) -> Result<TemplateSources, Failure> {
    let namespace = es.namespace().unwrap_or_default();
    let (config_map_names, secret_names) = sync::template_source_names(&es.spec);
    let mut sources = TemplateSources::default();
    for name in config_map_names {
        let found = Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&name)
            .await
            .map_err(|e| {
                Failure::new(
                    "SecretSyncedError",
                    format!("reading ConfigMap {namespace}/{name}: {}", kube_error(&e)),
                )
            })?;
        if let Some(config_map) = found {
            sources
                .config_maps
                .insert(name, config_map.data.unwrap_or_default());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in secret_names {
        if let Some(secret) = read_secret(&secrets, &namespace, &name).await? {
            let data: BTreeMap<String, SecretValue> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, SecretValue::new(v.0)))
                .collect();
            sources.secrets.insert(name, data);
        }
    }
    Ok(sources)
}

/// A Kubernetes API error as a sentence: the server's own message, or what
/// went wrong on the way.
pub(super) fn kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        // serde_json's message can quote the value that did not fit, and the
        // answer may be a Secret: only where it failed is told.
        kube::Error::SerdeError(e) => format!(
            "the API server's answer did not decode (line {}, column {}; not shown, it may hold a value)",
            e.line(),
            e.column()
        ),
        other => other.to_string(),
    }
}

/// A time as the API server keeps it (whole seconds), so a status read back
/// compares equal to the one written.
fn api_time(at: jiff::Timestamp) -> Time {
    Time(jiff::Timestamp::from_second(at.as_second()).unwrap_or(at))
}

fn ready_condition(status: &ExternalSecretStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == "Ready")
}

fn set_ready(status: &mut ExternalSecretStatus, value: &str, reason: &str, message: &str) {
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned();
    let transition = match &previous {
        Some(p) if p.status == value => p.last_transition_time.clone(),
        _ => Some(api_time(jiff::Timestamp::now())),
    };
    status.conditions.retain(|c| c.type_ != "Ready");
    status.conditions.push(Condition {
        type_: "Ready".into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: transition,
    });
}

/// Writes the status unless the object shows it already (or a lagging copy of
/// the object shows what it had before this process wrote it); what is written
/// is remembered, so the next status starts from it even if the cache lags. A
/// failed write is an error: the reconcile is retried and writes it again.
async fn write_status(
    object: &WatchedExternalSecret,
    ctx: &Context,
    flavor: Flavor,
    key: &str,
    status: ExternalSecretStatus,
) -> Result<(), Error> {
    let shown = object.status();
    let shown = shown.as_ref();
    if shown == Some(&status) {
        ctx.record_status(key, &status, shown, true);
        return Ok(());
    }
    if ctx.status_lags(key, &status, shown) {
        // Written already: the cached copy still shows the status before.
        return Ok(());
    }
    if ctx.cached_status(key).as_ref() == Some(&status) {
        // Written already, and the cache caught up (its record is gone)
        // since this reconcile took its copy.
        return Ok(());
    }
    patch_status(
        &ctx.client,
        flavor,
        &object.namespace().unwrap_or_default(),
        &object.name_any(),
        &status,
    )
    .await
    .map_err(Error::Kube)?;
    ctx.record_status(key, &status, shown, false);
    Ok(())
}

/// Merge-patches an ExternalSecret's status. The answer, the whole object
/// with its managedFields, is not decoded: nothing in it is needed, and
/// decoding it was most of the write's CPU.
async fn patch_status(
    client: &kube::Client,
    flavor: Flavor,
    namespace: &str,
    name: &str,
    status: &ExternalSecretStatus,
) -> Result<(), kube::Error> {
    let url =
        <DynamicObject as kube::Resource>::url_path(&flavor.external_secrets(), Some(namespace));
    let request = kube::core::Request::new(url)
        .patch_subresource(
            "status",
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await.map(drop)
}

async fn publish(
    ctx: &Context,
    object: &impl ResourceExt,
    flavor: Flavor,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let meta = object.meta();
    let regarding = ObjectReference {
        api_version: Some(flavor.api_version()),
        kind: Some("ExternalSecret".into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    };
    ctx.publish(&regarding, type_, "Sync", reason, note).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn external_secret(spec: &str) -> ExternalSecret {
        let manifest = format!(
            "apiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: team-a}}\nspec:\n  secretStoreRef: {{name: fake}}\n{}",
            spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        serde_yaml_ng::from_str(&manifest).unwrap_or_else(|e| panic!("{e}\n{manifest}"))
    }

    fn fetched(bytes: usize) -> FetchResults {
        let request = RemoteRequest::Value {
            key: "db".into(),
            version: None,
        };
        let value = SecretValue::new(vec![b'x'; bytes]);
        BTreeMap::from([(request, Ok(Fetched::Value(value)))])
    }

    #[test]
    fn only_a_secret_without_templates_or_rewrites_from_little_data_renders_in_place() {
        let plain = external_secret("data:\n- {secretKey: pw, remoteRef: {key: db}}");
        assert!(renders_in_place(&plain, &fetched(100)));
        assert!(renders_in_place(&plain, &fetched(IN_PLACE_RENDER_BYTES)));
        assert!(!renders_in_place(
            &plain,
            &fetched(IN_PLACE_RENDER_BYTES + 1)
        ));

        let templated = external_secret(
            "data:\n- {secretKey: pw, remoteRef: {key: db}}\ntarget:\n  template:\n    data: {url: 'x{{ .pw }}'}",
        );
        assert!(!renders_in_place(&templated, &fetched(100)));

        let rewritten = external_secret(
            "dataFrom:\n- extract: {key: db}\n  rewrite:\n  - regexp: {source: 'a', target: 'b'}",
        );
        assert!(!renders_in_place(&rewritten, &fetched(100)));
    }
}
