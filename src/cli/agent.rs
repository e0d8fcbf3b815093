//! `secretsync agent`: secrets as files, as a sidecar (refreshing) or an init
//! container (`--once`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use secretsync::agent::files::parse_mode;
use secretsync::agent::notify::{Notify, Process, SignalTarget, parse_signal};
use secretsync::agent::{Agent, Outcome, Settings};

#[derive(clap::Args)]
pub struct Args {
    /// What to write: a SecretProviderClass (ASCP parameters), those
    /// parameters alone, and/or ExternalSecret manifests with their stores.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The directory the files go to (kubelet atomic-writer layout).
    #[arg(long, value_name = "DIR")]
    target_dir: PathBuf,
    /// Write once and exit: 0 when every file is written, 1 otherwise.
    #[arg(long)]
    once: bool,
    /// How often values are fetched again (Go duration: 30s, 5m, 1h), spread ±10%.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    refresh_interval: Duration,
    /// Mode of files whose object sets no filePermission (octal).
    #[arg(long, default_value = "0644", value_parser = parse_mode)]
    file_mode: u32,
    /// Namespace of ExternalSecret manifests that name none.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Signal sent on a change (with --pid-file or --process-name).
    #[arg(long, default_value = "HUP", value_parser = parse_signal, conflicts_with = "once")]
    signal: nix::sys::signal::Signal,
    /// Signal the process whose id this file holds.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["process_name", "once"])]
    pid_file: Option<PathBuf>,
    /// Signal every process of this name (needs shareProcessNamespace in a pod).
    #[arg(long, value_name = "NAME", conflicts_with = "once")]
    process_name: Option<String>,
    /// Run this through `sh -c` on a change.
    #[arg(long = "exec", value_name = "COMMAND", conflicts_with = "once")]
    command: Option<String>,
    /// How long the --exec command may run.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    exec_timeout: Duration,
    #[command(flatten)]
    templates: super::render::TemplateLimitArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = super::go_duration(text)?;
    if duration.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(duration)
}

pub async fn run(args: Args) -> ExitCode {
    let shutdown = super::shutdown_signal();
    let process = match (args.pid_file, args.process_name) {
        (Some(file), _) => Some(Process::PidFile(file)),
        (None, Some(name)) => Some(Process::Name(name)),
        (None, None) => None,
    };
    let settings = Settings {
        config: args.config,
        target_dir: args.target_dir,
        refresh_interval: args.refresh_interval,
        default_mode: args.file_mode,
        namespace: args.namespace,
        notify: Notify {
            signal: process.map(|process| SignalTarget {
                signal: args.signal,
                process,
            }),
            command: args.command,
            command_timeout: args.exec_timeout,
        },
        template_limits: args.templates.limits(),
    };
    let agent = match Agent::new(settings.clone()).await {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.once {
        return match agent.refresh().await {
            Ok(
                Outcome::Unchanged { files }
                | Outcome::Created { files }
                | Outcome::Replaced { files },
            ) => {
                eprintln!(
                    "wrote {files} file(s) into {}",
                    settings.target_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    agent.run(shutdown).await;
    ExitCode::SUCCESS
}
