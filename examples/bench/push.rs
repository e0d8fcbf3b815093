//! The `push-secret` phase: `--push-secrets` PushSecrets (`secretsync.io/v1alpha1`)
//! spread over `--push-namespaces` namespaces, one SecretStore (Secrets
//! Manager) per namespace; each pushes the `password` key of its own source
//! Secret to its own remote key `bench/push/<namespace>/<i>`, refreshInterval
//! 1h. Three stages, each with the controller's AWS calls by kind (moto's
//! recording), its time, the controller's memory, CPU and API requests:
//!
//! - `first-push`: the namespaces, stores and source Secrets exist (set up,
//!   not measured); the PushSecrets are created; until every one is Ready
//!   (Synced) and every remote value holds its source's value.
//! - `steady-forced`: nothing changed; every PushSecret gets a new
//!   `secretsync.io/force-sync` annotation; until every one refreshed
//!   (`status.refreshTime`). The cost rule: one DescribeSecret per remote
//!   key, no write, no value read.
//! - `change`: 10 source Secrets get a new value; until those 10 remote values
//!   hold it (pushed from the watch of Secrets: the interval is an hour). The
//!   cost rule: one PutSecretValue per changed value, none for the others;
//!   and the seconds from each Secret's update (the moment its PATCH was
//!   sent) to its new remote value (the bench reads the 10 keys every 50 ms).
//!
//! A call counts as the phase's when its request names a `bench/push/` key;
//! the controller's other calls in a stage (the fleet's own refreshes) are
//! shown apart. The peak RSS (VmHWM) is reset at each stage's start, so each
//! stage reports its own. At the end every remote value is read afresh and
//! checked, and the namespaces are deleted (deletionPolicy None: the remote
//! keys stay in moto).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::{Value, json};

use super::fleet::{self, FleetSize};
use super::measure;
use super::report::mib;
use super::{Bench, FORCE_SYNC, PROGRESS, Start, align_to_second, aws, create, tracker};
use crate::support::moto::{self, Recorded};

/// Every remote key the phase writes starts with this.
pub const PREFIX: &str = "bench/push/";
/// Each namespace's SecretStore.
pub const STORE: &str = "bench-push-sm";
/// The source Secrets changed in the `change` stage.
pub const CHANGED: usize = 10;
/// The five calls a push can make; always shown, 0 when not made.
const KINDS: [&str; 5] = [
    "secretsmanager.CreateSecret",
    "secretsmanager.DescribeSecret",
    "secretsmanager.GetSecretValue",
    "secretsmanager.PutSecretValue",
    "secretsmanager.TagResource",
];
/// How often the bench lists the PushSecrets while it waits.
const STATUS_POLL: Duration = Duration::from_millis(250);
/// How often the bench reads the changed remote values while it waits (the
/// resolution of the update -> remote value seconds).
const REMOTE_POLL: Duration = Duration::from_millis(50);
/// The bench's own concurrent reads of moto.
const READS: usize = 8;

/// One PushSecret, its source Secret and its remote key.
#[derive(Clone, Debug)]
pub struct Item {
    pub namespace: String,
    pub index: usize,
}

impl Item {
    pub fn name(&self) -> String {
        format!("push-{:05}", self.index)
    }

    pub fn source(&self) -> String {
        format!("push-source-{:05}", self.index)
    }

    pub fn remote_key(&self) -> String {
        format!("{PREFIX}{}/{}", self.namespace, self.index)
    }

    /// The source's `password` at `version` (1 at the start, 2 once changed).
    pub fn value(&self, version: u32) -> String {
        format!("push-pw-{}-v{version}", self.index)
    }

    pub fn manifest(&self) -> Value {
        json!({
            "apiVersion": "secretsync.io/v1alpha1",
            "kind": "PushSecret",
            "metadata": {"name": self.name(), "namespace": self.namespace},
            "spec": {
                "refreshInterval": "1h",
                "secretStoreRefs": [{"name": STORE, "kind": "SecretStore"}],
                "selector": {"secret": {"name": self.source()}},
                "data": [{"match": {
                    "secretKey": "password",
                    "remoteRef": {"remoteKey": self.remote_key()},
                }}],
            },
        })
    }
}

