//! The `change-events` phase (issue 30): the controller long-polls an SQS
//! queue (`--change-events-queue`) that EventBridge would feed, and refreshes
//! only the ExternalSecrets that read a changed key. moto serves SQS but emits
//! no AWS service events, so the bench sends them itself, in the shape
//! EventBridge delivers to an SQS target (no input transformer): "AWS API Call
//! via CloudTrail" for Secrets Manager, "Parameter Store Change" for SSM.
//!
//! The queue is made before the controller starts (it is one of its flags).
//! After the first sync, with the fleet's refreshInterval long (run it with
//! `--interval 1h`, so that the schedule cannot be what refreshed), three
//! stages:
//!
//! - `rest`: `--change-events-rest` with nothing changed: the controller's
//!   calls at rest (the long polls, 20 s each), scaled to an hour.
//! - `rotations`: `--change-events-rotations` keys the fleet reads (Secrets
//!   Manager secrets and SSM parameters in turn) get a new value at random
//!   moments over `--change-events-spread`: PutSecretValue / PutParameter
//!   (Overwrite) through the SDK, then, `--change-events-delay` later, the
//!   matching event on the queue. Per rotation, the seconds from the Put
//!   until every Secret that reads the key holds the new value under every
//!   data key reading it (the bench's watch of the Secrets, read every 50 ms),
//!   p50 / p99 / max; the controller's AWS calls by API in the stage (moto's
//!   recording; the bench signs with another key), divided by the rotations.
//! - `stray`: messages that must change nothing: events sent again
//!   (duplicate), events for keys no ExternalSecret reads (unmatched), events
//!   of nothing the controller reads (unrelated: a read, another service),
//!   bodies that are no event (malformed); counted from the controller's
//!   `secretsync_change_events_total{outcome}`, and no AWS call but SQS's.
//!
//! The phase fails unless every rotation reached its Secrets, the counters
//! moved as they must, and at the end every Secret holds what moto holds
//! (a fresh list of Secrets, a fresh read of moto). It leaves the rotated keys
//! one version ahead of the rest of the fleet, so it must be the last phase.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use super::fleet::{self, RemoteKey, Service, value_of};
use super::measure;
use super::{Bench, POLL, PROGRESS, Phase, STALLED, Start, align_to_second, aws, tracker};
use crate::support::moto::{self, Recorded};

/// The queue the bench makes in moto.
pub const QUEUE: &str = "secretsync-bench-change-events";
/// moto's default account, the one both the bench's and the controller's keys land in.
const ACCOUNT: &str = "123456789012";
/// The controller's counter of messages, by outcome.
const COUNTER: &str = "secretsync_change_events_total";
const OUTCOMES: [&str; 5] = [
    "applied",
    "unmatched",
    "duplicate",
    "unrelated",
    "malformed",
];
/// The controller's long poll.
const LONG_POLL_SECONDS: f64 = 20.0;
/// How long the stray messages may take to be counted.
const STRAY_WAIT: Duration = Duration::from_secs(60);

/// The phase's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// change-events: keys rotated, Secrets Manager secrets and SSM
    /// parameters in turn, among those the fleet reads; each Put is followed
    /// by its event on the queue.
    #[arg(long = "change-events-rotations", default_value_t = 20)]
    pub rotations: usize,
    /// change-events: the rotations fall at random moments over this long.
    #[arg(long = "change-events-spread", default_value = "30s", value_parser = super::parse_duration)]
    pub spread: Duration,
    /// change-events: from each Put returning to its event being sent
    /// (EventBridge's delivery, as the bench plays it).
    #[arg(long = "change-events-delay", default_value = "0s", value_parser = super::parse_duration)]
    pub delay: Duration,
    /// change-events: the window with nothing changed in which the
    /// controller's calls at rest are counted (0s: not measured).
    #[arg(long = "change-events-rest", default_value = "60s", value_parser = super::parse_duration)]
    pub rest: Duration,
    /// change-events: the seed of the random keys and moments (default:
    /// from the clock; the report gives it).
    #[arg(long = "change-events-seed")]
    pub seed: Option<u64>,
}

/// Checked before anything starts.
pub fn check_options(options: &super::Options) -> Result<(), String> {
    let phases = &options.phases;
    let Some(at) = phases.iter().position(|p| *p == Phase::ChangeEvents) else {
        return Ok(());
    };
    if at + 1 != phases.len() {
        return Err(
            "change-events leaves the keys it rotated one version ahead of the rest of the fleet: list it last in --phases"
                .into(),
        );
    }
    if options.change_events.rotations == 0 {
        return Err("--change-events-rotations must be at least 1".into());
    }
    Ok(())
}

/// An SQS client of the bench's own (the test bed's key, not the controller's).
async fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&moto::sdk_config(endpoint).await)
}

