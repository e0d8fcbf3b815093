//! Flags and dispatch: one file per subcommand, each turning its flags into a
//! call of the library and its outcome into an exit code.

mod agent;
mod completions;
mod controller;
mod crdgen;
mod csi_provider;
mod diff;
mod doctor;
mod render;
mod sealing;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use completions::parse;

#[derive(Parser)]
#[command(
    name = "secretsync",
    version,
    about = "Keeps Kubernetes Secrets in step with AWS Secrets Manager, SSM Parameter Store and age-sealed secrets"
)]
pub struct Cli {
    /// Log line format (logs go to stderr; level from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Threads that run the async work: watches, reconciles, Kubernetes and
    /// AWS requests (templates render on a pool of their own). With one,
    /// every hand-over between them stays on one thread: a first sync of
    /// 10,000 ExternalSecrets took about an eighth less CPU than with two
    /// (README: Cost and scale). More help only when one core is busy all
    /// the time.
    #[arg(
        long,
        env = "SECRETSYNC_WORKER_THREADS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=1024),
        global = true
    )]
    pub worker_threads: u16,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Render ExternalSecrets into Secret manifests, offline: reads stores and
    /// ExternalSecrets from files, fetches values, prints Secrets.
    Render(render::Args),
    /// What applying the manifests would change in their target Secrets: keys
    /// added, removed or changed (value hashes, never values), labels,
    /// annotations, type, workloads restarted. Exit 0 no change, 1 changes, 2 errors.
    Diff(diff::Args),
    /// Check a running installation and say what is wrong: CRDs, the
    /// controller's RBAC, the leader Lease, the CSI driver's token audiences,
    /// and with --check-remote each AWS store. Exit 0 all good, 1 problems.
    Doctor(doctor::Args),
    /// Run in the cluster: keep every ExternalSecret's Secret in step with its
    /// store. Uses KUBECONFIG (or ~/.kube/config), else the in-cluster account.
    Controller(controller::Args),
    /// Make an age identity (X25519): writes it to FILE (mode 0600) and prints
    /// its recipient (public key), as age-keygen does.
    Keygen(sealing::KeygenArgs),
    /// Seal a Secret manifest (stdin or -f) into a SealedSecret, each value an age
    /// envelope to every recipient, bound to its namespace/name/key by --scope.
    Seal(sealing::SealArgs),
    /// Decrypt a SealedSecret offline (recovery): prints the Secret. With
    /// --bitnami-key, Bitnami's SealedSecrets (as kubeseal --recovery-unseal).
    Unseal(sealing::UnsealArgs),
    /// Re-encrypt every value of a SealedSecret to a new set of recipients.
    /// With the same recipients, nothing changes, byte for byte. With
    /// --from-bitnami, turns Bitnami SealedSecrets into age SealedSecrets.
    Reseal(sealing::ResealArgs),
    /// Sealing keys: `keys import-bitnami` brings the Bitnami Sealed Secrets
    /// controller's keys over.
    Keys(sealing::KeysArgs),
    /// Print the CustomResourceDefinitions (what crds/ holds).
    Crdgen(crdgen::Args),
    /// Write secrets as files in a pod (sidecar, or init container with
    /// --once), kubelet-style atomic updates; signal or run a command on change.
    Agent(agent::Args),
    /// Serve the Secrets Store CSI driver's provider API on a unix socket; each
    /// mount acts as the pod (its own ServiceAccount token and IAM role).
    CsiProvider(csi_provider::Args),
    /// One line per ExternalSecret, SealedSecret, PushSecret and
    /// ClusterExternalSecret from their status: Ready, reason, last refresh,
    /// next due, staleness; with --check-remote, whether AWS changed since the
    /// last sync. Exit 1 if any shown is not Ready, is stale or is behind AWS.
    Status(status::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::Args),
}

impl Command {
    pub async fn run(self) -> ExitCode {
        match self {
            Command::Render(args) => render::run(args).await,
            Command::Diff(args) => diff::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Controller(args) => controller::run(args).await,
            Command::Keygen(args) => report(sealing::keygen(args)),
            Command::Seal(args) => report(sealing::seal(args)),
            Command::Unseal(args) => report(sealing::unseal(args)),
            Command::Reseal(args) => report(sealing::reseal(args)),
            Command::Keys(args) => report(sealing::keys(args)),
            Command::Crdgen(args) => crdgen::run(args),
            Command::Agent(args) => agent::run(args).await,
            Command::CsiProvider(args) => csi_provider::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Completions(args) => completions::run(args),
        }
    }
}

pub fn init_logging(format: LogFormat) {
    // RUST_LOG, with the caps that keep a Secret read out of the logs.
    secretsync::logging::init(matches!(format, LogFormat::Json));
}

/// A Go duration flag (`5s`, `1m30s`), by the same rules as the CRDs'
/// durations: no negatives, no `d`, nothing past Go's maximum.
pub fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<secretsync::api::GoDuration>()
        .map(std::time::Duration::from)
        .map_err(|e| e.to_string())
}

/// Exit 0, or print the error and exit 1.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The cluster to talk to: `KUBECONFIG` (or `~/.kube/config`), else the
/// in-cluster ServiceAccount; `None` (said on stderr) when there is none.
/// Requests say they are secretsync's (`User-Agent`), as audit logs show them.
async fn kube_config() -> Option<kube::Config> {
    match kube::Config::infer().await {
        Ok(mut config) => {
            config.headers.push((
                http::header::USER_AGENT,
                http::HeaderValue::from_static(concat!("secretsync/", env!("CARGO_PKG_VERSION"))),
            ));
            Some(config)
        }
        Err(e) => {
            eprintln!(
                "error: no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
            );
            None
        }
    }
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C, for the long-running modes.
/// SIGTERM is caught from the call on, not from the first poll: one that
/// arrives while the mode starts up still stops it cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        match terminate {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
