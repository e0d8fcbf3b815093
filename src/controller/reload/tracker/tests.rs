//! The tracker driven like the driver does, with a stand-in for the cluster:
//! objects with data, reads answered at once, patches that succeed (or fail),
//! time moved by hand.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::SecretValue;
use crate::controller::reload::HASH_ANNOTATION;
use crate::controller::reload::hash::data_digest;
use crate::controller::reload::workload::derive;

const NS: &str = "team";
const DEBOUNCE: Duration = Duration::from_secs(5);
const RATE: f64 = 2.0;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

struct Bed {
    tracker: Tracker,
    start: Instant,
    now: Instant,
    version: u64,
    /// The cluster: each object's (resourceVersion, digest, annotations).
    objects: BTreeMap<ObjKey, (String, Digest, (bool, bool))>,
    /// What was sent, when (seconds since the start), and with what outcome.
    sent: Vec<(f64, Job)>,
    fail_next: usize,
}

fn digest(value: &str) -> Digest {
    let data: BTreeMap<String, SecretValue> = [("k".to_string(), SecretValue::from(value))].into();
    data_digest(&[("data", &data)])
}

impl Bed {
    fn new() -> Bed {
        Self::with_objects(&[])
    }

    /// A tracker whose watches list these objects first.
    fn with_objects(objects: &[(ObjKind, &str, &str)]) -> Bed {
        let start = Instant::now();
        let mut bed = Bed {
            tracker: Tracker::new(DEBOUNCE, RATE, start, jiff::Timestamp::now()),
            start,
            now: start,
            version: 0,
            objects: BTreeMap::new(),
            sent: Vec::new(),
            fail_next: 0,
        };
        for kind in ObjKind::ALL {
            bed.tracker.object_event(kind, Event::Init, start);
        }
        for (kind, name, value) in objects {
            bed.put_as(*kind, name, value, (false, false), true);
        }
        for kind in ObjKind::ALL {
            let reads = bed.tracker.object_event(kind, Event::InitDone, start);
            bed.serve(reads);
        }
        bed
    }

    fn key(kind: ObjKind, name: &str) -> ObjKey {
        ObjKey::new(NS, kind, name)
    }

    fn meta(&self, key: &ObjKey) -> (ObjKey, ObjMeta) {
        let (rv, _, (ignore, match_)) = &self.objects[key];
        let meta = ObjMeta {
            resource_version: rv.clone(),
            ignore: *ignore,
            match_: *match_,
        };
        (key.clone(), meta)
    }

    fn put_as(&mut self, kind: ObjKind, name: &str, value: &str, flags: (bool, bool), init: bool) {
        self.version += 1;
        let key = Self::key(kind, name);
        self.objects.insert(
            key.clone(),
            (self.version.to_string(), digest(value), flags),
        );
        let meta = self.meta(&key);
        let event = if init {
            Event::InitApply(meta)
        } else {
            Event::Apply(meta)
        };
        let reads = self.tracker.object_event(kind, event, self.now);
        self.serve(reads);
    }

    /// Creates or updates an object (a write with the same data moves its
    /// resourceVersion all the same).
    fn put(&mut self, kind: ObjKind, name: &str, value: &str) {
        let flags = self
            .objects
            .get(&Self::key(kind, name))
            .map_or((false, false), |o| o.2);
        self.put_as(kind, name, value, flags, false);
    }

    fn flag(&mut self, kind: ObjKind, name: &str, ignore: bool, match_: bool) {
        let key = Self::key(kind, name);
        let (_, digest, _) = self.objects[&key];
        self.version += 1;
        self.objects.insert(
            key.clone(),
            (self.version.to_string(), digest, (ignore, match_)),
        );
        let meta = self.meta(&key);
        let reads = self
            .tracker
            .object_event(kind, Event::Apply(meta), self.now);
        self.serve(reads);
    }

    fn delete(&mut self, kind: ObjKind, name: &str) {
        let key = Self::key(kind, name);
        let meta = self.meta(&key);
        self.objects.remove(&key);
        let reads = self
            .tracker
            .object_event(kind, Event::Delete(meta), self.now);
        self.serve(reads);
    }

