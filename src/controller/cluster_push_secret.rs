//! ClusterPushSecret -> one PushSecret in each namespace it picks. It writes
//! PushSecrets only; their own reconciles push the values.
//!
//! Its children carry it as controlling owner (the garbage collector removes
//! them with it, and each child's own finalizer then deletes what it pushed
//! when its `deletionPolicy` says so) and a label with its uid, so one list
//! finds them. A PushSecret of that name it does not own is never
//! overwritten: the namespace is listed as failed. Namespace changes wake
//! every ClusterPushSecret; `refreshTime` is only a safety net.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::controller::Action;
use serde_json::json;

use super::cluster_external_secret::picked_here;
use super::objects::{Flavor, WatchedClusterPushSecret};
use super::{Context, Error, FIELD_MANAGER, status_body};
use crate::api::{
    ClusterPushSecretStatus, Condition, DEFAULT_CLUSTER_REFRESH, NamespaceFailure, PushSecretSpec,
};
use crate::sync::cluster_external_secret::{Child, Picking, Writer, is_written_by};

/// The label on each child naming its ClusterPushSecret's uid.
pub const WRITER_LABEL: &str = "secretsync.io/cluster-push-secret-uid";
/// ESO's message when any namespace failed.
const NAMESPACES_FAILED: &str = "one or more namespaces failed";
const NOT_OWNED: &str = "push secret already exists in namespace";

pub async fn reconcile(
    object: Arc<WatchedClusterPushSecret>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.caches_filled().await;
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let flavor = object.flavor;
    let name = object.name_any();
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &flavor.cluster_push_secrets());
    let current = object.status();
    let spec = match object.spec().and_then(|spec| {
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }) {
        Ok(spec) => spec,
        Err(message) => {
            let status = ClusterPushSecretStatus {
                conditions: vec![ready(current.as_ref(), false, "Errored", message)],
                ..current.clone().unwrap_or_default()
            };
            write_status(&api, &object, status).await?;
            return Ok(Action::await_change());
        }
    };
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let child_name = spec.push_secret_name(&name).to_string();
    let picking = Picking {
        names: &spec.namespaces,
        selectors: spec.namespace_selectors.iter().collect(),
    };
    let picked = picked_here(&ctx, &picking);

    let listed = children_of(&ctx, flavor, &uid).await?;
    let existing: BTreeMap<(String, String), DynamicObject> = listed
        .into_iter()
        .map(|child| {
            (
                (child.namespace().unwrap_or_default(), child.name_any()),
                child,
            )
        })
        .collect();

    let (_, own_annotations) = object.labels_and_annotations();
    let own_annotations = own_annotations.unwrap_or_default();
    let api_version = format!("{}/{}", flavor.group(), crate::api::PUSH_VERSION);
    let writer = Writer {
        api_version: &api_version,
        name: &name,
        uid: &uid,
        annotations: &own_annotations,
    };
    let mut labels = spec.push_secret_metadata.labels.clone();
    labels.insert(WRITER_LABEL.into(), uid.clone());
    let child = Child {
        kind: "PushSecret",
        writer_kind: "ClusterPushSecret",
        name: &child_name,
        labels: &labels,
        annotations: &spec.push_secret_metadata.annotations,
    };

    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut provisioned = BTreeSet::new();
    for namespace in &picked {
        let desired = child.object(&writer, namespace, json!(spec.push_secret_spec));
        let found = existing.get(&(namespace.clone(), child_name.clone()));
        match write_child(&ctx, flavor, namespace, &child_name, &name, &desired, found).await {
            Ok(()) => {
                provisioned.insert(namespace.clone());
            }
            Err(reason) => {
                failed.insert(namespace.clone(), reason);
            }
        }
    }
    for ((namespace, child), object) in &existing {
        if picked.contains(namespace) && *child == child_name {
            continue;
        }
        if let Err(reason) = delete_child(&ctx, flavor, object).await {
            failed.insert(namespace.clone(), reason);
        }
    }

    let all_fine = failed.is_empty();
    let status = ClusterPushSecretStatus {
        push_secret_name: Some(child_name),
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
    let every = spec
        .refresh_time
        .map(std::time::Duration::from)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_CLUSTER_REFRESH);
    let key = format!("{}//{name}", flavor.group());
    if all_fine {
        ctx.reset_backoff(&key);
        Ok(Action::requeue(every))
    } else {
        Ok(Action::requeue(ctx.next_backoff(&key).min(every)))
    }
}

