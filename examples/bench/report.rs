//! One phase's figures: a readable table and one JSON line.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::fleet::{EsoModel, FleetSize};
use super::measure::{ApiLoad, ProcessSample};
use super::tracker::Refreshes;

#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    /// first-sync, changed-forced, unchanged-forced, steady-unchanged,
    /// steady-changed, cluster-external-secret.
    pub phase: String,
    pub title: String,
    /// The controller measured: the last commit touching src/, Cargo.toml, Cargo.lock.
    pub commit: String,
    pub fleet: FleetSize,
    /// Seconds from the trigger (controller start, first annotation, start of
    /// the window) until every Secret held what moto holds and every
    /// ExternalSecret had refreshed; `None` if that never happened.
    pub seconds_to_all_right: Option<f64>,
    /// The same clock until every Secret held what moto holds, refreshes aside.
    pub seconds_to_secrets_right: Option<f64>,
    /// Steady phases: the window the calls are counted in (interval + 10% + 3 s).
    pub window_seconds: Option<f64>,
    /// Seconds the bench spent triggering (writing values, annotating).
    pub trigger_seconds: f64,
    pub secrets_right: usize,
    pub secrets_total: usize,
    /// Checked at the end against a fresh list of Secrets and a fresh read of moto.
    pub verified: bool,
    /// The controller's AWS calls by API in the phase (window, for steady phases).
    pub aws_calls: BTreeMap<String, u64>,
    pub aws_calls_total: u64,
    /// Steady phases: the controller's calls after the window, while the bench
    /// waited for the last ExternalSecrets to refresh.
    pub aws_calls_after_window: u64,
    /// Calls per tenth of the phase (of the window for steady phases).
    pub aws_calls_by_tenth: Vec<u64>,
    /// ESO's documented behaviour for one refresh of the fleet: a model.
    pub eso_model: EsoModel,
    pub refreshes: Refreshes,
    /// Times an ExternalSecret's `refreshTime` was replaced by an earlier one
    /// (a status written from a stale copy of the object).
    pub refresh_time_regressions: u64,
    pub refreshes_by_tenth: Vec<u64>,
    /// The controller at the end of the phase; `hwm_kib` is the phase's peak
    /// when `peak_is_per_phase`, else the process's lifetime peak.
    pub controller: ProcessSample,
    pub peak_is_per_phase: bool,
    pub controller_cpu_seconds: f64,
    pub api: ApiLoad,
    /// Where else the time went: moto's and the bench's (fake API server
    /// included) CPU seconds in the phase, and the machine's load.
    pub moto_cpu_seconds: f64,
    pub bench_cpu_seconds: f64,
    /// Of `bench_cpu_seconds`: the fake API server's threads'.
    pub apiserver_cpu_seconds: f64,
    /// The bench process's RSS at the end (the fake API server's store lives there).
    pub bench_rss_kib: u64,
    pub load_average: String,
    /// Share of the machine's CPU time its hypervisor took for others during
    /// the phase (0 on bare metal): times above it are slower by about that.
    pub steal_percent: f64,
    pub phase_seconds: f64,
    pub notes: Vec<String>,
    /// cluster-external-secret only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ces: Option<CesFigures>,
}

/// The cluster-external-secret phase's own figures. Its Secrets (one per
/// namespace) are the phase's `secrets_*`; `seconds_to_all_right` counts from
/// applying the ClusterExternalSecret until every Secret was right, every
/// ExternalSecret it wrote had refreshed and its status listed every namespace.
#[derive(Clone, Debug, Serialize)]
pub struct CesFigures {
    /// Namespaces it picks (by label), created for the phase.
    pub namespaces: usize,
    /// Distinct remote keys its ExternalSecret spec reads (new to the controller).
    pub keys: usize,
    /// Creating the namespaces and keys before the phase (not measured).
    pub setup_seconds: f64,
    /// From applying it until its status listed every namespace as
    /// provisioned, none failed, Ready True.
    pub seconds_to_status: Option<f64>,
    /// The target for `seconds_to_all_right`, and whether it held.
    pub target_seconds: f64,
    pub target_met: bool,
    /// Of the phase's AWS calls, those whose request names one of its keys
    /// (the rest are the fleet's own refreshes falling in the phase).
    pub aws_calls_naming_keys: BTreeMap<String, u64>,
    pub deletion: Option<CesDeletion>,
}

