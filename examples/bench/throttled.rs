//! The `throttled` phase (not run unless asked for; issue 30): the
//! controller's AWS endpoint is the test bed's fault proxy, which passes
//! every call on to moto until told to answer a share of them with
//! `ThrottlingException` (400, with a request id of its own, as AWS does).
//! Four stages, each with the controller's calls that reached moto (by API),
//! the calls the proxy throttled, the controller's API-server writes (status
//! patches, Events created and counted on a series, Secret writes), its
//! memory and CPU:
//!
//! - `forced-throttled`: `--throttle-forced-percent` (30) of calls
//!   throttled; every remote value changes, then every ExternalSecret gets a
//!   new `secretsync.io/force-sync` annotation; until every Secret is right
//!   and every ExternalSecret refreshed. Then the proxy passes everything.
//! - `storm`: `--throttle-storm-percent` (90) of calls throttled for
//!   `--throttle-minute` (60 s); every remote value changes at its start and
//!   every ExternalSecret is annotated. Counted over exactly that window.
//! - `recovery`: the proxy passes everything again; until every Secret is
//!   right and every ExternalSecret refreshed since the storm began (timed
//!   from the recovery).
//! - `unchanged-after`: the first unchanged cycle after the recovery, a
//!   forced refresh of every ExternalSecret with nothing changed: it must
//!   ask what changed (ListSecrets, DescribeParameters) and fetch no value;
//!   the phase fails if it fetched any (change detection was paused).
//!
//! The phase fails unless every stage that waits got every Secret right in
//! `--timeout` and a fresh list of Secrets agrees with moto at the end.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::fleet::FleetSize;
use super::measure::{self, ApiLoad};
use super::{Bench, POLL, PROGRESS, StageCost, Start, align_to_second, annotate_all};
use crate::support::fault_proxy::{Fault, FaultProxy};

/// The phase's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ThrottledArgs {
    /// throttled: how long the storm lasts (a minute; shorter for tests).
    #[arg(long = "throttle-minute", default_value = "60s", value_parser = super::parse_duration)]
    pub throttle_minute: Duration,
    /// throttled: percent of calls throttled during the forced round.
    #[arg(long, default_value_t = 30)]
    pub throttle_forced_percent: usize,
    /// throttled: percent of calls throttled during the storm.
    #[arg(long, default_value_t = 90)]
    pub throttle_storm_percent: usize,
}

pub fn check_options(options: &super::Options) -> Result<(), String> {
    let args = &options.throttled;
    if args.throttle_forced_percent > 100 || args.throttle_storm_percent > 100 {
        return Err("--throttle-forced-percent and --throttle-storm-percent are 0 to 100".into());
    }
    if args.throttle_minute.is_zero() {
        return Err("--throttle-minute must be more than 0s".into());
    }
    Ok(())
}

/// The proxy the controller's AWS calls go through, when the phase is listed:
/// it passes everything until the phase says otherwise.
pub async fn proxy(options: &super::Options, moto: &str) -> Option<FaultProxy> {
    if !options.phases.contains(&super::Phase::Throttled) {
        return None;
    }
    Some(FaultProxy::start(moto, Fault::Throttling, 0, 100).await)
}

/// The controller's API-server writes of a stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Writes {
    /// ExternalSecret status patches.
    pub status_patches: u64,
    pub events_created: u64,
    /// Events counted again on their series (a repeat of the same event).
    pub events_counted: u64,
    /// Secrets created, applied or updated.
    pub secret_writes: u64,
    /// Every create, update, patch and delete of the controller, leases included.
    pub total: u64,
}

impl Writes {
    fn of(api: &ApiLoad) -> Writes {
        let mut writes = Writes::default();
        for (key, count) in &api.requests {
            let Some((verb, resource)) = key.split_once(' ') else {
                continue;
            };
            if !matches!(verb, "create" | "update" | "patch" | "delete") {
                continue;
            }
            writes.total += count;
            let plural = resource.split(['.', '/']).next().unwrap_or_default();
            match (verb, plural) {
                ("patch", "externalsecrets") if resource.ends_with("/status") => {
                    writes.status_patches += count;
                }
                ("create", "events") => writes.events_created += count,
                ("patch", "events") => writes.events_counted += count,
                (_, "secrets") if !resource.contains('/') => writes.secret_writes += count,
                _ => {}
            }
        }
        writes
    }
}

