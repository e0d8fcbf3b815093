//! Events (events.k8s.io/v1). A repeat of an event about the same object
//! (same type, reason, action and note) within [`SERIES_WINDOW`] of the last
//! one updates that Event's series (`series.count`, `lastObservedTime`)
//! instead of creating another, as kube-runtime's `Recorder` and client-go
//! do; an event with another note starts a new Event (kube's `Recorder` would
//! count it on the first note, so the Event would show a stale message).
//!
//! What is remembered is one small entry per object and kind of event seen
//! within the window, dropped as it ages: memory follows the objects that
//! had events lately, not a count of events, so a fleet of 1,000 failing at
//! once, then again, counts every repeat on its own Event. (Before, a
//! recorder forgot everything every 256 events, so such a fleet made a new
//! Event for every repeat.)

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};
use serde_json::json;

/// How long after the last occurrence a repeat still counts on the same
/// Event (kube-runtime's and client-go's six minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How often entries older than the window are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub struct Events {
    client: kube::Client,
    reporter: Reporter,
    memory: Mutex<Memory>,
}

impl Events {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            memory: Mutex::new(Memory::new(Instant::now())),
        }
    }

    /// Publishes an event about `regarding`; failing to publish is only logged.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        action: &str,
        reason: &str,
        note: &str,
    ) {
        let key = event_key(regarding, type_, action, reason);
        let note_hash = hash_of(note);
        let now = jiff::Timestamp::now();
        let decision = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(key, note_hash, Instant::now(), stamp(now));
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let object = regarding
            .name
            .as_deref()
            .unwrap_or(&self.reporter.controller);
        if let Decision::Repeat { stamp, count } = decision {
            let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
            let name = event_name(object, stamp);
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                // Gone (the API server's own TTL) or never created: a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    let fresh = stamp_after(now, stamp);
                    self.memory
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .restart(key, note_hash, Instant::now(), fresh);
                    self.create(
                        &events, regarding, object, type_, action, reason, note, fresh,
                    )
                    .await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not count an event on its series");
                    return;
                }
            }
        }
        let Decision::New { stamp } = decision else {
            return;
        };
        self.create(
            &events, regarding, object, type_, action, reason, note, stamp,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        events: &Api<K8sEvent>,
        regarding: &ObjectReference,
        object: &str,
        type_: EventType,
        action: &str,
        reason: &str,
        note: &str,
        stamp: u64,
    ) {
        let event = K8sEvent {
            action: Some(action.into()),
            reason: Some(reason.into()),
            event_time: Some(MicroTime(jiff::Timestamp::now())),
            regarding: Some(regarding.clone()),
            note: Some(note.into()),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(event_name(object, stamp)),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        };
        if let Err(e) = self.send_create(events, &event).await {
            tracing::debug!(error = %e, "could not publish an event");
        }
    }

    /// Creates the Event. The answer, the whole Event with its
    /// managedFields, is not decoded: nothing in it is needed, and decoding
    /// it was a third of publishing one.
    async fn send_create(&self, events: &Api<K8sEvent>, event: &K8sEvent) -> kube::Result<()> {
        let url = events.resource_url();
        let body = serde_json::to_vec(event).map_err(kube::Error::SerdeError)?;
        let mut request = kube::core::Request::new(url)
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("create");
        self.client.request_text(request).await.map(drop)
    }
}

/// An Event's name: its object's, and the creation time in nanoseconds
/// (hex), as kube-runtime names them.
fn event_name(object: &str, stamp: u64) -> String {
    format!("{object}.{stamp:x}")
}

fn stamp(at: jiff::Timestamp) -> u64 {
    u64::try_from(at.as_nanosecond()).unwrap_or_default()
}

/// A creation stamp for a new Event that cannot be the name of `old`.
fn stamp_after(at: jiff::Timestamp, old: u64) -> u64 {
    stamp(at).max(old + 1)
}

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// What makes two events repeats of one another, but the note: the object
/// (uid included, so a recreated object starts afresh), type, reason, action.
fn event_key(regarding: &ObjectReference, type_: EventType, action: &str, reason: &str) -> u64 {
    hash_of((
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
        type_,
        action,
        reason,
    ))
}

/// What to do with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Create an Event named with this stamp.
    New { stamp: u64 },
    /// Count it on the Event named with this stamp: its series' new count.
    Repeat { stamp: u64, count: i32 },
}

/// The last event of each key: its note, the stamp its Event is named with,
/// how many it counts, when it last happened (seconds since `epoch`).
#[derive(Clone, Copy)]
struct Recent {
    note: u64,
    stamp: u64,
    count: i32,
    last: u32,
}

/// The events of the last [`SERIES_WINDOW`], one entry per key.
struct Memory {
    epoch: Instant,
    recent: HashMap<u64, Recent>,
    swept: Instant,
}