/// Makes the queue in moto; its URL, for `--change-events-queue`.
pub async fn create_queue(endpoint: &str) -> Result<String, String> {
    let created = sqs(endpoint)
        .await
        .create_queue()
        .queue_name(QUEUE)
        .send()
        .await
        .map_err(|e| format!("creating the SQS queue {QUEUE} in moto: {e:?}"))?;
    created
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| format!("moto gave no URL for the queue {QUEUE}"))
}

/// The controller's flags for the queue, if there is one.
pub fn controller_args(queue: Option<&str>) -> Vec<String> {
    queue
        .map(|url| vec!["--change-events-queue".to_string(), url.to_string()])
        .unwrap_or_default()
}

fn event_time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Secrets Manager PutSecretValue as EventBridge delivers CloudTrail's
/// record of it to an SQS target.
pub fn secrets_manager_event(
    name: &str,
    arn: &str,
    version_id: &str,
    at: jiff::Timestamp,
) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": ACCOUNT,
        "time": event_time(at),
        "region": fleet::REGION,
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "accountId": ACCOUNT},
            "eventTime": event_time(at),
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "PutSecretValue",
            "awsRegion": fleet::REGION,
            "sourceIPAddress": "127.0.0.1",
            "userAgent": "secretsync-bench",
            "requestParameters": {
                "secretId": name,
                "clientRequestToken": uuid::Uuid::new_v4().to_string(),
            },
            "responseElements": {
                "arn": arn,
                "versionId": version_id,
                "versionStages": ["AWSCURRENT"],
            },
            "requestID": uuid::Uuid::new_v4().to_string(),
            "eventID": uuid::Uuid::new_v4().to_string(),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
        },
    })
}

/// An SSM "Parameter Store Change" event as EventBridge delivers it.
pub fn parameter_store_event(name: &str, operation: &str, at: jiff::Timestamp) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Parameter Store Change",
        "source": "aws.ssm",
        "account": ACCOUNT,
        "time": event_time(at),
        "region": fleet::REGION,
        "resources": [format!(
            "arn:aws:ssm:{}:{ACCOUNT}:parameter/{}",
            fleet::REGION,
            name.trim_start_matches('/')
        )],
        "detail": {
            "operation": operation,
            "name": name,
            "type": "SecureString",
            "description": "",
        },
    })
}

/// The controller's `secretsync_change_events_total`, by outcome (0 where
/// not shown yet), from `http://ADDRESS/metrics`.
fn scrape(address: &str) -> Result<BTreeMap<String, u64>, String> {
    let url = format!("http://{address}/metrics");
    let text = ureq::get(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(counts_of(&text))
}

/// `secretsync_change_events_total` by outcome in a /metrics text, summed
/// over any other labels; every outcome shown, 0 where absent.
fn counts_of(text: &str) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = OUTCOMES.iter().map(|o| (o.to_string(), 0)).collect();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(COUNTER) else {
            continue;
        };
        let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.split_once("} ")) else {
            continue;
        };
        let Some(outcome) = labels.split(',').find_map(|l| {
            l.trim()
                .strip_prefix("outcome=\"")
                .and_then(|v| v.strip_suffix('"'))
        }) else {
            continue;
        };
        let value = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        *counts.entry(outcome.to_string()).or_default() += value as u64;
    }
    counts
}

fn since(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// One key rotated: what reads it and when things happened.
struct Rotation {
    key: RemoteKey,
    /// From the start of the stage.
    offset: Duration,
    /// (ExternalSecret = Secret, data key, the new bytes), every ref reading the key.
    checks: Vec<(tracker::Id, String, Vec<u8>)>,
    readers: BTreeSet<tracker::Id>,
}

/// When a rotation's Put was sent and its event sent, and the event's body.
#[derive(Clone, Default)]
struct Sent {
    put: Option<Instant>,
    event: Option<Instant>,
    body: Option<String>,
}

/// Percentiles by nearest rank (p99 of 20 samples is the largest).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Latency {
    fn of(samples: &[Option<f64>]) -> Latency {
        let mut sorted: Vec<f64> = samples.iter().flatten().copied().collect();
        sorted.sort_by(f64::total_cmp);
        Latency {
            p50: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied(),
        }
    }
}

/// The controller with nothing changed.
#[derive(Clone, Debug, Serialize)]
pub struct Rest {
    pub seconds: f64,
    /// The controller's AWS calls in the window, by API.
    pub aws_calls: BTreeMap<String, u64>,
    /// Its SQS calls, and all its calls, scaled to an hour.
    pub sqs_calls_per_hour: f64,
    pub aws_calls_per_hour: f64,
    /// What long polls of 20 s on one queue make in an hour.
    pub long_polls_per_hour_expected: f64,
    pub cost: super::StageCost,
}