/// Deleting the ClusterExternalSecret after the phase's figures were taken.
#[derive(Clone, Debug, Serialize)]
pub struct CesDeletion {
    /// From the delete until the object and every ExternalSecret it wrote
    /// were gone; `None` if not within `--timeout`.
    pub seconds_to_gone: Option<f64>,
    /// Its ExternalSecrets (by their label) before the delete, and left after.
    pub external_secrets_before: usize,
    pub external_secrets_left: usize,
    /// Their Secrets left after (the garbage collector follows the owners).
    pub secrets_left: usize,
    /// The first few of them.
    pub secrets_left_first: Vec<String>,
    /// The controller's API requests from the delete until all were gone.
    pub api: ApiLoad,
    /// CPU seconds meanwhile: the controller's, and the bench's with its
    /// fake API server (which runs the garbage collector).
    pub controller_cpu_seconds: f64,
    pub bench_cpu_seconds: f64,
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Counts of `times` (seconds from the start) in ten equal slices of `length`.
pub fn tenths(times: &[i64], length: f64) -> Vec<u64> {
    let mut buckets = vec![0u64; 10];
    if length <= 0.0 {
        return buckets;
    }
    for t in times {
        let slot = ((*t as f64 / length) * 10.0).floor().clamp(0.0, 9.0) as usize;
        buckets[slot] += 1;
    }
    buckets
}

impl PhaseReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let f = &self.fleet;
        let _ = writeln!(
            out,
            "== {}: {} ==\n   fleet: {} ExternalSecrets in {} namespaces, {} refs each, {} Secrets Manager secrets, {} SSM parameters, {} stores, refreshInterval {}s; controller commit {}",
            self.phase,
            self.title,
            f.es,
            f.namespaces,
            f.refs,
            f.sm_secrets,
            f.ssm_parameters,
            match f.stores {
                super::fleet::StoreKind::Cluster => "ClusterSecretStore",
                super::fleet::StoreKind::Namespaced => "per-namespace SecretStore",
            },
            f.interval_seconds,
            self.commit
        );
        let seconds = |s: Option<f64>| match s {
            Some(s) => format!("{s:.2} s"),
            None => "never (see notes)".to_string(),
        };
        let (secrets, to_right) = (
            seconds(self.seconds_to_secrets_right),
            seconds(self.seconds_to_all_right),
        );
        let _ = writeln!(
            out,
            "   all {} Secrets right (value by value) after {secrets}; and every ExternalSecret refreshed after {to_right}; trigger took {:.2} s{}; verified against moto: {}",
            self.secrets_total,
            self.trigger_seconds,
            self.window_seconds
                .map(|w| format!("; window {w:.0} s"))
                .unwrap_or_default(),
            if self.verified { "yes" } else { "NO" }
        );
        let _ = writeln!(
            out,
            "   {:<44} {:>8}    {:<38} {:>8}",
            "AWS calls (controller, moto's recording)",
            "",
            if self.ces.is_some() {
                "ESO model (first sync of its ESs)"
            } else {
                "ESO model (one refresh of the fleet)"
            },
            ""
        );
        let measured: Vec<(&String, &u64)> = self.aws_calls.iter().collect();
        let model: Vec<(&String, &u64)> = self.eso_model.calls.iter().collect();
        for row in 0..measured.len().max(model.len()) {
            let (name, count) = measured
                .get(row)
                .map(|(n, c)| (n.as_str(), c.to_string()))
                .unwrap_or(("", String::new()));
            let (model_name, model_count) = model
                .get(row)
                .map(|(n, c)| (n.as_str(), c.to_string()))
                .unwrap_or(("", String::new()));
            let _ = writeln!(
                out,
                "     {name:<42} {count:>8}      {model_name:<36} {model_count:>8}"
            );
        }
        let _ = writeln!(
            out,
            "     {:<42} {:>8}      {:<36} {:>8}",
            "total", self.aws_calls_total, "total (model)", self.eso_model.total
        );
        if self.window_seconds.is_some() {
            let _ = writeln!(
                out,
                "     calls after the window, until the last refresh: {}",
                self.aws_calls_after_window
            );
        }
        let _ = writeln!(
            out,
            "     calls by tenth of the {}: {:?}",
            if self.window_seconds.is_some() {
                "window"
            } else {
                "phase"
            },
            self.aws_calls_by_tenth
        );
        let r = &self.refreshes;
        let _ = writeln!(
            out,
            "   refreshes (status.refreshTime): {} ExternalSecrets refreshed ({} more than once), {} in all; longest gap {} s; by tenth {:?}; refreshTime went back {} times",
            r.refreshed,
            r.refreshed_more_than_once,
            r.total,
            r.longest_gap_seconds,
            self.refreshes_by_tenth,
            self.refresh_time_regressions
        );
        let c = &self.controller;
        let _ = writeln!(
            out,
            "   controller: VmRSS {:.1} MiB at end (anon {:.1}, file {:.1}), VmHWM {:.1} MiB ({}), CPU {:.2} s in the phase; {} threads, {} open fds",
            mib(c.rss_kib),
            mib(c.rss_anon_kib),
            mib(c.rss_file_kib),
            mib(c.hwm_kib),
            if self.peak_is_per_phase {
                "phase peak"
            } else {
                "lifetime peak"
            },
            self.controller_cpu_seconds,
            c.threads,
            c.open_fds
        );
        let a = &self.api;
        let _ = writeln!(
            out,
            "   API server (controller): {} requests; peak {} connections ({} opened, {} open at end); peak {} requests in flight",
            a.total,
            a.peak_connections,
            a.connections_opened,
            a.open_connections_at_end,
            a.peak_in_flight
        );
        let mut requests: Vec<(&String, &u64)> = a.requests.iter().collect();
        requests.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
        let listed: Vec<String> = requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
        for chunk in listed.chunks(4) {
            let _ = writeln!(out, "     {}", chunk.join(", "));
        }
        let _ = writeln!(
            out,
            "   elsewhere: moto CPU {:.2} s, bench + fake API server CPU {:.2} s (fake API server's threads {:.2} s, bench's own {:.2} s; RSS {:.0} MiB), phase {:.1} s, load average {}, CPU taken by the hypervisor {:.0}%",
            self.moto_cpu_seconds,
            self.bench_cpu_seconds,
            self.apiserver_cpu_seconds,
            // Per-thread and per-process times are counted in whole ticks.
            (self.bench_cpu_seconds - self.apiserver_cpu_seconds).max(0.0),
            mib(self.bench_rss_kib),
            self.phase_seconds,
            self.load_average,
            self.steal_percent
        );
        if let Some(ces) = &self.ces {
            let _ = writeln!(
                out,
                "   ClusterExternalSecret over {} namespaces ({} new keys): every namespace's Secret right and the status listing all {} after {to_right} (target < {:.0} s: {}); status complete after {}; setup {:.2} s (not measured)",
                ces.namespaces,
                ces.keys,
                ces.namespaces,
                ces.target_seconds,
                if ces.target_met { "met" } else { "NOT met" },
                seconds(ces.seconds_to_status),
                ces.setup_seconds
            );
            let named: Vec<String> = ces
                .aws_calls_naming_keys
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                out,
                "     AWS calls naming its keys: {} (any others above: the fleet's own refreshes)",
                if named.is_empty() {
                    "none".to_string()
                } else {
                    named.join(", ")
                }
            );
            match &ces.deletion {
                Some(d) => {
                    let _ = writeln!(
                        out,
                        "     deleted: {} of its {} ExternalSecrets left after {}; {} of their Secrets left{}; meanwhile controller CPU {:.2} s, bench + fake API server CPU {:.2} s, controller {} API requests",
                        d.external_secrets_left,
                        d.external_secrets_before,
                        seconds(d.seconds_to_gone),
                        d.secrets_left,
                        if d.secrets_left_first.is_empty() {
                            String::new()
                        } else {
                            format!(" (first: {})", d.secrets_left_first.join(", "))
                        },
                        d.controller_cpu_seconds,
                        d.bench_cpu_seconds,
                        d.api.total
                    );
                    let mut requests: Vec<(&String, &u64)> = d.api.requests.iter().collect();
                    requests.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
                    let listed: Vec<String> =
                        requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    for chunk in listed.chunks(4) {
                        let _ = writeln!(out, "       {}", chunk.join(", "));
                    }
                }
                None => {
                    let _ = writeln!(out, "     deletion not measured");
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "   note: {note}");
        }
        out
    }
}