/// One stage of the phase.
#[derive(Clone, Debug, Serialize)]
pub struct ThrottledStage {
    /// forced-throttled, storm, recovery, unchanged-after.
    pub stage: String,
    pub title: String,
    /// Percent of calls the proxy throttled during the stage.
    pub throttled_percent: usize,
    /// From the trigger (the recovery, for `recovery`) until every Secret was
    /// right and every ExternalSecret refreshed; `None` if not in time or
    /// not waited for (`storm`).
    pub seconds_to_all_right: Option<f64>,
    /// Secrets right / expected at the stage's end.
    pub secrets_right: usize,
    pub secrets_total: usize,
    /// The controller's calls that reached moto, by API.
    pub aws_calls: BTreeMap<String, u64>,
    pub aws_calls_total: u64,
    /// Requests that reached the proxy, and those it answered with
    /// ThrottlingException (the SDK's retries included).
    pub proxy_requests: u64,
    pub proxy_throttled: u64,
    pub writes: Writes,
    #[serde(flatten)]
    pub cost: StageCost,
    pub notes: Vec<String>,
}

/// The phase's figures: one JSON line, one table.
#[derive(Clone, Debug, Serialize)]
pub struct ThrottledReport {
    pub phase: String,
    pub commit: String,
    pub fleet: FleetSize,
    pub storm_seconds: f64,
    pub stages: Vec<ThrottledStage>,
    /// At the end: a fresh list of Secrets agrees with a fresh read of moto.
    pub verified: bool,
    pub notes: Vec<String>,
}

/// Calls that read values (not those that only ask what changed).
const FETCHES: [&str; 4] = [
    "secretsmanager.BatchGetSecretValue",
    "secretsmanager.GetSecretValue",
    "AmazonSSM.GetParameters",
    "AmazonSSM.GetParameter",
];

/// Where a stage's proxy counters started.
struct ProxyMark {
    seen: usize,
    failed: usize,
}

impl Bench {
    fn fault_proxy(&self) -> Result<&FaultProxy, String> {
        self.proxy
            .as_ref()
            .ok_or_else(|| "throttled: the controller does not go through the proxy".to_string())
    }

    fn proxy_mark(&self) -> Result<ProxyMark, String> {
        let proxy = self.fault_proxy()?;
        Ok(ProxyMark {
            seen: proxy.seen.load(Ordering::SeqCst),
            failed: proxy.failed.load(Ordering::SeqCst),
        })
    }

    /// A stage's figures as of now.
    #[allow(clippy::too_many_arguments)]
    fn throttled_stage(
        &self,
        stage: &str,
        title: &str,
        percent: usize,
        start: &Start,
        mark: ProxyMark,
        done: Option<f64>,
        notes: Vec<String>,
    ) -> Result<ThrottledStage, String> {
        let calls = self.stop_recording();
        let cost = self.stage_cost(start);
        let proxy = self.fault_proxy()?;
        let aws_calls = measure::controller_calls(&calls);
        let (right, total) = self.tracker.right();
        Ok(ThrottledStage {
            stage: stage.into(),
            title: title.into(),
            throttled_percent: percent,
            seconds_to_all_right: done,
            secrets_right: right,
            secrets_total: total,
            aws_calls_total: aws_calls.values().sum(),
            aws_calls,
            proxy_requests: (proxy.seen.load(Ordering::SeqCst) - mark.seen) as u64,
            proxy_throttled: (proxy.failed.load(Ordering::SeqCst) - mark.failed) as u64,
            writes: Writes::of(&cost.api),
            cost,
            notes,
        })
    }

