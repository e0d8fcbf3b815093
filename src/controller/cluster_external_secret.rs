//! ClusterExternalSecret -> one ExternalSecret in each namespace it picks.
//! It writes ExternalSecrets only; their own reconciles fetch the values.
//!
//! Read from caches (namespaces' metadata, ExternalSecrets), never a list per
//! reconcile. A namespace's change wakes every ClusterExternalSecret, so a
//! namespace created or labelled to match is served within seconds; the
//! `refreshTime` recheck is only a safety net. What this process wrote is
//! remembered (uid, generation, a hash of what was written), so a reconcile
//! over 1,000 namespaces where nothing changed writes nothing.
//!
//! Ownership is ESO's: an ExternalSecret belongs to the ClusterExternalSecret
//! its controller reference names (group, kind, name). One this object does
//! not own is never overwritten: its namespace is listed as failed. It is
//! created with a create (which fails if one appeared meanwhile), and only an
//! owned one is updated, by server-side apply.
//!
//! Deletion: a finalizer (ESO's own name on ESO's objects, so an object ESO
//! made still gets cleaned up) holds the object until its ExternalSecrets are
//! deleted; ESO's per-namespace finalizers for it are removed too, so no
//! namespace is left stuck terminating after the switch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use serde_json::json;

use super::external_secret_cache::CachedExternalSecret;
use super::objects::{self, ESO, Flavor, WatchedClusterExternalSecret};
use super::{Context, Error, FIELD_MANAGER, finalizers, status_body};
use crate::api::{
    ClusterExternalSecretStatus, Condition, DEFAULT_CLUSTER_REFRESH, NamespaceFailure,
};
use crate::sync::cluster_external_secret::{
    NAMESPACE_NAME_LABEL, NamespaceView, Picking, Writer, child_external_secret, is_written_by,
    picked_namespaces,
};

/// The finalizer on secretsync's ClusterExternalSecrets.
pub const FINALIZER: &str = "secretsync.io/cluster-external-secret-cleanup";
/// ESO's, on ESO's: the same object keeps the same finalizer either way.
pub const ESO_FINALIZER: &str = "externalsecrets.external-secrets.io/clusterexternalsecret-cleanup";
/// ESO puts this plus the object's name on every namespace it provisions.
const ESO_NAMESPACE_FINALIZER_PREFIX: &str = "externalsecrets.external-secrets.io/ces-";
/// ESO's reason for a namespace whose ExternalSecret belongs to someone else.
const NOT_OWNED: &str = "external secret already exists in namespace";
/// ESO's message when any namespace failed.
const NAMESPACES_FAILED: &str = "one or more namespaces failed";

/// What this process last wrote into one namespace for one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    uid: String,
    generation: Option<i64>,
    hash: u64,
}

/// Per ClusterExternalSecret (flavored key): namespace -> what was written.
pub type WrittenChildren = HashMap<String, HashMap<String, Written>>;

fn finalizer_of(flavor: Flavor) -> &'static str {
    if flavor == ESO {
        ESO_FINALIZER
    } else {
        FINALIZER
    }
}