/// The PushSecrets labelled as written by the ClusterPushSecret `uid`: one
/// list cluster-wide, or one per namespace watched (`--namespaces`).
async fn children_of(
    ctx: &Context,
    flavor: Flavor,
    uid: &str,
) -> Result<Vec<DynamicObject>, Error> {
    let params = ListParams::default().labels(&format!("{WRITER_LABEL}={uid}"));
    let apis: Vec<Api<DynamicObject>> = if ctx.watched_namespaces.is_empty() {
        vec![Api::all_with(ctx.client.clone(), &flavor.push_secrets())]
    } else {
        ctx.watched_namespaces
            .iter()
            .map(|namespace| {
                Api::namespaced_with(ctx.client.clone(), namespace, &flavor.push_secrets())
            })
            .collect()
    };
    let mut children = Vec::new();
    for api in apis {
        children.extend(api.list(&params).await.map_err(Error::Kube)?.items);
    }
    Ok(children)
}

/// Writes one namespace's PushSecret unless it is as wanted already; `Err`
/// is why the namespace failed.
async fn write_child(
    ctx: &Context,
    flavor: Flavor,
    namespace: &str,
    name: &str,
    writer: &str,
    desired: &serde_json::Value,
    found: Option<&DynamicObject>,
) -> Result<(), String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &flavor.push_secrets());
    let found = match found {
        Some(found) => found.clone(),
        None => {
            let object: DynamicObject =
                serde_json::from_value(desired.clone()).map_err(|e| e.to_string())?;
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => return Ok(()),
                // One of that name exists, not labelled as ours: whose?
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    api.get(name).await.map_err(|e| e.to_string())?
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let owners = found
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    if !is_written_by(owners, flavor.group(), "ClusterPushSecret", writer) {
        return Err(format!(
            "{NOT_OWNED}: PushSecret {namespace}/{name} is not owned by this ClusterPushSecret"
        ));
    }
    if same_child(&found, desired) {
        return Ok(());
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

/// Whether the child holds what would be written: its spec (both decoded,
/// so defaults the API server filled in compare equal), labels and
/// annotations.
fn same_child(found: &DynamicObject, desired: &serde_json::Value) -> bool {
    let spec = |value: &serde_json::Value| {
        serde_json::from_value::<PushSecretSpec>(value.clone())
            .ok()
            .and_then(|spec| serde_json::to_value(spec).ok())
    };
    let holds = |have: &Option<BTreeMap<String, String>>, want: &serde_json::Value| {
        let want: BTreeMap<String, String> =
            serde_json::from_value(want.clone()).unwrap_or_default();
        let have = have.clone().unwrap_or_default();
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    let same_spec = spec(&found.data["spec"]).is_some_and(|s| Some(s) == spec(&desired["spec"]));
    same_spec
        && holds(&found.metadata.labels, &desired["metadata"]["labels"])
        && holds(
            &found.metadata.annotations,
            &desired["metadata"]["annotations"],
        )
}

/// Deletes a child no longer wanted (that very object: by uid).
async fn delete_child(ctx: &Context, flavor: Flavor, child: &DynamicObject) -> Result<(), String> {
    let namespace = child.namespace().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &flavor.push_secrets());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: child.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&child.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Wakes every ClusterPushSecret of a cache: a namespace changed.
pub fn every(
    cache: &kube::runtime::reflector::Store<WatchedClusterPushSecret>,
) -> Vec<kube::runtime::reflector::ObjectRef<WatchedClusterPushSecret>> {
    cache
        .state()
        .iter()
        .map(|object| {
            kube::runtime::reflector::ObjectRef::from_obj_with(object.as_ref(), object.flavor)
        })
        .collect()
}

/// The Ready condition; its transition time kept while its status holds.
fn ready(
    current: Option<&ClusterPushSecretStatus>,
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

async fn write_status(
    api: &Api<DynamicObject>,
    object: &WatchedClusterPushSecret,
    status: ClusterPushSecretStatus,
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
            "pushSecretName",
        ],
    );
    match api
        .patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": body})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Whether a ClusterPushSecret's own change should wake it (spec, labels,
/// annotations; not its status writes).
pub fn wakes(object: &WatchedClusterPushSecret) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.metadata.generation.hash(&mut hasher);
    object.labels_and_annotations().hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_with_server_defaults_is_the_same_child() {
        let desired = json!({
            "metadata": {"labels": {"a": "1"}, "annotations": {}},
            "spec": {"secretStoreRefs": [{"name": "aws"}], "selector": {"secret": {"name": "s"}}},
        });
        let found: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "secretsync.io/v1alpha1", "kind": "PushSecret",
            "metadata": {"name": "p", "labels": {"a": "1", "extra": "x"}},
            "spec": {"secretStoreRefs": [{"name": "aws", "kind": "SecretStore"}],
                     "selector": {"secret": {"name": "s"}}, "updatePolicy": "Replace", "deletionPolicy": "None"},
        }))
        .unwrap();
        assert!(same_child(&found, &desired));
        let mut changed = desired.clone();
        changed["spec"]["selector"]["secret"]["name"] = json!("t");
        assert!(!same_child(&found, &changed));
    }
}
