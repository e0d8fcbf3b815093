//! SecretStore and ClusterSecretStore: validated, their credentials checked
//! with one cheap call, and a Ready condition saying how that went; checked
//! again every few minutes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error};
use crate::api::{
    ClusterSecretStore, Condition, SecretStore, SecretStoreStatus, StoreKind, StoreProvider,
};
use crate::provider::StoreIdentity;

/// How often a store's credentials are checked again.
pub const RECHECK: Duration = Duration::from_secs(300);

pub async fn reconcile_namespaced(
    store: Arc<SecretStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = store.namespace().unwrap_or_default();
    let identity = StoreIdentity {
        kind: StoreKind::SecretStore,
        namespace: Some(namespace.clone()),
        name: store.name_any(),
    };
    let valid = store
        .spec
        .provider
        .validate(Some(&namespace))
        .map_err(|e| e.to_string());
    let status = check(&identity, &store.spec.provider, valid, &ctx).await;
    let api: Api<SecretStore> = Api::namespaced(ctx.client.clone(), &namespace);
    write_status(&api, store.as_ref(), store.status.as_ref(), status).await
}

pub async fn reconcile_cluster(
    store: Arc<ClusterSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let identity = StoreIdentity {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: store.name_any(),
    };
    let valid = store.spec.validate().map_err(|e| e.to_string());
    let status = check(&identity, &store.spec.provider, valid, &ctx).await;
    let api: Api<ClusterSecretStore> = Api::all(ctx.client.clone());
    write_status(&api, store.as_ref(), store.status.as_ref(), status).await
}

async fn check(
    identity: &StoreIdentity,
    spec: &StoreProvider,
    valid: Result<(), String>,
    ctx: &Context,
) -> (bool, &'static str, String) {
    let result = match valid {
        Err(message) => Err(("InvalidProviderConfig", message)),
        Ok(()) => match ctx.providers.for_store(identity, spec).await {
            Err(e) => Err(("InvalidProviderConfig", e.to_string())),
            Ok(provider) => provider
                .check()
                .await
                .map_err(|e| ("ValidationFailed", e.to_string())),
        },
    };
    let namespace = identity.namespace.clone().unwrap_or_default();
    ctx.metrics.set_store_ready(
        identity.kind_name(),
        &namespace,
        &identity.name,
        result.is_ok(),
    );
    match result {
        Ok(()) => (true, "Valid", "store validated: credentials work".into()),
        Err((reason, message)) => {
            tracing::warn!(store = %identity, reason, %message, "store not ready");
            (false, reason, message)
        }
    }
}

async fn write_status<K>(
    api: &Api<K>,
    store: &K,
    current: Option<&SecretStoreStatus>,
    (ready, reason, message): (bool, &'static str, String),
) -> Result<Action, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let value = if ready { "True" } else { "False" };
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let unchanged = previous.is_some_and(|p| {
        p.status == value
            && p.reason.as_deref() == Some(reason)
            && p.message.as_deref() == Some(&message)
    });
    if !unchanged {
        let condition = Condition {
            type_: "Ready".into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
        };
        let status = SecretStoreStatus {
            conditions: vec![condition],
        };
        api.patch_status(
            &store.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(Error::Kube)?;
    }
    Ok(Action::requeue(super::external_secret::jittered(RECHECK)))
}