pub async fn reconcile(
    object: Arc<WatchedClusterExternalSecret>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.caches_filled().await;
    let started = Instant::now();
    let flavor = object.flavor;
    let name = object.name_any();
    let key = objects::flavored_key(flavor, object.as_ref());
    let api: Api<DynamicObject> =
        Api::all_with(ctx.client.clone(), &flavor.cluster_external_secrets());

    if object.metadata.deletion_timestamp.is_some() {
        clean_up(&object, &ctx).await?;
        remove_finalizers(&api, &object).await?;
        ctx.forget_children(&key);
        ctx.metrics.cluster_external_secret_deleted(&name);
        return Ok(Action::await_change());
    }

    let spec = match object.spec().and_then(|spec| {
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }) {
        Ok(spec) => spec,
        Err(message) => {
            tracing::warn!(cluster_external_secret = %name, %message, "invalid ClusterExternalSecret");
            let status = ClusterExternalSecretStatus {
                conditions: vec![ready(
                    object.status().as_ref(),
                    false,
                    "InvalidSpec",
                    message,
                )],
                ..object.status().unwrap_or_default()
            };
            write_status(&api, &object, status).await?;
            ctx.metrics
                .cluster_external_secret_reconciled(&name, false, started.elapsed());
            return Ok(Action::await_change());
        }
    };

    add_finalizer(&api, &object).await?;
    let child_name = spec.external_secret_name(&name).to_string();
    let picked = picked_here(&ctx, &Picking::of(&spec));
    let children = children_of(&ctx, flavor, &name);

    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut provisioned = BTreeSet::new();
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let (_, own_annotations) = object.labels_and_annotations();
    let own_annotations = own_annotations.unwrap_or_default();
    let api_version = flavor.api_version();
    let writer = Writer {
        api_version: &api_version,
        name: &name,
        uid: &uid,
        annotations: &own_annotations,
    };
    let writes: Vec<_> = picked
        .iter()
        .map(|namespace| {
            let desired = child_external_secret(&spec, &writer, namespace);
            let existing = ctx
                .external_secret(&objects::flavored_key_of(
                    flavor,
                    Some(namespace),
                    &child_name,
                ))
                .map(|es| {
                    Existing::of(&es.watched(namespace, &child_name).metadata, flavor, &name)
                });
            write_child(
                &ctx,
                &key,
                flavor,
                namespace,
                &child_name,
                desired,
                existing,
            )
        })
        .collect();
    let mut writes = futures::stream::iter(writes).buffer_unordered(ctx.api_concurrency);
    while let Some((namespace, outcome)) = writes.next().await {
        match outcome {
            Ok(()) => {
                provisioned.insert(namespace);
            }
            Err(reason) => {
                failed.insert(namespace, reason);
            }
        }
    }
    drop(writes);

    // Children no longer wanted: in a namespace no longer picked, or under a
    // name no longer used. Known from the cache and from what this process
    // wrote (the cache may not show a write of a moment ago yet).
    let mut unwanted: BTreeMap<(String, String), String> = BTreeMap::new();
    for child in children {
        if !(picked.contains(&child.namespace) && child.name == child_name) {
            unwanted.insert((child.namespace, child.name), child.uid);
        }
    }
    for (namespace, written) in ctx.children_written(&key) {
        if !picked.contains(&namespace) {
            unwanted
                .entry((namespace, child_name.clone()))
                .or_insert(written.uid);
        }
    }
    for (namespace, outcome) in delete_children(&ctx, flavor, unwanted).await {
        match outcome {
            Ok(()) => ctx.forget_child(&key, &namespace),
            Err(reason) => {
                failed.insert(namespace, reason);
            }
        }
    }
    clear_eso_namespace_finalizers(&ctx, &name, |namespace| {
        namespace.metadata.deletion_timestamp.is_some()
    })
    .await;

    let all_fine = failed.is_empty();
    let current = object.status();
    let status = ClusterExternalSecretStatus {
        external_secret_name: Some(child_name),
        provisioned_namespaces: provisioned.into_iter().collect(),
        failed_namespaces: failed
            .into_iter()
            .map(|(namespace, reason)| NamespaceFailure {
                namespace,
                reason: Some(reason),
            })
            .collect(),
        conditions: vec![if all_fine {
            ready(current.as_ref(), true, "Provisioned", String::new())
        } else {
            ready(
                current.as_ref(),
                false,
                "NamespacesFailed",
                NAMESPACES_FAILED.into(),
            )
        }],
    };
    write_status(&api, &object, status).await?;
    ctx.metrics
        .cluster_external_secret_reconciled(&name, all_fine, started.elapsed());
    let every = spec
        .refresh_time
        .map(std::time::Duration::from)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_CLUSTER_REFRESH);
    if all_fine {
        ctx.reset_backoff(&key);
        Ok(Action::requeue(every))
    } else {
        Ok(Action::requeue(ctx.next_backoff(&key).min(every)))
    }
}

/// The namespaces picked among those this controller watches.
pub(super) fn picked_here(ctx: &Context, picking: &Picking) -> BTreeSet<String> {
    let namespaces = ctx.namespaces.state();
    let labelled: Vec<(String, BTreeMap<String, String>, bool)> = namespaces
        .iter()
        .filter_map(|namespace| {
            let name = namespace.metadata.name.clone()?;
            if !ctx.watches_namespace(&name) {
                return None;
            }
            let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
            Some((
                name,
                labels,
                namespace.metadata.deletion_timestamp.is_some(),
            ))
        })
        .collect();
    picked_namespaces(
        picking,
        labelled
            .iter()
            .map(|(name, labels, terminating)| NamespaceView {
                name,
                labels,
                terminating: *terminating,
            }),
    )
}

/// An ExternalSecret found where one is to be written.
struct Existing {
    uid: String,
    generation: Option<i64>,
    /// Controlled by the ClusterExternalSecret writing.
    ours: bool,
}

