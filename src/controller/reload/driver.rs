//! The loop: feeds the tracker what the watches see, makes the reads it asks
//! for (a few at a time), and sends its patches one at a time, each followed by
//! an Event on the workload and, for a restart, the metric and (if configured)
//! Reloader's webhook alert. A CronJob's restart creates a Job from its
//! template; a Job's deletes it and creates it again.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::alert::Alerts;
use super::tracker::{Action, Job, PatchOutcome, Reason, Tracker};
use super::watch::{self, Message};
use super::workload::{
    WorkloadKind, job_again, job_from_cron_job, record_patch, reference, restart_patch,
};
use super::{HASH_ANNOTATION, ObjKey, RECORD_MANAGER, RESTART_MANAGER, Settings};
use crate::controller::Metrics;

/// Reads in flight at once.
const READS: usize = 8;
/// How long one patch may take.
const PATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How many names an Event lists.
const NAMES_LISTED: usize = 10;

type PatchFuture = Pin<Box<dyn Future<Output = (Job, PatchOutcome)> + Send>>;

/// Runs until `stopped` resolves; a patch in flight is finished first.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    reporter: Reporter,
    stopped: impl Future<Output = ()>,
) {
    tracing::info!(
        debounce = ?settings.debounce,
        rate = settings.rate,
        "reload: restarting opted-in workloads when their Secrets and ConfigMaps change"
    );
    let mut tracker = Tracker::new(
        settings.debounce,
        settings.rate,
        Instant::now(),
        jiff::Timestamp::now(),
    );
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    let watches = watch::spawn(client.clone(), namespace.as_deref(), tx);
    let mut reads = FuturesUnordered::new();
    let mut backlog: VecDeque<ObjKey> = VecDeque::new();
    let mut patch: Option<PatchFuture> = None;
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let now = Instant::now();
        let (more, job) = tracker.tick(now);
        backlog.extend(more);
        while reads.len() < READS
            && let Some(key) = backlog.pop_front()
        {
            reads.push(super::read::read(client.clone(), key));
        }
        if let Some(job) = job {
            patch = Some(Box::pin(send(
                client.clone(),
                reporter.clone(),
                metrics.clone(),
                settings.alerts.clone(),
                job,
            )));
        }
        let wakeup = tracker.next_wakeup(now);
        tokio::select! {
            _ = &mut stopped => break,
            message = rx.recv() => {
                let Some(message) = message else { break };
                let now = Instant::now();
                backlog.extend(handle(&mut tracker, message, now));
                // Take what else arrived meanwhile before looking at the queue.
                for _ in 0..256 {
                    let Ok(message) = rx.try_recv() else { break };
                    backlog.extend(handle(&mut tracker, message, now));
                }
            }
            Some((key, result)) = reads.next(), if !reads.is_empty() => {
                backlog.extend(tracker.read_done(key, result, Instant::now()));
            }
            (job, outcome) = in_flight(&mut patch), if patch.is_some() => {
                patch = None;
                tracker.patch_done(job, outcome, Instant::now());
            }
            _ = sleep_until(wakeup), if wakeup.is_some() => {}
        }
    }
    if let Some(patch) = patch {
        let (job, outcome) = patch.await;
        tracker.patch_done(job, outcome, Instant::now());
    }
    for watch in watches {
        watch.abort();
    }
    let (objects, digests) = tracker.objects();
    tracing::info!(
        workloads = tracker.workloads(),
        objects,
        digests,
        "reload: stopped"
    );
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn in_flight(patch: &mut Option<PatchFuture>) -> (Job, PatchOutcome) {
    match patch {
        Some(patch) => patch.await,
        None => std::future::pending().await,
    }
}

fn handle(tracker: &mut Tracker, message: Message, now: Instant) -> Vec<ObjKey> {
    match message {
        Message::Object(kind, event) => tracker.object_event(kind, event, now),
        Message::Workload(kind, event) => {
            let event = watch::map(event, |(key, info)| (key, info.map(|info| *info)));
            tracker.workload_event(kind, event, now)
        }
        Message::PodStatus(event) => tracker.pod_status_event(event, now),
    }
}