    fn serve(&mut self, mut reads: Vec<ObjKey>) {
        while let Some(key) = reads.pop() {
            let result = match self.objects.get(&key) {
                Some((rv, digest, _)) => ReadResult::Present {
                    resource_version: rv.clone(),
                    digest: *digest,
                },
                None => ReadResult::Absent,
            };
            reads.extend(self.tracker.read_done(key, result, self.now));
        }
    }

    fn workload_as(&mut self, kind: WorkloadKind, name: &str, annotations: Value, spec: Value) {
        let metadata = serde_json::from_value(
            json!({"name": name, "namespace": NS, "uid": format!("uid-{name}"), "annotations": annotations}),
        )
        .unwrap();
        let template: k8s_openapi::api::core::v1::PodTemplateSpec =
            serde_json::from_value(json!({"spec": spec})).unwrap();
        let info = derive(kind, &metadata, Ok(Some(&template)));
        let key = WorkloadKey {
            kind,
            namespace: NS.into(),
            name: name.into(),
        };
        let reads = self
            .tracker
            .workload_event(kind, Event::Apply((key, info)), self.now);
        self.serve(reads);
    }

    fn workload(&mut self, name: &str, annotations: Value, spec: Value) {
        self.workload_as(WorkloadKind::Deployment, name, annotations, spec);
    }

    /// Runs the tracker until `seconds` after the start.
    fn until(&mut self, seconds: f64) {
        let end = self.start + secs(seconds);
        loop {
            let (reads, job) = self.tracker.tick(self.now);
            self.serve(reads);
            if let Some(job) = job {
                let outcome = if self.fail_next > 0 {
                    self.fail_next -= 1;
                    PatchOutcome::Failed
                } else {
                    PatchOutcome::Done
                };
                let at = (self.now - self.start).as_secs_f64();
                self.sent.push((at, job.clone()));
                self.tracker.patch_done(job, outcome, self.now);
                continue;
            }
            match self.tracker.next_wakeup(self.now) {
                Some(at) if at <= end => self.now = self.now.max(at),
                _ => {
                    self.now = end;
                    let (reads, job) = self.tracker.tick(self.now);
                    self.serve(reads);
                    assert!(job.is_none(), "nothing was due at the end");
                    return;
                }
            }
        }
    }

    /// (seconds, workload name, restart?) of what was sent, then forgets it.
    fn take(&mut self) -> Vec<(f64, String, bool)> {
        std::mem::take(&mut self.sent)
            .into_iter()
            .map(|(at, job)| {
                let restart = matches!(job.action, Action::Restart { .. });
                ((at * 100.0).round() / 100.0, job.key.name, restart)
            })
            .collect()
    }

    fn last_hash(&self, name: &str) -> Option<String> {
        self.sent
            .iter()
            .rev()
            .find(|(_, job)| job.key.name == name)
            .map(|(_, job)| job.hash.clone())
    }
}

fn env_secret(name: &str) -> Value {
    json!({"containers": [{"name": "c", "env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}]}]})
}

fn auto() -> Value {
    json!({"secretsync.io/reload": "true"})
}

#[test]
fn a_workload_seen_first_gets_its_hash_recorded_without_a_restart() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(30.0);
    assert_eq!(bed.take(), [(5.0, "app".into(), false)]);
}

#[test]
fn a_change_restarts_once_after_the_window_and_two_changes_within_it_make_one() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "a", "1"), (ObjKind::Secret, "b", "1")]);
    let spec = json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "a"}}, {"secretRef": {"name": "b"}}]}]});
    bed.workload("app", auto(), spec);
    bed.until(10.0);
    let recorded = bed.last_hash("app").unwrap();
    bed.take();
    bed.put(ObjKind::Secret, "a", "2");
    bed.until(12.0);
    bed.put(ObjKind::Secret, "b", "2");
    bed.until(60.0);
    let sent = std::mem::take(&mut bed.sent);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (at, job) = &sent[0];
    assert_eq!(*at, 15.0, "the window runs from the first change");
    assert_ne!(job.hash, recorded);
    let Action::Restart {
        reason: Reason::Changed(changed),
        ..
    } = &job.action
    else {
        panic!("{job:?}")
    };
    assert_eq!(
        changed,
        &[
            Bed::key(ObjKind::Secret, "a"),
            Bed::key(ObjKind::Secret, "b")
        ]
    );
}