impl Existing {
    fn of(metadata: &ObjectMeta, flavor: Flavor, writer: &str) -> Existing {
        Existing {
            uid: metadata.uid.clone().unwrap_or_default(),
            generation: metadata.generation,
            ours: is_written_by(
                metadata.owner_references.as_deref().unwrap_or_default(),
                flavor.group(),
                "ClusterExternalSecret",
                writer,
            ),
        }
    }
}

/// A child in the cache.
struct Child {
    namespace: String,
    name: String,
    uid: String,
}

/// Every ExternalSecret of this flavor that the object `writer` controls.
fn children_of(ctx: &Context, flavor: Flavor, writer: &str) -> Vec<Child> {
    ctx.external_secrets
        .iter()
        .flat_map(|cache| {
            cache.owned(flavor, |owners| {
                is_written_by(owners, flavor.group(), "ClusterExternalSecret", writer)
            })
        })
        .map(|child| Child {
            namespace: child.namespace.unwrap_or_default(),
            name: child.name.unwrap_or_default(),
            uid: child.uid.unwrap_or_default(),
        })
        .collect()
}

/// Writes one namespace's ExternalSecret if it is not as wanted already.
/// `Err` is the reason the namespace failed (API messages name no values:
/// an ExternalSecret holds none).
async fn write_child(
    ctx: &Context,
    key: &str,
    flavor: Flavor,
    namespace: &str,
    name: &str,
    desired: serde_json::Value,
    existing: Option<Existing>,
) -> (String, Result<(), String>) {
    let hash = fingerprint(&desired);
    let outcome = async {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), namespace, &flavor.external_secrets());
        let existing = match existing {
            Some(existing) => existing,
            None => {
                let object: DynamicObject =
                    serde_json::from_value(desired.clone()).map_err(|e| e.to_string())?;
                match api.create(&PostParams::default(), &object).await {
                    Ok(created) => {
                        ctx.remember_child(key, namespace, written(&created, hash));
                        return Ok(());
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        // One appeared since the cache was read: whose is it?
                        let found = api.get(name).await.map_err(|e| e.to_string())?;
                        let writer = desired["metadata"]["ownerReferences"][0]["name"]
                            .as_str()
                            .unwrap_or_default();
                        Existing::of(&found.metadata, flavor, writer)
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        if !existing.ours {
            return Err(format!(
                "{NOT_OWNED}: ExternalSecret {namespace}/{name} is not owned by this ClusterExternalSecret"
            ));
        }
        let same = ctx.child_written(key, namespace).is_some_and(|w| {
            w.hash == hash && w.uid == existing.uid && w.generation == existing.generation
        });
        if same {
            return Ok(());
        }
        let applied = api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .map_err(|e| e.to_string())?;
        ctx.remember_child(key, namespace, written(&applied, hash));
        Ok(())
    }
    .await;
    (namespace.to_string(), outcome)
}

fn written(object: &DynamicObject, hash: u64) -> Written {
    Written {
        uid: object.metadata.uid.clone().unwrap_or_default(),
        generation: object.metadata.generation,
        hash,
    }
}

/// Keyed afresh in each process.
fn fingerprint(value: &serde_json::Value) -> u64 {
    static KEYS: std::sync::LazyLock<std::hash::RandomState> =
        std::sync::LazyLock::new(std::hash::RandomState::new);
    KEYS.hash_one(value.to_string())
}

/// Deletes each child ((namespace, name) -> uid), as many at once as the
/// API allows; the outcome by namespace.
async fn delete_children(
    ctx: &Context,
    flavor: Flavor,
    children: BTreeMap<(String, String), String>,
) -> Vec<(String, Result<(), String>)> {
    futures::stream::iter(children)
        .map(|((namespace, child), uid)| async move {
            let outcome = delete_child(ctx, flavor, &namespace, &child, &uid).await;
            (namespace, outcome)
        })
        .buffer_unordered(ctx.api_concurrency)
        .collect()
        .await
}

/// Deletes the child with this uid (never one that replaced it).
async fn delete_child(
    ctx: &Context,
    flavor: Flavor,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &flavor.external_secrets());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced by another object of that name.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Deletes every child of an object being deleted, and ESO's namespace
/// finalizers for it.
async fn clean_up(object: &WatchedClusterExternalSecret, ctx: &Context) -> Result<(), Error> {
    let flavor = object.flavor;
    let name = object.name_any();
    let key = objects::flavored_key(flavor, object);
    let mut children: BTreeMap<(String, String), String> = children_of(ctx, flavor, &name)
        .into_iter()
        .map(|c| ((c.namespace, c.name), c.uid))
        .collect();
    let child_name = object
        .status()
        .and_then(|s| s.external_secret_name)
        .unwrap_or_else(|| name.clone());
    for (namespace, written) in ctx.children_written(&key) {
        children
            .entry((namespace, child_name.clone()))
            .or_insert(written.uid);
    }
    let failures: Vec<String> = delete_children(ctx, flavor, children)
        .await
        .into_iter()
        .filter_map(|(namespace, outcome)| Some(format!("{namespace}: {}", outcome.err()?)))
        .collect();
    clear_eso_namespace_finalizers(ctx, &name, |_| true).await;
    if failures.is_empty() {
        Ok(())
    } else {
        tracing::warn!(cluster_external_secret = %name, failures = %failures.join("; "), "could not delete every ExternalSecret");
        Err(Error::Cleanup(failures.join("; ")))
    }
}

/// Removes ESO's `externalsecrets.external-secrets.io/ces-NAME` finalizer
/// from the namespaces `which` picks. Best effort: a failure is logged and
/// tried again on the next reconcile.
async fn clear_eso_namespace_finalizers(
    ctx: &Context,
    name: &str,
    which: impl Fn(&kube::core::PartialObjectMeta<Namespace>) -> bool,
) {
    let finalizer = format!("{ESO_NAMESPACE_FINALIZER_PREFIX}{name}");
    let holding: Vec<_> = ctx
        .namespaces
        .state()
        .into_iter()
        .filter(|namespace| {
            namespace
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| *f == finalizer)
                && which(namespace)
        })
        .collect();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    for namespace in holding {
        let Some(patch) = finalizers::removal_patch(&namespace.metadata, &[&finalizer]) else {
            continue;
        };
        let namespace = namespace.name_any();
        if let Err(e) = api
            .patch(&namespace, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!(%namespace, error = %e, "could not remove ESO's ClusterExternalSecret finalizer");
        }
    }
}

async fn add_finalizer(
    api: &Api<DynamicObject>,
    object: &WatchedClusterExternalSecret,
) -> Result<(), Error> {
    let patch = finalizers::addition_patch(&object.metadata, finalizer_of(object.flavor));
    finalizers::apply(api, &object.name_any(), patch).await
}

async fn remove_finalizers(
    api: &Api<DynamicObject>,
    object: &WatchedClusterExternalSecret,
) -> Result<(), Error> {
    let patch = finalizers::removal_patch(&object.metadata, &[FINALIZER, ESO_FINALIZER]);
    finalizers::apply(api, &object.name_any(), patch).await
}

/// The Ready condition; its transition time kept while its status holds.
fn ready(
    current: Option<&ClusterExternalSecretStatus>,
    holds: bool,
    reason: &str,
    message: String,
) -> Condition {
    Condition::ready(
        current.map(|s| s.conditions.as_slice()).unwrap_or_default(),
        holds,
        reason,
        message,
    )
}

/// Writes the status unless the object shows it already.
async fn write_status(
    api: &Api<DynamicObject>,
    object: &WatchedClusterExternalSecret,
    status: ClusterExternalSecretStatus,
) -> Result<(), Error> {
    if object.status().as_ref() == Some(&status) {
        return Ok(());
    }
    let body = status_body(
        &status,
        &[
            "failedNamespaces",
            "provisionedNamespaces",
            "conditions",
            "externalSecretName",
        ],
    );
    api.patch_status(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": body})),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

/// A hasher input for the predicate: what changes should wake a reconcile
/// (spec, deletion, force-sync annotations), and not its own writes (status,
/// finalizer).
pub fn wakes(object: &WatchedClusterExternalSecret) -> Option<u64> {
    use crate::sync::{ESO_FORCE_SYNC_ANNOTATION, FORCE_SYNC_ANNOTATION};
    let (_, annotations) = object.labels_and_annotations();
    let annotations = annotations.unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.metadata.generation.hash(&mut hasher);
    object
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    annotations.get(FORCE_SYNC_ANNOTATION).hash(&mut hasher);
    annotations.get(ESO_FORCE_SYNC_ANNOTATION).hash(&mut hasher);
    Some(std::hash::Hasher::finish(&hasher))
}

/// Whether an ExternalSecret event should wake the ClusterExternalSecret
/// that controls it: which one (by name), if any.
pub fn writer_of_child(flavor: Flavor, es: &CachedExternalSecret) -> Option<String> {
    if !es.has_rest_of_metadata() {
        // No owner references.
        return None;
    }
    es.owner_references()
        .into_iter()
        .find(|owner| {
            owner.controller == Some(true)
                && owner.kind == "ClusterExternalSecret"
                && owner.api_version.split('/').next() == Some(flavor.group())
        })
        .map(|owner| owner.name)
}
