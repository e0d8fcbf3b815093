//! Bitnami's SealedSecrets (`bitnami.com/v1alpha1`, `--bitnami-compat`),
//! decrypted with the keys exported from Bitnami's controller and written as
//! Bitnami writes them: the same Secret, the same ownership rules (its
//! `managed` and `patch` annotations), the same `Synced` condition.
//!
//! Decrypting costs an RSA private-key operation per value, so it is done
//! once per change: what was unsealed is remembered by uid, generation and
//! scope, and a reconcile that finds those unchanged and the Secret present
//! only checks that the Secret is there. What a reconcile writes is what
//! Bitnami's controller would write, so during a switch, with both running,
//! each finds the Secret as it wants it and neither writes again (README:
//! "Moving from Sealed Secrets").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::objects::{SECRETSYNC, WatchedBitnamiSealedSecret};
use super::{Context, Error, FIELD_MANAGER};
use crate::api::{
    BITNAMI_KEY_LABEL, BITNAMI_MANAGED, BITNAMI_PATCH, BitnamiCondition, BitnamiScope,
    BitnamiSealedSecret, BitnamiSealedSecretStatus,
};
use crate::sealed::bitnami::{self, KeyRing};

/// Bitnami's event reasons.
const UNSEALED: &str = "Unsealed";
const UNSEAL_FAILED: &str = "ErrUnsealFailed";
const UPDATE_FAILED: &str = "ErrUpdateFailed";

/// How long a reconcile waits for the keys' first list before it goes on
/// without them (and says so in the status).
const KEYS_WAIT: Duration = Duration::from_secs(30);

/// What the Bitnami reconciles share: the keys, and what was unsealed.
pub struct BitnamiState {
    /// Where the keys are read: Secrets labelled
    /// `sealedsecrets.bitnami.com/sealed-secrets-key=active` in this namespace.
    pub keys_namespace: String,
    ring: RwLock<Arc<KeyRing>>,
    /// Keys whose Secret did not parse: name -> why (no key material).
    unreadable: RwLock<Vec<String>>,
    /// True once the keys' first list is in (or a reconcile gave up waiting).
    loaded: tokio::sync::watch::Sender<bool>,
    /// A reconcile went on without the keys: their first list must wake all.
    gave_up: std::sync::atomic::AtomicBool,
    /// Per SealedSecret (`namespace/name`): what its Secret was last made from.
    unsealed: Mutex<HashMap<String, Unsealed>>,
}

/// What a Secret was made from: while these stay the same, so does the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unsealed {
    uid: String,
    generation: Option<i64>,
    scope: BitnamiScope,
}

impl BitnamiState {
    pub fn new(keys_namespace: String) -> BitnamiState {
        BitnamiState {
            keys_namespace,
            ring: RwLock::new(Arc::new(KeyRing::new(Vec::new()))),
            unreadable: RwLock::default(),
            loaded: tokio::sync::watch::Sender::new(false),
            gave_up: std::sync::atomic::AtomicBool::new(false),
            unsealed: Mutex::default(),
        }
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the keys with those of `secrets` (the labelled Secrets of
    /// the keys namespace), newest first: a renewal adds a key, and values
    /// are mostly sealed to the newest. Parsing is CPU work: on a blocking thread.
    pub async fn load_keys(&self, mut secrets: Vec<Arc<Secret>>) {
        secrets.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let namespace = self.keys_namespace.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut unreadable = Vec::new();
            for secret in &secrets {
                let source = format!("Secret {namespace}/{}", secret.name_any());
                match bitnami::key_from_secret(secret, &source) {
                    Ok(key) => keys.push(key),
                    Err(e) => unreadable.push(e.to_string()),
                }
            }
            (keys, unreadable)
        })
        .await;
        let Ok((keys, unreadable)) = parsed else {
            return;
        };
        for problem in &unreadable {
            tracing::warn!(%problem, "a Bitnami sealing key does not parse; it is left out");
        }
        tracing::info!(
            keys = keys.len(),
            namespace = %self.keys_namespace,
            "Bitnami sealing keys loaded"
        );
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(KeyRing::new(keys));
        *self.unreadable.write().unwrap_or_else(|e| e.into_inner()) = unreadable;
        self.loaded.send_replace(true);
    }