impl Memory {
    fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            recent: HashMap::new(),
            swept: now,
        }
    }

    fn seconds(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn observe(&mut self, key: u64, note: u64, now: Instant, stamp: u64) -> Decision {
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.sweep(now);
        }
        let at = self.seconds(now);
        let window = SERIES_WINDOW.as_secs() as u32;
        match self.recent.get_mut(&key) {
            Some(recent) if recent.note == note && at.saturating_sub(recent.last) < window => {
                recent.count = recent.count.saturating_add(1);
                recent.last = at;
                Decision::Repeat {
                    stamp: recent.stamp,
                    count: recent.count,
                }
            }
            _ => {
                self.restart(key, note, now, stamp);
                Decision::New { stamp }
            }
        }
    }

    /// A new Event for `key` from now on.
    fn restart(&mut self, key: u64, note: u64, now: Instant, stamp: u64) {
        let last = self.seconds(now);
        self.recent.insert(
            key,
            Recent {
                note,
                stamp,
                count: 1,
                last,
            },
        );
    }

    fn sweep(&mut self, now: Instant) {
        let at = self.seconds(now);
        let window = SERIES_WINDOW.as_secs() as u32;
        self.recent
            .retain(|_, recent| at.saturating_sub(recent.last) < window);
        // A burst's table is given back once it is over.
        if self.recent.capacity() > 64 && self.recent.len() < self.recent.capacity() / 4 {
            self.recent.shrink_to_fit();
        }
        self.swept = now;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(i: usize) -> ObjectReference {
        ObjectReference {
            api_version: Some("secretsync.io/v1".into()),
            kind: Some("ExternalSecret".into()),
            namespace: Some(format!("ns-{}", i % 100)),
            name: Some(format!("es-{i:04}")),
            uid: Some(format!("uid-{i}")),
            ..Default::default()
        }
    }

    fn failed(i: usize) -> u64 {
        event_key(&reference(i), EventType::Warning, "Sync", "UpdateFailed")
    }

    #[test]
    fn a_fleet_failing_again_counts_every_repeat_on_its_own_event() {
        let start = Instant::now();
        let mut memory = Memory::new(start);
        let throttled = hash_of(
            "secretsmanager BatchGetSecretValue failed: ThrottlingException: Rate exceeded",
        );
        let mut stamps = Vec::new();
        for i in 0..1000 {
            match memory.observe(failed(i), throttled, start, 1000 + i as u64) {
                Decision::New { stamp } => stamps.push(stamp),
                other => panic!("{i}: {other:?}"),
            }
        }
        // Each succeeds (a Normal event of another key), then fails again.
        let later = start + Duration::from_secs(90);
        for i in 0..1000 {
            let updated = event_key(&reference(i), EventType::Normal, "Sync", "Updated");
            assert!(matches!(
                memory.observe(updated, hash_of("Secret updated"), later, 5000),
                Decision::New { .. }
            ));
        }
        for round in 2..=3 {
            let at = later + Duration::from_secs(60 * round);
            for (i, stamp) in stamps.iter().enumerate() {
                assert_eq!(
                    memory.observe(failed(i), throttled, at, 9000),
                    Decision::Repeat {
                        stamp: *stamp,
                        count: round as i32
                    },
                    "{i}"
                );
            }
        }
        assert_eq!(memory.len(), 2000, "one entry per object and kind of event");

        // Another message: a new Event, not a count on the old note.
        let other = hash_of("remote key \"db\" not found");
        let at = later + Duration::from_secs(200);
        assert_eq!(
            memory.observe(failed(7), other, at, 7777),
            Decision::New { stamp: 7777 }
        );
        assert_eq!(
            memory.observe(failed(7), other, at, 7778),
            Decision::Repeat {
                stamp: 7777,
                count: 2
            }
        );
    }

    #[test]
    fn entries_age_out_so_memory_follows_recent_objects() {
        let start = Instant::now();
        let mut memory = Memory::new(start);
        let note = hash_of("failed");
        for i in 0..1000 {
            memory.observe(failed(i), note, start, i as u64);
        }
        // Past the window: a repeat starts a new Event, and the sweep drops
        // everyone else.
        let late = start + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(
            memory.observe(failed(0), note, late, 42),
            Decision::New { stamp: 42 }
        );
        assert_eq!(memory.len(), 1);
        // Just inside the window: still a repeat.
        let soon = late + SERIES_WINDOW - Duration::from_secs(2);
        assert!(matches!(
            memory.observe(failed(0), note, soon, 43),
            Decision::Repeat {
                stamp: 42,
                count: 2
            }
        ));
    }

    #[test]
    fn events_are_named_like_kube_runtimes_and_never_reuse_a_gone_name() {
        assert_eq!(event_name("es-1", 255), "es-1.ff");
        let at = jiff::Timestamp::from_second(1).unwrap();
        assert_eq!(stamp(at), 1_000_000_000);
        assert_eq!(stamp_after(at, 5_000_000_000), 5_000_000_001);
        // A recreated object (another uid) does not count on the old one's.
        let mut recreated = reference(1);
        recreated.uid = Some("uid-new".into());
        assert_ne!(
            event_key(&recreated, EventType::Warning, "Sync", "UpdateFailed"),
            failed(1)
        );
    }
}