/// A stage's controller figures, one line (the push-secret and bitnami phases).
/// A phase's last lines: whether every Secret matched moto at the end, then
/// its notes.
pub fn verified_and_notes(out: &mut String, verified: bool, notes: &[String]) {
    let _ = writeln!(
        out,
        "   every Secret verified against moto at the end: {}",
        if verified { "yes" } else { "NO" }
    );
    for note in notes {
        let _ = writeln!(out, "   note: {note}");
    }
}

/// A stage's cost beyond the controller (moto, the bench, the machine),
/// then its notes.
pub fn stage_elsewhere_lines(out: &mut String, cost: &super::StageCost, notes: &[String]) {
    let _ = writeln!(
        out,
        "     elsewhere: moto CPU {:.2} s, bench + fake API server CPU {:.2} s (RSS {:.0} MiB), stage {:.1} s, load average {}, CPU taken by the hypervisor {:.0}%",
        cost.moto_cpu_seconds,
        cost.bench_cpu_seconds,
        mib(cost.bench_rss_kib),
        cost.stage_seconds,
        cost.load_average,
        cost.steal_percent
    );
    for note in notes {
        let _ = writeln!(out, "     note: {note}");
    }
}

pub fn stage_controller_line(out: &mut String, cost: &super::StageCost) {
    let c = &cost.controller;
    let _ = writeln!(
        out,
        "     controller: VmRSS {:.1} MiB at end (anon {:.1}, file {:.1}), VmHWM {:.1} MiB ({}), CPU {:.2} s in the stage; {} threads, {} open fds",
        mib(c.rss_kib),
        mib(c.rss_anon_kib),
        mib(c.rss_file_kib),
        mib(c.hwm_kib),
        if cost.peak_is_per_stage {
            "stage peak"
        } else {
            "lifetime peak"
        },
        cost.controller_cpu_seconds,
        c.threads,
        c.open_fds
    );
}

/// A stage's API requests from the controller, most frequent first, four a line.
pub fn stage_api_lines(out: &mut String, a: &ApiLoad) {
    let mut requests: Vec<(&String, &u64)> = a.requests.iter().collect();
    requests.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    let listed: Vec<String> = requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "     API server (controller): {} requests, peak {} connections, peak {} in flight",
        a.total, a.peak_connections, a.peak_in_flight
    );
    for chunk in listed.chunks(4) {
        let _ = writeln!(out, "       {}", chunk.join(", "));
    }
}