#[test]
fn a_write_that_leaves_the_data_as_it_was_restarts_nothing() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(10.0);
    bed.take();
    bed.put(ObjKind::Secret, "db", "v1");
    bed.put(ObjKind::Secret, "db", "v1");
    bed.until(60.0);
    assert_eq!(bed.take(), []);
    // A change and its undo within the window: nothing either.
    bed.put(ObjKind::Secret, "db", "v2");
    bed.until(61.0);
    bed.put(ObjKind::Secret, "db", "v1");
    bed.until(90.0);
    assert_eq!(bed.take(), []);
}

#[test]
fn a_new_process_restarts_only_what_changed_while_it_was_away() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(10.0);
    let hash = bed.last_hash("app").unwrap();

    // Same data, the hash on the workload: nothing.
    let mut again = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    again.workload(
        "app",
        json!({"secretsync.io/reload": "true", HASH_ANNOTATION: hash}),
        env_secret("db"),
    );
    again.until(60.0);
    assert_eq!(again.take(), []);

    // The data changed meanwhile: one restart, saying so.
    let mut changed = Bed::with_objects(&[(ObjKind::Secret, "db", "v2")]);
    changed.workload(
        "app",
        json!({"secretsync.io/reload": "true", HASH_ANNOTATION: hash}),
        env_secret("db"),
    );
    changed.until(60.0);
    let sent = std::mem::take(&mut changed.sent);
    assert_eq!(sent.len(), 1);
    assert!(matches!(
        &sent[0].1.action,
        Action::Restart { reason: Reason::WhileAway(objects), .. } if objects == &[Bed::key(ObjKind::Secret, "db")]
    ));
}

#[test]
fn nothing_is_decided_before_both_watches_listed_everything() {
    let start = Instant::now();
    let mut tracker = Tracker::new(DEBOUNCE, RATE, start, jiff::Timestamp::now());
    // Only the Secrets are listed: the workload waits, whatever the time.
    tracker.object_event(ObjKind::Secret, Event::Init, start);
    tracker.object_event(ObjKind::Secret, Event::InitDone, start);
    let info = derive(
        WorkloadKind::Deployment,
        &serde_json::from_value(
            json!({"name": "app", "namespace": NS, "uid": "u", "annotations": auto()}),
        )
        .unwrap(),
        Ok(None),
    );
    let key = WorkloadKey {
        kind: WorkloadKind::Deployment,
        namespace: NS.into(),
        name: "app".into(),
    };
    tracker.workload_event(WorkloadKind::Deployment, Event::Apply((key, info)), start);
    let later = start + secs(60.0);
    assert_eq!(tracker.tick(later).1, None);
    tracker.object_event(ObjKind::ConfigMap, Event::Init, later);
    tracker.object_event(ObjKind::ConfigMap, Event::InitDone, later);
    let (_, job) = tracker.tick(later);
    assert!(
        matches!(
            job,
            Some(Job {
                action: Action::Record,
                ..
            })
        ),
        "{job:?}"
    );
}

#[test]
fn changes_within_the_window_of_first_sight_are_its_start() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(2.0);
    bed.put(ObjKind::Secret, "db", "v2");
    bed.until(30.0);
    assert_eq!(bed.take(), [(5.0, "app".into(), false)]);
}

