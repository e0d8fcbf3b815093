//! The cost-and-scale benchmark (`cargo run --release --example bench`) keeps
//! working: its own code path on a tiny fleet, in debug mode, with the real
//! controller binary. Every phase must end with every Secret checked value by
//! value against moto, and every figure must be there. No timing is asserted:
//! the benchmark measures, this test only keeps it honest.

/// The example's code, as `cargo run --example bench` runs it.
#[path = "../examples/bench/mod.rs"]
mod benchmark;

use std::path::Path;

use clap::Parser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_every_phase_and_reports_every_figure() {
    let options = benchmark::Options::parse_from([
        "bench",
        "--es",
        "20",
        "--namespaces",
        "2",
        "--sm-secrets",
        "8",
        "--ssm-parameters",
        "12",
        "--interval",
        "10s",
        "--timeout",
        "120s",
        "--json-only",
    ]);
    let reports = benchmark::run(&options, Path::new(env!("CARGO_BIN_EXE_secretsync")))
        .await
        .expect("the benchmark runs");
    let phases: Vec<&str> = reports.iter().map(|r| r.phase.as_str()).collect();
    assert_eq!(
        phases,
        [
            "first-sync",
            "changed-forced",
            "unchanged-forced",
            "steady-unchanged",
            "steady-changed"
        ]
    );
    for report in &reports {
        let phase = &report.phase;
        assert!(
            report.verified,
            "{phase}: every Secret right, moto agreeing: {report:?}"
        );
        assert!(report.seconds_to_all_right.is_some(), "{phase}: {report:?}");
        assert_eq!(
            (report.secrets_right, report.secrets_total),
            (20, 20),
            "{phase}"
        );
        // 4 "database" ExternalSecrets read 1 secret, 4 "service" ones 2; 12 read 3 parameters.
        assert_eq!(
            report.eso_model.calls["secretsmanager.GetSecretValue"], 12,
            "{phase}"
        );
        assert_eq!(
            report.eso_model.calls["AmazonSSM.GetParameter"], 36,
            "{phase}"
        );
        assert!(
            report.controller.rss_kib > 0 && report.controller.hwm_kib >= report.controller.rss_kib,
            "{phase}: {:?}",
            report.controller
        );
        assert!(report.controller_cpu_seconds > 0.0, "{phase}");
        assert!(
            report.api.total > 0 && report.api.peak_connections >= 1,
            "{phase}: {:?}",
            report.api
        );
        assert!(!report.load_average.is_empty(), "{phase}");
        assert!(
            (0.0..=100.0).contains(&report.steal_percent),
            "{phase}: {}",
            report.steal_percent
        );
        assert!(report.json().starts_with('{') && report.table().contains(phase.as_str()));
        assert_eq!(
            report.aws_calls_total,
            report.aws_calls.values().sum::<u64>(),
            "{phase}"
        );
    }
    let by_phase = |name: &str| reports.iter().find(|r| r.phase == name).unwrap();
    for name in ["first-sync", "changed-forced"] {
        let report = by_phase(name);
        // New values reach the Secrets only through fetches and writes.
        assert!(
            report
                .aws_calls
                .get("secretsmanager.BatchGetSecretValue")
                .is_some_and(|n| *n >= 1),
            "{name}: {:?}",
            report.aws_calls
        );
        assert!(
            report
                .aws_calls
                .get("AmazonSSM.GetParameters")
                .is_some_and(|n| *n >= 1),
            "{name}: {:?}",
            report.aws_calls
        );
        assert!(
            report
                .api
                .requests
                .get("patch secrets")
                .is_some_and(|n| *n >= 20),
            "{name}: {:?}",
            report.api.requests
        );
        assert_eq!(report.refreshes.refreshed, 20, "{name}");
    }
    assert_eq!(by_phase("unchanged-forced").refreshes.refreshed, 20);
    for name in ["steady-unchanged", "steady-changed"] {
        let report = by_phase(name);
        // One interval, +10% jitter, +3 s; after the value changes, if any.
        let window = report.window_seconds.expect("a window") - report.trigger_seconds;
        assert!((window - 14.0).abs() < 0.01, "{name}: {window}");
        assert!(
            report.aws_calls_total + report.aws_calls_after_window >= 1,
            "{name}: the natural schedule refreshes"
        );
    }
    assert!(
        reports.iter().any(|r| r.peak_is_per_phase),
        "VmHWM is reset per phase where /proc allows"
    );
}

/// The bitnami phase keeps working too: a few SealedSecrets, a small key;
/// the phase itself fails unless every Secret is right, every status is
/// Synced at its generation, a resync decrypts nothing and each change
/// decrypts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitnami_phase_runs_and_decrypts_once_per_change() {
    let options = benchmark::Options::parse_from([
        "bench",
        "--es",
        "4",
        "--namespaces",
        "1",
        "--sm-secrets",
        "2",
        "--ssm-parameters",
        "2",
        "--interval",
        "1h",
        "--timeout",
        "120s",
        "--phases",
        "first-sync,bitnami",
        "--bitnami-sealed-secrets",
        "12",
        "--bitnami-namespaces",
        "2",
        "--bitnami-key-bits",
        "2048",
        "--json-only",
    ]);
    let reports = benchmark::run(&options, Path::new(env!("CARGO_BIN_EXE_secretsync")))
        .await
        .expect("the benchmark's bitnami phase runs and checks out");
    assert_eq!(reports[0].phase, "first-sync");
}

/// The change-events phase keeps working: a few keys rotated, each followed
/// by its EventBridge event on moto's SQS queue. The interval is an hour, so
/// only the queue can bring the new values; the phase itself fails unless
/// every Secret reading a rotated key holds its new value, every event was
/// counted `applied`, the stray messages (duplicate, unmatched, unrelated,
/// malformed) were counted as such, and every Secret matches moto at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_events_phase_brings_rotated_values_through_the_queue() {
    let options = benchmark::Options::parse_from([
        "bench",
        "--es",
        "10",
        "--namespaces",
        "2",
        "--sm-secrets",
        "4",
        "--ssm-parameters",
        "6",
        "--interval",
        "1h",
        "--timeout",
        "60s",
        "--phases",
        "change-events",
        "--change-events-rotations",
        "4",
        "--change-events-spread",
        "2s",
        "--change-events-rest",
        "0s",
        "--json-only",
    ]);
    let reports = benchmark::run(&options, Path::new(env!("CARGO_BIN_EXE_secretsync")))
        .await
        .expect("the benchmark's change-events phase runs and checks out");
    assert_eq!(reports[0].phase, "first-sync");
}

/// The throttled phase keeps working: AWS through the test bed's throttling
/// proxy, 30% of calls throttled during a forced round, 90% for a short
/// storm, the recovery, then an unchanged forced round. The phase itself
/// fails unless every stage gets every Secret right, the unchanged round
/// after the recovery fetches no value (change detection did not pause), and
/// a fresh list agrees with moto at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttled_phase_converges_and_keeps_change_detection() {
    let options = benchmark::Options::parse_from([
        "bench",
        "--es",
        "5",
        "--namespaces",
        "1",
        "--sm-secrets",
        "2",
        "--ssm-parameters",
        "3",
        "--interval",
        "1h",
        "--timeout",
        "120s",
        "--phases",
        "throttled",
        "--throttle-minute",
        "1s",
        "--json-only",
    ]);
    let reports = benchmark::run(&options, Path::new(env!("CARGO_BIN_EXE_secretsync")))
        .await
        .expect("the benchmark's throttled phase runs and checks out");
    assert_eq!(reports[0].phase, "first-sync");
}
