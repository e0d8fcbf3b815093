//! What is known and what is due. The tracker keeps a compact record of every
//! Secret, ConfigMap and SecretProviderClass ([`super::objects`]: its name, a
//! digest of its resourceVersion, Reloader's two flags), a digest of the data
//! of the objects opted-in workloads count (for a SecretProviderClass, of the
//! object versions its pods' mounts hold, from `SecretProviderClassPodStatus`), and per
//! opted-in workload what it uses and counts, the hash it remembers, and any
//! change waiting to restart it. It does no I/O: it is told what the watches
//! saw and what reads and patches returned, with the time, and answers with the
//! reads to make and the next patch to send.
//!
//! When a workload is restarted:
//! - a counted object's data changed (its digest differs from the one read
//!   before; an object deleted and created again with other data counts too):
//!   after the debounce window from the first such change (and the
//!   pause-period after the last restart), if the hash differs from the
//!   workload's memory;
//! - the first time this process looks at a workload whose remembered hash
//!   differs: its inputs changed while no controller was watching.
//!
//! When only the hash is recorded (no restart): a workload seen for the first
//! time (a change within the debounce window of that is part of its start),
//! and a workload whose set of counted objects changed without any data
//! changing (an annotation edited, an object created or deleted: Reloader does
//! not restart on creation or deletion either).
//!
//! Never restarted while the pod template needs (not `optional`) a Secret or
//! ConfigMap that does not exist: the new pods could not start.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use kube::runtime::watcher::Event;
use tokio::time::Instant;

use super::hash::{Digest, input_hash};
use super::objects::{Objects, Record, version};
use super::queue::{Lane, Queue};
use super::workload::{WorkloadInfo, WorkloadKey, WorkloadKind};
use super::{ObjKey, ObjKind};

/// What a watch says of a Secret's, ConfigMap's or SecretProviderClass's
/// metadata (the tracker keeps less: a [`Record`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjMeta {
    pub resource_version: String,
    /// `reloader.stakater.com/ignore: "true"`
    pub ignore: bool,
    /// `reloader.stakater.com/match: "true"`
    pub match_: bool,
}

/// What reading one object's data gave.
#[derive(Clone, Debug)]
pub enum ReadResult {
    Present {
        resource_version: String,
        digest: Digest,
    },
    Absent,
    Failed,
}

/// The changes waiting to restart a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    /// When the first of them was seen.
    pub seen: Instant,
    pub changed: BTreeSet<ObjKey>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// These objects' data changed.
    Changed(Vec<ObjKey>),
    /// The hash differs from the remembered one at first look: the inputs
    /// (these objects) changed while no controller was watching.
    WhileAway(Vec<ObjKey>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Restart {
        reason: Reason,
        trigger: Option<Trigger>,
    },
    Record,
}

/// What a watch says of one `SecretProviderClassPodStatus`: the class its
/// pod mounts and a digest of the object versions the mount holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodStatus {
    pub namespace: String,
    pub name: String,
    pub class: String,
    pub versions: Digest,
}

/// The digest a SecretProviderClass counts with before any pod status names it.
const NO_VERSIONS: Digest = [0; 32];

/// One patch to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub key: WorkloadKey,
    pub uid: String,
    /// A Rollout restarted by `spec.restartAt`.
    pub restart_at: bool,
    pub hash: String,
    pub action: Action,
    /// When the rate released it.
    pub at: jiff::Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchOutcome {
    Done,
    /// The workload is gone: the watch will say so.
    Gone,
    Failed,
}

/// After a failed read, the counting workloads look again this much later.
const READ_RETRY: Duration = Duration::from_secs(30);

struct Known {
    /// `None`: the object was deleted; the digest is kept to compare with
    /// whatever comes back under its name.
    resource_version: Option<u64>,
    digest: Digest,
}

/// A read in flight: which change asked for it, and any seen since.
struct Reading {
    /// The version the watch showed, and when that change was seen.
    asked: (u64, Instant),
    /// The newest version the watch showed while the read was out, and when.
    newer: Option<(u64, Instant)>,
}

