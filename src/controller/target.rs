//! Writing an ExternalSecret's target Secret as its creationPolicy says, by
//! server-side apply. Unchanged content costs no request at all: the managed
//! Secrets' metadata cache shows the content hash and resourceVersion of what
//! this process last wrote; only a Secret changed since (by hand, or before a
//! restart) is read back and compared. One not in that cache (none yet, or
//! someone else's) is applied without a read: the answer shows what it holds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::external_secret::{EXTERNAL_SECRET_ANNOTATION, Failure, kube_error};
use super::managed::ManagedSecret;
use super::objects::Flavor;
use super::{Context, FIELD_MANAGER};
use crate::api::{CreationPolicy, ExternalSecret};
use crate::sync::{CONTENT_HASH_ANNOTATION, DesiredSecret, MANAGED_LABEL};

pub(super) enum Outcome {
    /// The Secret already holds the desired content.
    Unchanged { resource_version: Option<String> },
    Written {
        resource_version: Option<String>,
        created: bool,
    },
    /// `creationPolicy: None`.
    NotWritten,
}

/// Applies the desired Secret unless the live one already holds it.
/// `cached` is the Secret's metadata from the managed cache, `synced` the
/// resourceVersion this process (or its status) last recorded, and `live` the
/// Secret if the caller read it already.
pub(super) async fn write(
    es: &ExternalSecret,
    ctx: &Context,
    flavor: Flavor,
    desired: &DesiredSecret,
    cached: Option<&ManagedSecret>,
    synced: Option<&str>,
    live: Option<Option<Secret>>,
) -> Result<Outcome, Failure> {
    let policy = es.spec.target.creation_policy;
    if policy == CreationPolicy::None {
        return Ok(Outcome::NotWritten);
    }
    if let Some(cached) = cached
        && cached.resource_version() == synced
        && synced.is_some()
        && cached.content_hash() == Some(desired.content_hash.as_str())
        && owner_matches(cached, es, policy)
    {
        return Ok(Outcome::Unchanged {
            resource_version: synced.map(str::to_string),
        });
    }

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &desired.namespace);
    let wanted = wanted_secret(es, flavor, desired);
    let live = match live {
        Some(live) => live,
        // Not in the managed cache (filled before any reconcile runs): the
        // Secret is missing, or someone else's without our label. Applied
        // without reading it first; the answer shows what it holds.
        None if cached.is_none() => {
            let outcome =
                apply_unread(&ctx.client, &secrets, desired, &wanted, policy, synced).await?;
            if let Outcome::Written { created, .. } = outcome {
                ctx.metrics.secret_written(created);
            }
            return Ok(outcome);
        }
        None => read(&secrets, desired).await?,
    };
    let foreign = match (&live, policy) {
        // The ExternalSecret owns the whole data: keys it does not produce go.
        (Some(live), CreationPolicy::Owner | CreationPolicy::Orphan) => foreign_keys(live, desired),
        _ => Vec::new(),
    };
    if let Some(live) = &live {
        if holds(live, &wanted) && foreign.is_empty() {
            return Ok(Outcome::Unchanged {
                resource_version: live.metadata.resource_version.clone(),
            });
        }
        if live.immutable == Some(true) {
            return Err(immutable(desired));
        }
    }
    let written = apply(&ctx.client, desired, &wanted).await?;
    let resource_version = without_keys(&ctx.client, desired, written, &foreign).await?;
    ctx.metrics.secret_written(live.is_none());
    Ok(Outcome::Written {
        resource_version,
        created: live.is_none(),
    })
}

/// Applies to a Secret not read first. Whether it was created, and which keys
/// are not ours, the answer shows: a Secret this process created has no other
/// field manager. A refused write (an immutable Secret, say) is explained
/// from the Secret as it is.
async fn apply_unread(
    client: &kube::Client,
    secrets: &Api<Secret>,
    desired: &DesiredSecret,
    wanted: &Secret,
    policy: CreationPolicy,
    synced: Option<&str>,
) -> Result<Outcome, Failure> {
    let written = match apply(client, desired, wanted).await {
        Ok(written) => written,
        // Explained from the Secret as it is, when it can be read.
        Err(refused) => {
            return match read(secrets, desired).await {
                Ok(Some(live)) if live.immutable == Some(true) && !holds(&live, wanted) => {
                    Err(immutable(desired))
                }
                _ => Err(refused),
            };
        }
    };
    if synced.is_some() && written.metadata.resource_version.as_deref() == synced {
        // What this process wrote last, not yet in the cache: a no-op apply.
        return Ok(Outcome::Unchanged {
            resource_version: synced.map(str::to_string),
        });
    }
    let created = written
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .all(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER));
    let foreign = match policy {
        CreationPolicy::Owner | CreationPolicy::Orphan => {
            not_desired(written.data.iter().flatten().map(|(k, _)| k), desired)
        }
        _ => Vec::new(),
    };
    let resource_version = without_keys(client, desired, written, &foreign).await?;
    Ok(Outcome::Written {
        resource_version,
        created,
    })
}

async fn read(secrets: &Api<Secret>, desired: &DesiredSecret) -> Result<Option<Secret>, Failure> {
    secrets.get_opt(&desired.name).await.map_err(|e| {
        failure(format!(
            "reading Secret {}/{}: {}",
            desired.namespace,
            desired.name,
            kube_error(&e)
        ))
    })
}

/// A written Secret as its answer shows it: which keys it holds, not their
/// values (one more decoded copy of every value in memory, for nothing), and
/// which managers wrote it, not the fields each owns.
#[derive(Deserialize)]
struct Written {
    #[serde(default)]
    metadata: WrittenMetadata,
    #[serde(default)]
    data: Option<BTreeMap<String, IgnoredAny>>,
}