    /// Waits for the keys' first list; if it does not come (the keys'
    /// namespace cannot be read), goes on without, and so do all after.
    async fn wait_for_keys(&self) {
        let mut loaded = self.loaded.subscribe();
        if tokio::time::timeout(KEYS_WAIT, loaded.wait_for(|l| *l))
            .await
            .is_err()
        {
            tracing::warn!(namespace = %self.keys_namespace, "the Bitnami keys could not be listed yet: going on without them");
            self.gave_up
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.loaded.send_replace(true);
        }
    }

    /// Whether a reconcile went on without the keys (and clears it).
    pub fn gave_up_waiting(&self) -> bool {
        self.gave_up
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    fn already(&self, key: &str, wanted: &Unsealed) -> bool {
        self.unsealed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|u| u == wanted)
    }

    fn remember(&self, key: String, unsealed: Option<Unsealed>) {
        let mut memo = self.unsealed.lock().unwrap_or_else(|e| e.into_inner());
        match unsealed {
            Some(unsealed) => memo.insert(key, unsealed),
            None => memo.remove(&key),
        };
    }

    /// The SealedSecret is gone.
    pub fn forget(&self, key: &str) {
        self.remember(key.to_string(), None);
    }

    /// Why no key is there to try, in words, when none is.
    fn no_keys(&self) -> Option<String> {
        if !self.ring().is_empty() {
            return None;
        }
        let unreadable = self.unreadable.read().unwrap_or_else(|e| e.into_inner());
        let mut message = format!(
            "no Bitnami sealing keys: no Secret labelled {BITNAMI_KEY_LABEL}=active in namespace {} (see `secretsync keys import-bitnami`)",
            self.keys_namespace
        );
        if !unreadable.is_empty() {
            message.push_str(&format!("; unreadable: {}", unreadable.join("; ")));
        }
        Some(message)
    }
}

/// What a reconcile is due for: the generation (spec edits, not status
/// writes), labels and annotations (the scope is one; and as with Bitnami's
/// controller, annotating a SealedSecret asks for another try).
pub fn wakes(object: &WatchedBitnamiSealedSecret) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.metadata.generation.hash(&mut hasher);
    object.labels_and_annotations().hash(&mut hasher);
    Some(hasher.finish())
}

/// The Bitnami SealedSecret a deleted Secret belonged to (the same name),
/// when one controlled it or it was annotated `managed`.
pub fn owner_of_deleted(
    secret: &kube::core::PartialObjectMeta<Secret>,
) -> Option<ObjectRef<WatchedBitnamiSealedSecret>> {
    let name = secret.metadata.name.as_deref()?;
    let namespace = secret.metadata.namespace.as_deref()?;
    let controlled = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| controls(o, name));
    let managed = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BITNAMI_MANAGED))
        .is_some_and(|v| v == "true");
    (controlled || managed).then(|| ObjectRef::new_with(name, SECRETSYNC).within(namespace))
}

/// Whether `owner` is Bitnami's SealedSecret `name` as the Secret's controller.
pub fn controls(owner: &OwnerReference, name: &str) -> bool {
    owner.controller == Some(true)
        && owner.kind == "SealedSecret"
        && owner
            .api_version
            .starts_with(&format!("{}/", crate::api::BITNAMI_GROUP))
        && owner.name == name
}

/// The label selector of the keys' Secrets.
pub fn keys_selector() -> String {
    format!("{BITNAMI_KEY_LABEL}=active")
}

/// Wakes every Bitnami SealedSecret in `caches` (the keys changed).
pub fn wake_all(
    caches: &[Store<WatchedBitnamiSealedSecret>],
    wake: &tokio::sync::mpsc::UnboundedSender<ObjectRef<WatchedBitnamiSealedSecret>>,
) {
    for cache in caches {
        for object in cache.state() {
            let _ = wake.send(ObjectRef::from_obj_with(object.as_ref(), SECRETSYNC));
        }
    }
}