/// `Secret db, ConfigMap app` (at most [`NAMES_LISTED`], then how many more).
fn names(objects: &[ObjKey]) -> String {
    let mut listed: Vec<String> = objects
        .iter()
        .take(NAMES_LISTED)
        .map(|o| format!("{} {}", o.kind.as_str(), o.name))
        .collect();
    if objects.len() > NAMES_LISTED {
        listed.push(format!("{} more", objects.len() - NAMES_LISTED));
    }
    listed.join(", ")
}

/// The Event note of a restart: which objects, never what they hold.
fn restart_note(reason: &Reason, hash: &str) -> String {
    let short = hash.get(..12).unwrap_or(hash);
    match reason {
        Reason::Changed(objects) => format!(
            "{} changed: rolling restart ({HASH_ANNOTATION} {short})",
            names(objects)
        ),
        Reason::WhileAway(objects) => format!(
            "the data of {} changed while no secretsync controller was watching: rolling restart ({HASH_ANNOTATION} {short})",
            if objects.is_empty() {
                "its Secrets and ConfigMaps".to_string()
            } else {
                names(objects)
            }
        ),
    }
}

/// A CronJob's restart: a Job from its template, then the hash on its metadata.
async fn run_cron_job(
    api: &Api<DynamicObject>,
    client: &kube::Client,
    job: &Job,
) -> Result<(), Failure> {
    let key = &job.key;
    let cron_job = api.get(&key.name).await?;
    if cron_job.metadata.uid.as_deref() != Some(job.uid.as_str()) {
        return Err(Failure::Gone);
    }
    let value = serde_json::to_value(&cron_job)?;
    let body = job_from_cron_job(&value, &job.hash).map_err(Failure::Other)?;
    let jobs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &key.namespace,
        &WorkloadKind::Job.api_resource(),
    );
    let body: DynamicObject = serde_json::from_value(body)?;
    let created = jobs
        .create(
            &PostParams {
                field_manager: Some(RESTART_MANAGER.into()),
                ..Default::default()
            },
            &body,
        )
        .await?;
    tracing::info!(workload = %key, job = created.metadata.name.as_deref().unwrap_or_default(), "reload: created a Job from the CronJob");
    let patch = restart_patch(key, &job.uid, &job.hash, job.at, false);
    let params = PatchParams::apply(RESTART_MANAGER).force();
    api.patch(&key.name, &params, &Patch::Apply(&patch)).await?;
    Ok(())
}

