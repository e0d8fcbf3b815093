//! PushSecret -> remote secrets in Secrets Manager or Parameter Store.
//!
//! Cost: what this process pushed is remembered (remote version, and a
//! digest of the value it came from), so a steady PushSecret costs one cheap
//! read per remote key and interval (DescribeSecret / GetParameter) and no
//! write. A remote key is read in full (value and tags) only when the source
//! changed, the remote version moved, or after a restart; it is written only
//! when its value or tags differ.
//!
//! Ownership: a remote secret is written or deleted only when it carries
//! `managed-by: secretsync` (or ESO's `managed-by: external-secrets`) and no
//! other PushSecret's `secretsync.io/owner` tag; anything else is reported
//! in the status and left alone.
//!
//! Deletion (`deletionPolicy: Delete`): a finalizer (ESO's own name on ESO's
//! objects) holds the PushSecret until the remote secrets its status lists
//! are deleted; an entry dropped from `data`, or a source Secret deleted,
//! deletes what it had pushed too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::external_secret::MAX_BACKOFF;
use super::external_secret::{kube_error, resolve_named_store};
use super::objects::{self, ESO, Flavor, WatchedPushSecret};
use super::{Context, Error, finalizers, status_body};
use crate::SecretValue;
use crate::api::{
    AwsService, Condition, DEFAULT_PUSH_REFRESH, ESO_GENERATOR_GROUP, GENERATOR_GROUP,
    PushDeletionPolicy, PushMetadata, PushSecretData, PushSecretSpec, PushSecretStatus,
    PushUpdatePolicy, SecretStoreRef, StoreKind, StoreProvider,
};
use crate::provider::{Cached, PushWrite, ReadParts, StoreIdentity};
use crate::sync::push_secret::{
    Ownership, check_value, entry_value, fingerprint, merge_property, ownership, rendered_source,
    tags_in_place, wanted_tags,
};

/// The finalizer on secretsync's PushSecrets with `deletionPolicy: Delete`.
pub const FINALIZER: &str = "secretsync.io/push-secret-cleanup";
/// ESO's, on ESO's objects.
pub const ESO_FINALIZER: &str = "pushsecret.externalsecrets.io/finalizer";

/// What this process last pushed to one remote key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    version: String,
    fingerprint: [u8; 32],
}

impl Pushed {
    pub fn new(version: &str, fingerprint: [u8; 32]) -> Self {
        Pushed {
            version: version.to_string(),
            fingerprint,
        }
    }
}

/// Per `push-secret-key \0 store \0 remote key`.
pub type PushedKeys = HashMap<String, Pushed>;

fn finalizer_of(flavor: Flavor) -> &'static str {
    if flavor == ESO {
        ESO_FINALIZER
    } else {
        FINALIZER
    }
}

/// Why a push failed: a condition reason and a message naming the field,
/// store or remote key; never a value.
struct Failure {
    reason: &'static str,
    message: String,
}

impl Failure {
    fn errored(message: impl Into<String>) -> Self {
        Failure {
            reason: "Errored",
            message: message.into(),
        }
    }
}

/// A store a PushSecret writes to, resolved.
struct Target {
    /// `Kind/name`, as ESO keys `syncedPushSecrets`.
    status_key: String,
    provider: Arc<Cached>,
    service: AwsService,
}