pub async fn reconcile(
    object: Arc<WatchedBitnamiSealedSecret>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let Some(state) = ctx.bitnami.clone() else {
        return Ok(Action::await_change());
    };
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let key = format!("{namespace}/{name}");
    ctx.metrics.bitnami_unseal_requested();
    let sealed = match object.typed() {
        Ok(sealed) => sealed,
        Err(message) => {
            let message = format!("invalid SealedSecret: {message}");
            tracing::warn!(sealed_secret = %key, %message, "invalid Bitnami SealedSecret");
            state.remember(key, None);
            let regarding = object.object_ref(&object.flavor);
            ctx.publish(
                &regarding,
                EventType::Warning,
                "Unseal",
                UNSEAL_FAILED,
                &format!("Failed to unseal: {message}"),
            )
            .await;
            ctx.metrics.bitnami_unseal_failed("unseal", &namespace);
            let typed = BitnamiSealedSecret {
                metadata: object.full_metadata(),
                spec: Default::default(),
                status: object.status(),
            };
            write_status(&typed, &ctx, Err((UNSEAL_FAILED, &message))).await?;
            return Ok(Action::await_change());
        }
    };
    let wanted = Unsealed {
        uid: sealed.uid().unwrap_or_default(),
        generation: sealed.metadata.generation,
        scope: BitnamiScope::of(sealed.metadata.annotations.as_ref()),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let present = || async {
        secrets
            .get_metadata_opt(&name)
            .await
            .map(|s| s.is_some())
            .map_err(Error::Kube)
    };
    if state.already(&key, &wanted) && present().await? {
        write_status(&sealed, &ctx, Ok(())).await?;
        return Ok(Action::await_change());
    }

    state.wait_for_keys().await;
    let failure = match state.no_keys() {
        Some(message) => Some(("unseal", message)),
        None => {
            let ring = state.ring();
            let limits = ctx.template_limits;
            let input = sealed.clone();
            ctx.metrics.bitnami_unsealed();
            let unsealed = ctx
                .render_pool
                .run(move || bitnami::unseal(&input, &ring, &limits))
                .await
                .map_err(|_| Error::Panicked)?;
            match unsealed {
                Err(e) => Some(("unseal", e.to_string())),
                Ok(secret) => match write(&secrets, &sealed, secret).await {
                    Ok(()) => None,
                    Err(WriteError::Refused(message)) => Some(("unmanaged", message)),
                    Err(WriteError::Kube(e)) => {
                        let message = update_message(&key, &e);
                        publish(&ctx, &sealed, EventType::Warning, UPDATE_FAILED, &message).await;
                        ctx.metrics.bitnami_unseal_failed("update", &namespace);
                        write_status(&sealed, &ctx, Err((UPDATE_FAILED, &message))).await?;
                        return Err(Error::Kube(e));
                    }
                },
            }
        }
    };
    match failure {
        None => {
            ctx.reset_backoff(&key);
            state.remember(key, Some(wanted));
            publish(
                &ctx,
                &sealed,
                EventType::Normal,
                UNSEALED,
                "SealedSecret unsealed successfully",
            )
            .await;
            write_status(&sealed, &ctx, Ok(())).await?;
        }
        Some((reason, message)) => {
            tracing::warn!(sealed_secret = %key, %message, "unsealing failed");
            state.remember(key, None);
            let (event, note) = match reason {
                "unmanaged" => (UPDATE_FAILED, message.clone()),
                _ => (UNSEAL_FAILED, format!("Failed to unseal: {message}")),
            };
            publish(&ctx, &sealed, EventType::Warning, event, &note).await;
            ctx.metrics.bitnami_unseal_failed(reason, &namespace);
            write_status(&sealed, &ctx, Err((event, &message))).await?;
        }
    }
    // Nothing changes what a failed unseal finds until the SealedSecret or
    // the keys change, and both wake it.
    Ok(Action::await_change())
}

enum WriteError {
    /// The Secret exists and is not this SealedSecret's to write.
    Refused(String),
    Kube(kube::Error),
}

impl From<kube::Error> for WriteError {
    fn from(e: kube::Error) -> Self {
        WriteError::Kube(e)
    }
}

/// Creates the Secret, or updates the existing one as Bitnami does.
async fn write(
    secrets: &Api<Secret>,
    sealed: &BitnamiSealedSecret,
    wanted: Secret,
) -> Result<(), WriteError> {
    let name = sealed.name_any();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let Some(live) = secrets.get_opt(&name).await? else {
        secrets.create(&params, &wanted).await?;
        return Ok(());
    };
    match updated(&live, &wanted, &sealed.uid().unwrap_or_default()) {
        Err(message) => Err(WriteError::Refused(message)),
        Ok(None) => Ok(()),
        Ok(Some(secret)) => {
            secrets.replace(&name, &params, &secret).await?;
            Ok(())
        }
    }
}

/// Bitnami's update rule: the live Secret as it should be, `None` when it
/// already is, or why it may not be touched. A Secret this SealedSecret
/// controls, or one annotated `managed`, takes the unsealed data, labels,
/// annotations and owner references whole; one annotated `patch` takes the
/// unsealed keys, labels and annotations on top of its own (and the owner
/// references too when also `managed`). The type follows the template.
pub fn updated(live: &Secret, wanted: &Secret, uid: &str) -> Result<Option<Secret>, String> {
    let flag = |name: &str| {
        live.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(name))
            .map(String::as_str)
            == Some("true")
    };
    let controlled = live
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid);
    let (managed, patch) = (flag(BITNAMI_MANAGED), flag(BITNAMI_PATCH));
    if !controlled && !managed && !patch {
        return Err(format!(
            "Resource {:?} already exists and is not managed by SealedSecret",
            live.name_any()
        ));
    }
    let mut secret = live.clone();
    if patch {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        data.extend(wanted.data.clone().unwrap_or_default());
        let labels = secret.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(wanted.metadata.labels.clone().unwrap_or_default());
        let annotations = secret
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        annotations.extend(wanted.metadata.annotations.clone().unwrap_or_default());
        if managed {
            secret.metadata.owner_references = wanted.metadata.owner_references.clone();
        }
    } else {
        secret.data = wanted.data.clone();
        secret.metadata.labels = wanted.metadata.labels.clone();
        secret.metadata.annotations = wanted.metadata.annotations.clone();
        secret.metadata.owner_references = wanted.metadata.owner_references.clone();
    }
    // An empty type is what the API server makes Opaque.
    secret.type_ = Some(
        wanted
            .type_
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Opaque".into()),
    );
    let same = |a: &Secret, b: &Secret| {
        empty_is_none(&a.data) == empty_is_none(&b.data)
            && empty_is_none(&a.metadata.labels) == empty_is_none(&b.metadata.labels)
            && empty_is_none(&a.metadata.annotations) == empty_is_none(&b.metadata.annotations)
            && owners(a) == owners(b)
            && a.type_.as_deref().unwrap_or("Opaque") == b.type_.as_deref().unwrap_or("Opaque")
    };
    Ok((!same(live, &secret)).then_some(secret))
}