/// What the phase creates.
pub struct PushPlan {
    pub namespaces: Vec<String>,
    pub items: Vec<Item>,
}

impl PushPlan {
    pub fn new(push_secrets: usize, namespaces: usize) -> PushPlan {
        let namespaces: Vec<String> = (0..namespaces.min(push_secrets))
            .map(|n| format!("bench-push-{n:03}"))
            .collect();
        let items = (0..push_secrets)
            .map(|index| Item {
                namespace: namespaces[index % namespaces.len()].clone(),
                index,
            })
            .collect();
        PushPlan { namespaces, items }
    }

    /// The `change` stage's items: one in each tenth of all, shifted by
    /// one more each time so they fall in different namespaces.
    pub fn changed(&self) -> Vec<Item> {
        let count = CHANGED.min(self.items.len());
        let step = self.items.len() / count;
        (0..count)
            .map(|i| self.items[i * step + i % step].clone())
            .collect()
    }
}

/// Seconds from a source Secret's update to its new remote value.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Per changed Secret, in the order changed; `None` if never seen.
    pub seconds: Vec<Option<f64>>,
    /// Nearest-rank median and the maximum of those seen.
    pub p50: Option<f64>,
    pub max: Option<f64>,
}

/// One stage of the phase.
#[derive(Clone, Debug, Serialize)]
pub struct PushStage {
    /// first-push, steady-forced, change.
    pub stage: String,
    pub title: String,
    /// From the trigger until the stage's condition held; `None` if not in `--timeout`.
    pub seconds_to_done: Option<f64>,
    /// What "done" means in this stage.
    pub done_means: String,
    /// Seconds the bench spent triggering (creating, annotating, updating).
    pub trigger_seconds: f64,
    /// The controller's calls naming a `bench/push/` key, by API (the five
    /// push calls always listed).
    pub aws_calls: BTreeMap<String, u64>,
    pub aws_calls_total: u64,
    /// What the cost rule (and the reconciler's code path) expects of those.
    pub expected: BTreeMap<String, u64>,
    pub expected_met: bool,
    /// Of `aws_calls`, requests moto received more than once with the same
    /// call and body, by API: the copies beyond the first. A transport retry
    /// of the SDK resends the same body (CreateSecret keeps its
    /// ClientRequestToken); so does a second read of the same key.
    pub aws_calls_repeated: BTreeMap<String, u64>,
    /// The controller's other calls in the stage (the fleet's refreshes).
    pub aws_calls_other: BTreeMap<String, u64>,
    /// Calls per tenth of the stage, of those naming push keys.
    pub aws_calls_by_tenth: Vec<u64>,
    /// `change` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(flatten)]
    pub cost: super::StageCost,
    pub notes: Vec<String>,
}

/// The phase's figures: one JSON line, one table.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    pub phase: String,
    pub commit: String,
    /// The ExternalSecret fleet beside it (the controller serves both).
    pub fleet: FleetSize,
    pub push_secrets: usize,
    pub namespaces: usize,
    pub changed: usize,
    /// Creating the namespaces, stores and source Secrets (not measured).
    pub setup_seconds: f64,
    pub stages: Vec<PushStage>,
    /// The highest of the stages' VmHWM.
    pub controller_peak_kib: u64,
    /// At the end: every remote value read afresh holds its source's value.
    pub verified: bool,
    pub notes: Vec<String>,
}

/// How the PushSecrets' statuses stand, from one list.
#[derive(Default)]
struct Standing {
    /// Ready True, reason Synced (and refreshed since the stage's trigger, when asked).
    done: usize,
    seen: usize,
    /// A few that are not done, with their Ready condition.
    not_done: Vec<String>,
}

impl Standing {
    fn summary(&self, total: usize) -> String {
        let mut text = format!(
            "{}/{total} PushSecrets done ({} listed)",
            self.done, self.seen
        );
        if !self.not_done.is_empty() {
            let _ = write!(text, "; first not done: {}", self.not_done.join("; "));
        }
        text
    }
}