pub async fn reconcile(object: Arc<WatchedPushSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.caches_filled().await;
    let flavor = object.flavor;
    let key = objects::flavored_key(flavor, object.as_ref());
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &flavor.push_secrets());
    let previous = object.status().unwrap_or_default();
    let owner = format!("{namespace}/{name}");

    let spec = object.spec();
    if object.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&object) {
            let delete = spec
                .as_ref()
                .is_ok_and(|s| s.deletion_policy == PushDeletionPolicy::Delete);
            if delete {
                let kept = BTreeMap::new();
                if let Err(failure) =
                    delete_dropped(&ctx, &object, &previous.synced_push_secrets, &kept, &owner)
                        .await
                {
                    let status = failed(&previous, &failure);
                    write_status(&api, &object, status).await?;
                    return Ok(Action::requeue(ctx.next_backoff(&key)));
                }
            }
            set_finalizer(&api, &object, false).await?;
        }
        ctx.forget_pushed(&key);
        ctx.metrics.push_secret_deleted(&namespace, &name);
        return Ok(Action::await_change());
    }

    let spec = match spec.and_then(|spec| {
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }) {
        Ok(spec) => spec,
        Err(message) => {
            let failure = Failure {
                reason: "Errored",
                message: format!("invalid spec: {message}"),
            };
            write_status(&api, &object, failed(&previous, &failure)).await?;
            publish(
                &ctx,
                &object,
                EventType::Warning,
                "Errored",
                &failure.message,
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let wants_finalizer = spec.deletion_policy == PushDeletionPolicy::Delete;
    if wants_finalizer != has_finalizer(&object) {
        set_finalizer(&api, &object, wants_finalizer).await?;
    }

    let interval = spec
        .refresh_interval
        .map(|i| i.to_std())
        .unwrap_or(DEFAULT_PUSH_REFRESH);
    if spec.selector.generator_ref.is_some()
        && let Some(wait) = not_due(&object, &previous, interval)
    {
        // A generator makes a new value each time it runs: it runs only
        // when the PushSecret is due, not on a restart or a status write.
        return Ok(wait);
    }
    let started = std::time::Instant::now();
    let outcome = push(&ctx, &object, &spec, &key, &owner, &previous).await;
    ctx.metrics.push_secret_reconciled(
        &namespace,
        &name,
        matches!(outcome, Ok(Outcome::Pushed(_))),
        started.elapsed(),
    );
    match outcome {
        Ok(Outcome::Pushed(synced)) => {
            ctx.reset_backoff(&key);
            let message = if spec.update_policy == PushUpdatePolicy::IfNotExists {
                "PushSecret synced successfully. Existing secrets in providers unchanged."
            } else {
                "PushSecret synced successfully"
            };
            let status = PushSecretStatus {
                refresh_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::now(),
                )),
                synced_resource_version: Some(synced_version(&object)),
                synced_push_secrets: synced,
                conditions: vec![ready(&previous, "True", "Synced", message)],
                observed_generation: object.metadata.generation,
            };
            let changed = previous.conditions != status.conditions
                || previous.synced_push_secrets != status.synced_push_secrets;
            write_status(&api, &object, status).await?;
            if changed {
                publish(&ctx, &object, EventType::Normal, "Synced", message).await;
            }
            Ok(if interval.is_zero() {
                Action::await_change()
            } else {
                Action::requeue(interval)
            })
        }
        Ok(Outcome::SourceDeleted) => {
            let message = "source secret deleted; provider secrets cleaned up";
            let status = PushSecretStatus {
                synced_push_secrets: BTreeMap::new(),
                conditions: vec![ready(&previous, "False", "SourceDeleted", message)],
                observed_generation: object.metadata.generation,
                ..previous.clone()
            };
            write_status(&api, &object, status).await?;
            publish(&ctx, &object, EventType::Normal, "SourceDeleted", message).await;
            Ok(Action::await_change())
        }
        Err((failure, synced)) => {
            tracing::warn!(push_secret = %key, reason = failure.reason, message = %failure.message, "push failed");
            let mut status = failed(&previous, &failure);
            if let Some(synced) = synced {
                status.synced_push_secrets = synced;
            }
            let changed = previous.conditions != status.conditions;
            write_status(&api, &object, status).await?;
            if changed {
                publish(
                    &ctx,
                    &object,
                    EventType::Warning,
                    "Errored",
                    &failure.message,
                )
                .await;
            }
            let delay = ctx.next_backoff(&key);
            Ok(Action::requeue(
                if delay >= MAX_BACKOFF && !interval.is_zero() && interval > delay {
                    interval
                } else {
                    delay
                },
            ))
        }
    }
}

enum Outcome {
    Pushed(BTreeMap<String, BTreeMap<String, PushSecretData>>),
    SourceDeleted,
}

type Synced = BTreeMap<String, BTreeMap<String, PushSecretData>>;

