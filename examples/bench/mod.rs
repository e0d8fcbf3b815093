//! The cost-and-scale benchmark (issue 10): a fleet of ExternalSecrets on the
//! test bed (the fake API server, in this process) and moto, the real
//! controller binary against them, and per phase what it cost: AWS calls by
//! API beside ESO's model, time until every Secret is right, the controller's
//! memory and CPU, its API-server requests and connections.
//!
//! Phases, in order (the first always runs):
//! - `first-sync`: the fleet exists, the controller starts.
//! - `changed-forced`: every remote value changes, then every ExternalSecret
//!   gets a new `secretsync.io/force-sync` annotation.
//! - `unchanged-forced`: the same annotation round with nothing changed.
//! - `steady-unchanged`: one refresh interval (+10% jitter, +3 s) of the
//!   natural schedule, nothing changed.
//! - `steady-changed`: every value changes at the start of the window; the
//!   natural schedule must bring every Secret up to date.
//! - `cluster-external-secret` (not run unless asked for): one
//!   ClusterExternalSecret picks `--ces-namespaces` new namespaces by label
//!   and reads 3 new remote keys; until every namespace holds its Secret and
//!   the object's status lists every namespace; then it is deleted and every
//!   ExternalSecret it wrote must go (see `ces.rs`).
//! - `push-secret` (not run unless asked for): `--push-secrets` PushSecrets
//!   pushing one key of a source Secret each to Secrets Manager: their first
//!   push, a forced refresh with nothing changed, then 10 source Secrets
//!   changed (see `push.rs`).
//! - `bitnami` (not run unless asked for): `--bitnami-sealed-secrets` Bitnami
//!   SealedSecrets (`bitnami.com/v1alpha1`, the controller run with
//!   `--bitnami-compat`, three `--bitnami-key-bits` keys imported before it
//!   starts): their first unseal, a resync without a spec change (no
//!   decryption), then 10 values changed; and one RSA-OAEP decryption alone
//!   to set the figures in proportion (see `bitnami.rs`).
//!
//! - `change-events` (not run unless asked for; last): the controller reads
//!   an SQS queue made before it starts (`--change-events-queue`); at rest,
//!   then `--change-events-rotations` keys rotated at random moments, each
//!   followed by its EventBridge event sent by the bench, then stray
//!   messages; seconds from each Put to its Secrets, calls per rotation and
//!   per hour at rest (see `change_events.rs`).
//!
//! - `throttled` (not run unless asked for): the controller's AWS calls go
//!   through a proxy that throttles a share of them: a forced round with 30%
//!   throttled, a minute (`--throttle-minute`) with 90%, the recovery, and
//!   the first unchanged cycle after it (see `throttled.rs`).
//!
//! A phase is done when every Secret holds what moto holds (checked value by
//! value) and every ExternalSecret's `status.refreshTime` is at or after the
//! phase's trigger; then the bench waits for the controller to go quiet
//! (2 s without API requests) and verifies again from a fresh list of Secrets
//! and a fresh read of moto.

pub mod aws;
pub mod bitnami;
pub mod ces;
pub mod change_events;
pub mod fleet;
pub mod measure;
pub mod push;
pub mod reload;
pub mod report;
pub mod server;
pub mod throttled;
pub mod tracker;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::support::apiserver::FakeApiServer;
use crate::support::moto::{Moto, Recorded};
use aws::Aws;
use fleet::{ExternalSecretPlan, Fleet, FleetSize, RemoteKey, StoreKind};
use measure::{BENCH_CLIENT, ProcessSample};
use report::{CesFigures, PhaseReport, tenths};
use tracker::{Data, Id, Tracker};

/// The access key the controller signs with; the bench signs with the test bed's.
pub const CONTROLLER_KEY_ID: &str = "AKIDBENCHCONTROLLER";
const FORCE_SYNC: &str = "secretsync.io/force-sync";
/// The controller is quiet once it has sent no API request (leases aside) for this long.
const QUIET: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);
/// With no progress for this long, the bench checks its watches against a list.
const STALLED: Duration = Duration::from_secs(30);
/// How often a waiting phase says how far it got.
const PROGRESS: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    FirstSync,
    ChangedForced,
    UnchangedForced,
    SteadyUnchanged,
    SteadyChanged,
    /// One ClusterExternalSecret over `--ces-namespaces` namespaces, then its deletion.
    ClusterExternalSecret,
    /// `--push-secrets` PushSecrets: first push, forced with nothing changed,
    /// 10 source Secrets changed.
    PushSecret,
    /// `--bitnami-sealed-secrets` Bitnami SealedSecrets: first unseal, a
    /// resync without a spec change, 10 values changed; one decryption alone.
    Bitnami,
    /// AWS change events through an SQS queue: at rest, rotations, stray
    /// messages (must come last).
    ChangeEvents,
    /// AWS through a throttling proxy: 30% during a forced round, 90% for
    /// `--throttle-minute`, the recovery, the first unchanged cycle after.
    Throttled,
    /// `--reload` among `--reload-unrelated` Secrets and as many ConfigMaps no
    /// workload uses: bytes per unrelated object (see `reload.rs`).
    ReloadMemory,
}