impl Reading {
    /// When the change a read returned was seen: a read that was out when
    /// the object changed again may return the newer data, which must not
    /// take the older change's place in line (restarts go in the order the
    /// watch showed the changes). A version the watch has not shown yet is
    /// seen now.
    fn seen(&self, returned: u64, stamp: impl FnOnce() -> Instant) -> Instant {
        let (asked, asked_at) = self.asked;
        if returned <= asked {
            return asked_at;
        }
        match self.newer {
            Some((newer, at)) if returned <= newer => at,
            _ => stamp(),
        }
    }
}

struct Tracked {
    info: WorkloadInfo,
    first_seen: Instant,
    /// The objects it counts now (existing ones only).
    selected: BTreeSet<ObjKey>,
    /// Compared with its memory at least once by this process.
    evaluated: bool,
    trigger: Option<Trigger>,
    failures: u32,
    /// The missing object a restart waits for (said once).
    held: Option<ObjKey>,
}

enum Decision {
    Gone,
    /// Data still to be read (these objects), or the watches not synced yet.
    Wait(Vec<ObjKey>),
    Hold(ObjKey),
    Nothing,
    Later(Instant),
    Record(String),
    Restart(String, Reason),
}

pub struct Tracker {
    debounce: Duration,
    anchor: (Instant, jiff::Timestamp),
    objects: Objects,
    synced: BTreeSet<ObjKind>,
    data: HashMap<ObjKey, Known>,
    /// Each pod status: (namespace, name) -> (class, versions).
    pod_statuses: HashMap<(String, String), (String, Digest)>,
    pod_status_relist: Option<HashSet<(String, String)>>,
    /// Per SecretProviderClass, the versions its mounts last moved to.
    class_versions: HashMap<ObjKey, Digest>,
    /// Reads in flight.
    reading: HashMap<ObjKey, Reading>,
    workloads: HashMap<WorkloadKey, Tracked>,
    workload_relists: HashMap<WorkloadKind, HashSet<WorkloadKey>>,
    /// Objects named by a workload (used by its template, or an exact name).
    referenced_by: HashMap<ObjKey, BTreeSet<WorkloadKey>>,
    /// Workloads with a name pattern, by (namespace, kind).
    patterned: HashMap<(String, ObjKind), BTreeSet<WorkloadKey>>,
    /// Objects counted, and by whom.
    selected_by: HashMap<ObjKey, BTreeSet<WorkloadKey>>,
    /// Workloads that were due but waited for data.
    stalled: HashSet<WorkloadKey>,
    queue: Queue<WorkloadKey>,
    patching: Option<WorkloadKey>,
    /// The last time a change was recorded as seen: each gets a later one, so
    /// restarts fall due in the order the watch delivered their changes.
    last_seen: Instant,
}

impl Tracker {
    /// `now` and `wall` are the same moment, on the monotonic and the wall clock.
    pub fn new(debounce: Duration, rate: f64, now: Instant, wall: jiff::Timestamp) -> Self {
        Self {
            debounce,
            anchor: (now, wall),
            objects: Objects::default(),
            synced: BTreeSet::new(),
            data: HashMap::new(),
            pod_statuses: HashMap::new(),
            pod_status_relist: None,
            class_versions: HashMap::new(),
            reading: HashMap::new(),
            workloads: HashMap::new(),
            workload_relists: HashMap::new(),
            referenced_by: HashMap::new(),
            patterned: HashMap::new(),
            selected_by: HashMap::new(),
            stalled: HashSet::new(),
            queue: Queue::new(rate),
            patching: None,
            last_seen: now,
        }
    }

    fn stamp(&mut self, now: Instant) -> Instant {
        self.last_seen = now.max(self.last_seen + Duration::from_nanos(1));
        self.last_seen
    }

    /// `at` on the wall clock.
    pub fn wall(&self, at: Instant) -> jiff::Timestamp {
        let (instant, wall) = self.anchor;
        let offset = at.saturating_duration_since(instant);
        jiff::SignedDuration::try_from(offset)
            .ok()
            .and_then(|offset| wall.checked_add(offset).ok())
            .unwrap_or(wall)
    }

