//! SecretStore and ClusterSecretStore: validated, their credentials checked
//! with one cheap call when the store is new or changed, and a Ready condition
//! saying how that went. A store that is not ready is checked again on a
//! backoff; a ready one every hour, for free when its refreshes have shown its
//! credentials working meanwhile (a fleet of stores costs no calls of its own).
//! A store whose credentials may not list says so in a second condition,
//! `ChangeDetection`: its refreshes then fetch every value (a refresh that
//! finds the listing denied wakes the store's reconcile, so this shows at
//! once, not at the next hourly check; throttling never pauses listing);
//! one that may not call BatchGetSecretValue in a third, `BatchReads`: it
//! reads each secret with its own call. Both show in `secretsync_store_fallback` too. With
//! `--change-events-queue`, an AWS store of a queue's region shows a fourth,
//! `ChangeEvents`: whether its changes arrive, or why they cannot.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::Action;
use serde_json::json;

use super::change_events::Subscription;
use super::objects::{Flavor, WatchedClusterSecretStore, WatchedSecretStore};
use super::{Context, Error};
use crate::api::{Condition, SecretStoreStatus, StoreKind, StoreProvider};
use crate::provider::StoreIdentity;

/// How often a ready store's credentials are checked again.
pub const RECHECK: Duration = Duration::from_secs(3600);

pub fn identity_of_namespaced(flavor: Flavor, store: &WatchedSecretStore) -> StoreIdentity {
    StoreIdentity {
        kind: StoreKind::SecretStore,
        namespace: Some(store.namespace().unwrap_or_default()),
        name: flavor.store_name(&store.name_any()),
        tenant: None,
    }
}

pub fn identity_of_cluster(flavor: Flavor, store: &WatchedClusterSecretStore) -> StoreIdentity {
    StoreIdentity {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: flavor.store_name(&store.name_any()),
        tenant: None,
    }
}

pub async fn reconcile_namespaced(
    store: Arc<WatchedSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let flavor = store.flavor;
    let namespace = store.namespace().unwrap_or_default();
    let identity = identity_of_namespaced(flavor, &store);
    let spec = store.spec().and_then(|spec| {
        spec.validate(Some(&namespace))
            .map(|()| {
                spec.provider_to_build()
                    .serving(&namespace, &store.name_any(), "SecretStore")
            })
            .map_err(|e| e.to_string())
    });
    let outcome = check(&identity, &store.name_any(), spec, &ctx).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &flavor.secret_stores());
    let key = format!("store:{identity}");
    write_status(
        &api,
        &store.name_any(),
        store.status().as_ref(),
        outcome,
        &ctx,
        &key,
    )
    .await
}

pub async fn reconcile_cluster(
    store: Arc<WatchedClusterSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let flavor = store.flavor;
    let identity = identity_of_cluster(flavor, &store);
    // As ESO checks a ClusterSecretStore: serving no namespace.
    let spec = store.spec().and_then(|spec| {
        spec.validate()
            .map(|()| {
                spec.provider_to_build()
                    .serving("", &store.name_any(), "ClusterSecretStore")
            })
            .map_err(|e| e.to_string())
    });
    let outcome = check(&identity, &store.name_any(), spec, &ctx).await;
    let resource: ApiResource = flavor.cluster_secret_stores();
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &resource);
    let key = format!("store:{identity}");
    write_status(
        &api,
        &store.name_any(),
        store.status().as_ref(),
        outcome,
        &ctx,
        &key,
    )
    .await
}