#[test]
fn what_a_workload_counts_follows_its_annotations() {
    let objects = [
        (ObjKind::Secret, "used", "1"),
        (ObjKind::Secret, "named", "1"),
        (ObjKind::Secret, "db-1", "1"),
        (ObjKind::Secret, "other", "1"),
        (ObjKind::ConfigMap, "cfg", "1"),
    ];
    let mut bed = Bed::with_objects(&objects);
    let spec = json!({"containers": [{"name": "c",
        "envFrom": [{"secretRef": {"name": "used"}}, {"configMapRef": {"name": "cfg"}}]}]});
    bed.workload(
        "named",
        json!({"secretsync.io/reload-secrets": "named"}),
        spec.clone(),
    );
    bed.workload(
        "pattern",
        json!({"secret.reloader.stakater.com/reload": "db-[0-9]+"}),
        spec.clone(),
    );
    bed.workload(
        "secrets-only",
        json!({"secret.reloader.stakater.com/auto": "true"}),
        spec.clone(),
    );
    bed.workload(
        "configmaps-only",
        json!({"configmap.reloader.stakater.com/auto": "true"}),
        spec.clone(),
    );
    bed.workload(
        "excluding",
        json!({"reloader.stakater.com/auto": "true",
        "secrets.exclude.reloader.stakater.com/reload": "used"}),
        spec.clone(),
    );
    bed.workload(
        "opted-out",
        json!({"reloader.stakater.com/auto": "true", "secretsync.io/reload": "false"}),
        spec.clone(),
    );
    bed.workload("not-in", json!({}), spec);
    bed.until(30.0);
    bed.take();

    let restarted = |bed: &mut Bed| -> Vec<String> {
        let mut names: Vec<String> = bed
            .take()
            .into_iter()
            .filter(|(_, _, restart)| *restart)
            .map(|(_, name, _)| name)
            .collect();
        names.sort();
        names
    };
    bed.put(ObjKind::Secret, "used", "2");
    bed.until(60.0);
    assert_eq!(restarted(&mut bed), ["secrets-only"]);
    bed.put(ObjKind::Secret, "named", "2");
    bed.until(90.0);
    assert_eq!(restarted(&mut bed), ["named"]);
    bed.put(ObjKind::Secret, "db-1", "2");
    bed.until(120.0);
    assert_eq!(restarted(&mut bed), ["pattern"]);
    bed.put(ObjKind::ConfigMap, "cfg", "2");
    bed.until(150.0);
    assert_eq!(restarted(&mut bed), ["configmaps-only", "excluding"]);
    bed.put(ObjKind::Secret, "other", "2");
    bed.until(180.0);
    assert_eq!(restarted(&mut bed), Vec::<String>::new());

    // A new Secret matching the pattern is counted from now on, without a
    // restart for its arrival; its next change restarts.
    bed.put(ObjKind::Secret, "db-2", "1");
    bed.until(210.0);
    assert_eq!(bed.take(), [(185.0, "pattern".into(), false)]);
    bed.put(ObjKind::Secret, "db-2", "2");
    bed.until(240.0);
    assert_eq!(restarted(&mut bed), ["pattern"]);
}

#[test]
fn search_counts_matching_objects_and_ignore_counts_nothing() {
    let objects = [(ObjKind::Secret, "a", "1"), (ObjKind::Secret, "b", "1")];
    let mut bed = Bed::with_objects(&objects);
    let spec = json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "a"}}, {"secretRef": {"name": "b"}}]}]});
    bed.flag(ObjKind::Secret, "a", false, true);
    bed.workload(
        "search",
        json!({"reloader.stakater.com/search": "true"}),
        spec.clone(),
    );
    bed.workload("auto", json!({"reloader.stakater.com/auto": "true"}), spec);
    bed.until(30.0);
    bed.take();
    bed.put(ObjKind::Secret, "b", "2");
    bed.until(60.0);
    assert_eq!(bed.take(), [(35.0, "auto".into(), true)]);
    bed.put(ObjKind::Secret, "a", "2");
    bed.until(90.0);
    let names: Vec<_> = bed.take().into_iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(names, [("auto".into(), true), ("search".into(), true)]);

    // Ignored: its changes restart nobody; setting the flag records, no restart.
    bed.flag(ObjKind::Secret, "b", true, false);
    bed.until(120.0);
    assert_eq!(bed.take(), [(95.0, "auto".into(), false)]);
    bed.put(ObjKind::Secret, "b", "3");
    bed.until(150.0);
    assert_eq!(bed.take(), []);
}

#[test]
fn no_restart_while_a_needed_object_is_missing_and_a_recreation_with_new_data_restarts() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(10.0);
    bed.take();
    bed.delete(ObjKind::Secret, "db");
    bed.until(30.0);
    assert_eq!(bed.take(), [], "held while the pods could not start");
    bed.put(ObjKind::Secret, "db", "v1");
    bed.until(50.0);
    assert_eq!(bed.take(), [], "back as it was");
    bed.delete(ObjKind::Secret, "db");
    bed.until(60.0);
    bed.put(ObjKind::Secret, "db", "v2");
    bed.until(90.0);
    assert_eq!(bed.take(), [(65.0, "app".into(), true)]);
}

