//! `secretsync agent`: secrets as files, as a sidecar (refreshing) or an init
//! container (`--once`); with `--serve`, beside the files or alone, the AWS
//! Secrets Manager Agent's HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures::FutureExt;
use secretsync::agent::endpoint::{self, Token};
use secretsync::agent::files::parse_mode;
use secretsync::agent::notify::{Notify, Process, SignalTarget, parse_signal};
use secretsync::agent::{Agent, Outcome, Settings};

#[derive(clap::Args)]
pub struct Args {
    /// What to write: a SecretProviderClass (ASCP parameters), those
    /// parameters alone, and/or ExternalSecret manifests with their stores.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "serve",
        requires = "target_dir"
    )]
    config: Option<PathBuf>,
    /// The directory the files go to (kubelet atomic-writer layout).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "serve",
        requires = "config"
    )]
    target_dir: Option<PathBuf>,
    /// Write once and exit: 0 when every file is written, 1 otherwise.
    #[arg(long, conflicts_with = "serve")]
    once: bool,
    /// Answer the AWS Secrets Manager Agent's HTTP API (and the Lambda
    /// extension's parameter path) on this address: 127.0.0.1:2773, [::1]:2773,
    /// localhost:2773 or a port alone (on 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    serve: Option<SocketAddr>,
    /// Let --serve listen on an address other hosts can reach.
    #[arg(long, requires = "serve")]
    serve_non_loopback: bool,
    /// How long a secret is served from the cache before its version is
    /// checked (seconds, or a Go duration; 0 to 1h, as the agent's ttl_seconds).
    #[arg(long, default_value = "300", value_parser = parse_ttl, requires = "serve")]
    serve_ttl: Duration,
    /// The same for SSM parameters (default: --serve-ttl).
    #[arg(long, value_parser = parse_ttl, requires = "serve")]
    serve_parameter_ttl: Option<Duration>,
    /// Answers kept, secrets and parameters together (1 to 1000, as the agent's cache_size).
    #[arg(long, default_value_t = endpoint::DEFAULT_CACHE_SIZE, value_parser = parse_count, requires = "serve")]
    serve_cache_size: usize,
    /// Requests answered at once, more get 429 (1 to 1000, as the agent's max_conn).
    #[arg(long, default_value_t = endpoint::DEFAULT_MAX_CONNECTIONS, value_parser = parse_count, requires = "serve")]
    serve_max_connections: usize,
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

/// `127.0.0.1:2773`, `[::1]:2773`, `localhost:2773`, or `2773` (on 127.0.0.1).
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let port = text.strip_prefix("localhost:").unwrap_or(text);
    port.parse::<u16>()
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .map_err(|_| {
            "expected IP:PORT, [IPv6]:PORT, localhost:PORT or a port (127.0.0.1:2773)".into()
        })
}

/// Whole seconds (as the agent's `ttl_seconds`) or a Go duration, 0 to 1h.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => super::go_duration(text)?,
    };
    if ttl > endpoint::MAX_TTL {
        return Err("must be at most 1h (3600 seconds)".into());
    }
    Ok(ttl)
}

/// 1 to 1000, the AWS agent's bounds for `cache_size` and `max_conn`.
fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=endpoint::MAX_CACHE_SIZE.min(endpoint::MAX_CONNECTIONS)).contains(&n) => {
            Ok(n)
        }
        _ => Err("must be a number from 1 to 1000".into()),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = super::go_duration(text)?;
    if duration.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(duration)
}

pub async fn run(args: Args) -> ExitCode {
    let shutdown = Box::pin(super::shutdown_signal()).shared();
    // The endpoint's settings and token first: a refusal costs no AWS config.
    let serve = match args.serve {
        Some(address) => {
            let settings = endpoint::Settings {
                address,
                allow_non_loopback: args.serve_non_loopback,
                ttl: args.serve_ttl,
                parameter_ttl: args.serve_parameter_ttl.unwrap_or(args.serve_ttl),
                cache_size: args.serve_cache_size,
                max_connections: args.serve_max_connections,
            };
            let checked = endpoint::check_address(address, args.serve_non_loopback)
                .and_then(|()| Ok(Token::from_env(|name| std::env::var(name).ok())?));
            match checked {
                Ok(token) => Some((settings, token)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let process = match (args.pid_file, args.process_name) {
        (Some(file), _) => Some(Process::PidFile(file)),
        (None, Some(name)) => Some(Process::Name(name)),
        (None, None) => None,
    };
    let target = args.target_dir.clone();
    let agent = match (args.config, args.target_dir) {
        (Some(config), Some(target_dir)) => {
            let settings = Settings {
                config,
                target_dir,
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
            match Agent::new(settings).await {
                Ok(agent) => Some(agent),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    if args.once {
        let (Some(agent), Some(target)) = (agent, target) else {
            return ExitCode::FAILURE;
        };
        return match agent.refresh().await {
            Ok(
                Outcome::Unchanged { files }
                | Outcome::Created { files }
                | Outcome::Replaced { files },
            ) => {
                eprintln!("wrote {files} file(s) into {}", target.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let server = match serve {
        Some((settings, token)) => {
            let base = match &agent {
                Some(agent) => agent.aws_config().clone(),
                None => endpoint::default_aws_config().await,
            };
            match endpoint::bind(&settings, &base, token).await {
                Ok(bound) => Some(bound),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let files = async {
        if let Some(agent) = agent {
            agent.run(shutdown.clone()).await;
        }
        Ok(())
    };
    let http = async {
        match server {
            Some(server) => server.run(shutdown.clone()).await,
            None => Ok(()),
        }
    };
    // Both stop at SIGTERM; the endpoint failing stops the files too.
    match tokio::try_join!(files, http) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
