//! What a phase measures outside the controller's own word: its memory and CPU
//! from /proc, the API server's counters, and moto's recording.

use std::collections::BTreeMap;

use serde::Serialize;

use super::aws::made_by_bench;
use crate::support::apiserver::stats::{Stats, StatsSnapshot};
use crate::support::moto::Recorded;

/// The bench's own Kubernetes client calls itself this (User-Agent).
pub const BENCH_CLIENT: &str = "secretsync-bench";

/// A process's memory and CPU at one moment.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcessSample {
    pub rss_kib: u64,
    /// Peak RSS since the last [`reset_peak_rss`] (or the start).
    pub hwm_kib: u64,
    /// Of the RSS: anonymous pages (the heap, stacks) and file pages (the
    /// binary's and libraries' mapped code and data).
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub threads: u64,
    pub open_fds: u64,
}

impl ProcessSample {
    pub fn cpu_seconds(&self) -> f64 {
        self.user_seconds + self.system_seconds
    }
}

/// Reads /proc/PID/status and /proc/PID/stat; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: 11 and 12 counted from the state (field 3).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let per_second = clock_ticks_per_second();
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcessSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        rss_anon_kib: field("RssAnon:"),
        rss_file_kib: field("RssFile:"),
        user_seconds: ticks(11) as f64 / per_second,
        system_seconds: ticks(12) as f64 / per_second,
        threads: field("Threads:"),
        open_fds,
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Starts VmHWM afresh from the current RSS (`echo 5 > /proc/PID/clear_refs`),
/// so a phase reports its own peak. Whether that worked.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The machine's CPU time so far, in clock ticks: all of it, and what the
/// hypervisor took for others (`steal` in /proc/stat). A virtual machine's
/// host can take a third of its time, which slows every phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTicks {
    pub total: u64,
    pub steal: u64,
}

pub fn cpu_ticks() -> CpuTicks {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return CpuTicks::default();
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return CpuTicks::default();
    };
    // user nice system idle iowait irq softirq steal guest guest_nice; the
    // guest times are already counted in user and nice.
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    CpuTicks {
        total: fields.iter().sum(),
        steal: fields.get(7).copied().unwrap_or_default(),
    }
}

/// Percent of the machine's time the hypervisor took between two readings.
pub fn steal_percent(start: CpuTicks, end: CpuTicks) -> f64 {
    let total = end.total.saturating_sub(start.total);
    if total == 0 {
        return 0.0;
    }
    100.0 * end.steal.saturating_sub(start.steal) as f64 / total as f64
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The controller's AWS calls, by API (`X-Amz-Target`), from a recording.
pub fn controller_calls(recorded: &[Recorded]) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for request in recorded.iter().filter(|r| !made_by_bench(r)) {
        *calls.entry(request.call.clone()).or_default() += 1;
    }
    calls
}

/// The controller's AWS calls per second since `start` (from `X-Amz-Date`).
pub fn controller_call_times(recorded: &[Recorded], start: jiff::Timestamp) -> Vec<i64> {
    let mut seconds: Vec<i64> = recorded
        .iter()
        .filter(|r| !made_by_bench(r))
        .filter_map(|r| {
            let date = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &r.date).ok()?;
            let at = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
            Some(at.as_second() - start.as_second())
        })
        .collect();
    seconds.sort_unstable();
    seconds
}

/// API-server load of one phase from the controller (every client but the bench).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiLoad {
    /// "verb resource" -> requests.
    pub requests: BTreeMap<String, u64>,
    pub total: u64,
    pub peak_connections: u64,
    pub connections_opened: u64,
    pub open_connections_at_end: u64,
    pub peak_in_flight: u64,
}

/// The controller's share of the API server's counters between two snapshots.
pub fn api_load(before: &StatsSnapshot, after: &StatsSnapshot) -> ApiLoad {
    let mut load = ApiLoad::default();
    for ((client, verb, resource), count) in &after.requests {
        if client == BENCH_CLIENT {
            continue;
        }
        let earlier = before
            .requests
            .get(&(client.clone(), verb.clone(), resource.clone()))
            .copied()
            .unwrap_or(0);
        let delta = count.saturating_sub(earlier);
        if delta > 0 {
            *load
                .requests
                .entry(format!("{verb} {resource}"))
                .or_default() += delta;
            load.total += delta;
        }
    }
    for (client, now) in &after.clients {
        if client == BENCH_CLIENT {
            continue;
        }
        let earlier = before.clients.get(client).copied().unwrap_or_default();
        load.peak_connections += now.peak_connections;
        load.peak_in_flight += now.peak_in_flight;
        load.open_connections_at_end += now.open_connections;
        load.connections_opened += now
            .connections_opened
            .saturating_sub(earlier.connections_opened);
    }
    load
}

/// Requests from the controller so far, leases left out (renewals go on
/// while the controller is otherwise idle).
pub fn controller_work(stats: &Stats) -> u64 {
    stats
        .snapshot()
        .requests
        .iter()
        .filter(|((client, _, resource), _)| {
            client != BENCH_CLIENT && !resource.starts_with("leases.")
        })
        .map(|(_, count)| count)
        .sum()
}

/// The CPU seconds so far of this process's threads whose name starts with
/// `prefix` (`/proc/self/task/*`): the fake API server runs on threads of its
/// own (see `server.rs`), so its share of the bench process is told apart.
pub fn threads_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let per_second = clock_ticks_per_second();
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with(prefix));
        if !named {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / per_second
}
