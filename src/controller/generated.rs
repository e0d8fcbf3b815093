//! What generators made for each ExternalSecret, kept between its refreshes.
//!
//! A generated value changes only when its ExternalSecret refreshes (ESO's
//! semantics): a reconcile that only repairs the Secret, or takes along store
//! answers another ExternalSecret's refresh brought in, writes the values
//! kept here. After a restart nothing is kept, and the Secret is the memory:
//! an ExternalSecret not due is left as its Secret shows it, and values are
//! made again only on its next refresh (or at once for values that expire,
//! whose expiry this process no longer knows).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use tokio::time::Instant;

use super::Context;
use super::external_secret::{Failure, MAX_REQUEUE, Next};
use super::objects::{self, Flavor};
use super::refresh::SpecHash;
use crate::api::{ESO_GENERATOR_GROUP, ExternalSecret, GENERATOR_GROUP};
use crate::sync::GeneratedData;

/// What one ExternalSecret's generators made, for the spec they made it for.
#[derive(Clone, Debug)]
pub(super) struct Remembered {
    pub spec: SpecHash,
    /// `None`: made before this process started; its Secret holds them.
    pub values: Option<Arc<GeneratedData>>,
    /// The refresh (the refresher's time) they were made in.
    pub refreshed_at: Option<Instant>,
    /// When a value that expires is made again (see
    /// [`renew_at`](crate::generator::renew_at)).
    pub renew_at: Option<Instant>,
}

/// Per ExternalSecret key, what its generators made.
#[derive(Default)]
pub(super) struct GeneratedMemory {
    entries: Mutex<HashMap<String, Remembered>>,
}

impl GeneratedMemory {
    /// What was made for `key` with this very spec (a changed spec is a
    /// refresh, which makes values anew).
    pub fn get(&self, key: &str, spec: SpecHash) -> Option<Remembered> {
        self.lock().get(key).filter(|r| r.spec == spec).cloned()
    }

    pub fn remember(&self, key: &str, remembered: Remembered) {
        self.lock().insert(key.to_string(), remembered);
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The generator group an unset `generatorRef.apiVersion` means: the one
/// that goes with the ExternalSecret's own group.
fn default_group(flavor: Flavor) -> &'static str {
    if flavor == objects::ESO {
        ESO_GENERATOR_GROUP
    } else {
        GENERATOR_GROUP
    }
}

fn failure(index: usize, error: impl std::fmt::Display) -> Failure {
    Failure::new(
        "SecretSyncedError",
        format!("spec.dataFrom[{index}].sourceRef.generatorRef: {error}"),
    )
}

/// Runs every generator of `es`, by `dataFrom` index, and says when the
/// first value that expires is to be made again.
pub(super) async fn generate_all(
    es: &ExternalSecret,
    ctx: &Context,
    flavor: Flavor,
) -> Result<(GeneratedData, Option<Instant>), Failure> {
    let namespace = es.namespace().unwrap_or_default();
    let mut data = GeneratedData::new();
    let mut renew: Option<Instant> = None;
    for (i, item) in es.spec.data_from.iter().enumerate() {
        let Some(reference) = item.generator_ref() else {
            continue;
        };
        let made_at = jiff::Timestamp::now();
        let generated = crate::generator::generate(
            &ctx.client,
            &ctx.providers,
            &namespace,
            reference,
            default_group(flavor),
        )
        .await
        .map_err(|e| failure(i, e))?;
        if let Some(expires_at) = generated.expires_at {
            let at = crate::generator::renew_at(made_at, expires_at);
            let wait =
                Duration::try_from(at.duration_since(jiff::Timestamp::now())).unwrap_or_default();
            let at = Instant::now() + wait.min(MAX_REQUEUE);
            renew = Some(renew.map_or(at, |r| r.min(at)));
        }
        tracing::debug!(external_secret = %es.name_any(), namespace = %namespace, entry = i, keys = generated.values.len(), "generated");
        data.insert(i, generated.values);
    }
    Ok((data, renew))
}

/// Whether any generator of `es` makes values that expire. A generator that
/// cannot be read counts as one: the refresh that follows says what is wrong.
pub(super) async fn any_expires(es: &ExternalSecret, ctx: &Context, flavor: Flavor) -> bool {
    let namespace = es.namespace().unwrap_or_default();
    for item in &es.spec.data_from {
        let Some(reference) = item.generator_ref() else {
            continue;
        };
        let resolved =
            crate::generator::resolve(&ctx.client, &namespace, reference, default_group(flavor))
                .await;
        if resolved.is_err() || resolved.is_ok_and(|r| r.generator.expires()) {
            return true;
        }
    }
    false
}

/// When to come back: as the refresh interval says, and before a generated
/// value expires.
pub(super) fn with_renewal(
    action: Next,
    interval: Option<Duration>,
    refreshed: Option<Instant>,
    renew_at: Option<Instant>,
) -> Next {
    let Some(renew_at) = renew_at else {
        return action;
    };
    let wait = renew_at
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1))
        .min(MAX_REQUEUE);
    match (interval, refreshed) {
        // The refresh interval's own requeue, when sooner.
        (Some(interval), None) => Next::After(wait.min(interval)),
        _ => Next::After(wait),
    }
}