/// One push of every entry to every store; on failure, what is pushed so
/// far (merged with what the status listed), so nothing is forgotten.
async fn push(
    ctx: &Arc<Context>,
    object: &WatchedPushSecret,
    spec: &PushSecretSpec,
    key: &str,
    owner: &str,
    previous: &PushSecretStatus,
) -> Result<Outcome, (Failure, Option<Synced>)> {
    let namespace = object.namespace().unwrap_or_default();
    let source = match source_values(ctx, object.flavor, spec, &namespace).await {
        Ok(Some(source)) => source,
        Ok(None) => {
            let synced_before = !previous.synced_push_secrets.is_empty();
            if spec.deletion_policy == PushDeletionPolicy::Delete && synced_before {
                delete_dropped(
                    ctx,
                    object,
                    &previous.synced_push_secrets,
                    &BTreeMap::new(),
                    owner,
                )
                .await
                .map_err(|f| (f, None))?;
                ctx.forget_pushed(key);
                return Ok(Outcome::SourceDeleted);
            }
            return Err((
                Failure::errored(format!(
                    "spec.selector.secret: {}",
                    missing_source(spec, &namespace)
                )),
                None,
            ));
        }
        Err(failure) => return Err((failure, None)),
    };
    let limits = ctx.template_limits;
    let template = spec.template.clone();
    let source = ctx
        .render_pool
        .run(move || rendered_source(source, template.as_ref(), &limits))
        .await
        .map_err(|e| (Failure::errored(format!("spec.template: {e}")), None))?
        .map_err(|e| (Failure::errored(e.to_string()), None))?;

    let targets = targets(ctx, object.flavor, &namespace, spec)
        .await
        .map_err(|f| (f, None))?;
    let mut synced: Synced = BTreeMap::new();
    for target in &targets {
        let metadata = spec.validate_for(target.service).map_err(|e| {
            (
                Failure::errored(format!("invalid spec for {}: {e}", target.status_key)),
                None,
            )
        })?;
        let pushed_here = synced.entry(target.status_key.clone()).or_default();
        for (i, (entry, metadata)) in spec.data.iter().zip(&metadata).enumerate() {
            let memo = format!("{key}\0{}\0{}", target.status_key, entry.status_key());
            let pushing = Entry {
                entry,
                field: format!("spec.data[{i}]"),
                metadata,
                owner,
                policy: spec.update_policy,
                namespace: &namespace,
            };
            if let Err(message) = push_entry(ctx, target, &pushing, &source, &memo).await {
                let failure = Failure::errored(format!(
                    "{}: pushing to {:?} in {}: {message}",
                    pushing.field, entry.match_.remote_ref.remote_key, target.status_key
                ));
                return Err((
                    failure,
                    Some(merged(&synced, &previous.synced_push_secrets)),
                ));
            }
            pushed_here.insert(entry.status_key(), entry.clone());
        }
    }
    if spec.deletion_policy == PushDeletionPolicy::Delete {
        delete_dropped(ctx, object, &previous.synced_push_secrets, &synced, owner)
            .await
            .map_err(|f| (f, Some(merged(&synced, &previous.synced_push_secrets))))?;
    }
    Ok(Outcome::Pushed(synced))
}

/// What was pushed now, plus what the status listed before that was not
/// pushed again (it may still exist remotely).
fn merged(now: &Synced, before: &Synced) -> Synced {
    let mut out = before.clone();
    for (store, entries) in now {
        out.entry(store.clone())
            .or_default()
            .extend(entries.clone());
    }
    out
}

struct Entry<'a> {
    entry: &'a PushSecretData,
    field: String,
    metadata: &'a PushMetadata,
    owner: &'a str,
    policy: PushUpdatePolicy,
    namespace: &'a str,
}

