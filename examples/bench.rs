//! secretsync's cost-and-scale benchmark (README "Cost and scale"):
//!
//!     cargo run --release --example bench                        # F1: 1,000 ExternalSecrets
//!     cargo run --release --example bench -- --es 10000 --namespaces 1000 --interval 5m
//!     cargo run --release --example bench -- --phases cluster-external-secret   # 1,000 namespaces
//!     cargo run --release --example bench -- --phases push-secret --push-secrets 1000
//!     cargo run --release --example bench -- --phases bitnami --bitnami-sealed-secrets 1000 --bitnami-key-bits 4096
//!     cargo run --release --example bench -- --interval 1h --phases change-events
//!     cargo run --release --example bench -- --phases throttled           # 30%, then 90% for a minute
//!
//! Builds the `secretsync` binary of the same profile first (unless
//! `--controller PATH`), then runs it against the test bed: the fake API
//! server in this process, one moto server for AWS. Everything stays on
//! 127.0.0.1 and is stopped at the end. `--help` lists every flag.

#[path = "../tests/support/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/support/fault_proxy.rs"]
#[allow(dead_code)]
mod fault_proxy;
#[path = "../tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;
#[path = "../tests/support/peers.rs"]
mod peers;

/// The parts of the test bed the bench uses, where the tests have them.
mod support {
    pub(crate) use super::{apiserver, fault_proxy, free_port, moto};
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

#[path = "bench/mod.rs"]
mod bench;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let options = bench::Options::parse();
    let controller = match options.controller.clone() {
        Some(path) => path,
        None => match build_controller() {
            Ok(path) => path,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match bench::run(&options, &controller).await {
        Ok(reports) => {
            let failed: Vec<&str> = reports
                .iter()
                .filter(|r| !r.verified || r.seconds_to_all_right.is_none())
                .map(|r| r.phase.as_str())
                .collect();
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: not every Secret was right in phase(s) {failed:?}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo build --bin secretsync` in the profile this bench was built in, so
/// the controller measured is the source next to it; returns the binary,
/// which lands next to this example's directory (`target/PROFILE/`).
fn build_controller() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where the bench runs from: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or("the bench is not in target/PROFILE/examples/")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // What `cargo run` set for this process is not the caller's build
    // environment: build scripts watching such variables would rebuild.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name.as_ref());
        }
    }
    command.args(["build", "--bin", "secretsync", "--manifest-path"]);
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    eprintln!("bench: building the controller: {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the controller failed: {status}"));
    }
    let binary = profile_dir.join("secretsync");
    if !binary.exists() {
        return Err(format!("{} is missing after the build", binary.display()));
    }
    Ok(binary)
}