#[test]
fn optional_objects_come_and_go_without_restarts_but_their_changes_restart() {
    let mut bed = Bed::new();
    let spec = json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "opt", "optional": true}}]}]});
    bed.workload("app", auto(), spec);
    bed.until(10.0);
    assert_eq!(bed.take(), [(5.0, "app".into(), false)]);
    bed.put(ObjKind::Secret, "opt", "1");
    bed.until(30.0);
    assert_eq!(bed.take(), [(15.0, "app".into(), false)]);
    bed.put(ObjKind::Secret, "opt", "2");
    bed.until(60.0);
    assert_eq!(bed.take(), [(35.0, "app".into(), true)]);
    bed.delete(ObjKind::Secret, "opt");
    bed.until(90.0);
    assert_eq!(bed.take(), [(65.0, "app".into(), false)]);
}

#[test]
fn a_fleet_restarts_in_order_at_the_rate() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "shared", "1")]);
    for i in 0..5 {
        bed.workload(&format!("w{i}"), auto(), env_secret("shared"));
    }
    bed.until(20.0);
    let records = bed.take();
    let times: Vec<f64> = records.iter().map(|r| r.0).collect();
    assert_eq!(times, [5.0, 5.5, 6.0, 6.5, 7.0], "records at the rate too");
    bed.put(ObjKind::Secret, "shared", "2");
    bed.until(60.0);
    assert_eq!(
        bed.take(),
        (0..5)
            .map(|i| (25.0 + i as f64 / RATE, format!("w{i}"), true))
            .collect::<Vec<_>>()
    );
}

#[test]
fn restarts_go_before_records() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "shared", "1")]);
    bed.workload("old", auto(), env_secret("shared"));
    bed.until(10.0);
    bed.take();
    bed.put(ObjKind::Secret, "shared", "2");
    bed.until(10.5);
    for i in 0..3 {
        bed.workload(&format!("new{i}"), auto(), env_secret("shared"));
    }
    bed.until(40.0);
    let order: Vec<(String, bool)> = bed.take().into_iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(order[0], ("old".into(), true));
    assert!(order[1..].iter().all(|(_, restart)| !restart), "{order:?}");
}

#[test]
fn the_pause_period_spaces_restarts_of_a_deployment() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    let annotations = json!({"reloader.stakater.com/auto": "true",
        "deployment.reloader.stakater.com/pause-period": "1m"});
    bed.workload("app", annotations.clone(), env_secret("db"));
    bed.until(10.0);
    bed.take();
    bed.put(ObjKind::Secret, "db", "v2");
    bed.until(20.0);
    assert_eq!(bed.take(), [(15.0, "app".into(), true)]);
    bed.put(ObjKind::Secret, "db", "v3");
    bed.until(30.0);
    bed.put(ObjKind::Secret, "db", "v4");
    bed.until(120.0);
    assert_eq!(
        bed.take(),
        [(75.0, "app".into(), true)],
        "one restart, a minute after the last"
    );
}

#[test]
fn a_failed_restart_is_retried_with_what_changed() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(10.0);
    bed.take();
    bed.fail_next = 2;
    bed.put(ObjKind::Secret, "db", "v2");
    bed.until(60.0);
    let sent = std::mem::take(&mut bed.sent);
    let times: Vec<f64> = sent.iter().map(|s| s.0).collect();
    assert_eq!(times, [15.0, 16.0, 18.0], "backoff 1 s, 2 s");
    for (_, job) in &sent {
        assert!(matches!(
            &job.action,
            Action::Restart { reason: Reason::Changed(c), .. } if c == &[Bed::key(ObjKind::Secret, "db")]
        ));
    }
}

#[test]
fn a_workload_that_opts_out_or_goes_away_is_forgotten() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(10.0);
    assert_eq!(bed.tracker.workloads(), 1);
    assert_eq!(bed.tracker.objects(), (1, 1));
    bed.workload("app", json!({}), env_secret("db"));
    assert_eq!(bed.tracker.workloads(), 0);
    assert_eq!(bed.tracker.objects(), (1, 0), "no digest kept for nobody");
    bed.take();
    bed.put(ObjKind::Secret, "db", "v2");
    bed.until(60.0);
    assert_eq!(bed.take(), []);
}

#[test]
fn a_rollout_restarts_like_the_others() {
    let mut bed = Bed::with_objects(&[(ObjKind::ConfigMap, "cfg", "1")]);
    let spec = json!({"containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/c"}]}],
        "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]});
    bed.workload_as(WorkloadKind::Rollout, "canary", auto(), spec);
    bed.until(10.0);
    bed.take();
    bed.put(ObjKind::ConfigMap, "cfg", "2");
    bed.until(30.0);
    let sent = std::mem::take(&mut bed.sent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.key.kind, WorkloadKind::Rollout);
}