/// Pushes one entry to one store, writing only what differs.
async fn push_entry(
    ctx: &Context,
    target: &Target,
    pushing: &Entry<'_>,
    source: &BTreeMap<String, SecretValue>,
    memo: &str,
) -> Result<(), String> {
    let backend = target.provider.backend();
    let entry = pushing.entry;
    let remote_key = &entry.match_.remote_ref.remote_key;
    let value = entry_value(
        entry,
        &pushing.field,
        source,
        pushing.metadata,
        target.service,
    )
    .map_err(|e| e.to_string())?;
    let digest = fingerprint(&value);
    if let Some(pushed) = ctx.pushed(memo)
        && pushed.fingerprint == digest
    {
        // Pushed from this very value: one cheap read tells whether the
        // remote value is still the one written.
        let remote = backend
            .read_pushed(remote_key, ReadParts::default())
            .await
            .map_err(|e| e.to_string())?;
        if remote.is_some_and(|r| r.version == pushed.version) {
            return Ok(());
        }
    }
    let current = backend
        .read_pushed(
            remote_key,
            ReadParts {
                value: true,
                tags: true,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    if let Some(current) = &current {
        if pushing.policy == PushUpdatePolicy::IfNotExists {
            ctx.remember_pushed(memo, &current.version, digest);
            return Ok(());
        }
        if let Ownership::Foreign(why) = ownership(&current.tags, pushing.owner, remote_key) {
            return Err(why);
        }
    }
    let value = match entry.match_.remote_ref.property.as_deref() {
        Some(property) => merge_property(
            current.as_ref().and_then(|c| c.value.as_ref()),
            property,
            &value,
            &pushing.field,
            remote_key,
        )
        .map_err(|e| e.to_string())?,
        None => value,
    };
    check_value(&value, &pushing.field, target.service, pushing.metadata)
        .map_err(|e| e.to_string())?;
    let tags = wanted_tags(pushing.metadata, pushing.owner);
    if let Some(current) = &current
        && current.value.as_ref() == Some(&value)
        && tags_in_place(&current.tags, &tags)
    {
        ctx.remember_pushed(memo, &current.version, digest);
        return Ok(());
    }
    let policy = resource_policy(ctx, pushing.namespace, pushing.metadata).await?;
    let version = backend
        .push(&PushWrite {
            key: remote_key,
            value: &value,
            metadata: pushing.metadata,
            tags: &tags,
            resource_policy: policy.as_deref(),
            current: current.as_ref(),
        })
        .await
        .map_err(|e| e.to_string())?;
    ctx.remember_pushed(memo, &version, digest);
    Ok(())
}

/// The resource policy a Secrets Manager entry asks for, read from its
/// ConfigMap or Secret in the PushSecret's namespace.
async fn resource_policy(
    ctx: &Context,
    namespace: &str,
    metadata: &PushMetadata,
) -> Result<Option<String>, String> {
    let PushMetadata::SecretsManager(sm) = metadata else {
        return Ok(None);
    };
    let Some(policy) = &sm.resource_policy else {
        return Ok(None);
    };
    let source = &policy.policy_source_ref;
    let field = "metadata.spec.resourcePolicy.policySourceRef";
    let text = match source.kind.as_str() {
        "ConfigMap" => read_named::<ConfigMap>(ctx, namespace, &source.name, field)
            .await?
            .data
            .and_then(|mut d| d.remove(&source.key)),
        "Secret" => read_named::<Secret>(ctx, namespace, &source.name, field)
            .await?
            .data
            .and_then(|mut d| d.remove(&source.key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned()),
        other => {
            return Err(format!(
                "{field}.kind: {other:?} must be ConfigMap or Secret"
            ));
        }
    };
    text.map(Some).ok_or_else(|| {
        format!(
            "{field}: {} {namespace}/{} has no key {:?}",
            source.kind, source.name, source.key
        )
    })
}

/// A ConfigMap or Secret of `namespace` that `field` names, or why not.
async fn read_named<K>(ctx: &Context, namespace: &str, name: &str, field: &str) -> Result<K, String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&());
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| {
            format!(
                "{field}: reading {kind} {namespace}/{name}: {}",
                kube_error(&e)
            )
        })?
        .ok_or_else(|| format!("{field}: {kind} {namespace}/{name} not found"))
}

/// The source Secret's values; `None` when it does not exist.
async fn source_values(
    ctx: &Context,
    flavor: Flavor,
    spec: &PushSecretSpec,
    namespace: &str,
) -> Result<Option<BTreeMap<String, SecretValue>>, Failure> {
    if let Some(reference) = &spec.selector.generator_ref {
        let group = if flavor == ESO {
            ESO_GENERATOR_GROUP
        } else {
            GENERATOR_GROUP
        };
        let generated =
            crate::generator::generate(&ctx.client, &ctx.providers, namespace, reference, group)
                .await
                .map_err(|e| Failure::errored(format!("spec.selector.generatorRef: {e}")))?;
        return Ok(Some(generated.values));
    }
    let Some(source) = &spec.selector.secret else {
        return Err(Failure::errored(
            "spec.selector: exactly one of secret or generatorRef is required",
        ));
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = if let Some(name) = &source.name {
        api.get_opt(name).await.map_err(|e| {
            Failure::errored(format!(
                "spec.selector.secret: reading Secret {namespace}/{name}: {}",
                kube_error(&e)
            ))
        })?
    } else {
        let selector = source
            .selector
            .as_ref()
            .map(label_selector_text)
            .unwrap_or_default();
        let found = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| {
                Failure::errored(format!(
                    "spec.selector.secret.selector: listing Secrets: {}",
                    kube_error(&e)
                ))
            })?;
        let mut items = found.items;
        if items.len() > 1 {
            return Err(Failure::errored(format!(
                "spec.selector.secret.selector: matches {} Secrets; each remote key can take the values of one",
                items.len()
            )));
        }
        items.pop()
    };
    Ok(secret.map(|secret| {
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, SecretValue::new(v.0)))
            .collect()
    }))
}