/// Sizes, timings and how to run the controller.
#[derive(clap::Parser, Debug, Clone)]
#[command(about = "secretsync's cost-and-scale benchmark (README: Cost and scale)")]
pub struct Options {
    /// ExternalSecrets in the fleet.
    #[arg(long, default_value_t = 1000)]
    pub es: usize,
    /// Namespaces they are spread over (round-robin).
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// `data` refs per ExternalSecret.
    #[arg(long, default_value_t = 3)]
    pub refs: usize,
    /// Secrets Manager secrets (JSON values) the fleet reads.
    #[arg(long, default_value_t = 200)]
    pub sm_secrets: usize,
    /// SSM parameters (SecureString) the fleet reads.
    #[arg(long, default_value_t = 300)]
    pub ssm_parameters: usize,
    /// `cluster`: one ClusterSecretStore per service; `namespaced`: one
    /// SecretStore per service in every namespace.
    #[arg(long, value_enum, default_value = "cluster")]
    pub stores: StoreKind,
    /// The ExternalSecrets' refreshInterval (whole seconds: 60s, 5m, 1h).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Phases after first-sync, comma-separated (cluster-external-secret,
    /// push-secret, bitnami, change-events and throttled only when listed).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "changed-forced,unchanged-forced,steady-unchanged,steady-changed"
    )]
    pub phases: Vec<Phase>,
    /// cluster-external-secret: the namespaces its ClusterExternalSecret picks
    /// (created for the phase, apart from the fleet's).
    #[arg(long, default_value_t = 1000)]
    pub ces_namespaces: usize,
    /// push-secret: the PushSecrets (each with its own source Secret and
    /// Secrets Manager key), created for the phase.
    #[arg(long, default_value_t = 1000)]
    pub push_secrets: usize,
    /// push-secret: the namespaces they are spread over (round-robin), one
    /// SecretStore each.
    #[arg(long, default_value_t = 10)]
    pub push_namespaces: usize,
    /// bitnami: the Bitnami SealedSecrets (one value each, strict scope),
    /// created for the phase.
    #[arg(long, default_value_t = 1000)]
    pub bitnami_sealed_secrets: usize,
    /// bitnami: the namespaces they are spread over (round-robin).
    #[arg(long, default_value_t = 10)]
    pub bitnami_namespaces: usize,
    /// bitnami: the size of the three RSA sealing keys (the current one and
    /// two older ones), made before the controller starts.
    #[arg(long, default_value_t = 4096)]
    pub bitnami_key_bits: usize,
    /// reload-memory: the unrelated Secrets (and as many ConfigMaps) created.
    #[arg(long, default_value_t = 20_000)]
    pub reload_unrelated: usize,
    #[command(flatten)]
    pub change_events: change_events::Args,
    #[command(flatten)]
    pub throttled: throttled::ThrottledArgs,
    /// After the phases: run this long more, every value changing once per
    /// interval, sampling the controller's memory (e.g. 1h).
    #[arg(long, value_parser = parse_duration)]
    pub soak: Option<Duration>,
    /// How often the soak samples.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub sample: Duration,
    /// The longest a phase may take to get every Secret right.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The secretsync binary (default: built by the bench, next to itself).
    #[arg(long)]
    pub controller: Option<PathBuf>,
    /// One more argument for `secretsync controller` (repeat for more).
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    pub controller_args: Vec<String>,
    /// One more NAME=VALUE in the controller's environment (repeat for more).
    #[arg(long = "controller-env")]
    pub controller_env: Vec<String>,
    /// RUST_LOG for the controller.
    #[arg(long, default_value = "info")]
    pub controller_log_level: String,
    /// Keep the controller's log here (default: a temporary file, shown on failure).
    #[arg(long)]
    pub controller_log: Option<PathBuf>,
    /// The bench's own concurrent API writes (creating the fleet, annotating).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Changes the fake API server keeps for resuming watches.
    #[arg(long, default_value_t = 100_000)]
    pub watch_history: usize,
    /// Only the JSON lines, no tables.
    #[arg(long)]
    pub json_only: bool,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration (60s, 5m, 1h): {e}"))?;
    Duration::try_from(parsed).map_err(|_| format!("{text:?} must not be negative"))
}

/// Everything a run holds.
struct Bench {
    options: Options,
    fleet: Fleet,
    commit: String,
    moto: Moto,
    server: FakeApiServer,
    client: kube::Client,
    aws: Aws,
    tracker: Tracker,
    controller: Option<Child>,
    controller_path: PathBuf,
    kubeconfig: PathBuf,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
    /// The version every remote value is at.
    version: u32,
    /// The last force-sync annotation value.
    round: u32,
    /// When every Secret was first seen right in this phase.
    secrets_right_at: Option<Instant>,
    reports: Vec<PhaseReport>,
    /// cluster-external-secret phases run so far (each gets new remote keys).
    ces_runs: u32,
    /// The controller's health address (serves /metrics), once started.
    health: Option<String>,
    /// bitnami: the sealing keys, in place before the controller starts.
    bitnami_keys: Option<bitnami::Keys>,
    /// change-events: the queue's URL, made before the controller starts.
    change_events_queue: Option<String>,
    /// throttled: the proxy between the controller and moto.
    proxy: Option<crate::support::fault_proxy::FaultProxy>,
    /// The fake API server's own runtime and threads.
    _server_runtime: server::ServerRuntime,
}

/// What a phase measures from its start.
struct Start {
    at: Instant,
    wall: jiff::Timestamp,
    stats: crate::support::apiserver::stats::StatsSnapshot,
    controller: ProcessSample,
    peak_reset: bool,
    moto: ProcessSample,
    bench: ProcessSample,
    /// The fake API server's threads' CPU seconds (of `bench`'s).
    apiserver_cpu: f64,
    load: String,
    ticks: measure::CpuTicks,
    regressions: u64,
}

