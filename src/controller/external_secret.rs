//! ExternalSecret -> Secret. A refresh fetches (batched with every other
//! ExternalSecret due on the same store), renders through the sync core and
//! writes by server-side apply; between refreshes, a Secret changed or deleted
//! by hand is rebuilt from the values last fetched. A failure of any kind
//! leaves the existing Secret exactly as it was and says why in the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Context, Error, FIELD_MANAGER};
use crate::SecretValue;
use crate::api::{
    ClusterSecretStoreSpec, Condition, CreationPolicy, DeletionPolicy, ExternalSecret,
    ExternalSecretStatus, RefreshPolicy, SecretStoreSpec, StoreKind, StoreProvider,
};
use crate::provider::{FetchResults, ProviderError, RemoteRequest, StoreIdentity};
use crate::sync::{self, CONTENT_HASH_ANNOTATION, MANAGED_LABEL, SyncError, TemplateSources};

/// Annotation on a Secret naming the ExternalSecret (same namespace) that writes it.
pub const EXTERNAL_SECRET_ANNOTATION: &str = "secretsync.io/external-secret";
/// Longest wait between retries after a failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Which API an ExternalSecret and its stores come from: secretsync's own, or
/// ESO's (`--eso-compat`). Same fields, same sync; status, events and owner
/// references point at the object in its own group.
#[derive(Clone, Copy, Debug)]
pub struct Flavor {
    pub group: &'static str,
    pub version: &'static str,
}

pub const SECRETSYNC: Flavor = Flavor {
    group: "secretsync.io",
    version: "v1",
};

pub const ESO: Flavor = Flavor {
    group: crate::api::ESO_GROUP,
    version: "v1",
};

impl Flavor {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    pub fn resource(&self, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, kind),
            plural,
        )
    }

    /// ESO stores are told apart from secretsync's of the same name, so they
    /// never share a provider or a batch.
    fn store_name(&self, name: &str) -> String {
        if self.group == SECRETSYNC.group {
            name.to_string()
        } else {
            format!("{name}.{}", self.group)
        }
    }
}

/// Why a sync did not happen, as a Ready=False condition.
struct Failure {
    reason: &'static str,
    message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

pub async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_as(&es, &ctx, SECRETSYNC).await
}

/// An ESO ExternalSecret (`--eso-compat`): read as secretsync's, synced the same way.
pub async fn reconcile_eso(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let mut value = serde_json::to_value(object.as_ref()).unwrap_or_default();
    value["apiVersion"] = json!(SECRETSYNC.api_version());
    value["kind"] = json!("ExternalSecret");
    match crate::api::from_json::<ExternalSecret>(value) {
        Ok(es) => reconcile_as(&es, &ctx, ESO).await,
        Err(message) => {
            // Anything ESO has that secretsync does not is said, not ignored.
            let mut status: ExternalSecretStatus = object
                .data
                .get("status")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok())
                .unwrap_or_default();
            set_ready(
                &mut status,
                "False",
                "InvalidSpec",
                &format!("not supported by secretsync: {message}"),
            );
            status.observed_generation = object.metadata.generation;
            let api: Api<DynamicObject> = Api::namespaced_with(
                ctx.client.clone(),
                &object.namespace().unwrap_or_default(),
                &ESO.resource("ExternalSecret", "externalsecrets"),
            );
            api.patch_status(
                &object.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map_err(Error::Kube)?;
            Ok(Action::await_change())
        }
    }
}

