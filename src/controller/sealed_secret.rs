//! SealedSecret -> Secret: decrypted with the identities in a Secret of the
//! controller's own namespace (read on every reconcile, so new identities work
//! without a restart; several may be active at once for rotation). A value that
//! does not decrypt, or decrypts for another scope, leaves any existing Secret
//! as it was; the condition and an event say why, never what.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::objects::WatchedSealedSecret;
use super::{Context, Error, FIELD_MANAGER, bitnami_sealed_secret};
use crate::api::{Condition, SealedSecret, SealedSecretStatus};
use crate::sealed::manifest::{decrypt_values, render_template_data};
use crate::sealed::parse_identities;
use crate::sync::MANAGED_LABEL;

/// Annotation on a Secret naming the SealedSecret (same namespace) it comes from.
pub const SEALED_SECRET_ANNOTATION: &str = "secretsync.io/sealed-secret";

/// Where the decryption identities live.
#[derive(Clone, Debug)]
pub struct SealingKeys {
    pub namespace: String,
    pub name: String,
}

pub async fn reconcile(
    object: Arc<WatchedSealedSecret>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let key = format!("sealed:{namespace}/{}", object.name_any());
    let sealed = match object.typed() {
        Ok(sealed) => sealed,
        Err(message) => {
            tracing::warn!(sealed_secret = %key, %message, "invalid SealedSecret");
            let regarding = object.object_ref(&object.flavor);
            ctx.publish(
                &regarding,
                EventType::Warning,
                "Unseal",
                "InvalidSpec",
                &message,
            )
            .await;
            write_status_of(
                &object.metadata,
                object.status().as_ref(),
                &ctx,
                "False",
                "InvalidSpec",
                &message,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let outcome = unseal_all(&sealed, &ctx).await;
    let (value, reason, message, action) = match outcome {
        Ok(secret) => match write(&sealed, &ctx, secret).await {
            Ok(written) => {
                ctx.reset_backoff(&key);
                if let Some(created) = written {
                    let (reason, note) = if created {
                        ("Created", "Secret created")
                    } else {
                        ("Updated", "Secret updated")
                    };
                    publish(&ctx, &sealed, EventType::Normal, reason, note).await;
                }
                (
                    "True",
                    "Unsealed",
                    "every value decrypted and the Secret is in step".to_string(),
                    Action::await_change(),
                )
            }
            Err(e) => return Err(e),
        },
        Err((reason, message)) => {
            tracing::warn!(sealed_secret = %key, reason, %message, "unsealing failed");
            publish(&ctx, &sealed, EventType::Warning, reason, &message).await;
            (
                "False",
                reason,
                message,
                Action::requeue(ctx.next_backoff(&key)),
            )
        }
    };
    write_status(&sealed, &ctx, value, reason, &message).await?;
    Ok(action)
}

/// The Secret a SealedSecret stands for, or (reason, message).
async fn unseal_all(
    sealed: &SealedSecret,
    ctx: &Context,
) -> Result<Secret, (&'static str, String)> {
    let keys = ctx.sealing_keys.as_ref().ok_or((
        "NoIdentities",
        "the controller runs without --sealing-keys-secret".to_string(),
    ))?;
    let source = format!("Secret {}/{}", keys.namespace, keys.name);
    let holder = Api::<Secret>::namespaced(ctx.client.clone(), &keys.namespace)
        .get_opt(&keys.name)
        .await
        .map_err(|e| ("NoIdentities", format!("reading {source}: {e}")))?
        .ok_or((
            "NoIdentities",
            format!("{source} (the decryption identities) does not exist"),
        ))?;
    let mut identities = Vec::new();
    for (name, value) in holder.data.iter().flatten() {
        let text = String::from_utf8_lossy(&value.0);
        match parse_identities(&text, &format!("{source} key {name:?}")) {
            Ok(found) => identities.extend(found),
            Err(e) => tracing::warn!(error = %e, "skipping a key that holds no identity"),
        }
    }
    if identities.is_empty() {
        return Err((
            "NoIdentities",
            format!("{source} holds no age or SSH identity"),
        ));
    }
    let namespace = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let values = decrypt_values(sealed, &identities).map_err(|e| ("DecryptionFailed", e))?;
    let template = sealed.spec.template.clone().unwrap_or_default();
    let mut data: BTreeMap<String, ByteString> = values
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
        .collect();
    if !template.data.is_empty() {
        // templates: CPU work, so on a blocking thread, within limits.
        let (texts, limits) = (template.data.clone(), ctx.template_limits);
        let rendered = ctx
            .render_pool
            .run(move || render_template_data(&texts, &values, &limits))
            .await
            .map_err(|e| ("TemplateError", e.to_string()))?
            .map_err(|e| ("TemplateError", e))?;
        data.extend(rendered);
    }
    let mut labels = template.metadata.labels.clone();
    labels.insert(MANAGED_LABEL.into(), "true".into());
    let mut annotations = template.metadata.annotations.clone();
    annotations.insert(SEALED_SECRET_ANNOTATION.into(), name.clone());
    let mut secret = Secret {
        data: Some(data),
        type_: Some(template.type_.clone().unwrap_or_else(|| "Opaque".into())),
        immutable: template.immutable.then_some(true),
        ..Default::default()
    };
    secret.metadata.name = Some(name.clone());
    secret.metadata.namespace = Some(namespace);
    secret.metadata.labels = Some(labels);
    secret.metadata.annotations = Some(annotations);
    secret.metadata.owner_references = Some(vec![OwnerReference {
        api_version: SealedSecret::api_version(&()).into_owned(),
        kind: SealedSecret::kind(&()).into_owned(),
        name,
        uid: sealed.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Ok(secret)
}

/// Applies the Secret unless the live one holds it already. `Some(created)` when written.
async fn write(
    sealed: &SealedSecret,
    ctx: &Context,
    secret: Secret,
) -> Result<Option<bool>, Error> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &sealed.namespace().unwrap_or_default());
    let name = sealed.name_any();
    let existing = api.get_opt(&name).await.map_err(Error::Kube)?;
    if existing
        .as_ref()
        .is_some_and(|live| super::target::holds(live, &secret))
    {
        return Ok(None);
    }
    if let Some(live) = existing
        .as_ref()
        .filter(|live| held_by_bitnami(live, &name))
    {
        // Moving a file from Bitnami's SealedSecret to ours (`reseal
        // --from-bitnami`): the Secret is taken over, so that pruning the
        // Bitnami object afterwards deletes nothing. A Secret has one
        // controller, so Bitnami's reference goes first, guarded by the
        // Secret's resourceVersion.
        let kept: Vec<OwnerReference> = live
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| !bitnami_sealed_secret::controls(o, &name))
            .cloned()
            .collect();
        let handover = json!({"metadata": {
            "resourceVersion": live.metadata.resource_version,
            "ownerReferences": kept,
        }});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&handover))
            .await
            .map_err(Error::Kube)?;
        tracing::info!(secret = %name, "took the Secret over from Bitnami's SealedSecret of the same name");
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&secret))
        .await
        .map_err(Error::Kube)?;
    Ok(Some(existing.is_none()))
}