/// What one stage of the push-secret or bitnami phase cost, beside its own
/// figures: the controller's memory and CPU, its API requests, moto, the
/// bench process and the machine's load.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageCost {
    /// The controller at the end; `hwm_kib` is the stage's peak when
    /// `peak_is_per_stage`, else the process's lifetime peak.
    pub controller: ProcessSample,
    pub peak_is_per_stage: bool,
    pub controller_cpu_seconds: f64,
    pub api: measure::ApiLoad,
    pub moto_cpu_seconds: f64,
    pub bench_cpu_seconds: f64,
    pub bench_rss_kib: u64,
    pub load_average: String,
    pub steal_percent: f64,
    pub stage_seconds: f64,
}

impl Bench {
    /// What the stage begun at `start` has cost until now.
    fn stage_cost(&self, start: &Start) -> StageCost {
        let end = Instant::now();
        let pid = self.controller.as_ref().map(std::process::Child::id);
        let controller = pid.and_then(measure::sample).unwrap_or_default();
        let moto = measure::sample(self.moto.pid()).unwrap_or_default();
        let bench = measure::sample(std::process::id()).unwrap_or_default();
        let stats = self.server.stats().snapshot();
        StageCost {
            controller,
            peak_is_per_stage: start.peak_reset,
            controller_cpu_seconds: controller.cpu_seconds() - start.controller.cpu_seconds(),
            api: measure::api_load(&start.stats, &stats),
            moto_cpu_seconds: moto.cpu_seconds() - start.moto.cpu_seconds(),
            bench_cpu_seconds: bench.cpu_seconds() - start.bench.cpu_seconds(),
            bench_rss_kib: bench.rss_kib,
            load_average: start.load.clone(),
            steal_percent: measure::steal_percent(start.ticks, measure::cpu_ticks()),
            stage_seconds: end.duration_since(start.at).as_secs_f64(),
        }
    }
}

/// What a phase checks instead of the fleet: these ExternalSecrets' Secrets
/// against these keys at this version.
struct Check {
    plans: Vec<ExternalSecretPlan>,
    keys: Vec<RemoteKey>,
    version: u32,
    /// What the phase checked itself at the end, if anything (false: see notes).
    also_verified: bool,
}

/// How a phase went, before it is reported.
#[derive(Default)]
struct Outcome {
    done: Option<Instant>,
    /// Where the time to all right is counted from (default: the phase's start).
    clock: Option<Instant>,
    trigger_seconds: f64,
    window: Option<Duration>,
    calls: Vec<Recorded>,
    calls_after_window: u64,
    notes: Vec<String>,
    /// Checked at the end instead of the fleet (default: the fleet).
    check: Option<Check>,
    /// ESO's model for the phase (default: one refresh of the fleet).
    eso_model: Option<fleet::EsoModel>,
    ces: Option<CesFigures>,
}

/// Runs the phases; prints each as it ends and returns them all.
pub async fn run(options: &Options, controller: &Path) -> Result<Vec<PhaseReport>, String> {
    raise_open_file_limit();
    if options.interval.as_secs() == 0 || options.interval.subsec_nanos() != 0 {
        return Err("--interval must be a whole number of seconds, at least 1s".into());
    }
    if options.phases.contains(&Phase::ClusterExternalSecret) && options.ces_namespaces == 0 {
        return Err("--ces-namespaces must be at least 1".into());
    }
    if options.phases.contains(&Phase::PushSecret)
        && (options.push_secrets == 0 || options.push_namespaces == 0)
    {
        return Err("--push-secrets and --push-namespaces must be at least 1".into());
    }
    let with_bitnami = options.phases.contains(&Phase::Bitnami);
    if with_bitnami && (options.bitnami_sealed_secrets == 0 || options.bitnami_namespaces == 0) {
        return Err("--bitnami-sealed-secrets and --bitnami-namespaces must be at least 1".into());
    }
    if with_bitnami && options.bitnami_key_bits < 1024 {
        return Err("--bitnami-key-bits must be at least 1024".into());
    }
    change_events::check_options(options)?;
    throttled::check_options(options)?;
    let fleet = Fleet::new(FleetSize {
        es: options.es,
        namespaces: options.namespaces,
        refs: options.refs,
        sm_secrets: options.sm_secrets,
        ssm_parameters: options.ssm_parameters,
        stores: options.stores,
        interval_seconds: options.interval.as_secs(),
    })?;
    let commit = commit();
    let started = Instant::now();
    let moto = tokio::task::block_in_place(Moto::start);
    let proxy = throttled::proxy(options, &moto.endpoint).await;
    let (server, server_runtime) = server::start(options.watch_history).await?;
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let client = bench_client(&server.url)?;
    let aws = Aws::new(&moto.endpoint).await;
    apply_crds(&client).await?;
    // Bitnami's keys are there before the controller starts, as they are
    // when a cluster moves off Sealed Secrets.
    let bitnami_keys = if with_bitnami {
        bitnami::apply_crd(&client).await?;
        Some(bitnami::setup_keys(&client, options).await?)
    } else {
        None
    };
    let change_events_queue = if options.phases.contains(&Phase::ChangeEvents) {
        Some(change_events::create_queue(&moto.endpoint).await?)
    } else {
        None
    };
    aws.write_all(&fleet.remote_keys, 1).await?;
    create_fleet(&client, &fleet, options.concurrency).await?;
    let tracker = Tracker::start(client.clone());
    let (sm, ssm) = fleet.referenced();
    let log_path = options
        .controller_log
        .clone()
        .unwrap_or_else(|| dir.path().join("controller.log"));
    if !options.json_only {
        println!(
            "bench: {} ExternalSecrets ({} refs) in {} namespaces reading {sm} Secrets Manager secrets and {ssm} SSM parameters; set up in {:.1} s; controller {}; controller commit {commit}",
            fleet.external_secrets.len(),
            fleet
                .external_secrets
                .iter()
                .map(|e| e.refs.len())
                .sum::<usize>(),
            fleet.namespaces.len(),
            started.elapsed().as_secs_f64(),
            controller.display(),
        );
    }
    let mut bench = Bench {
        options: options.clone(),
        fleet,
        commit,
        moto,
        server,
        client,
        aws,
        tracker,
        controller: None,
        controller_path: controller.to_path_buf(),
        kubeconfig,
        log_path,
        _dir: dir,
        version: 1,
        round: 0,
        secrets_right_at: None,
        reports: Vec::new(),
        ces_runs: 0,
        health: None,
        bitnami_keys,
        change_events_queue,
        proxy,
        _server_runtime: server_runtime,
    };
    let result = bench.run_phases().await;
    let stopped = bench.stop_controller();
    if result.is_err() || stopped.is_err() {
        eprintln!("{}", bench.log_tail(40));
    }
    result?;
    stopped?;
    Ok(bench.reports)
}