/// A Job's restart, as Reloader does it: deleted (background propagation),
/// then created again from its own spec, the hash on the new one.
async fn run_job_again(api: &Api<DynamicObject>, job: &Job) -> Result<(), Failure> {
    let key = &job.key;
    let old = api.get(&key.name).await?;
    if old.metadata.uid.as_deref() != Some(job.uid.as_str()) {
        return Err(Failure::Gone);
    }
    let value = serde_json::to_value(&old)?;
    let body: DynamicObject = serde_json::from_value(job_again(&value, &job.hash, job.at))?;
    let params = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        preconditions: Some(kube::api::Preconditions {
            uid: Some(job.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    api.delete(&key.name, &params).await?;
    // The name is free once the object is gone (no finalizers on Jobs).
    let post = PostParams {
        field_manager: Some(RESTART_MANAGER.into()),
        ..Default::default()
    };
    let mut attempt = 0u32;
    loop {
        match api.create(&post, &body).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Why a restart or record failed.
enum Failure {
    /// The workload is gone (or was replaced under its name).
    Gone,
    Other(String),
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if status.code == 404 => Failure::Gone,
            e => Failure::Other(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Other(e.to_string())
    }
}

async fn send(
    client: kube::Client,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    alerts: Option<Alerts>,
    job: Job,
) -> (Job, PatchOutcome) {
    let key = &job.key;
    let (manager, body) = match &job.action {
        Action::Restart { .. } => (
            RESTART_MANAGER,
            restart_patch(key, &job.uid, &job.hash, job.at, job.restart_at),
        ),
        Action::Record => (RECORD_MANAGER, record_patch(key, &job.uid, &job.hash)),
    };
    let api_client = client.clone();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &key.namespace, &key.kind.api_resource());
    let params = PatchParams::apply(manager).force();
    let restart = matches!(job.action, Action::Restart { .. });
    let answer = match key.kind {
        WorkloadKind::CronJob if restart => {
            tokio::time::timeout(PATCH_TIMEOUT, run_cron_job(&api, &client, &job)).await
        }
        WorkloadKind::Job if restart => {
            tokio::time::timeout(PATCH_TIMEOUT, run_job_again(&api, &job)).await
        }
        _ => {
            tokio::time::timeout(PATCH_TIMEOUT, async {
                api.patch(&key.name, &params, &Patch::Apply(&body))
                    .await
                    .map(|_| ())
                    .map_err(Failure::from)
            })
            .await
        }
    };
    let outcome = match answer {
        Ok(Ok(_)) => PatchOutcome::Done,
        Ok(Err(Failure::Gone)) => {
            tracing::debug!(workload = %key, "reload: workload gone");
            PatchOutcome::Gone
        }
        Ok(Err(Failure::Other(e))) => {
            tracing::warn!(workload = %key, error = %e, "reload: patch failed; retrying later");
            PatchOutcome::Failed
        }
        Err(_) => {
            tracing::warn!(workload = %key, "reload: patch timed out; retrying later");
            PatchOutcome::Failed
        }
    };
    let Action::Restart { reason, .. } = &job.action else {
        if outcome == PatchOutcome::Done {
            tracing::debug!(workload = %key, hash = %job.hash, "reload: hash recorded");
        }
        return (job, outcome);
    };
    let (type_, event_reason, note) = match outcome {
        PatchOutcome::Done => {
            metrics.workload_restarted(key.kind.as_str());
            let note = restart_note(reason, &job.hash);
            tracing::info!(workload = %key, %note, "reload: restarted");
            if let Some(alerts) = alerts {
                let objects = match reason {
                    Reason::Changed(objects) | Reason::WhileAway(objects) => objects.clone(),
                };
                tokio::spawn({
                    let key = key.clone();
                    async move { alerts.send(key, objects).await }
                });
            }
            (EventType::Normal, "Restarted", note)
        }
        PatchOutcome::Failed => (
            EventType::Warning,
            "RestartFailed",
            "the restart patch failed; it is retried with backoff".to_string(),
        ),
        PatchOutcome::Gone => return (job, outcome),
    };
    let event = Event {
        type_,
        reason: event_reason.into(),
        note: Some(note),
        action: "Restart".into(),
        secondary: None,
    };
    let regarding = reference(key, &job.uid);
    // A recorder of its own: kube's folds repeated events about one object
    // into a series that keeps the first note, and each restart must name
    // its own Secrets and ConfigMaps.
    let recorder = Recorder::new(api_client, reporter);
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &regarding).await {
            tracing::debug!(error = %e, "reload: could not publish an event");
        }
    });
    (job, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::reload::ObjKind;

    #[test]
    fn notes_name_the_objects_and_a_short_hash() {
        let objects = vec![
            ObjKey::new("ns", ObjKind::Secret, "db"),
            ObjKey::new("ns", ObjKind::ConfigMap, "app"),
        ];
        let hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            restart_note(&Reason::Changed(objects.clone()), hash),
            "Secret db, ConfigMap app changed: rolling restart (secretsync.io/secret-hash 0123456789ab)"
        );
        assert!(restart_note(&Reason::WhileAway(objects), hash).contains("while no secretsync"));
        let many: Vec<ObjKey> = (0..12)
            .map(|i| ObjKey::new("ns", ObjKind::Secret, &format!("s{i}")))
            .collect();
        assert!(names(&many).ends_with("Secret s9, 2 more"));
    }
}