#[derive(Default, Deserialize)]
struct WrittenMetadata {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(default, rename = "managedFields")]
    managed_fields: Option<Vec<Manager>>,
}

#[derive(Deserialize)]
struct Manager {
    #[serde(default)]
    manager: Option<String>,
}

/// Sends a write of the Secret and reads what [`Written`] needs of the answer.
async fn send_write(
    client: &kube::Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<Written, kube::Error> {
    let text = client
        .request_text(request.map_err(kube::Error::BuildRequest)?)
        .await?;
    // serde_json's messages can quote a value: only where it failed is told.
    serde_json::from_str(&text).map_err(|e| {
        kube::Error::Service(
            format!(
                "the answer did not decode as a Secret (line {}, column {})",
                e.line(),
                e.column()
            )
            .into(),
        )
    })
}

fn secrets_url(namespace: &str) -> String {
    <Secret as kube::Resource>::url_path(&(), Some(namespace))
}

/// Server-side apply of `wanted`.
async fn apply(
    client: &kube::Client,
    desired: &DesiredSecret,
    wanted: &Secret,
) -> Result<Written, Failure> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let request = kube::core::Request::new(secrets_url(&desired.namespace)).patch(
        &desired.name,
        &params,
        &Patch::Apply(wanted),
    );
    send_write(client, request).await.map_err(|e| {
        failure(format!(
            "writing Secret {}/{}: {}",
            desired.namespace,
            desired.name,
            kube_error(&e)
        ))
    })
}

/// The written Secret with the `foreign` keys removed (as it is when none):
/// its resourceVersion after that.
async fn without_keys(
    client: &kube::Client,
    desired: &DesiredSecret,
    written: Written,
    foreign: &[String],
) -> Result<Option<String>, Failure> {
    if foreign.is_empty() {
        return Ok(written.metadata.resource_version);
    }
    remove_keys(client, desired, written, foreign)
        .await
        .map_err(|e| {
            failure(format!(
                "removing keys the ExternalSecret does not produce from Secret {}/{}: {}",
                desired.namespace,
                desired.name,
                kube_error(&e)
            ))
        })
}

fn immutable(desired: &DesiredSecret) -> Failure {
    failure(format!(
        "Secret {}/{} is immutable and its content differs; delete it to let a new one be created",
        desired.namespace, desired.name
    ))
}

fn failure(message: String) -> Failure {
    Failure::new("SecretSyncedError", message)
}

/// The Secret to apply: the desired one, with the bookkeeping its policy adds.
fn wanted_secret(es: &ExternalSecret, flavor: Flavor, desired: &DesiredSecret) -> Secret {
    let policy = es.spec.target.creation_policy;
    let mut secret = desired.to_secret();
    secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(EXTERNAL_SECRET_ANNOTATION.into(), es.name_any());
    if policy == CreationPolicy::Owner {
        secret.metadata.owner_references = Some(vec![owner_reference(es, flavor)]);
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
    secret
}

fn owner_reference(es: &ExternalSecret, flavor: Flavor) -> OwnerReference {
    OwnerReference {
        api_version: flavor.api_version(),
        kind: "ExternalSecret".into(),
        name: es.name_any(),
        uid: es.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the cached Secret's owner is as the policy wants (an ExternalSecret
/// deleted and created again under the same name has a new uid).
fn owner_matches(cached: &ManagedSecret, es: &ExternalSecret, policy: CreationPolicy) -> bool {
    if policy != CreationPolicy::Owner {
        return true;
    }
    cached.controller_uid().is_some() && cached.controller_uid() == es.metadata.uid.as_deref()
}

/// Keys of the live Secret the desired one does not have.
fn foreign_keys(live: &Secret, desired: &DesiredSecret) -> Vec<String> {
    let keys = live.data.iter().flatten().map(|(k, _)| k);
    not_desired(
        keys.chain(live.string_data.iter().flatten().map(|(k, _)| k)),
        desired,
    )
}

/// The `keys` the desired Secret does not have.
fn not_desired<'a>(keys: impl Iterator<Item = &'a String>, desired: &DesiredSecret) -> Vec<String> {
    keys.filter(|k| !desired.data.contains_key(*k))
        .cloned()
        .collect()
}

/// Removes `keys` from the Secret's data, provided nobody wrote it since (a
/// merge patch carrying a resourceVersion is a precondition): the resourceVersion
/// after that.
async fn remove_keys(
    client: &kube::Client,
    desired: &DesiredSecret,
    written: Written,
    keys: &[String],
) -> Result<Option<String>, kube::Error> {
    let removed: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .filter(|k| written.data.as_ref().is_some_and(|d| d.contains_key(*k)))
        .map(|k| (k.clone(), serde_json::Value::Null))
        .collect();
    if removed.is_empty() {
        return Ok(written.metadata.resource_version);
    }
    let patch = json!({
        "metadata": {"resourceVersion": written.metadata.resource_version},
        "data": removed,
    });
    let request = kube::core::Request::new(secrets_url(&desired.namespace)).patch(
        &desired.name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    );
    let written = send_write(client, request).await?;
    Ok(written.metadata.resource_version)
}

/// Whether the live Secret already has everything `wanted` sets.
pub(super) fn holds(live: &Secret, wanted: &Secret) -> bool {
    let data_ok = wanted
        .data
        .iter()
        .flatten()
        .all(|(k, v)| live.data.as_ref().and_then(|d| d.get(k)) == Some(v));
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
        && type_ok
        && owner_ok
        && subset(&live.metadata.labels, &wanted.metadata.labels)
        && subset(&live.metadata.annotations, &wanted.metadata.annotations)
        && wanted.immutable.unwrap_or(false) == live.immutable.unwrap_or(false)
}