fn missing_source(spec: &PushSecretSpec, namespace: &str) -> String {
    match spec
        .selector
        .secret
        .as_ref()
        .and_then(|s| s.name.as_deref())
    {
        Some(name) => format!("Secret {namespace}/{name} not found"),
        None => format!("no Secret in namespace {namespace} matches the selector"),
    }
}

/// A label selector as the API's query text (validated before).
fn label_selector_text(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    kube::core::Selector::try_from(selector.clone())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The stores the PushSecret names, resolved from the caches.
async fn targets(
    ctx: &Context,
    flavor: Flavor,
    namespace: &str,
    spec: &PushSecretSpec,
) -> Result<Vec<Target>, Failure> {
    let mut references = Vec::new();
    for (i, reference) in spec.secret_store_refs.iter().enumerate() {
        match (&reference.name, &reference.label_selector) {
            (Some(name), _) => references.push((i, reference.kind, name.clone())),
            (None, Some(selector)) => {
                for name in ctx.stores_matching(flavor, namespace, reference.kind, selector) {
                    references.push((i, reference.kind, name));
                }
            }
            (None, None) => {}
        }
    }
    let mut targets = Vec::new();
    for (i, kind, name) in references {
        let field = format!("spec.secretStoreRefs[{i}]");
        let reference = SecretStoreRef {
            name: name.clone(),
            kind,
        };
        let (identity, provider): (StoreIdentity, StoreProvider) =
            resolve_named_store(ctx, flavor, namespace, &reference, &field, "a PushSecret")
                .map_err(Failure::errored)?;
        let service = provider.aws.as_ref().map(|aws| aws.service).ok_or_else(|| {
            Failure::errored(format!(
                "{field}: {identity} is not an AWS store; only Secrets Manager and Parameter Store can be pushed to"
            ))
        })?;
        let provider = ctx
            .providers
            .for_store(&identity, &provider)
            .await
            .map_err(|e| Failure::errored(format!("{field}: {identity}: {e}")))?;
        let kind_name = match kind {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        };
        targets.push(Target {
            status_key: format!("{kind_name}/{name}"),
            provider,
            service,
        });
    }
    Ok(targets)
}

/// Deletes the remote secrets listed in `before` but not in `kept`, where
/// this PushSecret owns them. A property entry deletes nothing (the remote
/// secret holds other fields).
async fn delete_dropped(
    ctx: &Context,
    object: &WatchedPushSecret,
    before: &Synced,
    kept: &Synced,
    owner: &str,
) -> Result<(), Failure> {
    let namespace = object.namespace().unwrap_or_default();
    for (store, entries) in before {
        let dropped: Vec<&PushSecretData> = entries
            .iter()
            .filter(|(key, _)| !kept.get(store).is_some_and(|k| k.contains_key(*key)))
            .map(|(_, entry)| entry)
            .collect();
        if dropped.is_empty() {
            continue;
        }
        let Some((kind, name)) = store.split_once('/') else {
            continue;
        };
        let kind = if kind == "ClusterSecretStore" {
            StoreKind::ClusterSecretStore
        } else {
            StoreKind::SecretStore
        };
        let reference = SecretStoreRef {
            name: name.to_string(),
            kind,
        };
        let (identity, provider) = resolve_named_store(
            ctx,
            object.flavor,
            &namespace,
            &reference,
            "status.syncedPushSecrets",
            "a PushSecret",
        )
        .map_err(|e| Failure::errored(format!("deleting from {store}: {e}")))?;
        let provider = ctx
            .providers
            .for_store(&identity, &provider)
            .await
            .map_err(|e| Failure::errored(format!("deleting from {store}: {e}")))?;
        let backend = provider.backend();
        for entry in dropped {
            if entry.match_.remote_ref.property.is_some() {
                continue;
            }
            let remote_key = &entry.match_.remote_ref.remote_key;
            let current = backend
                .read_pushed(
                    remote_key,
                    ReadParts {
                        value: false,
                        tags: true,
                    },
                )
                .await
                .map_err(|e| {
                    Failure::errored(format!("deleting {remote_key:?} from {store}: {e}"))
                })?;
            let Some(current) = current else {
                continue;
            };
            if let Ownership::Foreign(why) = ownership(&current.tags, owner, remote_key) {
                tracing::info!(push_secret = %owner, %store, %why, "not deleting");
                continue;
            }
            backend.delete_pushed(remote_key).await.map_err(|e| {
                Failure::errored(format!("deleting {remote_key:?} from {store}: {e}"))
            })?;
        }
    }
    Ok(())
}

/// ESO's `syncedResourceVersion`: the generation and a digest of the labels
/// and annotations, so a force-sync annotation or a spec edit is a new one.
fn synced_version(object: &WatchedPushSecret) -> String {
    use sha2::Digest;
    let text = serde_json::to_string(&object.labels_and_annotations()).unwrap_or_default();
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "{}-{}",
        object.metadata.generation.unwrap_or_default(),
        hex::encode(&digest[..16])
    )
}