#[test]
fn restarts_follow_the_order_changes_were_seen_not_the_order_reads_finished() {
    let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    let objects: Vec<(ObjKind, &str, &str)> = names
        .iter()
        .map(|n| (ObjKind::Secret, n.as_str(), "1"))
        .collect();
    let mut bed = Bed::with_objects(&objects);
    for (i, name) in names.iter().enumerate() {
        bed.workload(&format!("w{i}"), auto(), env_secret(name));
    }
    bed.until(10.0);
    bed.take();
    // One batch of watch events (one `now`); the reads come back last first.
    let mut reads = Vec::new();
    for name in &names {
        bed.version += 1;
        let key = Bed::key(ObjKind::Secret, name);
        bed.objects.insert(
            key.clone(),
            (bed.version.to_string(), digest("2"), (false, false)),
        );
        let meta = bed.meta(&key);
        reads.extend(
            bed.tracker
                .object_event(ObjKind::Secret, Event::Apply(meta), bed.now),
        );
    }
    assert_eq!(reads.len(), 5);
    bed.now += secs(0.5);
    for key in reads.into_iter().rev() {
        let (rv, digest, _) = bed.objects[&key].clone();
        let result = ReadResult::Present {
            resource_version: rv,
            digest,
        };
        let more = bed.tracker.read_done(key, result, bed.now);
        assert!(more.is_empty());
    }
    bed.until(30.0);
    let order: Vec<String> = bed.take().into_iter().map(|s| s.1).collect();
    assert_eq!(order, ["w0", "w1", "w2", "w3", "w4"]);
}

#[test]
fn a_workload_edited_while_its_secret_is_deleted_still_sees_the_recreation_change() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "db", "v1")]);
    bed.workload("app", auto(), env_secret("db"));
    bed.until(10.0);
    bed.take();
    bed.delete(ObjKind::Secret, "db");
    bed.until(20.0);
    let edited =
        json!({"secretsync.io/reload": "true", "secretsync.io/reload-configmaps": "extra"});
    bed.workload("app", edited, env_secret("db"));
    bed.until(30.0);
    bed.put(ObjKind::Secret, "db", "v2");
    bed.until(60.0);
    let restarts: Vec<_> = bed.take().into_iter().filter(|s| s.2).collect();
    assert_eq!(restarts, [(35.0, "app".into(), true)]);
}

#[test]
fn a_read_out_when_its_object_changed_takes_the_changes_place_in_line_not_its_own() {
    let mut bed = Bed::with_objects(&[(ObjKind::Secret, "s0", "1"), (ObjKind::Secret, "s1", "1")]);
    bed.workload("w0", auto(), env_secret("s0"));
    bed.workload("w1", auto(), env_secret("s1"));
    bed.until(10.0);
    bed.take();
    let event = |bed: &mut Bed, name: &str, value: &str| {
        bed.version += 1;
        let key = Bed::key(ObjKind::Secret, name);
        bed.objects.insert(
            key.clone(),
            (bed.version.to_string(), digest(value), (false, false)),
        );
        let meta = bed.meta(&key);
        bed.tracker
            .object_event(ObjKind::Secret, Event::Apply(meta), bed.now)
    };
    // A write that leaves s0's data as it was sends a read out...
    let first = event(&mut bed, "s0", "1");
    assert_eq!(first.len(), 1);
    bed.now += secs(0.1);
    // ...then s1 changes, then s0, while that read is still out.
    let second = event(&mut bed, "s1", "2");
    bed.now += secs(0.1);
    assert!(
        event(&mut bed, "s0", "2").is_empty(),
        "its read is out already"
    );
    // s0's read returns the newer data (the GET came after the change).
    bed.now += secs(0.1);
    for key in first.into_iter().chain(second) {
        let (rv, digest, _) = bed.objects[&key].clone();
        let more = bed.tracker.read_done(
            key,
            ReadResult::Present {
                resource_version: rv,
                digest,
            },
            bed.now,
        );
        assert!(more.is_empty());
    }
    bed.until(30.0);
    let order: Vec<String> = bed.take().into_iter().map(|s| s.1).collect();
    assert_eq!(order, ["w1", "w0"], "in the order the changes were seen");
}