impl Bench {
    async fn run_phases(&mut self) -> Result<(), String> {
        self.first_sync().await?;
        for phase in self.options.phases.clone() {
            match phase {
                Phase::FirstSync => {}
                Phase::ChangedForced => self.forced(true).await?,
                Phase::UnchangedForced => self.forced(false).await?,
                Phase::SteadyUnchanged => self.steady(false).await?,
                Phase::SteadyChanged => self.steady(true).await?,
                Phase::ClusterExternalSecret => self.cluster_external_secret().await?,
                Phase::PushSecret => self.push_secret().await?,
                Phase::Bitnami => self.bitnami().await?,
                Phase::ChangeEvents => self.change_events().await?,
                Phase::Throttled => self.throttled().await?,
                Phase::ReloadMemory => self.reload_memory().await?,
            }
        }
        if let Some(duration) = self.options.soak {
            self.soak(duration).await?;
        }
        Ok(())
    }

    fn begin(&mut self) -> Start {
        let pid = self.controller.as_ref().map(Child::id);
        let peak_reset = pid.is_some_and(measure::reset_peak_rss);
        self.server.stats().reset_peaks();
        self.secrets_right_at = None;
        tokio::task::block_in_place(|| self.moto.start_recording());
        Start {
            at: Instant::now(),
            wall: jiff::Timestamp::now(),
            stats: self.server.stats().snapshot(),
            controller: pid.and_then(measure::sample).unwrap_or_default(),
            peak_reset,
            moto: measure::sample(self.moto.pid()).unwrap_or_default(),
            bench: measure::sample(std::process::id()).unwrap_or_default(),
            apiserver_cpu: measure::threads_cpu_seconds(server::THREADS),
            load: measure::load_average(),
            ticks: measure::cpu_ticks(),
            regressions: self.tracker.regressions(),
        }
    }

    fn stop_recording(&self) -> Vec<Recorded> {
        tokio::task::block_in_place(|| self.moto.stop_recording())
    }

    /// Every ExternalSecret's expected Secret data at the current version.
    fn expect_current(&mut self) -> Result<BTreeMap<RemoteKey, String>, String> {
        let values = aws::values_at(&self.fleet.remote_keys, self.version);
        let expected = expected_of(&self.fleet.external_secrets, &values)?;
        self.expect(expected);
        Ok(values)
    }

    /// From now on the tracker checks these Secrets (and only these).
    fn expect(&mut self, expected: HashMap<Id, Data>) {
        self.secrets_right_at = None;
        self.tracker.expect(expected);
    }

    fn all_done(&mut self, since: jiff::Timestamp) -> bool {
        let (right, total) = self.tracker.right();
        if right == total && self.secrets_right_at.is_none() {
            self.secrets_right_at = Some(Instant::now());
        }
        right == total && self.tracker.refreshed_since(since) == total
    }