/// One rotation's figures.
#[derive(Clone, Debug, Serialize)]
pub struct RotationFigures {
    pub key: String,
    pub service: &'static str,
    pub offset_seconds: f64,
    /// ExternalSecrets (= Secrets) reading the key.
    pub readers: usize,
    /// From the Put being sent until every reader held the new value.
    pub put_to_secrets: Option<f64>,
    /// From the event being sent until then.
    pub event_to_secrets: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rotations {
    pub rotations: Vec<RotationFigures>,
    pub put_to_secrets: Latency,
    pub event_to_secrets: Latency,
    /// The target for the p99 from the Put, and whether it held.
    pub target_p99_seconds: f64,
    pub target_met: bool,
    /// The controller's AWS calls in the stage (from its start until it was
    /// quiet after the last rotation), by API, and divided by the rotations.
    pub aws_calls: BTreeMap<String, u64>,
    pub aws_calls_per_rotation: BTreeMap<String, f64>,
    /// Of them, what is not SQS (the fetches), per rotation.
    pub fetches_per_rotation: f64,
    /// The stage's length, and the long polls it would hold at rest.
    pub stage_seconds: f64,
    pub long_polls_at_rest: f64,
    /// `secretsync_change_events_total` growth in the stage, by outcome.
    pub counted: BTreeMap<String, u64>,
    /// ExternalSecrets reading a rotated key, and ExternalSecrets of the
    /// fleet refreshed in the stage (`status.refreshTime`).
    pub readers: usize,
    pub external_secrets_refreshed: usize,
    pub cost: super::StageCost,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stray {
    /// Messages sent, by the outcome they must get.
    pub sent: BTreeMap<String, u64>,
    /// `secretsync_change_events_total` growth meanwhile.
    pub counted: BTreeMap<String, u64>,
    pub counted_as_expected: bool,
    /// The controller's AWS calls meanwhile, by API.
    pub aws_calls: BTreeMap<String, u64>,
    /// Messages left in the queue at the end (visible and in flight).
    pub left_in_queue: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChangeEventsReport {
    pub phase: String,
    pub commit: String,
    pub fleet: fleet::FleetSize,
    pub seed: u64,
    pub spread_seconds: f64,
    pub delay_seconds: f64,
    pub rest: Option<Rest>,
    pub rotations: Rotations,
    pub stray: Stray,
    /// Every Secret holds what moto holds (fresh list, fresh read) at the end.
    pub verified: bool,
    pub notes: Vec<String>,
}

/// The keys to rotate: read by at least one ExternalSecret, Secrets Manager
/// and SSM in turn (one service running out, the other goes on), shuffled.
fn pick_keys(fleet: &fleet::Fleet, count: usize, rng: &mut impl Rng) -> Vec<RemoteKey> {
    let read: BTreeSet<&RemoteKey> = fleet
        .external_secrets
        .iter()
        .flat_map(|es| es.refs.iter().map(|r| &r.remote))
        .collect();
    let mut sm: Vec<&RemoteKey> = read
        .iter()
        .copied()
        .filter(|k| k.service == Service::SecretsManager)
        .collect();
    let mut ssm: Vec<&RemoteKey> = read
        .iter()
        .copied()
        .filter(|k| k.service == Service::ParameterStore)
        .collect();
    sm.shuffle(rng);
    ssm.shuffle(rng);
    let (mut sm, mut ssm) = (sm.into_iter(), ssm.into_iter());
    let mut keys = Vec::with_capacity(count);
    while keys.len() < count {
        let next = if keys.len() % 2 == 0 {
            sm.next().or_else(|| ssm.next())
        } else {
            ssm.next().or_else(|| sm.next())
        };
        match next {
            Some(key) => keys.push(key.clone()),
            None => break,
        }
    }
    keys
}

/// What a rotation needs: the bench's clients, the queue, the new version,
/// the delay before the event, and where to note the times.
#[derive(Clone)]
struct Rotator {
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    version: u32,
    delay: Duration,
    sent: Arc<Mutex<Vec<Sent>>>,
}

/// Puts the new value of `key` and sends its event `delay` later.
async fn rotate(rotator: Rotator, key: RemoteKey, index: usize) -> Result<(), String> {
    let Rotator {
        sm,
        ssm,
        sqs,
        queue,
        version,
        delay,
        sent,
    } = rotator;
    let value = value_of(&key, version);
    sent.lock().unwrap()[index].put = Some(Instant::now());
    let event = match key.service {
        Service::SecretsManager => {
            let put = sm
                .put_secret_value()
                .secret_id(&key.name)
                .secret_string(value)
                .send()
                .await
                .map_err(|e| format!("PutSecretValue {}: {e:?}", key.name))?;
            tokio::time::sleep(delay).await;
            secrets_manager_event(
                &key.name,
                put.arn().unwrap_or_default(),
                put.version_id().unwrap_or_default(),
                jiff::Timestamp::now(),
            )
        }
        Service::ParameterStore => {
            ssm.put_parameter()
                .name(&key.name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .map_err(|e| format!("PutParameter {}: {e:?}", key.name))?;
            tokio::time::sleep(delay).await;
            parameter_store_event(&key.name, "Update", jiff::Timestamp::now())
        }
    };
    let body = event.to_string();
    let at = Instant::now();
    sqs.send_message()
        .queue_url(&queue)
        .message_body(&body)
        .send()
        .await
        .map_err(|e| format!("sending the event for {} to the queue: {e:?}", key.name))?;
    let mut sent = sent.lock().unwrap();
    sent[index].event = Some(at);
    sent[index].body = Some(body);
    Ok(())
}

/// Messages in the queue, visible or in flight.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue: &str) -> Option<u64> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .ok()?;
    let map = attributes.attributes()?;
    let read = |name: QueueAttributeName| {
        map.get(&name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(
        read(QueueAttributeName::ApproximateNumberOfMessages)
            + read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

fn is_sqs(call: &str) -> bool {
    call.starts_with("AmazonSQS.")
}

impl Bench {
    fn change_event_counts(&self) -> Result<BTreeMap<String, u64>, String> {
        let address = self
            .health
            .clone()
            .ok_or("the controller's address is unknown")?;
        tokio::task::block_in_place(|| scrape(&address))
    }

    /// `rest` with nothing changed: the controller's calls.
    async fn change_events_rest(&mut self, rest: Duration) -> Result<Rest, String> {
        align_to_second().await;
        let start: Start = self.begin();
        let end = start.at + rest;
        while Instant::now() < end {
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(250).min(end - Instant::now())).await;
        }
        let cost = self.stage_cost(&start);
        let calls = measure::controller_calls(&self.stop_recording());
        let seconds = rest.as_secs_f64();
        let per_hour = |n: u64| n as f64 * 3600.0 / seconds;
        let sqs_calls: u64 = calls
            .iter()
            .filter(|(k, _)| is_sqs(k))
            .map(|(_, v)| v)
            .sum();
        Ok(Rest {
            seconds,
            sqs_calls_per_hour: per_hour(sqs_calls),
            aws_calls_per_hour: per_hour(calls.values().sum()),
            long_polls_per_hour_expected: 3600.0 / LONG_POLL_SECONDS,
            aws_calls: calls,
            cost,
        })
    }

    pub(super) async fn change_events(&mut self) -> Result<(), String> {
        let queue = self
            .change_events_queue
            .clone()
            .ok_or("change-events: the queue was not made before the controller started")?;
        let args = self.options.change_events.clone();
        let seed = args
            .seed
            .unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let config = moto::sdk_config(&self.moto.endpoint).await;
        let sm = aws_sdk_secretsmanager::Client::new(&config);
        let ssm = aws_sdk_ssm::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let mut notes = Vec::new();
        if self.options.interval < Duration::from_secs(600) {
            notes.push(format!(
                "refreshInterval {} s: the schedule may have refreshed Secrets too (run with --interval 1h)",
                self.options.interval.as_secs()
            ));
        }
        self.wait_quiet(Duration::from_secs(15)).await;

        // 1. At rest.
        let rest = if args.rest.is_zero() {
            None
        } else {
            Some(self.change_events_rest(args.rest).await?)
        };

        // 2. Rotations.
        let keys = pick_keys(&self.fleet, args.rotations, &mut rng);
        if keys.len() < args.rotations {
            notes.push(format!(
                "the fleet reads {} keys: {} rotations instead of {}",
                keys.len(),
                keys.len(),
                args.rotations
            ));
        }
        let new_version = self.version + 1;
        let mut values = aws::values_at(&self.fleet.remote_keys, self.version);
        for key in &keys {
            values.insert(key.clone(), value_of(key, new_version));
        }
        let expected = super::expected_of(&self.fleet.external_secrets, &values)?;
        let mut offsets: Vec<Duration> = keys
            .iter()
            .map(|_| args.spread.mul_f64(rng.r#gen::<f64>()))
            .collect();
        offsets.sort();
        let rotations: Vec<Rotation> = keys
            .iter()
            .zip(offsets)
            .map(|(key, offset)| {
                let mut checks = Vec::new();
                let mut readers = BTreeSet::new();
                for es in &self.fleet.external_secrets {
                    let data = &expected[&(es.namespace.clone(), es.name.clone())];
                    for r in es.refs.iter().filter(|r| &r.remote == key) {
                        let id = (es.namespace.clone(), es.name.clone());
                        checks.push((
                            id.clone(),
                            r.secret_key.clone(),
                            data[&r.secret_key].clone(),
                        ));
                        readers.insert(id);
                    }
                }
                Rotation {
                    key: key.clone(),
                    offset,
                    checks,
                    readers,
                }
            })
            .collect();
        let readers: BTreeSet<&tracker::Id> = rotations.iter().flat_map(|r| &r.readers).collect();
        let readers = readers.len();
        self.expect(expected);
        let counts_before = self.change_event_counts()?;
        align_to_second().await;
        let start = self.begin();
        let sent = Arc::new(Mutex::new(vec![Sent::default(); rotations.len()]));
        let rotator = {
            let plan: Vec<(RemoteKey, Duration)> = rotations
                .iter()
                .map(|r| (r.key.clone(), r.offset))
                .collect();
            let rotator = Rotator {
                sm: sm.clone(),
                ssm: ssm.clone(),
                sqs: sqs.clone(),
                queue: queue.clone(),
                version: new_version,
                delay: args.delay,
                sent: sent.clone(),
            };
            let base = tokio::time::Instant::from_std(start.at);
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for (index, (key, offset)) in plan.into_iter().enumerate() {
                    tokio::time::sleep_until(base + offset).await;
                    tasks.push(tokio::spawn(rotate(rotator.clone(), key, index)));
                }
                for task in tasks {
                    task.await.map_err(|e| format!("a rotation: {e}"))??;
                }
                Ok::<(), String>(())
            })
        };
        let mut right_at: Vec<Option<Instant>> = vec![None; rotations.len()];
        let deadline = start.at + args.spread + self.options.timeout;
        let mut next_progress = Instant::now() + PROGRESS;
        let mut seen = self.tracker.progress();
        let mut changed = Instant::now();
        let mut rotator = Some(rotator);
        loop {
            self.check_alive()?;
            if rotator.as_ref().is_some_and(|r| r.is_finished()) {
                let finished = rotator.take().expect("checked");
                finished
                    .await
                    .map_err(|e| format!("the rotations: {e}"))??;
            }
            let puts: Vec<Option<Instant>> = sent.lock().unwrap().iter().map(|s| s.put).collect();
            let now = Instant::now();
            for (i, rotation) in rotations.iter().enumerate() {
                if right_at[i].is_none()
                    && puts[i].is_some()
                    && rotation
                        .checks
                        .iter()
                        .all(|(id, key, value)| self.tracker.holds(id, key, value))
                {
                    right_at[i] = Some(now);
                }
            }
            if right_at.iter().all(Option::is_some) || Instant::now() >= deadline {
                break;
            }
            let progress = self.tracker.progress();
            if progress != seen {
                (seen, changed) = (progress, Instant::now());
            } else if changed.elapsed() >= STALLED {
                self.tracker.resync(&self.client).await?;
                changed = Instant::now();
            }
            if Instant::now() >= next_progress {
                if !self.options.json_only {
                    eprintln!(
                        "bench: change-events: {}/{} rotations reached their Secrets",
                        right_at.iter().flatten().count(),
                        rotations.len()
                    );
                }
                next_progress += PROGRESS;
            }
            tokio::time::sleep(POLL).await;
        }
        if let Some(rotator) = rotator {
            rotator.await.map_err(|e| format!("the rotations: {e}"))??;
        }
        self.wait_quiet(Duration::from_secs(15)).await;
        // The last messages deleted (done once their Secrets are written).
        let drained = Instant::now() + Duration::from_secs(10);
        while queue_depth(&sqs, &queue).await != Some(0) && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cost = self.stage_cost(&start);
        let stage_end = jiff::Timestamp::now();
        let recorded: Vec<Recorded> = self.stop_recording();
        let counted = since(&self.change_event_counts()?, &counts_before);
        let aws_calls = measure::controller_calls(&recorded);
        let n = rotations.len().max(1) as f64;
        let sent_now: Vec<Sent> = sent.lock().unwrap().clone();
        let figures: Vec<RotationFigures> = rotations
            .iter()
            .zip(&right_at)
            .zip(&sent_now)
            .map(|((rotation, right), sent)| RotationFigures {
                key: rotation.key.name.clone(),
                service: match rotation.key.service {
                    Service::SecretsManager => "SecretsManager",
                    Service::ParameterStore => "ParameterStore",
                },
                offset_seconds: rotation.offset.as_secs_f64(),
                readers: rotation.readers.len(),
                put_to_secrets: right
                    .zip(sent.put)
                    .map(|(r, p)| r.saturating_duration_since(p).as_secs_f64()),
                event_to_secrets: right
                    .zip(sent.event)
                    .map(|(r, e)| r.saturating_duration_since(e).as_secs_f64()),
            })
            .collect();
        let put_to_secrets =
            Latency::of(&figures.iter().map(|f| f.put_to_secrets).collect::<Vec<_>>());
        let event_to_secrets = Latency::of(
            &figures
                .iter()
                .map(|f| f.event_to_secrets)
                .collect::<Vec<_>>(),
        );
        let all_reached = right_at.iter().all(Option::is_some);
        if !all_reached {
            let missed: Vec<&str> = rotations
                .iter()
                .zip(&right_at)
                .filter(|(_, r)| r.is_none())
                .map(|(r, _)| r.key.name.as_str())
                .collect();
            notes.push(format!(
                "{} rotations never reached every Secret reading the key within {:.0} s: {}",
                missed.len(),
                self.options.timeout.as_secs_f64(),
                missed.join(", ")
            ));
        }
        // One each; more if a message came back (its Secrets not written
        // in time), fewer if the Secrets did not change through the queue.
        let applied = counted.get("applied").copied().unwrap_or(0);
        let all_applied = applied >= rotations.len() as u64;
        if applied != rotations.len() as u64 {
            notes.push(format!(
                "{COUNTER}{{outcome=\"applied\"}} grew by {applied} for {} events",
                rotations.len()
            ));
        }
        let stage_seconds = cost.stage_seconds;
        let rotations_figures = Rotations {
            target_p99_seconds: 3.0,
            target_met: all_reached && put_to_secrets.p99.is_some_and(|p| p < 3.0),
            put_to_secrets,
            event_to_secrets,
            aws_calls_per_rotation: aws_calls
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64 / n))
                .collect(),
            fetches_per_rotation: aws_calls
                .iter()
                .filter(|(k, _)| !is_sqs(k))
                .map(|(_, v)| *v as f64)
                .sum::<f64>()
                / n,
            aws_calls,
            stage_seconds,
            long_polls_at_rest: stage_seconds / LONG_POLL_SECONDS,
            counted,
            readers,
            external_secrets_refreshed: self
                .tracker
                .refreshes_between(start.wall, stage_end + jiff::SignedDuration::from_secs(1))
                .refreshed,
            rotations: figures,
            cost,
        };

        // 3. Stray messages.
        let bodies: Vec<String> = sent_now.iter().filter_map(|s| s.body.clone()).collect();
        let now = jiff::Timestamp::now();
        let mut stray: Vec<(&str, String)> = Vec::new();
        for body in bodies.iter().take(2) {
            stray.push(("duplicate", body.clone()));
        }
        stray.push(("malformed", "this is not an event".into()));
        stray.push(("malformed", "[1, 2, 3]".into()));
        let mut nameless = parameter_store_event("/bench/parameter-00000", "Update", now);
        nameless["detail"] = json!({"operation": "Update"});
        stray.push(("malformed", nameless.to_string()));
        stray.push((
            "unmatched",
            parameter_store_event("/not-read-by-the-fleet/parameter", "Update", now).to_string(),
        ));
        let unread_arn = format!(
            "arn:aws:secretsmanager:{}:{ACCOUNT}:secret:not-read-by-the-fleet/secret-AbCdEf",
            fleet::REGION
        );
        let unread = secrets_manager_event(
            "not-read-by-the-fleet/secret",
            &unread_arn,
            &uuid::Uuid::new_v4().to_string(),
            now,
        );
        stray.push(("unmatched", unread.to_string()));
        // A read changes nothing; nor does another service's event.
        let mut read = secrets_manager_event(
            "bench/secret-00000",
            &unread_arn,
            &uuid::Uuid::new_v4().to_string(),
            now,
        );
        read["id"] = json!(uuid::Uuid::new_v4().to_string());
        read["detail"]["eventName"] = json!("GetSecretValue");
        read["detail"]["responseElements"] = Value::Null;
        stray.push(("unrelated", read.to_string()));
        let mut other = parameter_store_event("/bench/parameter-00000", "Update", now);
        other["source"] = json!("aws.ec2");
        other["detail-type"] = json!("EC2 Instance State-change Notification");
        other["detail"] = json!({"instance-id": "i-0123456789abcdef0", "state": "running"});
        stray.push(("unrelated", other.to_string()));
        let mut expected_counts: BTreeMap<String, u64> = BTreeMap::new();
        for (outcome, _) in &stray {
            *expected_counts.entry(outcome.to_string()).or_default() += 1;
        }
        let before = self.change_event_counts()?;
        tokio::task::block_in_place(|| self.moto.start_recording());
        for (_, body) in &stray {
            sqs.send_message()
                .queue_url(&queue)
                .message_body(body)
                .send()
                .await
                .map_err(|e| format!("sending a stray message to the queue: {e:?}"))?;
        }
        let waited = Instant::now() + STRAY_WAIT;
        let mut counted = since(&self.change_event_counts()?, &before);
        let enough = |counted: &BTreeMap<String, u64>| {
            expected_counts
                .iter()
                .all(|(k, v)| counted.get(k).copied().unwrap_or(0) >= *v)
        };
        while !enough(&counted) && Instant::now() < waited {
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            counted = since(&self.change_event_counts()?, &before);
        }
        self.wait_quiet(Duration::from_secs(15)).await;
        let drained = Instant::now() + Duration::from_secs(10);
        let mut left_in_queue = queue_depth(&sqs, &queue).await;
        while left_in_queue != Some(0) && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left_in_queue = queue_depth(&sqs, &queue).await;
        }
        counted = since(&self.change_event_counts()?, &before);
        let stray_calls = measure::controller_calls(&self.stop_recording());
        self.check_alive()?;
        let counted_as_expected = expected_counts
            .iter()
            .all(|(k, v)| counted.get(k).copied().unwrap_or(0) == *v)
            && counted.get("applied").copied().unwrap_or(0) == 0;
        if !counted_as_expected {
            notes.push(format!(
                "the stray messages were counted {counted:?}, expected {expected_counts:?} and no applied"
            ));
        }
        let stray_fetches: Vec<String> = stray_calls
            .iter()
            .filter(|(k, _)| !is_sqs(k))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !stray_fetches.is_empty() {
            notes.push(format!(
                "while the stray messages were read the controller also called {}",
                stray_fetches.join(", ")
            ));
        }
        if left_in_queue != Some(0) {
            notes.push(format!(
                "{} messages left in the queue at the end",
                left_in_queue.map_or("an unknown number of".to_string(), |n| n.to_string())
            ));
        }
        let stray = Stray {
            sent: expected_counts,
            counted,
            counted_as_expected,
            aws_calls: stray_calls,
            left_in_queue,
        };

        // Everything, afresh.
        let held = self.aws.read_all(&self.fleet.remote_keys).await?;
        let moto_agrees = held == values;
        if !moto_agrees {
            notes.push("moto does not hold what the bench wrote".into());
        }
        let live = tracker::list_secrets(&self.client).await?;
        let mut wrong = Vec::new();
        for es in &self.fleet.external_secrets {
            let id = (es.namespace.clone(), es.name.clone());
            if live.get(&id) != Some(&fleet::expected_data(es, &held)?) {
                wrong.push(format!("{}/{}", id.0, id.1));
            }
        }
        if !wrong.is_empty() {
            notes.push(format!(
                "at the end {} Secrets did not hold what moto holds (first: {})",
                wrong.len(),
                wrong.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let verified = moto_agrees && wrong.is_empty();
        let passed = verified && all_reached && all_applied && stray.counted_as_expected;
        let report = ChangeEventsReport {
            phase: "change-events".into(),
            commit: self.commit.clone(),
            fleet: self.fleet.size.clone(),
            seed,
            spread_seconds: args.spread.as_secs_f64(),
            delay_seconds: args.delay.as_secs_f64(),
            rest,
            rotations: rotations_figures,
            stray,
            verified,
            notes,
        };
        if !self.options.json_only {
            println!("{}", report.table());
        }
        println!("{}", report.json());
        if !passed {
            return Err(
                "change-events: not every rotation reached its Secrets through the queue, or the counters or the final check were off (see the notes)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn seconds(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.2} s"))
        .unwrap_or_else(|| "never".into())
}

fn calls_line(calls: &BTreeMap<String, u64>) -> String {
    if calls.is_empty() {
        return "none".into();
    }
    calls
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ChangeEventsReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let f = &self.fleet;
        let r = &self.rotations;
        let _ = writeln!(
            out,
            "== change-events: {} keys rotated at random moments over {:.0} s, each event sent {:.2} s after its Put (seed {}) ==\n   fleet: {} ExternalSecrets in {} namespaces, {} Secrets Manager secrets, {} SSM parameters, refreshInterval {}s; controller commit {}",
            r.rotations.len(),
            self.spread_seconds,
            self.delay_seconds,
            self.seed,
            f.es,
            f.namespaces,
            f.sm_secrets,
            f.ssm_parameters,
            f.interval_seconds,
            self.commit
        );
        match &self.rest {
            Some(rest) => {
                let _ = writeln!(
                    out,
                    "   -- at rest, {:.0} s with nothing changed: AWS calls {}; SQS {:.0}/h (long polls of 20 s: {:.0}/h), all {:.0}/h; controller CPU {:.2} s",
                    rest.seconds,
                    calls_line(&rest.aws_calls),
                    rest.sqs_calls_per_hour,
                    rest.long_polls_per_hour_expected,
                    rest.aws_calls_per_hour,
                    rest.cost.controller_cpu_seconds
                );
            }
            None => {
                let _ = writeln!(out, "   -- at rest: not measured (--change-events-rest 0s)");
            }
        }
        let _ = writeln!(
            out,
            "   -- rotations: Put -> every Secret reading the key holds the new value: p50 {}, p99 {}, max {} (target p99 < {:.0} s: {}); event sent -> Secrets: p50 {}, p99 {}, max {}",
            seconds(r.put_to_secrets.p50),
            seconds(r.put_to_secrets.p99),
            seconds(r.put_to_secrets.max),
            r.target_p99_seconds,
            if r.target_met { "met" } else { "NOT met" },
            seconds(r.event_to_secrets.p50),
            seconds(r.event_to_secrets.p99),
            seconds(r.event_to_secrets.max),
        );
        let each: Vec<String> = r
            .rotations
            .iter()
            .map(|x| {
                format!(
                    "{} ({} readers) {}",
                    x.key,
                    x.readers,
                    seconds(x.put_to_secrets)
                )
            })
            .collect();
        for chunk in each.chunks(4) {
            let _ = writeln!(out, "     {}", chunk.join("; "));
        }
        let _ = writeln!(
            out,
            "     {:<44} {:>8} {:>14}",
            "AWS calls (controller, moto's recording)", "in all", "per rotation"
        );
        for (call, count) in &r.aws_calls {
            let _ = writeln!(
                out,
                "       {call:<42} {count:>8} {:>14.2}",
                r.aws_calls_per_rotation.get(call).copied().unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            out,
            "     not SQS (fetches and listings) per rotation: {:.2}; the stage lasted {:.1} s, {:.1} long polls' worth at rest",
            r.fetches_per_rotation, r.stage_seconds, r.long_polls_at_rest
        );
        let _ = writeln!(
            out,
            "     {COUNTER} grew by {:?}; {} ExternalSecrets read a rotated key, {} of the fleet refreshed in the stage",
            r.counted, r.readers, r.external_secrets_refreshed
        );
        super::report::stage_controller_line(&mut out, &r.cost);
        super::report::stage_api_lines(&mut out, &r.cost.api);
        let s = &self.stray;
        let _ = writeln!(
            out,
            "   -- stray messages sent {:?}: counted {:?} ({}); AWS calls meanwhile: {}; left in the queue: {}",
            s.sent,
            s.counted,
            if s.counted_as_expected {
                "as expected"
            } else {
                "NOT as expected"
            },
            calls_line(&s.aws_calls),
            s.left_in_queue
                .map_or("unknown".to_string(), |n| n.to_string())
        );
        super::report::verified_and_notes(&mut out, self.verified, &self.notes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_shape_eventbridge_delivers() {
        let at: jiff::Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let sm = secrets_manager_event(
            "bench/secret-00001",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bench/secret-00001-AbCdEf",
            "v1",
            at,
        );
        assert_eq!(sm["detail-type"], "AWS API Call via CloudTrail");
        assert_eq!(sm["source"], "aws.secretsmanager");
        assert_eq!(sm["time"], "2026-12-06T10:00:00Z");
        assert_eq!(sm["detail"]["eventName"], "PutSecretValue");
        assert_eq!(
            sm["detail"]["requestParameters"]["secretId"],
            "bench/secret-00001"
        );
        let ssm = parameter_store_event("/bench/parameter-00002", "Update", at);
        assert_eq!(ssm["detail-type"], "Parameter Store Change");
        assert_eq!(
            ssm["resources"][0],
            "arn:aws:ssm:eu-west-1:123456789012:parameter/bench/parameter-00002"
        );
        assert_eq!(ssm["detail"]["name"], "/bench/parameter-00002");
    }

    #[test]
    fn the_phase_must_come_last_and_rotate_something() {
        use clap::Parser;
        let parse = |phases: &str, rotations: &str| {
            super::super::Options::parse_from([
                "bench",
                "--phases",
                phases,
                "--change-events-rotations",
                rotations,
            ])
        };
        assert!(check_options(&parse("changed-forced,change-events", "20")).is_ok());
        assert!(check_options(&parse("steady-unchanged", "0")).is_ok());
        let error = check_options(&parse("change-events,steady-unchanged", "20")).unwrap_err();
        assert!(error.contains("list it last"), "{error}");
        assert!(check_options(&parse("change-events", "0")).is_err());
    }

    #[test]
    fn counters_are_read_by_outcome_and_percentiles_by_rank() {
        let text = "# TYPE secretsync_change_events_total counter\n\
            secretsync_change_events_total{outcome=\"applied\"} 3\n\
            secretsync_change_events_total{queue=\"a\",outcome=\"duplicate\"} 2\n\
            secretsync_change_events_total{queue=\"b\",outcome=\"duplicate\"} 1\n\
            secretsync_change_events_totally_else{outcome=\"applied\"} 9\n";
        let counts = counts_of(text);
        assert_eq!(counts["applied"], 3);
        assert_eq!(counts["duplicate"], 3);
        assert_eq!(counts["malformed"], 0);
        let sorted: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(10.0));
        assert_eq!(percentile(&sorted, 99.0), Some(20.0));
        assert_eq!(percentile(&[], 99.0), None);
    }
}