    /// Every remote value one version on, and every ExternalSecret annotated.
    async fn change_and_force(&mut self, notes: &mut Vec<String>) -> Result<(), String> {
        let writing = Instant::now();
        self.version += 1;
        self.aws
            .write_all(&self.fleet.remote_keys, self.version)
            .await?;
        self.expect_current()?;
        self.round += 1;
        annotate_all(
            &self.client,
            &self.fleet,
            self.round,
            self.options.concurrency,
        )
        .await?;
        notes.push(format!(
            "{} remote values changed and {} ExternalSecrets annotated in {:.2} s",
            self.fleet.remote_keys.len(),
            self.fleet.external_secrets.len(),
            writing.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    pub(super) async fn throttled(&mut self) -> Result<(), String> {
        let args = self.options.throttled.clone();
        let mut stages = Vec::new();
        let mut failures = Vec::new();

        // 1. A forced round with every value changed, a share throttled.
        align_to_second().await;
        let start = self.begin();
        let mark = self.proxy_mark()?;
        self.fault_proxy()?
            .throttle_percent(args.throttle_forced_percent);
        let since = jiff::Timestamp::now();
        let triggered = Instant::now();
        let mut notes = Vec::new();
        self.change_and_force(&mut notes).await?;
        let deadline = Instant::now() + self.options.timeout;
        let done = self.wait_done(since, deadline).await?;
        self.fault_proxy()?.set(None, 0, 100);
        if done.is_none() {
            failures.push("forced-throttled: not every Secret right in time");
        }
        self.wait_quiet(Duration::from_secs(15)).await;
        stages.push(self.throttled_stage(
            "forced-throttled",
            "every remote value changed, then a forced refresh of every ExternalSecret, a share of calls throttled",
            args.throttle_forced_percent,
            &start,
            mark,
            done.map(|d| d.duration_since(triggered).as_secs_f64()),
            notes,
        )?);

        // 2. The storm: most calls throttled for a minute, every value changed.
        align_to_second().await;
        let start = self.begin();
        let mark = self.proxy_mark()?;
        self.fault_proxy()?
            .throttle_percent(args.throttle_storm_percent);
        let storm_since = jiff::Timestamp::now();
        let storm_end = Instant::now() + args.throttle_minute;
        let mut notes = Vec::new();
        self.change_and_force(&mut notes).await?;
        let mut next_progress = Instant::now() + PROGRESS;
        let mut right_during = None;
        while Instant::now() < storm_end {
            self.check_alive()?;
            if right_during.is_none() && self.all_done(storm_since) {
                right_during = Some(Instant::now());
            }
            if Instant::now() >= next_progress {
                self.progress(storm_since);
                next_progress += PROGRESS;
            }
            tokio::time::sleep(POLL).await;
        }
        self.fault_proxy()?.set(None, 0, 100);
        let recovered = Instant::now();
        let (right, total) = self.tracker.right();
        notes.push(format!(
            "at the end of the storm {right}/{total} Secrets were right and {}/{total} ExternalSecrets had refreshed since it began{}",
            self.tracker.refreshed_since(storm_since),
            match right_during {
                Some(_) => " (all right before it ended)",
                None => "",
            }
        ));
        stages.push(self.throttled_stage(
            "storm",
            "most calls throttled for the whole window; every remote value changed and every ExternalSecret forced at its start",
            args.throttle_storm_percent,
            &start,
            mark,
            None,
            notes,
        )?);

        // 3. Recovery: until every Secret is right.
        let start = self.begin();
        let mark = self.proxy_mark()?;
        let deadline = Instant::now() + self.options.timeout;
        let done = self.wait_done(storm_since, deadline).await?;
        if done.is_none() {
            failures.push("recovery: not every Secret right in time");
        }
        self.wait_quiet(Duration::from_secs(15)).await;
        stages.push(self.throttled_stage(
            "recovery",
            "nothing throttled any more: until every Secret is right and every ExternalSecret refreshed since the storm began (timed from the recovery)",
            0,
            &start,
            mark,
            done.map(|d| d.duration_since(recovered).as_secs_f64()),
            Vec::new(),
        )?);

        // 4. The first unchanged cycle after it: it lists, it fetches nothing.
        align_to_second().await;
        let start = self.begin();
        let mark = self.proxy_mark()?;
        self.all_done(jiff::Timestamp::now());
        let since = jiff::Timestamp::now();
        let triggered = Instant::now();
        self.round += 1;
        annotate_all(
            &self.client,
            &self.fleet,
            self.round,
            self.options.concurrency,
        )
        .await?;
        let deadline = Instant::now() + self.options.timeout;
        let done = self.wait_done(since, deadline).await?;
        if done.is_none() {
            failures.push("unchanged-after: not every ExternalSecret refreshed in time");
        }
        self.wait_quiet(Duration::from_secs(15)).await;
        let mut stage = self.throttled_stage(
            "unchanged-after",
            "the first unchanged cycle after the recovery: a forced refresh of every ExternalSecret, nothing changed",
            0,
            &start,
            mark,
            done.map(|d| d.duration_since(triggered).as_secs_f64()),
            Vec::new(),
        )?;
        let fetched: u64 = FETCHES
            .iter()
            .filter_map(|call| stage.aws_calls.get(*call))
            .sum();
        if fetched > 0 {
            stage.notes.push(format!(
                "{fetched} calls fetched values although nothing changed: change detection was not in use"
            ));
            failures.push("unchanged-after: values fetched although nothing changed");
        }
        stages.push(stage);

        let mut notes = Vec::new();
        let (_, verified) = self.verify(None, &mut notes).await?;
        if !verified {
            failures.push("a fresh list of Secrets does not agree with moto");
        }
        let report = ThrottledReport {
            phase: "throttled".into(),
            commit: self.commit.clone(),
            fleet: self.fleet.size.clone(),
            storm_seconds: args.throttle_minute.as_secs_f64(),
            stages,
            verified,
            notes,
        };
        if !self.options.json_only {
            println!("{}", report.table());
        }
        println!("{}", report.json());
        if !failures.is_empty() {
            return Err(format!("throttled: {}", failures.join("; ")));
        }
        Ok(())
    }
}

impl ThrottledReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let f = &self.fleet;
        let _ = writeln!(
            out,
            "== {}: {} ExternalSecrets in {} namespaces, refreshInterval {}s, AWS through a proxy that throttles; storm {:.0} s; controller commit {} ==",
            self.phase, f.es, f.namespaces, f.interval_seconds, self.storm_seconds, self.commit
        );
        for stage in &self.stages {
            let _ = writeln!(
                out,
                "   -- {} ({}% of calls throttled): {}",
                stage.stage, stage.throttled_percent, stage.title
            );
            let _ = writeln!(
                out,
                "     every Secret right: {}; {}/{} right at the end",
                match stage.seconds_to_all_right {
                    Some(s) => format!("after {s:.2} s"),
                    None => "not waited for, or not in time".into(),
                },
                stage.secrets_right,
                stage.secrets_total
            );
            let calls: Vec<String> = stage
                .aws_calls
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                out,
                "     AWS calls that reached moto: {} ({}); proxy: {} requests, {} throttled",
                stage.aws_calls_total,
                if calls.is_empty() {
                    "none".to_string()
                } else {
                    calls.join(", ")
                },
                stage.proxy_requests,
                stage.proxy_throttled
            );
            let w = &stage.writes;
            let _ = writeln!(
                out,
                "     API-server writes: {} (status patches {}, Events created {}, Events counted on a series {}, Secret writes {})",
                w.total, w.status_patches, w.events_created, w.events_counted, w.secret_writes
            );
            super::report::stage_controller_line(&mut out, &stage.cost);
            super::report::stage_api_lines(&mut out, &stage.cost.api);
            super::report::stage_elsewhere_lines(&mut out, &stage.cost, &stage.notes);
        }
        super::report::verified_and_notes(&mut out, self.verified, &self.notes);
        out
    }
}