    /// A wall-clock time on the monotonic clock (times before the start
    /// become the start).
    fn instant(&self, at: jiff::Timestamp) -> Instant {
        let (instant, wall) = self.anchor;
        let ahead = at.duration_since(wall);
        match Duration::try_from(ahead) {
            Ok(ahead) => instant.checked_add(ahead).unwrap_or(instant),
            Err(_) => instant,
        }
    }

    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        self.queue.next_wakeup(now, self.patching.is_none())
    }

    /// How many workloads opted in.
    pub fn workloads(&self) -> usize {
        self.workloads.len()
    }

    /// How many objects' metadata is kept, and how many data digests.
    pub fn objects(&self) -> (usize, usize) {
        (self.objects.len(), self.data.len())
    }

    // ---- Secrets and ConfigMaps ------------------------------------------

    /// A watch event about Secrets or ConfigMaps; returns the reads to make.
    pub fn object_event(
        &mut self,
        kind: ObjKind,
        event: Event<(ObjKey, ObjMeta)>,
        now: Instant,
    ) -> Vec<ObjKey> {
        let mut reads = Vec::new();
        match event {
            Event::Init => self.objects.begin_relist(kind),
            Event::InitApply((key, meta)) | Event::Apply((key, meta)) => {
                self.apply_object(key, meta, now, &mut reads)
            }
            Event::Delete((key, _)) => self.delete_object(&key, now, &mut reads),
            Event::InitDone => {
                for key in self.objects.unseen(kind) {
                    self.delete_object(&key, now, &mut reads);
                }
                if self.synced.insert(kind) && self.core_synced() {
                    for key in std::mem::take(&mut self.stalled) {
                        self.queue.schedule(key, now);
                    }
                }
            }
        }
        reads
    }

    fn core_synced(&self) -> bool {
        ObjKind::CORE.iter().all(|kind| self.synced.contains(kind))
    }

    fn apply_object(&mut self, key: ObjKey, meta: ObjMeta, now: Instant, reads: &mut Vec<ObjKey>) {
        let flags = (meta.ignore, meta.match_);
        let record = Record::new(&meta.resource_version, meta.ignore, meta.match_);
        let previous = self.objects.insert(&key, record);
        let created = previous.is_none();
        let flags_changed = previous.is_some_and(|p| (p.ignore, p.match_) != flags);
        if created || flags_changed {
            for workload in self.candidates(&key) {
                self.reselect(&workload, now, reads);
            }
        }
        if created {
            // A needed object is back: a held restart may go.
            for workload in self.referenced_by.get(&key).cloned().unwrap_or_default() {
                self.queue.schedule(workload, now + self.debounce);
            }
        }
        self.read_if_stale(&key, now, reads);
    }

    fn delete_object(&mut self, key: &ObjKey, now: Instant, reads: &mut Vec<ObjKey>) {
        if self.objects.remove(key).is_none() {
            return;
        }
        if let Some(known) = self.data.get_mut(key) {
            known.resource_version = None;
        }
        for workload in self.candidates(key) {
            self.reselect(&workload, now, reads);
        }
        for workload in self.referenced_by.get(key).cloned().unwrap_or_default() {
            self.queue.schedule(workload, now + self.debounce);
        }
        self.forget_data_unless_needed(key);
    }

    /// Workloads whose selection this object may be part of.
    fn candidates(&self, key: &ObjKey) -> BTreeSet<WorkloadKey> {
        let mut found = self.referenced_by.get(key).cloned().unwrap_or_default();
        let patterned = self
            .patterned
            .get(&(key.namespace.clone(), key.kind))
            .into_iter()
            .flatten();
        for workload in patterned {
            let matches = self.workloads.get(workload).is_some_and(|t| {
                t.info
                    .selection
                    .of(key.kind)
                    .named
                    .iter()
                    .any(|p| p.matches(&key.name))
            });
            if matches {
                found.insert(workload.clone());
            }
        }
        found
    }

    /// Reads the object if some workload counts it and what was read is not
    /// its current version. A SecretProviderClass is never read: its pod
    /// statuses say what its mounts hold.
    fn read_if_stale(&mut self, key: &ObjKey, now: Instant, reads: &mut Vec<ObjKey>) {
        if key.kind == ObjKind::SecretProviderClass || !self.selected_by.contains_key(key) {
            return;
        }
        let Some(meta) = self.objects.get(key) else {
            return;
        };
        let version = meta.version;
        if let Some(reading) = self.reading.get(key) {
            let newest = reading.newer.map_or(reading.asked.0, |(v, _)| v);
            if version > newest {
                let seen = self.stamp(now);
                if let Some(reading) = self.reading.get_mut(key) {
                    reading.newer = Some((version, seen));
                }
            }
            return;
        }
        let fresh = self
            .data
            .get(key)
            .is_some_and(|k| k.resource_version == Some(meta.version));
        if !fresh {
            let seen = self.stamp(now);
            self.reading.insert(
                key.clone(),
                Reading {
                    asked: (version, seen),
                    newer: None,
                },
            );
            reads.push(key.clone());
        }
    }

    /// Drops the digest when nobody counts the object, unless it was deleted
    /// while a workload names it (then the digest is what a new object of that
    /// name is compared with).
    fn forget_data_unless_needed(&mut self, key: &ObjKey) {
        let counted = self.selected_by.contains_key(key);
        let tombstone = !self.objects.contains(key) && self.referenced_by.contains_key(key);
        if !counted && !tombstone {
            self.data.remove(key);
        }
    }

    /// What one read gave; returns further reads to make.
    pub fn read_done(&mut self, key: ObjKey, result: ReadResult, now: Instant) -> Vec<ObjKey> {
        let reading = self.reading.remove(&key);
        let mut reads = Vec::new();
        let counters = self.selected_by.get(&key).cloned().unwrap_or_default();
        match result {
            ReadResult::Failed => {
                for workload in counters {
                    self.queue.schedule(workload, now + READ_RETRY);
                }
                return reads;
            }
            ReadResult::Absent => {
                if let Some(known) = self.data.get_mut(&key) {
                    known.resource_version = None;
                }
            }
            ReadResult::Present {
                resource_version,
                digest,
            } => {
                if counters.is_empty() {
                    self.forget_data_unless_needed(&key);
                    return reads;
                }
                let returned = version(&resource_version);
                let known = Known {
                    resource_version: Some(returned),
                    digest,
                };
                match self.data.insert(key.clone(), known) {
                    Some(before) if before.digest != digest => {
                        let seen = match &reading {
                            Some(reading) => reading.seen(returned, || self.stamp(now)),
                            None => self.stamp(now),
                        };
                        self.changed(&key, &counters, seen);
                    }
                    Some(_) => tracing::debug!(object = %key, "reload: data unchanged"),
                    None => {}
                }
            }
        }
        self.read_if_stale(&key, now, &mut reads);
        for workload in counters {
            if self.stalled.remove(&workload) {
                self.queue.schedule(workload, now);
            }
        }
        reads
    }

    /// A counted object's data changed: each workload counting it restarts
    /// after the debounce window (and its pause-period).
    fn changed(&mut self, key: &ObjKey, counters: &BTreeSet<WorkloadKey>, seen: Instant) {
        let names: Vec<String> = counters.iter().map(ToString::to_string).collect();
        tracing::info!(object = %key, workloads = %names.join(", "), "reload: data changed");
        for workload in counters {
            let Some(tracked) = self.workloads.get_mut(workload) else {
                continue;
            };
            let trigger = tracked.trigger.get_or_insert_with(|| Trigger {
                seen,
                changed: BTreeSet::new(),
            });
            trigger.changed.insert(key.clone());
            let at = trigger.seen + self.debounce;
            let at = self.pause_until(workload).map_or(at, |p| p.max(at));
            self.queue.schedule(workload.clone(), at);
        }
    }

    /// A watch event about `SecretProviderClassPodStatus` objects. As in
    /// Reloader, only an update of one pod's status that moves its versions
    /// is a change (of its class, for every workload counting the class); a
    /// new pod's status sets the class's versions without restarting anything
    /// (its workload's hash is recorded again). Returns reads to make.
    pub fn pod_status_event(&mut self, event: Event<PodStatus>, now: Instant) -> Vec<ObjKey> {
        match event {
            Event::Init => self.pod_status_relist = Some(HashSet::new()),
            Event::InitApply(status) | Event::Apply(status) => {
                let id = (status.namespace.clone(), status.name.clone());
                if let Some(seen) = &mut self.pod_status_relist {
                    seen.insert(id.clone());
                }
                let class = ObjKey::new(
                    &status.namespace,
                    ObjKind::SecretProviderClass,
                    &status.class,
                );
                let before = self
                    .pod_statuses
                    .insert(id, (status.class.clone(), status.versions));
                let moved = before.is_some_and(|(c, v)| c == status.class && v != status.versions);
                let known = self.class_versions.get(&class).copied();
                if known == Some(status.versions) {
                    return Vec::new();
                }
                self.class_versions.insert(class.clone(), status.versions);
                let counters = self.selected_by.get(&class).cloned().unwrap_or_default();
                if moved && known.is_some() && !counters.is_empty() {
                    let seen = self.stamp(now);
                    self.changed(&class, &counters, seen);
                } else {
                    for workload in counters {
                        self.queue.schedule(workload, now + self.debounce);
                    }
                }
            }
            Event::Delete(status) => {
                self.pod_statuses.remove(&(status.namespace, status.name));
            }
            Event::InitDone => {
                if let Some(seen) = self.pod_status_relist.take() {
                    self.pod_statuses.retain(|id, _| seen.contains(id));
                }
            }
        }
        Vec::new()
    }

    fn pause_until(&self, workload: &WorkloadKey) -> Option<Instant> {
        let info = &self.workloads.get(workload)?.info;
        Some(self.instant(info.restarted_at?) + info.pause?)
    }

    // ---- workloads -------------------------------------------------------

    /// A watch event about workloads of one kind (`None`: it does not opt in);
    /// returns the reads to make.
    pub fn workload_event(
        &mut self,
        kind: WorkloadKind,
        event: Event<(WorkloadKey, Option<WorkloadInfo>)>,
        now: Instant,
    ) -> Vec<ObjKey> {
        let mut reads = Vec::new();
        match event {
            Event::Init => {
                self.workload_relists.insert(kind, HashSet::new());
            }
            Event::InitApply((key, info)) => {
                if let Some(seen) = self.workload_relists.get_mut(&kind) {
                    seen.insert(key.clone());
                }
                self.apply_workload(key, info, now, &mut reads);
            }
            Event::Apply((key, info)) => self.apply_workload(key, info, now, &mut reads),
            Event::Delete((key, _)) => self.forget(&key),
            Event::InitDone => {
                let seen = self.workload_relists.remove(&kind).unwrap_or_default();
                let gone: Vec<WorkloadKey> = self
                    .workloads
                    .keys()
                    .filter(|k| k.kind == kind && !seen.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.forget(&key);
                }
            }
        }
        reads
    }

    fn apply_workload(
        &mut self,
        key: WorkloadKey,
        info: Option<WorkloadInfo>,
        now: Instant,
        reads: &mut Vec<ObjKey>,
    ) {
        let Some(info) = info else {
            self.forget(&key);
            return;
        };
        let same_object = self
            .workloads
            .get(&key)
            .map(|t| t.info.uid == info.uid && t.info.key == info.key);
        match same_object {
            Some(true) => {
                let Some(tracked) = self.workloads.get(&key) else {
                    return;
                };
                if tracked.info == info {
                    return;
                }
                if info.problem.is_some() && tracked.info.problem != info.problem {
                    tracing::warn!(workload = %key, problem = info.problem.as_deref().unwrap_or_default(), "reload: ignored");
                }
                let reindex =
                    tracked.info.uses != info.uses || tracked.info.selection != info.selection;
                let memory_changed = tracked.info.memory != info.memory;
                let named_before = Self::named(&tracked.info).0;
                if reindex {
                    self.unindex(&key);
                }
                if let Some(tracked) = self.workloads.get_mut(&key) {
                    tracked.info = info;
                }
                if reindex {
                    self.index(&key);
                }
                self.reselect(&key, now, reads);
                // Only now, with the new names indexed, can digests go.
                for object in named_before {
                    self.forget_data_unless_needed(&object);
                }
                if reindex || memory_changed {
                    self.queue.schedule(key, now + self.debounce);
                }
            }
            other => {
                if other.is_some() {
                    self.forget(&key);
                }
                if let Some(problem) = &info.problem {
                    tracing::warn!(workload = %key, %problem, "reload: ignored");
                }
                tracing::debug!(workload = %key, "reload: watching");
                self.workloads.insert(
                    key.clone(),
                    Tracked {
                        info,
                        first_seen: now,
                        selected: BTreeSet::new(),
                        evaluated: false,
                        trigger: None,
                        failures: 0,
                        held: None,
                    },
                );
                self.index(&key);
                self.reselect(&key, now, reads);
                self.queue.schedule(key, now + self.debounce);
            }
        }
    }

    fn forget(&mut self, key: &WorkloadKey) {
        if !self.workloads.contains_key(key) {
            return;
        }
        self.unindex(key);
        if let Some(tracked) = self.workloads.remove(key) {
            for object in tracked.selected {
                self.unselect(&object, key);
            }
            for object in Self::named(&tracked.info).0 {
                self.forget_data_unless_needed(&object);
            }
        }
        self.queue.remove(key);
        self.stalled.remove(key);
    }

    /// What the workload names (used objects and exact names), and the kinds
    /// it has name patterns for.
    fn named(info: &WorkloadInfo) -> (BTreeSet<ObjKey>, Vec<ObjKind>) {
        let namespace = &info.key.namespace;
        let mut objects: BTreeSet<ObjKey> = info
            .uses
            .keys()
            .map(|(kind, name)| ObjKey::new(namespace, *kind, name))
            .collect();
        let mut patterned = Vec::new();
        for kind in ObjKind::ALL {
            for pattern in &info.selection.of(kind).named {
                match pattern.exact() {
                    Some(name) => {
                        objects.insert(ObjKey::new(namespace, kind, name));
                    }
                    None => patterned.push(kind),
                }
            }
        }
        (objects, patterned)
    }

    fn index(&mut self, key: &WorkloadKey) {
        let Some(tracked) = self.workloads.get(key) else {
            return;
        };
        let (objects, patterned) = Self::named(&tracked.info);
        for object in objects {
            self.referenced_by
                .entry(object)
                .or_default()
                .insert(key.clone());
        }
        for kind in patterned {
            self.patterned
                .entry((key.namespace.clone(), kind))
                .or_default()
                .insert(key.clone());
        }
    }

    /// Takes the workload out of the indexes; dropping digests no longer
    /// needed is the caller's (once the new names, if any, are indexed).
    fn unindex(&mut self, key: &WorkloadKey) {
        let Some(tracked) = self.workloads.get(key) else {
            return;
        };
        let (objects, patterned) = Self::named(&tracked.info);
        for object in objects {
            if let Some(set) = self.referenced_by.get_mut(&object) {
                set.remove(key);
                if set.is_empty() {
                    self.referenced_by.remove(&object);
                }
            }
        }
        for kind in patterned {
            let slot = (key.namespace.clone(), kind);
            if let Some(set) = self.patterned.get_mut(&slot) {
                set.remove(key);
                if set.is_empty() {
                    self.patterned.remove(&slot);
                }
            }
        }
    }

    fn unselect(&mut self, object: &ObjKey, key: &WorkloadKey) {
        if let Some(set) = self.selected_by.get_mut(object) {
            set.remove(key);
            if set.is_empty() {
                self.selected_by.remove(object);
            }
        }
        self.forget_data_unless_needed(object);
    }

    /// The existing objects the workload counts.
    fn selection_of(&self, info: &WorkloadInfo) -> BTreeSet<ObjKey> {
        let namespace = &info.key.namespace;
        let mut counted = BTreeSet::new();
        for kind in ObjKind::ALL {
            let selection = info.selection.of(kind);
            // The candidates: what it uses, and what its lists name.
            let mut candidates: BTreeSet<ObjKey> = info
                .uses
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, name)| ObjKey::new(namespace, kind, name))
                .collect();
            for pattern in &selection.named {
                match pattern.exact() {
                    Some(name) => {
                        candidates.insert(ObjKey::new(namespace, kind, name));
                    }
                    None => candidates.extend(
                        self.objects
                            .names(namespace, kind)
                            .filter(|(name, _)| pattern.matches(name))
                            .map(|(name, _)| ObjKey::new(namespace, kind, name)),
                    ),
                }
            }
            for key in candidates {
                let Some(meta) = self.objects.get(&key) else {
                    continue;
                };
                let used = info
                    .uses
                    .get(&(kind, key.name.clone()))
                    .is_some_and(|u| u.counts);
                if !meta.ignore && selection.selects(&key.name, used, meta.match_) {
                    counted.insert(key);
                }
            }
        }
        counted
    }

    /// Brings the workload's counted set up to date; a change makes it due
    /// for a look (which records, never restarts, unless data changed too).
    fn reselect(&mut self, key: &WorkloadKey, now: Instant, reads: &mut Vec<ObjKey>) {
        let Some(tracked) = self.workloads.get(key) else {
            return;
        };
        let new = self.selection_of(&tracked.info);
        if new == tracked.selected {
            return;
        }
        let old = tracked.selected.clone();
        if let Some(tracked) = self.workloads.get_mut(key) {
            tracked.selected = new.clone();
        }
        for object in new.difference(&old) {
            self.selected_by
                .entry(object.clone())
                .or_default()
                .insert(key.clone());
            self.read_if_stale(object, now, reads);
        }
        for object in old.difference(&new) {
            self.unselect(object, key);
        }
        self.queue.schedule(key.clone(), now + self.debounce);
    }

    // ---- decisions and patches ------------------------------------------

    fn decide(&self, key: &WorkloadKey, now: Instant) -> Decision {
        let Some(tracked) = self.workloads.get(key) else {
            return Decision::Gone;
        };
        if !self.core_synced() {
            return Decision::Wait(Vec::new());
        }
        let namespace = &key.namespace;
        for ((kind, name), used) in &tracked.info.uses {
            let object = ObjKey::new(namespace, *kind, name);
            if used.required && !self.objects.contains(&object) {
                return Decision::Hold(object);
            }
        }
        let mut digests = BTreeMap::new();
        let mut missing = Vec::new();
        for object in &tracked.selected {
            let Some(meta) = self.objects.get(object) else {
                continue;
            };
            if object.kind == ObjKind::SecretProviderClass {
                let versions = self.class_versions.get(object).copied();
                digests.insert(object.clone(), versions.unwrap_or(NO_VERSIONS));
                continue;
            }
            match self.data.get(object) {
                Some(known) if known.resource_version == Some(meta.version) => {
                    digests.insert(object.clone(), known.digest);
                }
                _ => missing.push(object.clone()),
            }
        }
        if !missing.is_empty() {
            return Decision::Wait(missing);
        }
        let hash = input_hash(&digests);
        let pause = self.pause_until(key);
        let not_before = |earliest: Instant| pause.map_or(earliest, |p| p.max(earliest));
        let restart = |earliest: Instant, reason: Reason| {
            let at = not_before(earliest);
            if at > now {
                Decision::Later(at)
            } else {
                Decision::Restart(hash.clone(), reason)
            }
        };
        let changed =
            |trigger: &Trigger| Reason::Changed(trigger.changed.iter().cloned().collect());
        match (&tracked.info.memory, &tracked.trigger) {
            (Some(memory), _) if *memory == hash => Decision::Nothing,
            (None, Some(trigger)) if trigger.seen >= tracked.first_seen + self.debounce => {
                restart(trigger.seen + self.debounce, changed(trigger))
            }
            (None, _) => Decision::Record(hash),
            (Some(_), Some(trigger)) => restart(trigger.seen + self.debounce, changed(trigger)),
            (Some(_), None) if !tracked.evaluated => restart(
                now,
                Reason::WhileAway(tracked.selected.iter().cloned().collect()),
            ),
            (Some(_), None) => Decision::Record(hash),
        }
    }

    /// Acts on a decision. With `send`, a restart or record becomes the job
    /// to send now; without, it joins its lane.
    fn settle(
        &mut self,
        key: &WorkloadKey,
        decision: Decision,
        now: Instant,
        send: bool,
        reads: &mut Vec<ObjKey>,
    ) -> Option<Job> {
        let at = self.wall(now);
        let tracked = self.workloads.get_mut(key)?;
        let (hash, action) = match decision {
            Decision::Gone => return None,
            Decision::Wait(missing) => {
                self.stalled.insert(key.clone());
                for object in missing {
                    self.read_if_stale(&object, now, reads);
                }
                return None;
            }
            Decision::Hold(object) => {
                if tracked.held.as_ref() != Some(&object) {
                    tracing::info!(workload = %key, needs = %object, "reload: not restarting while a Secret or ConfigMap its pods need does not exist");
                    tracked.held = Some(object);
                }
                tracked.trigger = None;
                return None;
            }
            Decision::Nothing => {
                tracing::debug!(workload = %key, "reload: inputs unchanged");
                tracked.trigger = None;
                tracked.evaluated = true;
                tracked.held = None;
                return None;
            }
            Decision::Later(at) => {
                self.queue.schedule(key.clone(), at);
                return None;
            }
            Decision::Record(hash) => (hash, None),
            Decision::Restart(hash, reason) => (hash, Some(reason)),
        };
        if !send {
            let lane = if action.is_some() {
                Lane::Restart
            } else {
                Lane::Record
            };
            self.queue.push_ready(key.clone(), lane);
            return None;
        }
        tracked.held = None;
        let action = match action {
            Some(reason) => Action::Restart {
                reason,
                trigger: tracked.trigger.take(),
            },
            None => {
                tracked.trigger = None;
                tracked.evaluated = true;
                Action::Record
            }
        };
        let job = Job {
            key: key.clone(),
            uid: tracked.info.uid.clone(),
            restart_at: tracked.info.restart_at,
            hash,
            action,
            at,
        };
        self.patching = Some(key.clone());
        Some(job)
    }

    /// Moves what fell due into its lane, and releases the next patch if the
    /// rate allows and none is in flight. Returns reads to make and the patch.
    pub fn tick(&mut self, now: Instant) -> (Vec<ObjKey>, Option<Job>) {
        let mut reads = Vec::new();
        while let Some(key) = self.queue.pop_due(now) {
            let decision = self.decide(&key, now);
            self.settle(&key, decision, now, false, &mut reads);
        }
        let mut job = None;
        if self.patching.is_none() {
            while let Some(key) = self.queue.take_ready(now) {
                let decision = self.decide(&key, now);
                if let Some(ready) = self.settle(&key, decision, now, true, &mut reads) {
                    self.queue.spend(now);
                    job = Some(ready);
                    break;
                }
            }
        }
        (reads, job)
    }

    /// What became of a patch.
    pub fn patch_done(&mut self, job: Job, outcome: PatchOutcome, now: Instant) {
        if self.patching.as_ref() == Some(&job.key) {
            self.patching = None;
        }
        let Some(tracked) = self.workloads.get_mut(&job.key) else {
            return;
        };
        if tracked.info.uid != job.uid {
            return;
        }
        match outcome {
            PatchOutcome::Done => {
                tracked.info.memory = Some(job.hash);
                tracked.failures = 0;
                if matches!(job.action, Action::Restart { .. }) {
                    tracked.info.restarted_at = Some(job.at);
                    tracked.evaluated = true;
                }
            }
            PatchOutcome::Gone => {}
            PatchOutcome::Failed => {
                tracked.failures = tracked.failures.saturating_add(1);
                if let Action::Restart {
                    trigger: Some(lost),
                    ..
                } = job.action
                {
                    match &mut tracked.trigger {
                        Some(trigger) => {
                            trigger.seen = trigger.seen.min(lost.seen);
                            trigger.changed.extend(lost.changed);
                        }
                        None => tracked.trigger = Some(lost),
                    }
                }
                let retry = now + crate::controller::backoff(tracked.failures.saturating_sub(1));
                self.queue.schedule(job.key, retry);
            }
        }
    }
}

#[cfg(test)]
mod tests;