fn push_secrets_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("secretsync.io", "v1alpha1", "PushSecret"),
        "pushsecrets",
    )
}

/// The Ready condition's status and reason, and `status.refreshTime`.
fn ready_of(object: &DynamicObject) -> (String, String, Option<jiff::Timestamp>) {
    let status = &object.data["status"];
    let ready = status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"));
    let field = |name: &str| {
        ready
            .and_then(|c| c[name].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let refreshed = status["refreshTime"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    (field("status"), field("reason"), refreshed)
}

/// Lists every PushSecret: how many are Ready (Synced), and refreshed at or
/// after `since`'s second when given (refreshTime has whole seconds).
async fn standing(
    client: &kube::Client,
    since: Option<jiff::Timestamp>,
) -> Result<Standing, String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &push_secrets_resource());
    let objects = tracker::list_all(&api, ListParams::default())
        .await
        .map_err(|e| format!("PushSecrets: {e}"))?;
    let since = since.map(|s| jiff::Timestamp::from_second(s.as_second()).unwrap_or(s));
    let mut standing = Standing {
        seen: objects.len(),
        ..Default::default()
    };
    for object in &objects {
        let (status, reason, refreshed) = ready_of(object);
        let fresh = match since {
            Some(since) => refreshed.is_some_and(|at| at >= since),
            None => true,
        };
        if status == "True" && reason == "Synced" && fresh {
            standing.done += 1;
        } else if standing.not_done.len() < 3 {
            let message = object.data["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>();
            standing.not_done.push(format!(
                "{}/{} Ready {status:?} {reason:?} refreshTime {} {message}",
                object.metadata.namespace.as_deref().unwrap_or_default(),
                object.metadata.name.as_deref().unwrap_or_default(),
                refreshed
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
            ));
        }
    }
    Ok(standing)
}

/// What moto holds for these keys (missing keys are left out), read with
/// the test bed's admin key, `READS` BatchGetSecretValue of 20 at a time.
async fn read_remote(
    sm: &aws_sdk_secretsmanager::Client,
    keys: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let chunks: Vec<Vec<String>> = keys.chunks(20).map(<[String]>::to_vec).collect();
    let pages: Vec<Vec<(String, String)>> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let response = sm
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk))
                .send()
                .await
                .map_err(|e| format!("reading pushed values back from moto: {e:?}"))?;
            Ok::<_, String>(
                response
                    .secret_values()
                    .iter()
                    .filter_map(|entry| {
                        let value = match (entry.secret_string(), entry.secret_binary()) {
                            (Some(text), _) => text.to_string(),
                            (None, Some(blob)) => {
                                String::from_utf8_lossy(blob.as_ref()).into_owned()
                            }
                            _ => return None,
                        };
                        Some((entry.name()?.to_string(), value))
                    })
                    .collect(),
            )
        })
        .buffer_unordered(READS)
        .try_collect()
        .await?;
    Ok(pages.into_iter().flatten().collect())
}

/// How many of `items` hold `version_of(item)` remotely; a few that do not.
async fn remote_right(
    sm: &aws_sdk_secretsmanager::Client,
    items: &[Item],
    version_of: impl Fn(&Item) -> u32,
) -> Result<(usize, Vec<String>), String> {
    let keys: Vec<String> = items.iter().map(Item::remote_key).collect();
    let held = read_remote(sm, &keys).await?;
    let mut right = 0;
    let mut wrong = Vec::new();
    for item in items {
        let key = item.remote_key();
        match held.get(&key) {
            Some(value) if *value == item.value(version_of(item)) => right += 1,
            Some(_) if wrong.len() < 3 => wrong.push(format!("{key} holds another value")),
            None if wrong.len() < 3 => wrong.push(format!("{key} missing")),
            _ => {}
        }
    }
    Ok((right, wrong))
}