async fn reconcile_as(es: &ExternalSecret, ctx: &Context, flavor: Flavor) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let key = format!("{}/{}", es.namespace().unwrap_or_default(), es.name_any());
    let outcome = sync_one(es, ctx, flavor).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    match outcome {
        Ok((status, action)) => {
            ctx.reset_backoff(&key);
            write_status(es, ctx, status, flavor).await?;
            ctx.metrics.count_sync(true);
            Ok(action)
        }
        Err(failure) => {
            ctx.metrics.count_sync(false);
            tracing::warn!(external_secret = %key, reason = failure.reason, message = %failure.message, "sync failed");
            let mut status = es.status.clone().unwrap_or_default();
            set_ready(&mut status, "False", failure.reason, &failure.message);
            status.observed_generation = es.metadata.generation;
            write_status(es, ctx, status, flavor).await?;
            publish(
                ctx,
                es,
                flavor,
                EventType::Warning,
                "UpdateFailed",
                &failure.message,
            )
            .await;
            if failure.reason == "InvalidSpec" {
                // Nothing changes until the spec does.
                return Ok(Action::await_change());
            }
            // Back off up to the cap; from then on, retry on the refresh interval
            // (when that is longer), so a broken reference does not keep calling.
            let delay = ctx.next_backoff(&key);
            let interval: Duration = es.spec.refresh_interval.into();
            Ok(Action::requeue(
                if delay >= MAX_BACKOFF && interval > delay {
                    jittered(interval)
                } else {
                    delay
                },
            ))
        }
    }
}