/// Whether Bitnami's SealedSecret of this name controls the Secret.
fn held_by_bitnami(live: &Secret, name: &str) -> bool {
    live.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| bitnami_sealed_secret::controls(o, name))
}

async fn write_status(
    sealed: &SealedSecret,
    ctx: &Context,
    value: &str,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    write_status_of(
        &sealed.metadata,
        sealed.status.as_ref(),
        ctx,
        value,
        reason,
        message,
    )
    .await
}

async fn write_status_of(
    metadata: &ObjectMeta,
    current: Option<&SealedSecretStatus>,
    ctx: &Context,
    value: &str,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Synced"));
    let same = previous.is_some_and(|p| {
        p.status == value
            && p.reason.as_deref() == Some(reason)
            && p.message.as_deref() == Some(message)
    });
    if same && current.and_then(|s| s.observed_generation) == metadata.generation {
        return Ok(());
    }
    let status = SealedSecretStatus {
        conditions: vec![Condition::following(
            previous,
            "Synced",
            value,
            reason,
            Some(message.into()),
        )],
        observed_generation: metadata.generation,
    };
    Api::<SealedSecret>::namespaced(
        ctx.client.clone(),
        metadata.namespace.as_deref().unwrap_or_default(),
    )
    .patch_status(
        metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

async fn publish(ctx: &Context, sealed: &SealedSecret, type_: EventType, reason: &str, note: &str) {
    ctx.publish(&sealed.object_ref(&()), type_, "Unseal", reason, note)
        .await;
}