/// When the PushSecret was pushed for this very version and its interval
/// has not passed (ESO's `shouldRefresh`, inverted): when to look again.
fn not_due(
    object: &WatchedPushSecret,
    status: &PushSecretStatus,
    interval: std::time::Duration,
) -> Option<Action> {
    if status.synced_resource_version.as_deref() != Some(synced_version(object).as_str()) {
        return None;
    }
    let synced = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !synced {
        return None;
    }
    if interval.is_zero() {
        return Some(Action::await_change());
    }
    let at = status.refresh_time.as_ref()?.0;
    let elapsed = jiff::Timestamp::now().duration_since(at);
    let elapsed = std::time::Duration::try_from(elapsed).unwrap_or_default();
    interval
        .checked_sub(elapsed)
        .filter(|left| !left.is_zero())
        .map(Action::requeue)
}

/// What wakes a PushSecret of its own: a spec edit, its deletion, or a
/// change of its labels or annotations (a force-sync) — not its status writes.
pub fn wakes(object: &WatchedPushSecret) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.metadata.generation.hash(&mut hasher);
    object
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    object.labels_and_annotations().hash(&mut hasher);
    Some(hasher.finish())
}

/// Which Secret each PushSecret reads, by namespace, kept from the watch:
/// a Secret's change finds its PushSecrets without decoding every spec.
#[derive(Default)]
pub struct SourceIndex {
    by_namespace: std::sync::Mutex<HashMap<String, HashMap<String, Source>>>,
    /// Whether any PushSecret reads a Secret: only then are Secrets watched
    /// for it (a watch of every Secret in the cluster costs the controller
    /// and the API server an event per Secret write, pushed or not).
    reading: tokio::sync::watch::Sender<bool>,
}

/// A PushSecret's source: a Secret by name, or by labels.
enum Source {
    Named(String),
    Selected(Selector),
}

impl SourceIndex {
    /// Follows the PushSecrets' watch.
    pub fn apply(&self, event: &kube::runtime::watcher::Event<WatchedPushSecret>) {
        use kube::runtime::watcher::Event;
        let mut index = self.by_namespace.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Apply(object) | Event::InitApply(object) => {
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                let name = object.name_any();
                let source = object.spec().ok().and_then(|spec| {
                    let secret = spec.selector.secret?;
                    match (secret.name, secret.selector) {
                        (Some(name), _) => Some(Source::Named(name)),
                        (None, Some(selector)) => {
                            Selector::try_from(selector).ok().map(Source::Selected)
                        }
                        (None, None) => None,
                    }
                });
                match source {
                    Some(source) => {
                        index.entry(namespace).or_default().insert(name, source);
                    }
                    None => remove(&mut index, &namespace, &name),
                }
            }
            Event::Delete(object) => {
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                remove(&mut index, &namespace, &object.name_any());
            }
            Event::Init | Event::InitDone => {}
        }
        self.reading.send_if_modified(|reading| {
            let changed = *reading == index.is_empty();
            *reading = !index.is_empty();
            changed
        });
    }

    /// Shows whether any PushSecret reads a Secret.
    pub fn reading(&self) -> tokio::sync::watch::Receiver<bool> {
        self.reading.subscribe()
    }

    /// The PushSecrets (of `flavor`) whose source is this Secret.
    pub fn readers_of(
        &self,
        flavor: Flavor,
        secret: &PartialObjectMeta<Secret>,
    ) -> Vec<ObjectRef<WatchedPushSecret>> {
        let namespace = secret.metadata.namespace.as_deref().unwrap_or_default();
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let empty = BTreeMap::new();
        let labels = secret.metadata.labels.as_ref().unwrap_or(&empty);
        let index = self.by_namespace.lock().unwrap_or_else(|e| e.into_inner());
        let Some(in_namespace) = index.get(namespace) else {
            return Vec::new();
        };
        in_namespace
            .iter()
            .filter(|(_, source)| match source {
                Source::Named(wanted) => wanted == name,
                Source::Selected(selector) => selector.matches(labels),
            })
            .map(|(reader, _)| ObjectRef::new_with(reader, flavor).within(namespace))
            .collect()
    }
}