    fn check_alive(&mut self) -> Result<(), String> {
        if let Some(child) = self.controller.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.controller = None;
            return Err(format!("the controller exited: {status}"));
        }
        Ok(())
    }

    /// Polls until every Secret is right and every ExternalSecret refreshed at
    /// or after `since`, or `deadline`.
    async fn wait_done(
        &mut self,
        since: jiff::Timestamp,
        deadline: Instant,
    ) -> Result<Option<Instant>, String> {
        let mut next_progress = Instant::now() + PROGRESS;
        // Progress, to tell a stall: counting refreshes since `since` walks
        // the whole fleet, too much to do every poll beside the controller.
        let mut seen = self.tracker.progress();
        let mut changed = Instant::now();
        loop {
            if self.all_done(since) {
                return Ok(Some(Instant::now()));
            }
            self.check_alive()?;
            let now = self.tracker.progress();
            if now != seen {
                (seen, changed) = (now, Instant::now());
            } else if changed.elapsed() >= STALLED {
                // A watch of the bench's own may have stopped: compare with a list.
                self.tracker.resync(&self.client).await?;
                changed = Instant::now();
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            if Instant::now() >= next_progress {
                self.progress(since);
                next_progress += PROGRESS;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A line on stderr while a phase waits, so a long run shows it is alive.
    fn progress(&self, since: jiff::Timestamp) {
        if self.options.json_only {
            return;
        }
        let (right, total) = self.tracker.right();
        eprintln!(
            "bench: {right}/{total} Secrets right, {}/{total} ExternalSecrets refreshed; controller {} API requests so far",
            self.tracker.refreshed_since(since),
            measure::controller_work(self.server.stats()),
        );
    }

    /// Waits until the controller has sent no API request (leases aside) for [`QUIET`].
    async fn wait_quiet(&self, at_most: Duration) {
        let deadline = Instant::now() + at_most;
        let mut last = measure::controller_work(self.server.stats());
        let mut since = Instant::now();
        while Instant::now() < deadline && since.elapsed() < QUIET {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = measure::controller_work(self.server.stats());
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }

    fn spawn_controller(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(&self.log_path)
            .map_err(|e| format!("{}: {e}", self.log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let health = format!("127.0.0.1:{}", crate::support::free_port());
        let mut command = Command::new(&self.controller_path);
        command
            .arg("controller")
            .args(["--health-address", &health])
            .args(["--lease-namespace", "default", "--identity", "bench"])
            .args(if self.options.phases.contains(&Phase::Bitnami) {
                &bitnami::CONTROLLER_ARGS[..]
            } else {
                &[]
            })
            .args(change_events::controller_args(
                self.change_events_queue.as_deref(),
            ))
            .args(&self.options.controller_args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", &self.options.controller_log_level)
            .env(
                "AWS_ENDPOINT_URL",
                self.proxy
                    .as_ref()
                    .map_or(&self.moto.endpoint, |p| &p.endpoint),
            )
            .env("AWS_REGION", fleet::REGION)
            .env("AWS_ACCESS_KEY_ID", CONTROLLER_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", "bench-controller-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for pair in &self.options.controller_env {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("--controller-env {pair:?}: expected NAME=VALUE"))?;
            command.env(name, value);
        }
        // If the bench dies, the controller goes with it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.controller_path.display()))?;
        self.controller = Some(child);
        self.health = Some(health);
        Ok(())
    }

    /// SIGTERM, as Kubernetes stops a pod; the controller must exit 0 in 30 s.
    fn stop_controller(&mut self) -> Result<(), String> {
        let Some(mut child) = self.controller.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child by its id.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!("the controller exited with {status} on SIGTERM"));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the controller did not exit within 30 s of SIGTERM".into());
                }
            }
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "controller log ({}), last {lines} lines:\n{tail}",
            self.log_path.display()
        )
    }

    async fn first_sync(&mut self) -> Result<(), String> {
        self.expect_current()?;
        align_to_second().await;
        let start = self.begin();
        self.spawn_controller()?;
        let deadline = Instant::now() + self.options.timeout;
        let done = self.wait_done(start.wall, deadline).await?;
        self.wait_quiet(Duration::from_secs(15)).await;
        let outcome = Outcome {
            done,
            calls: self.stop_recording(),
            ..Default::default()
        };
        self.report(
            Phase::FirstSync,
            "the controller starts on an existing fleet",
            start,
            outcome,
        )
        .await
    }

    /// Changes every value (or not), then annotates every ExternalSecret.
    async fn forced(&mut self, change: bool) -> Result<(), String> {
        align_to_second().await;
        let start = self.begin();
        let mut notes = Vec::new();
        let mut trigger_seconds = 0.0;
        if change {
            let writing = Instant::now();
            self.version += 1;
            self.aws
                .write_all(&self.fleet.remote_keys, self.version)
                .await?;
            self.expect_current()?;
            notes.push(format!(
                "{} remote values changed in {:.2} s before the annotations",
                self.fleet.remote_keys.len(),
                writing.elapsed().as_secs_f64()
            ));
            trigger_seconds += writing.elapsed().as_secs_f64();
            // Refreshes during the writes do not count as the forced ones.
            align_to_second().await;
        }
        // Unchanged values: the Secrets are right before anything is triggered.
        self.all_done(jiff::Timestamp::now());
        let triggered = Instant::now();
        let since = jiff::Timestamp::now();
        self.round += 1;
        let annotating = Instant::now();
        annotate_all(
            &self.client,
            &self.fleet,
            self.round,
            self.options.concurrency,
        )
        .await?;
        notes.push(format!(
            "{} ExternalSecrets annotated in {:.2} s",
            self.fleet.external_secrets.len(),
            annotating.elapsed().as_secs_f64()
        ));
        trigger_seconds += annotating.elapsed().as_secs_f64();
        let deadline = Instant::now() + self.options.timeout;
        let done = self.wait_done(since, deadline).await?;
        self.wait_quiet(Duration::from_secs(15)).await;
        let calls = self.stop_recording();
        if !change {
            // After the fleet's: one ExternalSecret forced alone.
            let seconds = self.force_one().await?;
            notes.push(format!(
                "afterwards one ExternalSecret forced alone: its status showed the refresh {seconds:.2} s after the annotation"
            ));
        }
        let outcome = Outcome {
            done,
            clock: Some(triggered),
            trigger_seconds,
            calls,
            notes,
            ..Default::default()
        };
        let (phase, title) = if change {
            (
                Phase::ChangedForced,
                "every remote value changed, then a forced refresh of every ExternalSecret",
            )
        } else {
            (
                Phase::UnchangedForced,
                "nothing changed, a forced refresh of every ExternalSecret",
            )
        };
        self.report(phase, title, start, outcome).await
    }

    /// Forces the fleet's first ExternalSecret alone; the seconds until its
    /// status shows the refresh (its `specHash` covers the annotation).
    async fn force_one(&mut self) -> Result<f64, String> {
        let es = &self.fleet.external_secrets[0];
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &es.namespace,
            &resource("ExternalSecret", "externalsecrets"),
        );
        let spec_hash = |object: &DynamicObject| object.data["status"]["specHash"].clone();
        let read = || async {
            api.get(&es.name)
                .await
                .map_err(|e| format!("reading {}/{}: {e}", es.namespace, es.name))
        };
        let before = spec_hash(&read().await?);
        self.round += 1;
        let patch =
            json!({"metadata": {"annotations": {FORCE_SYNC: format!("bench-one-{}", self.round)}}});
        let started = Instant::now();
        api.patch(&es.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("annotating {}/{}: {e}", es.namespace, es.name))?;
        loop {
            let now = spec_hash(&read().await?);
            if !now.is_null() && now != before {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > self.options.timeout {
                return Err(format!(
                    "{}/{} forced alone was not refreshed within {:?}",
                    es.namespace, es.name, self.options.timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One interval (+10% jitter, +3 s) of the natural schedule.
    async fn steady(&mut self, change: bool) -> Result<(), String> {
        align_to_second().await;
        let start = self.begin();
        let mut notes = Vec::new();
        let mut trigger_seconds = 0.0;
        if change {
            self.version += 1;
            self.aws
                .write_all(&self.fleet.remote_keys, self.version)
                .await?;
            self.expect_current()?;
            trigger_seconds = start.at.elapsed().as_secs_f64();
            notes.push(format!(
                "{} remote values changed in {trigger_seconds:.2} s at the start of the window",
                self.fleet.remote_keys.len()
            ));
        }
        let window = self.options.interval.mul_f64(1.1) + Duration::from_secs(3);
        let window_end = Instant::now() + window;
        let mut done = None;
        let mut next_progress = Instant::now() + PROGRESS;
        while Instant::now() < window_end {
            if done.is_none() && self.all_done(start.wall) {
                done = Some(Instant::now());
            }
            self.check_alive()?;
            if Instant::now() >= next_progress {
                self.progress(start.wall);
                next_progress += PROGRESS;
            }
            tokio::time::sleep(POLL).await;
        }
        let calls = self.stop_recording();
        let mut calls_after_window = 0;
        if done.is_none() {
            let (right, total) = self.tracker.right();
            let refreshed = self.tracker.refreshed_since(start.wall);
            notes.push(format!(
                "at the end of the window {right}/{total} Secrets were right and {refreshed}/{total} ExternalSecrets had refreshed"
            ));
            tokio::task::block_in_place(|| self.moto.start_recording());
            let deadline = Instant::now() + self.options.interval * 3;
            done = self.wait_done(start.wall, deadline).await?;
            calls_after_window = measure::controller_calls(&self.stop_recording())
                .values()
                .sum();
        }
        let outcome = Outcome {
            done,
            trigger_seconds,
            window: Some(window + Duration::from_secs_f64(trigger_seconds)),
            calls,
            calls_after_window,
            notes,
            ..Default::default()
        };
        let (phase, title) = if change {
            (
                Phase::SteadyChanged,
                "every value changed at the start of one refresh interval, natural schedule",
            )
        } else {
            (
                Phase::SteadyUnchanged,
                "one refresh interval of the natural schedule, nothing changed",
            )
        };
        self.report(phase, title, start, outcome).await
    }

    /// Lists every managed Secret and reads moto afresh: how many Secrets hold
    /// exactly what moto holds, and whether moto holds what the bench wrote.
    /// The fleet's, or those of `check`.
    async fn verify(
        &self,
        check: Option<&Check>,
        notes: &mut Vec<String>,
    ) -> Result<(usize, bool), String> {
        let (plans, keys, version) = match check {
            Some(check) => (&check.plans, &check.keys, check.version),
            None => (
                &self.fleet.external_secrets,
                &self.fleet.remote_keys,
                self.version,
            ),
        };
        let written = aws::values_at(keys, version);
        let held = self.aws.read_all(keys).await?;
        let moto_agrees = held == written;
        if !moto_agrees {
            notes.push("moto does not hold what the bench wrote".into());
        }
        let live = tracker::list_secrets(&self.client).await?;
        let mut right = 0;
        for es in plans {
            let expected = fleet::expected_data(es, &held)?;
            if live.get(&(es.namespace.clone(), es.name.clone())) == Some(&expected) {
                right += 1;
            }
        }
        Ok((right, moto_agrees && right == plans.len()))
    }

    async fn report(
        &mut self,
        phase: Phase,
        title: &str,
        start: Start,
        outcome: Outcome,
    ) -> Result<(), String> {
        let report = self.measure(phase, title, start, outcome).await?;
        self.publish(report);
        Ok(())
    }

    /// The phase's figures as of now, checked against a fresh list and moto.
    async fn measure(
        &mut self,
        phase: Phase,
        title: &str,
        start: Start,
        mut outcome: Outcome,
    ) -> Result<PhaseReport, String> {
        let end = Instant::now();
        let end_wall = jiff::Timestamp::now();
        let pid = self.controller.as_ref().map(Child::id);
        let controller = pid.and_then(measure::sample).unwrap_or_default();
        let moto = measure::sample(self.moto.pid()).unwrap_or_default();
        let bench = measure::sample(std::process::id()).unwrap_or_default();
        let stats = self.server.stats().snapshot();
        let (verified_right, mut verified) = self
            .verify(outcome.check.as_ref(), &mut outcome.notes)
            .await?;
        if let Some(check) = &outcome.check {
            verified &= check.also_verified;
        }
        let (right, total) = self.tracker.right();
        if outcome.done.is_none() {
            let wrong = self.tracker.some_wrong(5);
            outcome.notes.push(if wrong.is_empty() {
                "not done in time (every Secret was right by the end of the phase)".to_string()
            } else {
                format!("not every Secret was right in time; still wrong: {wrong:?}")
            });
        }
        if verified_right != right {
            outcome.notes.push(format!(
                "the bench's watch saw {right} right Secrets, a fresh list {verified_right}"
            ));
        }
        let resyncs = self.tracker.resyncs();
        if resyncs.found_more > 0 {
            outcome.notes.push(format!(
                "{} times so far the bench's own watches had missed changes a fresh list showed",
                resyncs.found_more
            ));
        }
        let watch_errors = self
            .tracker
            .watch_errors
            .load(std::sync::atomic::Ordering::Relaxed);
        if watch_errors > 0 {
            outcome.notes.push(format!(
                "{watch_errors} watch errors (retried) in the bench's own watches so far"
            ));
        }
        let aws_calls = measure::controller_calls(&outcome.calls);
        let length = outcome
            .window
            .unwrap_or_else(|| end.duration_since(start.at))
            .as_secs_f64();
        let window_end = start.wall
            + jiff::SignedDuration::try_from(Duration::from_secs_f64(length)).unwrap_or_default();
        let refresh_end = if outcome.window.is_some() {
            window_end
        } else {
            end_wall
        };
        let phase_name = clap::ValueEnum::to_possible_value(&phase)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        let report = PhaseReport {
            phase: phase_name,
            title: title.to_string(),
            commit: self.commit.clone(),
            fleet: self.fleet.size.clone(),
            seconds_to_all_right: outcome.done.map(|d| {
                d.duration_since(outcome.clock.unwrap_or(start.at))
                    .as_secs_f64()
            }),
            seconds_to_secrets_right: self.secrets_right_at.map(|d| {
                d.saturating_duration_since(outcome.clock.unwrap_or(start.at))
                    .as_secs_f64()
            }),
            window_seconds: outcome.window.map(|w| w.as_secs_f64()),
            trigger_seconds: outcome.trigger_seconds,
            secrets_right: verified_right,
            secrets_total: total,
            verified,
            aws_calls_total: aws_calls.values().sum(),
            aws_calls,
            aws_calls_after_window: outcome.calls_after_window,
            aws_calls_by_tenth: tenths(
                &measure::controller_call_times(&outcome.calls, start.wall),
                length,
            ),
            eso_model: outcome.eso_model.unwrap_or_else(|| self.fleet.eso_model()),
            refreshes: self.tracker.refreshes_between(start.wall, refresh_end),
            refresh_time_regressions: self.tracker.regressions() - start.regressions,
            refreshes_by_tenth: tenths(
                &self.tracker.refresh_times(start.wall, refresh_end),
                length,
            ),
            controller,
            peak_is_per_phase: start.peak_reset,
            controller_cpu_seconds: controller.cpu_seconds() - start.controller.cpu_seconds(),
            api: measure::api_load(&start.stats, &stats),
            moto_cpu_seconds: moto.cpu_seconds() - start.moto.cpu_seconds(),
            bench_cpu_seconds: bench.cpu_seconds() - start.bench.cpu_seconds(),
            apiserver_cpu_seconds: measure::threads_cpu_seconds(server::THREADS)
                - start.apiserver_cpu,
            bench_rss_kib: bench.rss_kib,
            load_average: start.load,
            steal_percent: measure::steal_percent(start.ticks, measure::cpu_ticks()),
            phase_seconds: end.duration_since(start.at).as_secs_f64(),
            notes: outcome.notes,
            ces: outcome.ces,
        };
        Ok(report)
    }

    /// Prints a phase's figures and keeps them.
    fn publish(&mut self, report: PhaseReport) {
        if !self.options.json_only {
            println!("{}", report.table());
        }
        println!("{}", report.json());
        self.reports.push(report);
    }

    /// The soak: every value changes once per interval; memory sampled throughout.
    async fn soak(&mut self, duration: Duration) -> Result<(), String> {
        let pid = self
            .controller
            .as_ref()
            .map(Child::id)
            .ok_or("no controller")?;
        let started = Instant::now();
        let mut samples = Vec::new();
        let mut calls_per_interval = Vec::new();
        if !self.options.json_only {
            println!(
                "== soak: {:.0} s, every value changing once per interval ==",
                duration.as_secs_f64()
            );
            println!(
                "   {:>7} {:>10} {:>10} {:>9} {:>14}",
                "t (s)", "RSS MiB", "HWM MiB", "CPU s", "Secrets right"
            );
        }
        // The controller's cycles follow the first sync by whole intervals;
        // changing values half an interval later lets each cycle pick up one
        // change and shows it in "Secrets right" before the next.
        let soak_end = started + duration;
        let settle_end = Instant::now() + self.options.interval / 2;
        self.sample_until(settle_end.min(soak_end), started, pid, &mut samples)
            .await?;
        while started.elapsed() < duration {
            tokio::task::block_in_place(|| self.moto.start_recording());
            self.version += 1;
            self.aws
                .write_all(&self.fleet.remote_keys, self.version)
                .await?;
            self.expect_current()?;
            let interval_end = Instant::now() + self.options.interval;
            self.sample_until(interval_end.min(soak_end), started, pid, &mut samples)
                .await?;
            let calls: u64 = measure::controller_calls(&self.stop_recording())
                .values()
                .sum();
            calls_per_interval.push(calls);
        }
        let rss: Vec<u64> = samples
            .iter()
            .filter_map(|s| s["rss_kib"].as_u64())
            .collect();
        let summary = json!({
            "phase": "soak",
            "commit": self.commit,
            "fleet": self.fleet.size,
            "seconds": started.elapsed().as_secs_f64(),
            "rss_kib_first": rss.first(),
            "rss_kib_min": rss.iter().min(),
            "rss_kib_max": rss.iter().max(),
            "rss_kib_last": rss.last(),
            "aws_calls_per_interval": calls_per_interval,
            "samples": samples,
        });
        if !self.options.json_only {
            println!(
                "   RSS first {:.1} MiB, min {:.1}, max {:.1}, last {:.1}; AWS calls per interval {:?}",
                report::mib(rss.first().copied().unwrap_or(0)),
                report::mib(rss.iter().min().copied().unwrap_or(0)),
                report::mib(rss.iter().max().copied().unwrap_or(0)),
                report::mib(rss.last().copied().unwrap_or(0)),
                calls_per_interval
            );
        }
        println!("{summary}");
        Ok(())
    }

    /// Samples the controller every `--sample` until `end`; `t` counts from `started`.
    async fn sample_until(
        &mut self,
        end: Instant,
        started: Instant,
        pid: u32,
        samples: &mut Vec<serde_json::Value>,
    ) -> Result<(), String> {
        while Instant::now() < end {
            self.check_alive()?;
            let sample = measure::sample(pid).unwrap_or_default();
            let (right, total) = self.tracker.right();
            let t = started.elapsed().as_secs_f64();
            if !self.options.json_only {
                println!(
                    "   {t:>7.0} {:>10.1} {:>10.1} {:>9.2} {:>8}/{total}",
                    report::mib(sample.rss_kib),
                    report::mib(sample.hwm_kib),
                    sample.cpu_seconds(),
                    right
                );
            }
            samples.push(
                json!({"t": t, "rss_kib": sample.rss_kib, "hwm_kib": sample.hwm_kib,
                "cpu_seconds": sample.cpu_seconds(), "secrets_right": right}),
            );
            tokio::time::sleep(
                self.options
                    .sample
                    .min(end.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        Ok(())
    }
}

/// What each ExternalSecret's Secret must hold given the remote values.
fn expected_of(
    plans: &[ExternalSecretPlan],
    values: &BTreeMap<RemoteKey, String>,
) -> Result<HashMap<Id, Data>, String> {
    plans
        .iter()
        .map(|es| {
            Ok((
                (es.namespace.clone(), es.name.clone()),
                fleet::expected_data(es, values)?,
            ))
        })
        .collect()
}

/// Sleeps into the next whole second, so that `refreshTime` (whole seconds)
/// at or after "now" means after this moment.
async fn align_to_second() {
    let now = jiff::Timestamp::now();
    let into = now.subsec_nanosecond() as u64;
    tokio::time::sleep(Duration::from_nanos(1_000_000_000 - into) + Duration::from_millis(5)).await;
}

/// The bench's own client: named `secretsync-bench` so its requests are not counted as the controller's.
fn bench_client(url: &str) -> Result<kube::Client, String> {
    let mut config = kube::Config::new(url.parse().map_err(|e| format!("{url}: {e}"))?);
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!(
            "secretsync-bench",
            "/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    kube::Client::try_from(config).map_err(|e| format!("a kube client: {e}"))
}

/// secretsync's CRDs, and ESO's for a controller run with `--eso-compat`
/// (without it, nothing reads them).
async fn apply_crds(client: &kube::Client) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(BENCH_CLIENT).force();
    let crds = secretsync::api::crds()
        .into_iter()
        .chain(secretsync::api::eso_compat_crds());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("applying CRD {name}: {e}"))?;
    }
    Ok(())
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("secretsync.io", "v1", kind), plural)
}

async fn create_fleet(
    client: &kube::Client,
    fleet: &Fleet,
    concurrency: usize,
) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(&fleet.namespaces)
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
    let stores = fleet.stores();
    futures::stream::iter(&stores)
        .map(|(namespace, manifest)| create(client, namespace.as_deref(), manifest))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    futures::stream::iter(&fleet.external_secrets)
        .map(|es| {
            let manifest = fleet.manifest(es);
            async move { create(client, Some(&es.namespace), &manifest).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn create(
    client: &kube::Client,
    namespace: Option<&str>,
    manifest: &serde_json::Value,
) -> Result<(), String> {
    let kind = manifest["kind"].as_str().unwrap_or_default();
    let plural = format!("{}s", kind.to_lowercase());
    let resource = resource(kind, &plural);
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let object: DynamicObject =
        serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "creating {kind} {}: {e}",
                object.metadata.name.unwrap_or_default()
            )
        })
}

async fn annotate_all(
    client: &kube::Client,
    fleet: &Fleet,
    round: u32,
    concurrency: usize,
) -> Result<(), String> {
    let resource = resource("ExternalSecret", "externalsecrets");
    let patch = json!({"metadata": {"annotations": {FORCE_SYNC: format!("bench-{round}")}}});
    futures::stream::iter(&fleet.external_secrets)
        .map(|es| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &es.namespace, &resource);
            let patch = &patch;
            async move {
                api.patch(&es.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("annotating {}/{}: {e}", es.namespace, es.name))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The controller measured: the last commit that changed `src/`, `Cargo.toml`
/// or `Cargo.lock`, `-dirty` when they have uncommitted changes.
fn commit() -> String {
    const CONTROLLER: [&str; 4] = ["--", "src", "Cargo.toml", "Cargo.lock"];
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .args(CONTROLLER)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let Some(last) = git(&["log", "-1", "--format=%h"]) else {
        return "unknown".into();
    };
    let last = String::from_utf8_lossy(&last.stdout).trim().to_string();
    let dirty = git(&["status", "--porcelain"]).is_none_or(|o| !o.stdout.is_empty());
    if dirty { format!("{last}-dirty") } else { last }
}

/// Sockets are files: a controller opening thousands of connections needs
/// the fake API server (this process) to accept them.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
