//! `secretsync csi-provider`: the Secrets Store CSI driver's provider API on a
//! unix socket, until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use secretsync::csi::{self, Settings};

#[derive(clap::Args)]
pub struct Args {
    /// The socket the driver dials: its providers directory, then
    /// PROVIDER.sock, where PROVIDER is the SecretProviderClass's spec.provider.
    #[arg(
        long,
        default_value = "/var/run/secrets-store-csi-providers/secretsync.sock"
    )]
    socket: PathBuf,
    /// Audience of the pod token to exchange for the pod's role (the
    /// CSIDriver's tokenRequests must request it).
    #[arg(long, default_value = secretsync::provider::aws::auth::STS_AUDIENCE)]
    token_audience: String,
    /// Mounts served at once; more wait.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// A Mount taking longer (seconds) fails; the driver retries. Passing
    /// failures (throttling, 5xx) are tried again with backoff within it.
    #[arg(long, default_value_t = 60)]
    mount_timeout: u64,
    /// The EKS Pod Identity agent's credentials URL, in place of
    /// http://169.254.170.23/v1/credentials and http://[fd00:ec2::23]/v1/credentials
    /// (for a stand-in agent).
    #[arg(long, env = "SECRETSYNC_POD_IDENTITY_ENDPOINT")]
    pod_identity_endpoint: Option<String>,
    /// Seconds a fetch's result serves other mounts of the same objects as
    /// the same AWS identity (pods starting together read once); 0: every
    /// mount reads for itself.
    #[arg(long, default_value_t = 10)]
    share_fetches_for: u64,
}

pub async fn run(args: Args) -> ExitCode {
    let shutdown = super::shutdown_signal();
    let Some(config) = super::kube_config().await else {
        return ExitCode::FAILURE;
    };
    let client = match kube::Client::try_from(config) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: a Kubernetes client from that configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        socket: args.socket,
        audience: args.token_audience,
        concurrency: args.concurrency,
        mount_timeout: Duration::from_secs(args.mount_timeout),
        pod_identity: csi::pod_identity::Agent {
            endpoint: args.pod_identity_endpoint,
            ..Default::default()
        },
        share_for: Duration::from_secs(args.share_fetches_for),
    };
    match csi::serve(settings, client, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