fn remove(index: &mut HashMap<String, HashMap<String, Source>>, namespace: &str, name: &str) {
    if let Some(in_namespace) = index.get_mut(namespace) {
        in_namespace.remove(name);
        if in_namespace.is_empty() {
            index.remove(namespace);
        }
    }
}

fn has_finalizer(object: &WatchedPushSecret) -> bool {
    let finalizer = finalizer_of(object.flavor);
    object
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == finalizer)
}

/// Adds or removes this flavor's finalizer.
async fn set_finalizer(
    api: &Api<DynamicObject>,
    object: &WatchedPushSecret,
    present: bool,
) -> Result<(), Error> {
    let finalizer = finalizer_of(object.flavor);
    let patch = if present {
        finalizers::addition_patch(&object.metadata, finalizer)
    } else {
        finalizers::removal_patch(&object.metadata, &[finalizer])
    };
    finalizers::apply(api, &object.name_any(), patch).await
}

fn ready(previous: &PushSecretStatus, status: &str, reason: &str, message: &str) -> Condition {
    let before = previous.conditions.iter().find(|c| c.type_ == "Ready");
    let mut condition = Condition::following(before, "Ready", status, reason, Some(message.into()));
    // The same condition again keeps its time whatever else changed.
    if let Some(before) = before
        && before.reason.as_deref() == Some(reason)
        && before.message.as_deref() == Some(message)
    {
        condition.last_transition_time = before.last_transition_time.clone();
    }
    condition
}

fn failed(previous: &PushSecretStatus, failure: &Failure) -> PushSecretStatus {
    PushSecretStatus {
        conditions: vec![ready(previous, "False", failure.reason, &failure.message)],
        ..previous.clone()
    }
}

async fn write_status(
    api: &Api<DynamicObject>,
    object: &WatchedPushSecret,
    status: PushSecretStatus,
) -> Result<(), Error> {
    let shown = object.status().unwrap_or_default();
    if shown == status {
        return Ok(());
    }
    match api
        .patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status_patch(&shown, &status)})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// A merge patch from `shown` to `status`: what went is set to null (a
/// merge patch otherwise keeps map entries and fields it does not name).
fn status_patch(shown: &PushSecretStatus, status: &PushSecretStatus) -> serde_json::Value {
    let mut body = status_body(
        status,
        &[
            "refreshTime",
            "syncedResourceVersion",
            "conditions",
            "observedGeneration",
        ],
    );
    let Some(fields) = body.as_object_mut() else {
        return body;
    };
    let synced = fields
        .entry("syncedPushSecrets")
        .or_insert_with(|| json!({}));
    if let Some(stores) = synced.as_object_mut() {
        for (store, entries) in &shown.synced_push_secrets {
            match status.synced_push_secrets.get(store) {
                None => {
                    stores.insert(store.clone(), serde_json::Value::Null);
                }
                Some(kept) => {
                    if let Some(now) = stores.get_mut(store).and_then(|v| v.as_object_mut()) {
                        for key in entries.keys().filter(|k| !kept.contains_key(*k)) {
                            now.insert(key.clone(), serde_json::Value::Null);
                        }
                    }
                }
            }
        }
    }
    body
}

async fn publish(
    ctx: &Context,
    object: &WatchedPushSecret,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let meta = &object.metadata;
    let regarding = ObjectReference {
        api_version: Some(format!(
            "{}/{}",
            object.flavor.group(),
            crate::api::PUSH_VERSION
        )),
        kind: Some("PushSecret".into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    };
    ctx.publish(&regarding, type_, "Push", reason, note).await;
}