/// Nil and empty maps are the same to Bitnami's comparison.
fn empty_is_none<V>(map: &Option<BTreeMap<String, V>>) -> Option<&BTreeMap<String, V>> {
    map.as_ref().filter(|m| !m.is_empty())
}

fn owners(secret: &Secret) -> &[OwnerReference] {
    secret.metadata.owner_references.as_deref().unwrap_or(&[])
}

/// Bitnami's words for an update that failed (an immutable Secret has its own).
fn update_message(key: &str, error: &kube::Error) -> String {
    let text = error.to_string();
    if text.contains("field is immutable when `immutable` is set") {
        format!(
            "Error updating {key}: the target Secret is immutable. Once a Secret is marked as immutable, it is not possible to revert this change nor to mutate the contents of the data field. You can only delete and recreate the Secret."
        )
    } else {
        text
    }
}

/// Bitnami's status: one `Synced` condition (message empty when true), and
/// the generation seen; written when either changes.
async fn write_status(
    sealed: &BitnamiSealedSecret,
    ctx: &Context,
    outcome: Result<(), (&str, &str)>,
) -> Result<(), Error> {
    let (value, reason, message) = match outcome {
        Ok(()) => ("True", UNSEALED, None),
        Err((reason, message)) => ("False", reason, Some(message.to_string())),
    };
    let current = sealed.status.clone().unwrap_or_default();
    let previous = current.conditions.iter().find(|c| c.type_ == "Synced");
    ctx.metrics.bitnami_condition(sealed, value == "True");
    let same = previous.is_some_and(|p| {
        p.status == value && p.message == message && p.reason.as_deref() == Some(reason)
    });
    if same && current.observed_generation == sealed.metadata.generation {
        return Ok(());
    }
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let transition = match previous {
        Some(p) if p.status == value => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    let mut conditions: Vec<BitnamiCondition> = current
        .conditions
        .iter()
        .filter(|c| c.type_ != "Synced")
        .cloned()
        .collect();
    conditions.insert(
        0,
        BitnamiCondition {
            type_: "Synced".into(),
            status: value.into(),
            last_update_time: Some(now),
            last_transition_time: transition,
            reason: Some(reason.into()),
            message,
        },
    );
    let status = BitnamiSealedSecretStatus {
        observed_generation: sealed.metadata.generation,
        conditions,
    };
    Api::<BitnamiSealedSecret>::namespaced(
        ctx.client.clone(),
        &sealed.namespace().unwrap_or_default(),
    )
    .patch_status(
        &sealed.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    sealed: &BitnamiSealedSecret,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    ctx.publish(&sealed.object_ref(&()), type_, "Unseal", reason, note)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(data: &[(&str, &str)], annotations: &[(&str, &str)], owner: Option<&str>) -> Secret {
        let mut secret = Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        secret.metadata.name = Some("db".into());
        secret.metadata.annotations = (!annotations.is_empty()).then(|| {
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        secret.metadata.owner_references = owner.map(|uid| {
            vec![OwnerReference {
                api_version: "bitnami.com/v1alpha1".into(),
                kind: "SealedSecret".into(),
                name: "db".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]
        });
        secret
    }

    #[test]
    fn a_controlled_secret_in_step_is_left_alone_and_one_out_of_step_is_replaced() {
        let wanted = secret(&[("password", "new")], &[], Some("u1"));
        assert_eq!(updated(&wanted, &wanted, "u1"), Ok(None));
        let live = secret(&[("password", "old"), ("extra", "x")], &[], Some("u1"));
        let next = updated(&live, &wanted, "u1").unwrap().unwrap();
        assert_eq!(next.data, wanted.data);
        assert_eq!(next.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn someone_elses_secret_is_refused_unless_annotated_managed_or_patch() {
        let wanted = secret(&[("password", "new")], &[], Some("u1"));
        let foreign = secret(&[("password", "old")], &[], None);
        let refused = updated(&foreign, &wanted, "u1").unwrap_err();
        assert_eq!(
            refused,
            "Resource \"db\" already exists and is not managed by SealedSecret"
        );
        // Owned by another SealedSecret (another uid): refused too.
        assert!(updated(&secret(&[], &[], Some("u2")), &wanted, "u1").is_err());

        let managed = secret(&[("password", "old")], &[(BITNAMI_MANAGED, "true")], None);
        let adopted = updated(&managed, &wanted, "u1").unwrap().unwrap();
        assert_eq!(
            adopted.metadata.owner_references,
            wanted.metadata.owner_references
        );
        assert_eq!(adopted.data, wanted.data);
        // Annotations are replaced whole: the adopted Secret is now controlled.
        assert_eq!(adopted.metadata.annotations, None);
    }

    #[test]
    fn a_patched_secret_keeps_its_own_keys_and_owners() {
        let wanted = secret(&[("password", "new")], &[("team", "a")], Some("u1"));
        let live = secret(
            &[("password", "old"), ("extra", "x")],
            &[(BITNAMI_PATCH, "true")],
            None,
        );
        let next = updated(&live, &wanted, "u1").unwrap().unwrap();
        let data = next.data.unwrap();
        assert_eq!(data["password"].0, b"new");
        assert_eq!(data["extra"].0, b"x");
        let annotations = next.metadata.annotations.unwrap();
        assert_eq!(annotations[BITNAMI_PATCH], "true");
        assert_eq!(annotations["team"], "a");
        assert_eq!(next.metadata.owner_references, None);
    }
}