/// Of recorded calls, the controller's, split into those naming a push key
/// (by API, the five push calls always listed) and the others.
fn split_calls(recorded: &[Recorded]) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut mine: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    let mut other = BTreeMap::new();
    for r in recorded.iter().filter(|r| !aws::made_by_bench(r)) {
        let side = if r.body.contains(PREFIX) {
            &mut mine
        } else {
            &mut other
        };
        *side.entry(r.call.clone()).or_default() += 1;
    }
    (mine, other)
}

/// Copies beyond the first of requests with the same call and body, by call.
fn repeated(recorded: &[Recorded]) -> BTreeMap<String, u64> {
    let mut seen: HashMap<(&str, &str), u64> = HashMap::new();
    for r in recorded {
        *seen.entry((r.call.as_str(), r.body.as_str())).or_default() += 1;
    }
    let mut copies = BTreeMap::new();
    for ((call, _), count) in seen {
        if count > 1 {
            *copies.entry(call.to_string()).or_default() += count - 1;
        }
    }
    copies
}

fn source_secret(item: &Item, version: u32) -> Result<Secret, String> {
    serde_json::from_value(json!({
        "metadata": {"name": item.source(), "namespace": item.namespace},
        "data": {"password": ByteString(item.value(version).into_bytes())},
    }))
    .map_err(|e| e.to_string())
}