/// How a store's check went: Ready, change detection if it is off, and
/// batch reads if the identity may not make them.
struct Checked {
    ready: Result<(), (&'static str, String)>,
    change_detection: Option<String>,
    batch_refused: Option<String>,
    /// `--change-events-queue`: what the queues of its region do.
    change_events: Option<Subscription>,
}

/// `name` is the store object's own (the identity's may carry its group).
async fn check(
    identity: &StoreIdentity,
    name: &str,
    spec: Result<StoreProvider, String>,
    ctx: &Context,
) -> Checked {
    let mut change_detection = None;
    let mut batch_refused = None;
    let change_events = match (&spec, &ctx.change_events) {
        (Ok(spec), Some(events)) => spec
            .aws
            .as_ref()
            .and_then(|aws| events.for_region(&aws.region)),
        _ => None,
    };
    let ready = match spec {
        Err(message) => Err(("InvalidProviderConfig", message)),
        Ok(spec) => match ctx.providers.for_store(identity, &spec).await {
            Err(e) => Err(("InvalidProviderConfig", e.to_string())),
            Ok(provider) => {
                let checked = if provider.answered_within(RECHECK) {
                    Ok(())
                } else {
                    provider
                        .check()
                        .await
                        .map_err(|e| ("ValidationFailed", e.to_string()))
                };
                // What the check (or the refreshes) found the identity may not do.
                change_detection = provider.change_detection_problem();
                batch_refused = provider.batch_refused();
                checked
            }
        },
    };
    let namespace = identity.namespace.clone().unwrap_or_default();
    ctx.metrics.set_store_ready(
        identity.kind_name(),
        &namespace,
        &identity.name,
        name,
        ready.is_ok(),
    );
    ctx.metrics.set_store_fallbacks(
        identity.kind_name(),
        &namespace,
        &identity.name,
        &[
            (BATCH_DENIED, batch_refused.is_some()),
            (CANNOT_LIST, change_detection.is_some()),
        ],
    );
    if let Err((reason, message)) = &ready {
        tracing::warn!(store = %identity, reason, %message, "store not ready");
    }
    Checked {
        ready,
        change_detection,
        batch_refused,
        change_events,
    }
}

/// Reasons of the store's fallback conditions (and metric labels).
const BATCH_DENIED: &str = "BatchDenied";
const CANNOT_LIST: &str = "CannotList";

fn condition(
    current: Option<&SecretStoreStatus>,
    type_: &str,
    value: &str,
    reason: &str,
    message: String,
) -> Condition {
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    Condition::following(previous, type_, value, reason, Some(message))
}

async fn write_status(
    api: &Api<DynamicObject>,
    name: &str,
    current: Option<&SecretStoreStatus>,
    checked: Checked,
    ctx: &Context,
    key: &str,
) -> Result<Action, Error> {
    let next = match &checked.ready {
        Ok(()) => {
            ctx.reset_backoff(key);
            spread(RECHECK)
        }
        Err(_) => ctx.next_backoff(key).min(NOT_READY_RECHECK),
    };
    let mut conditions = vec![match checked.ready {
        Ok(()) => condition(
            current,
            "Ready",
            "True",
            "Valid",
            "store validated: credentials work".into(),
        ),
        Err((reason, message)) => condition(current, "Ready", "False", reason, message),
    }];
    if let Some(problem) = checked.change_detection {
        conditions.push(condition(
            current,
            "ChangeDetection",
            "False",
            CANNOT_LIST,
            problem,
        ));
    }
    if let Some(problem) = checked.batch_refused {
        conditions.push(condition(
            current,
            "BatchReads",
            "False",
            BATCH_DENIED,
            problem,
        ));
    }
    match checked.change_events {
        Some(Subscription::Receiving(how)) => {
            conditions.push(condition(current, "ChangeEvents", "True", "Receiving", how))
        }
        Some(Subscription::Unreadable(why)) => conditions.push(condition(
            current,
            "ChangeEvents",
            "False",
            "QueueUnreadable",
            why,
        )),
        None => {}
    }
    let same = |a: &Condition, b: &Condition| {
        a.type_ == b.type_ && a.status == b.status && a.reason == b.reason && a.message == b.message
    };
    let unchanged = current.is_some_and(|status| {
        status.conditions.len() == conditions.len()
            && status
                .conditions
                .iter()
                .zip(&conditions)
                .all(|(a, b)| same(a, b))
    });
    if !unchanged {
        let status = SecretStoreStatus { conditions };
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(Error::Kube)?;
    }
    Ok(Action::requeue(next))
}

/// A store that is not ready is checked again at most this long after.
pub const NOT_READY_RECHECK: Duration = Duration::from_secs(300);

/// `period`, spread by up to a tenth either way, so stores do not recheck in step.
fn spread(period: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let tenth = period / 10;
    let offset = Duration::from_millis(random % (tenth.as_millis().max(1) as u64 * 2));
    period - tenth + offset
}