/// One sync: the status to write and when to come back, or why it failed.
async fn sync_one(
    es: &ExternalSecret,
    ctx: &Context,
    flavor: Flavor,
) -> Result<(ExternalSecretStatus, Action), Failure> {
    sync::check(es).map_err(|e| Failure::new("InvalidSpec", e.to_string()))?;
    let namespace = es.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let target = es.target_name().to_string();
    let existing = secrets.get_opt(&target).await.map_err(|e| {
        Failure::new(
            "SecretSyncedError",
            format!("reading Secret {namespace}/{target}: {e}"),
        )
    })?;
    let mut status = es.status.clone().unwrap_or_default();
    let spec_hash = spec_hash(es);
    let policy = es.spec.target.creation_policy;

    if es.spec.refresh_policy == RefreshPolicy::CreatedOnce
        && existing.is_some()
        && status.refresh_time.is_some()
    {
        set_ready(
            &mut status,
            "True",
            "SecretSynced",
            "Secret was created once; CreatedOnce does not update it",
        );
        return Ok((status, Action::await_change()));
    }
    if policy == CreationPolicy::Merge && existing.is_none() {
        return Err(Failure::new(
            "SecretMissing",
            format!(
                "creationPolicy Merge: Secret {namespace}/{target} does not exist, so there is nothing to merge into"
            ),
        ));
    }

    let (identity, spec) = resolve_store(es, ctx, flavor).await?;
    let provider = ctx
        .providers
        .for_store(&identity, &spec)
        .await
        .map_err(|e| Failure::new("StoreNotReady", format!("{identity}: {e}")))?;
    let interval: Duration = es.spec.refresh_interval.into();
    // What this process fetched last is the truth; the cached object's status
    // can lag behind our own writes (and is all there is after a restart).
    let key = format!("{namespace}/{}", es.name_any());
    let (never_synced, changed, age) = match ctx.last_fetch(&key) {
        Some((hash, at)) => (false, hash != spec_hash, at.elapsed()),
        None => (
            status.refresh_time.is_none(),
            status.spec_hash.as_deref() != Some(spec_hash.as_str()),
            refresh_age(&status),
        ),
    };
    let due = never_synced
        || changed
        || existing.is_none() && es.spec.refresh_policy == RefreshPolicy::CreatedOnce
        || match es.spec.refresh_policy {
            RefreshPolicy::Periodic => !interval.is_zero() && age >= interval,
            RefreshPolicy::OnChange | RefreshPolicy::CreatedOnce => false,
        };
    let requests = sync::remote_requests(&es.spec);
    let max_age = if interval.is_zero() {
        Duration::MAX
    } else {
        interval
    };
    let cached = if due {
        None
    } else {
        ctx.fetcher.cached(&identity, &requests, max_age)
    };
    let fetched_now = cached.is_none();
    let fetched = match cached {
        Some(cached) => cached,
        None => ctx.fetcher.fetch(&identity, provider, requests).await,
    };

    let sources = template_sources(es, ctx).await?;
    let (es_effective, gone) = apply_deletion_policy(es, &fetched);
    if gone && es.spec.target.deletion_policy == DeletionPolicy::Delete || es_effective.is_none() {
        // Every remote value is gone and the policy says to follow.
        if let (Some(_), CreationPolicy::Owner) = (&existing, policy) {
            secrets
                .delete(&target, &DeleteParams::background())
                .await
                .map_err(|e| {
                    Failure::new(
                        "SecretSyncedError",
                        format!("deleting Secret {namespace}/{target}: {e}"),
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
        set_ready(
            &mut status,
            "True",
            "SecretDeleted",
            "every remote value is gone; the Secret was deleted (deletionPolicy)",
        );
        status.spec_hash = Some(spec_hash);
        status.observed_generation = es.metadata.generation;
        return Ok((status, next_refresh(es)));
    }
    let es_effective = es_effective.unwrap_or_else(|| es.clone());
    // templates: CPU work (templates), so on a blocking thread, within limits.
    let limits = ctx.template_limits;
    let desired = ctx
        .render_pool
        .run(move || sync::desired_secret(&es_effective, &fetched, &sources, &limits))
        .await
        .map_err(|e| Failure::new("SecretSyncedError", e.to_string()))?
        .map_err(|e| Failure::new(reason_of(&e), e.to_string()))?;

    let written = write_secret(es, ctx, flavor, &secrets, existing.as_ref(), &desired).await?;
    let synced_version = written
        .as_ref()
        .or(existing.as_ref())
        .and_then(|s| s.metadata.resource_version.clone());
    if let Some(created) = written.as_ref().map(|_| existing.is_none()) {
        let (reason, note) = if created {
            ("Created", "Secret created")
        } else {
            ("Updated", "Secret updated")
        };
        publish(ctx, es, flavor, EventType::Normal, reason, note).await;
    }
    if fetched_now {
        ctx.record_fetch(&key, &spec_hash);
        status.refresh_time = Some(Time(jiff::Timestamp::now()));
    }
    status.synced_resource_version = synced_version;
    status.content_hash = Some(desired.content_hash.clone());
    status.spec_hash = Some(spec_hash);
    status.observed_generation = es.metadata.generation;
    set_ready(&mut status, "True", "SecretSynced", "Secret is synced");
    Ok((status, next_refresh(es)))
}

fn reason_of(error: &SyncError) -> &'static str {
    match error {
        SyncError::InvalidSpec(_) => "InvalidSpec",
        _ => "SecretSyncedError",
    }
}

/// How long ago the last fetch was.
fn refresh_age(status: &ExternalSecretStatus) -> Duration {
    status
        .refresh_time
        .as_ref()
        .map(|t| {
            let seconds = jiff::Timestamp::now().as_second() - t.0.as_second();
            Duration::from_secs(seconds.max(0) as u64)
        })
        .unwrap_or(Duration::MAX)
}

/// The next periodic refresh, spread ±10% so a fleet does not move in lockstep.
fn next_refresh(es: &ExternalSecret) -> Action {
    let interval: Duration = es.spec.refresh_interval.into();
    if es.spec.refresh_policy != RefreshPolicy::Periodic || interval.is_zero() {
        return Action::await_change();
    }
    Action::requeue(jittered(interval))
}

pub fn jittered(interval: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.9 + (random % 2001) as f64 / 10_000.0;
    interval.mul_f64(factor)
}

/// Hash of what a user changes to ask for a new sync: spec, labels, annotations
/// (`secretsync.io/force-sync` among them).
fn spec_hash(es: &ExternalSecret) -> String {
    let text = json!({"spec": es.spec, "labels": es.metadata.labels, "annotations": es.metadata.annotations}).to_string();
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
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

/// The store an ExternalSecret names, in its own API group, if it may use it.
async fn resolve_store(
    es: &ExternalSecret,
    ctx: &Context,
    flavor: Flavor,
) -> Result<(StoreIdentity, StoreProvider), Failure> {
    let namespace = es.namespace().unwrap_or_default();
    let reference = &es.spec.secret_store_ref;
    let not_ready = |message: String| Failure::new("StoreNotReady", message);
    let namespaced = reference.kind == StoreKind::SecretStore;
    let (kind, plural, described) = if namespaced {
        (
            "SecretStore",
            "secretstores",
            format!("SecretStore {namespace}/{}", reference.name),
        )
    } else {
        (
            "ClusterSecretStore",
            "clustersecretstores",
            format!("ClusterSecretStore {}", reference.name),
        )
    };
    let resource = flavor.resource(kind, plural);
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(ctx.client.clone(), &namespace, &resource)
    } else {
        Api::all_with(ctx.client.clone(), &resource)
    };
    let store = api
        .get_opt(&reference.name)
        .await
        .map_err(|e| not_ready(format!("reading {described}: {e}")))?
        .ok_or_else(|| {
            not_ready(if namespaced {
                format!(
                    "SecretStore {:?} not found in namespace {namespace:?} (an ExternalSecret can only use a SecretStore of its own namespace)",
                    reference.name
                )
            } else {
                format!("ClusterSecretStore {:?} not found", reference.name)
            })
        })?;
    let spec = store.data.get("spec").cloned().unwrap_or_default();
    let invalid = |message: String| not_ready(format!("{described}: {message}"));
    let provider = if namespaced {
        let spec: SecretStoreSpec =
            crate::api::from_json(spec).map_err(|e| invalid(format!("spec.{e}")))?;
        spec.provider
            .validate(Some(&namespace))
            .map_err(|e| invalid(e.to_string()))?;
        spec.provider
    } else {
        let spec: ClusterSecretStoreSpec =
            crate::api::from_json(spec).map_err(|e| invalid(format!("spec.{e}")))?;
        spec.validate().map_err(|e| invalid(e.to_string()))?;
        let labels = Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&namespace)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.metadata.labels)
            .unwrap_or_default();
        if !sync::cluster_store_admits(&spec, &namespace, &labels) {
            return Err(not_ready(format!(
                "ClusterSecretStore {:?} does not admit namespace {namespace:?} (see its spec.conditions)",
                reference.name
            )));
        }
        spec.provider
    };
    let identity = StoreIdentity {
        kind: reference.kind,
        namespace: namespaced.then_some(namespace),
        name: flavor.store_name(&reference.name),
    };
    Ok((identity, provider))
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
                    format!("reading ConfigMap {namespace}/{name}: {e}"),
                )
            })?;
        if let Some(config_map) = found {
            sources
                .config_maps
                .insert(name, config_map.data.unwrap_or_default());
        }
    }
    for name in secret_names {
        let found = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&name)
            .await
            .map_err(|e| {
                Failure::new(
                    "SecretSyncedError",
                    format!("reading Secret {namespace}/{name}: {e}"),
                )
            })?;
        if let Some(secret) = found {
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

/// Applies the desired Secret as the creation policy says, unless the live one
/// already holds it. Returns the written Secret, or `None` when nothing was written.
async fn write_secret(
    es: &ExternalSecret,
    ctx: &Context,
    flavor: Flavor,
    secrets: &Api<Secret>,
    existing: Option<&Secret>,
    desired: &sync::DesiredSecret,
) -> Result<Option<Secret>, Failure> {
    let policy = es.spec.target.creation_policy;
    if policy == CreationPolicy::None {
        return Ok(None);
    }
    let mut secret = desired.to_secret();
    secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(EXTERNAL_SECRET_ANNOTATION.into(), es.name_any());
    if policy == CreationPolicy::Owner {
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: flavor.api_version(),
            kind: "ExternalSecret".into(),
            name: es.name_any(),
            uid: es.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
    }
    if policy == CreationPolicy::Merge {
        // Only our keys and our bookkeeping: the Secret is someone else's.
        secret.type_ = None;
        secret.immutable = None;
        secret.metadata.labels = Some([(MANAGED_LABEL.to_string(), "true".to_string())].into());
        let annotations = secret.metadata.annotations.take().unwrap_or_default();
        secret.metadata.annotations = Some(
            annotations
                .into_iter()
                .filter(|(k, _)| k == CONTENT_HASH_ANNOTATION || k == EXTERNAL_SECRET_ANNOTATION)
                .collect(),
        );
    }
    if let Some(existing) = existing {
        if holds(existing, &secret) {
            return Ok(None);
        }
        if existing.immutable == Some(true) {
            return Err(Failure::new(
                "SecretSyncedError",
                format!(
                    "Secret {}/{} is immutable and its content differs; delete it to let a new one be created",
                    desired.namespace, desired.name
                ),
            ));
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = secrets
        .patch(&desired.name, &params, &Patch::Apply(&secret))
        .await
        .map_err(|e| {
            Failure::new(
                "SecretSyncedError",
                format!("writing Secret {}/{}: {e}", desired.namespace, desired.name),
            )
        })?;
    ctx.metrics.secret_written(existing.is_none());
    Ok(Some(written))
}

/// Whether the live Secret already has everything `wanted` sets.
pub(super) fn holds(live: &Secret, wanted: &Secret) -> bool {
    let data_ok = wanted
        .data
        .iter()
        .flatten()
        .all(|(k, v)| live.data.as_ref().and_then(|d| d.get(k)) == Some(v));
    let extra_keys = match (&live.data, &wanted.data, &wanted.type_) {
        // With a type we own the whole Secret: no key of ours may linger.
        (Some(live), Some(wanted), Some(_)) => live.keys().any(|k| !wanted.contains_key(k)),
        _ => false,
    };
    let subset = |live: &Option<BTreeMap<String, String>>,
                  wanted: &Option<BTreeMap<String, String>>| {
        wanted
            .iter()
            .flatten()
            .all(|(k, v)| live.as_ref().and_then(|l| l.get(k)) == Some(v))
    };
    let type_ok = wanted.type_.is_none() || wanted.type_ == live.type_;
    let owner_ok = wanted.metadata.owner_references.is_none()
        || wanted.metadata.owner_references == live.metadata.owner_references;
    data_ok
        && !extra_keys
        && type_ok
        && owner_ok
        && subset(&live.metadata.labels, &wanted.metadata.labels)
        && subset(&live.metadata.annotations, &wanted.metadata.annotations)
        && wanted.immutable.unwrap_or(false) == live.immutable.unwrap_or(false)
}

fn set_ready(status: &mut ExternalSecretStatus, value: &str, reason: &str, message: &str) {
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned();
    let transition = match &previous {
        Some(p) if p.status == value => p.last_transition_time.clone(),
        _ => Some(Time(jiff::Timestamp::now())),
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

async fn write_status(
    es: &ExternalSecret,
    ctx: &Context,
    status: ExternalSecretStatus,
    flavor: Flavor,
) -> Result<(), Error> {
    if es.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let resource = flavor.resource("ExternalSecret", "externalsecrets");
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &es.namespace().unwrap_or_default(),
        &resource,
    );
    api.patch_status(
        &es.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    es: &ExternalSecret,
    flavor: Flavor,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let regarding = ObjectReference {
        api_version: Some(flavor.api_version()),
        kind: Some("ExternalSecret".into()),
        name: es.metadata.name.clone(),
        namespace: es.metadata.namespace.clone(),
        uid: es.metadata.uid.clone(),
        ..Default::default()
    };
    super::publish(ctx, &regarding, type_, "Sync", reason, note).await;
}

/// Secrets that changed point back to their ExternalSecret by annotation.
pub fn external_secret_of(
    secret: Secret,
) -> Option<kube::runtime::reflector::ObjectRef<ExternalSecret>> {
    super::writer_of(secret, EXTERNAL_SECRET_ANNOTATION)
}