/// The expectation as a map over the five push calls.
fn expect(create: u64, describe: u64, get: u64, put: u64, tag: u64) -> BTreeMap<String, u64> {
    KINDS
        .iter()
        .zip([create, describe, get, put, tag])
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// How a stage went, before it is measured.
struct StageOutcome {
    stage: &'static str,
    title: String,
    done_means: String,
    done: Option<Instant>,
    clock: Instant,
    trigger_seconds: f64,
    calls: Vec<Recorded>,
    expected: BTreeMap<String, u64>,
    latency: Option<Latency>,
    notes: Vec<String>,
}

impl Bench {
    /// A Secrets Manager client of the bench's own (the test bed's admin key).
    async fn bench_sm(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&moto::sdk_config(&self.moto.endpoint).await)
    }

    /// Polls until every PushSecret is done (see [`standing`]) and, when
    /// `remote`, every remote value holds version 1; or `deadline`.
    async fn wait_push_secrets(
        &mut self,
        total: usize,
        since: Option<jiff::Timestamp>,
        remote: Option<(&aws_sdk_secretsmanager::Client, &[Item])>,
        deadline: Instant,
    ) -> Result<(Option<Instant>, String), String> {
        let mut next_progress = Instant::now() + PROGRESS;
        loop {
            self.check_alive()?;
            let now = standing(&self.client, since).await?;
            let mut last = now.summary(total);
            if now.done == total && now.seen == total {
                match remote {
                    None => return Ok((Some(Instant::now()), last)),
                    Some((sm, items)) => match remote_right(sm, items, |_| 1).await {
                        Ok((right, _)) if right == items.len() => {
                            return Ok((Some(Instant::now()), last));
                        }
                        Ok((right, wrong)) => {
                            last = format!(
                                "{last}; {right}/{} remote values right ({})",
                                items.len(),
                                wrong.join(", ")
                            );
                        }
                        Err(e) => last = format!("{last}; {e}"),
                    },
                }
            }
            if Instant::now() >= deadline {
                return Ok((None, last));
            }
            if Instant::now() >= next_progress {
                if !self.options.json_only {
                    eprintln!(
                        "bench: push-secret: {last}; controller {} API requests so far",
                        measure::controller_work(self.server.stats())
                    );
                }
                next_progress += PROGRESS;
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    /// The stage's figures as of now.
    fn push_stage(&self, start: Start, outcome: StageOutcome) -> PushStage {
        let cost = self.stage_cost(&start);
        let (aws_calls, aws_calls_other) = split_calls(&outcome.calls);
        let (mine, _): (Vec<Recorded>, Vec<Recorded>) = outcome
            .calls
            .into_iter()
            .partition(|r| r.body.contains(PREFIX) && !aws::made_by_bench(r));
        let aws_calls_repeated = repeated(&mine);
        let length = cost.stage_seconds;
        let mut notes = outcome.notes;
        let mismatched: Vec<String> = outcome
            .expected
            .iter()
            .filter(|(kind, want)| aws_calls.get(*kind).copied().unwrap_or(0) != **want)
            .map(|(kind, want)| {
                format!(
                    "{kind} {} (expected {want})",
                    aws_calls.get(kind).copied().unwrap_or(0)
                )
            })
            .collect();
        if !mismatched.is_empty() {
            notes.push(format!("calls not as expected: {}", mismatched.join(", ")));
        }
        if !aws_calls_repeated.is_empty() {
            let copies: Vec<String> = aws_calls_repeated
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            notes.push(format!(
                "requests received again with the same body (SDK retries, or a key read twice): {}; the controller's log says how often a connection to moto failed ('Connection encountered an issue')",
                copies.join(", ")
            ));
        }
        PushStage {
            stage: outcome.stage.to_string(),
            title: outcome.title,
            seconds_to_done: outcome
                .done
                .map(|d| d.duration_since(outcome.clock).as_secs_f64()),
            done_means: outcome.done_means,
            trigger_seconds: outcome.trigger_seconds,
            aws_calls_total: aws_calls.values().sum(),
            aws_calls,
            expected_met: mismatched.is_empty(),
            expected: outcome.expected,
            aws_calls_repeated,
            aws_calls_other,
            aws_calls_by_tenth: super::report::tenths(
                &measure::controller_call_times(&mine, start.wall),
                length,
            ),
            latency: outcome.latency,
            cost,
            notes,
        }
    }

    pub(super) async fn push_secret(&mut self) -> Result<(), String> {
        let plan = PushPlan::new(self.options.push_secrets, self.options.push_namespaces);
        let total = plan.items.len();
        let concurrency = self.options.concurrency.max(1);
        let sm = self.bench_sm().await;
        let mut notes = Vec::new();
        let mut stages = Vec::new();
        let resource = push_secrets_resource();

        // Setup, not measured: namespaces, one SecretStore each, the sources.
        let setting_up = Instant::now();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        futures::stream::iter(&plan.namespaces)
            .map(|name| {
                let namespaces = namespaces.clone();
                async move {
                    let namespace: Namespace =
                        serde_json::from_value(json!({"metadata": {"name": name}}))
                            .map_err(|e| e.to_string())?;
                    namespaces
                        .create(&PostParams::default(), &namespace)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("creating namespace {name}: {e}"))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        for namespace in &plan.namespaces {
            let store = json!({"apiVersion": "secretsync.io/v1", "kind": "SecretStore",
                "metadata": {"name": STORE, "namespace": namespace},
                "spec": {"provider": {"aws": {"service": "SecretsManager", "region": fleet::REGION}}}});
            create(&self.client, Some(namespace), &store).await?;
        }
        let client = self.client.clone();
        futures::stream::iter(&plan.items)
            .map(|item| {
                let api: Api<Secret> = Api::namespaced(client.clone(), &item.namespace);
                async move {
                    api.create(&PostParams::default(), &source_secret(item, 1)?)
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            format!("creating Secret {}/{}: {e}", item.namespace, item.source())
                        })
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let setup_seconds = setting_up.elapsed().as_secs_f64();
        // The controller has seen them (and a fleet cycle under way ended).
        self.wait_quiet(Duration::from_secs(15)).await;

        // 1. First push: the PushSecrets are created.
        align_to_second().await;
        let start = self.begin();
        let creating = Instant::now();
        futures::stream::iter(&plan.items)
            .map(|item| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &item.namespace, &resource);
                async move {
                    let object: DynamicObject =
                        serde_json::from_value(item.manifest()).map_err(|e| e.to_string())?;
                    api.create(&PostParams::default(), &object)
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            format!(
                                "creating PushSecret {}/{}: {e}",
                                item.namespace,
                                item.name()
                            )
                        })
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let trigger_seconds = creating.elapsed().as_secs_f64();
        let deadline = creating + self.options.timeout;
        let (done, last) = self
            .wait_push_secrets(total, None, Some((&sm, &plan.items)), deadline)
            .await?;
        self.wait_quiet(Duration::from_secs(15)).await;
        let calls = self.stop_recording();
        let mut stage_notes = vec![format!(
            "{total} PushSecrets created in {trigger_seconds:.2} s"
        )];
        if done.is_none() {
            stage_notes.push(format!("not done in time; last: {last}"));
        }
        let n = total as u64;
        let first = self.push_stage(
            start,
            StageOutcome {
                stage: "first-push",
                title: format!("{total} PushSecrets created, their sources and stores in place"),
                done_means: "every PushSecret Ready (Synced) and every remote value holds its source's value".into(),
                done,
                clock: creating,
                trigger_seconds,
                calls,
                // No remote key yet: DescribeSecret (not found), CreateSecret with the tags.
                expected: expect(n, n, 0, 0, 0),
                latency: None,
                notes: stage_notes,
            },
        );
        let first_done = first.seconds_to_done.is_some();
        stages.push(first);

        // 2. Steady: nothing changed, every PushSecret forced once.
        if first_done {
            align_to_second().await;
            let start = self.begin();
            let since = jiff::Timestamp::now();
            self.round += 1;
            let patch = json!({"metadata": {"annotations": {FORCE_SYNC: format!("bench-push-{}", self.round)}}});
            let annotating = Instant::now();
            futures::stream::iter(&plan.items)
                .map(|item| {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &item.namespace, &resource);
                    let patch = &patch;
                    async move {
                        api.patch(&item.name(), &PatchParams::default(), &Patch::Merge(patch))
                            .await
                            .map(|_| ())
                            .map_err(|e| {
                                format!("annotating {}/{}: {e}", item.namespace, item.name())
                            })
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            let trigger_seconds = annotating.elapsed().as_secs_f64();
            let deadline = annotating + self.options.timeout;
            let (done, last) = self
                .wait_push_secrets(total, Some(since), None, deadline)
                .await?;
            self.wait_quiet(Duration::from_secs(15)).await;
            let calls = self.stop_recording();
            let mut stage_notes = vec![format!(
                "{total} PushSecrets annotated {FORCE_SYNC} in {trigger_seconds:.2} s"
            )];
            if done.is_none() {
                stage_notes.push(format!("not done in time; last: {last}"));
            }
            stages.push(self.push_stage(
                start,
                StageOutcome {
                    stage: "steady-forced",
                    title: "nothing changed, every PushSecret forced once".into(),
                    done_means: "every PushSecret Ready (Synced) with a refreshTime at or after the annotations".into(),
                    done,
                    clock: annotating,
                    trigger_seconds,
                    calls,
                    // The cost rule: one cheap read per remote key, no write.
                    expected: expect(0, n, 0, 0, 0),
                    latency: None,
                    notes: stage_notes,
                },
            ));
        }

        // 3. Change: 10 sources get a new value.
        let changed = plan.changed();
        if first_done {
            align_to_second().await;
            let start = self.begin();
            let updating = Instant::now();
            let sent: Vec<Instant> = futures::future::try_join_all(changed.iter().map(|item| {
                let api: Api<Secret> = Api::namespaced(client.clone(), &item.namespace);
                async move {
                    let patch =
                        json!({"data": {"password": ByteString(item.value(2).into_bytes())}});
                    let at = Instant::now();
                    api.patch(
                        &item.source(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map(|_| at)
                    .map_err(|e| {
                        format!("updating Secret {}/{}: {e}", item.namespace, item.source())
                    })
                }
            }))
            .await?;
            let trigger_seconds = updating.elapsed().as_secs_f64();
            let keys: Vec<String> = changed.iter().map(Item::remote_key).collect();
            let mut seen: Vec<Option<Instant>> = vec![None; changed.len()];
            let deadline = updating + self.options.timeout;
            let mut last_error = None;
            while seen.iter().any(Option::is_none) && Instant::now() < deadline {
                self.check_alive()?;
                match read_remote(&sm, &keys).await {
                    Ok(held) => {
                        let now = Instant::now();
                        for (i, item) in changed.iter().enumerate() {
                            if seen[i].is_none() && held.get(&keys[i]) == Some(&item.value(2)) {
                                seen[i] = Some(now);
                            }
                        }
                    }
                    Err(e) => last_error = Some(e),
                }
                tokio::time::sleep(REMOTE_POLL).await;
            }
            let done = seen
                .iter()
                .all(Option::is_some)
                .then(|| seen.iter().flatten().max().copied())
                .flatten();
            let seconds: Vec<Option<f64>> = seen
                .iter()
                .zip(&sent)
                .map(|(seen, sent)| seen.map(|s| s.duration_since(*sent).as_secs_f64()))
                .collect();
            let mut sorted: Vec<f64> = seconds.iter().flatten().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let latency = Latency {
                p50: (!sorted.is_empty()).then(|| sorted[sorted.len().div_ceil(2) - 1]),
                max: sorted.last().copied(),
                seconds,
            };
            // Their statuses say Synced again, then the controller goes quiet.
            let (ready, last) = self
                .wait_push_secrets(total, None, None, Instant::now() + Duration::from_secs(30))
                .await?;
            self.wait_quiet(Duration::from_secs(15)).await;
            let calls = self.stop_recording();
            let mut stage_notes = vec![format!(
                "{} source Secrets updated in {trigger_seconds:.2} s: {}",
                changed.len(),
                changed
                    .iter()
                    .map(|i| format!("{}/{}", i.namespace, i.source()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )];
            if done.is_none() {
                stage_notes.push(format!(
                    "{} of the {} remote values never changed within {:.0} s{}",
                    latency.seconds.iter().filter(|s| s.is_none()).count(),
                    changed.len(),
                    self.options.timeout.as_secs_f64(),
                    last_error
                        .map(|e| format!("; last read error: {e}"))
                        .unwrap_or_default()
                ));
            }
            if ready.is_none() {
                stage_notes.push(format!("not every PushSecret Ready (Synced) after: {last}"));
            }
            let c = changed.len() as u64;
            stages.push(self.push_stage(
                start,
                StageOutcome {
                    stage: "change",
                    title: format!(
                        "{} of the {total} source Secrets get a new value",
                        changed.len()
                    ),
                    done_means: format!(
                        "the {} changed remote values hold the new values",
                        changed.len()
                    ),
                    done,
                    clock: updating,
                    trigger_seconds,
                    calls,
                    // Source changed: DescribeSecret, GetSecretValue (the full
                    // read), PutSecretValue; tags already in place.
                    expected: expect(0, c, c, c, 0),
                    latency: Some(latency),
                    notes: stage_notes,
                },
            ));
        }

        // Every remote value, read afresh.
        let changed_indexes: Vec<usize> = changed.iter().map(|i| i.index).collect();
        let changed_ran = stages.len() == 3;
        let (right, wrong) = remote_right(&sm, &plan.items, |item| {
            if changed_ran && changed_indexes.contains(&item.index) {
                2
            } else {
                1
            }
        })
        .await?;
        let verified = right == total && stages.iter().all(|s| s.seconds_to_done.is_some());
        if right != total {
            notes.push(format!(
                "at the end {right}/{total} remote values held their source's value; {}",
                wrong.join(", ")
            ));
        }
        if !first_done {
            notes.push("the first push did not finish: the other stages were not run".into());
        }
        let report = PushReport {
            phase: "push-secret".into(),
            commit: self.commit.clone(),
            fleet: self.fleet.size.clone(),
            push_secrets: total,
            namespaces: plan.namespaces.len(),
            changed: changed.len(),
            setup_seconds,
            controller_peak_kib: stages
                .iter()
                .map(|s| s.cost.controller.hwm_kib)
                .max()
                .unwrap_or(0),
            stages,
            verified,
            notes,
        };
        if !self.options.json_only {
            println!("{}", report.table());
        }
        println!("{}", report.json());

        // Back to the fleet alone (the remote keys stay: deletionPolicy None).
        // The PushSecrets go first: deleting a namespace first would delete
        // their sources under them (a 'push failed ... not found' each).
        futures::stream::iter(&plan.items)
            .map(|item| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &item.namespace, &resource);
                async move {
                    match api.delete(&item.name(), &DeleteParams::default()).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        Err(e) => Err(format!(
                            "deleting PushSecret {}/{}: {e}",
                            item.namespace,
                            item.name()
                        )),
                    }
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        self.wait_quiet(Duration::from_secs(15)).await;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for name in &plan.namespaces {
            match namespaces.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(format!("deleting namespace {name}: {e}")),
            }
        }
        if !verified {
            return Err(
                "push-secret: not every stage finished, or not every remote value was right (see the notes)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl PushReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let f = &self.fleet;
        let _ = writeln!(
            out,
            "== {}: {} PushSecrets in {} namespaces (one SecretStore each), one Secrets Manager key each, refreshInterval 1h ==\n   beside the fleet: {} ExternalSecrets in {} namespaces, refreshInterval {}s; controller commit {}; setup (namespaces, stores, {} source Secrets) {:.2} s, not measured",
            self.phase,
            self.push_secrets,
            self.namespaces,
            f.es,
            f.namespaces,
            f.interval_seconds,
            self.commit,
            self.push_secrets,
            self.setup_seconds
        );
        for stage in &self.stages {
            let _ = writeln!(out, "   -- {}: {}", stage.stage, stage.title);
            let _ = writeln!(
                out,
                "     {} after {}; trigger took {:.2} s",
                stage.done_means,
                match stage.seconds_to_done {
                    Some(s) => format!("{s:.2} s"),
                    None => "never (see notes)".into(),
                },
                stage.trigger_seconds
            );
            if let Some(latency) = &stage.latency {
                let seconds =
                    |s: Option<f64>| s.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "-".into());
                let each: Vec<String> = latency.seconds.iter().map(|s| seconds(*s)).collect();
                let _ = writeln!(
                    out,
                    "     Secret update -> remote value: p50 {}, max {} (each: {})",
                    seconds(latency.p50),
                    seconds(latency.max),
                    each.join(", ")
                );
            }
            let _ = writeln!(
                out,
                "     {:<44} {:>8} {:>10}",
                "AWS calls naming bench/push/ keys", "measured", "expected"
            );
            for (kind, count) in &stage.aws_calls {
                let expected = stage
                    .expected
                    .get(kind)
                    .map(u64::to_string)
                    .unwrap_or_else(|| "-".into());
                let flag = if stage.expected.get(kind).is_some_and(|e| e != count) {
                    "  <- differs"
                } else {
                    ""
                };
                let _ = writeln!(out, "       {kind:<42} {count:>8} {expected:>10}{flag}");
            }
            let _ = writeln!(
                out,
                "       {:<42} {:>8} {:>10}",
                "total",
                stage.aws_calls_total,
                stage.expected.values().sum::<u64>()
            );
            let other: Vec<String> = stage
                .aws_calls_other
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                out,
                "     other AWS calls (the fleet's refreshes): {}; push calls by tenth of the stage: {:?}",
                if other.is_empty() {
                    "none".to_string()
                } else {
                    other.join(", ")
                },
                stage.aws_calls_by_tenth
            );
            super::report::stage_controller_line(&mut out, &stage.cost);
            super::report::stage_api_lines(&mut out, &stage.cost.api);
            super::report::stage_elsewhere_lines(&mut out, &stage.cost, &stage.notes);
        }
        let _ = writeln!(
            out,
            "   controller peak (VmHWM, highest stage): {:.1} MiB; every remote value verified against moto at the end: {}",
            mib(self.controller_peak_kib),
            if self.verified { "yes" } else { "NO" }
        );
        for note in &self.notes {
            let _ = writeln!(out, "   note: {note}");
        }
        out
    }
}
