//! The `secretsync` command: parses flags, picks a mode, reports errors.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use secretsync::render::{self, OutputFormat};

mod sealing;

#[derive(Parser)]
#[command(
    name = "secretsync",
    version,
    about = "Keeps Kubernetes Secrets in step with AWS Secrets Manager, SSM Parameter Store and age-sealed secrets"
)]
struct Cli {
    /// Log line format (logs go to stderr; level from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    Strict,
    NamespaceWide,
    ClusterWide,
}

impl From<ScopeArg> for secretsync::api::SealedScope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Strict => Self::Strict,
            ScopeArg::NamespaceWide => Self::NamespaceWide,
            ScopeArg::ClusterWide => Self::ClusterWide,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Render ExternalSecrets into Secret manifests, offline: reads stores and
    /// ExternalSecrets from files, fetches values, prints Secrets.
    Render {
        /// A manifest file or a directory (read recursively); repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
        output: OutputFormat,
        /// Write one file per Secret (DIR/NAMESPACE/NAME.yaml, mode 0600) instead of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Namespace for objects that do not name one.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Run in the cluster: keep every ExternalSecret's Secret in step with its
    /// store. Uses KUBECONFIG (or ~/.kube/config), else the in-cluster account.
    Controller {
        /// Where /healthz, /readyz and /metrics are served.
        #[arg(long, default_value = "0.0.0.0:8080")]
        health_address: std::net::SocketAddr,
        /// Turn off leader election (only one instance may run then).
        #[arg(long)]
        no_leader_election: bool,
        /// Namespace of the leader Lease (default: $POD_NAMESPACE, else "default").
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// Name of the leader Lease.
        #[arg(long, default_value = "secretsync-controller")]
        lease_name: String,
        /// This instance's identity in the Lease (default: $HOSTNAME, the pod name).
        #[arg(long, env = "HOSTNAME")]
        identity: Option<String>,
        /// How long a leader's Lease lasts without renewal, in seconds.
        #[arg(long, default_value_t = 15)]
        lease_duration: u64,
        /// Also serve ESO's external-secrets.io/v1 and v1beta1 ExternalSecrets and
        /// stores (CRDs in crds/compat/ if ESO's own are not installed).
        #[arg(long)]
        eso_compat: bool,
        /// The Secret, in the controller's namespace (--lease-namespace), whose
        /// keys hold the age/SSH identities SealedSecrets are decrypted with.
        #[arg(long, default_value = "secretsync-sealing-keys")]
        sealing_keys_secret: String,
    },
    /// Make an age identity (X25519): writes it to FILE (mode 0600) and prints
    /// its recipient (public key), as age-keygen does.
    Keygen {
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Seal a Secret manifest (stdin or -f) into a SealedSecret, each value an age
    /// envelope to every recipient, bound to its namespace/name/key by --scope.
    Seal {
        /// The Secret manifest (default: stdin); with --raw, the value.
        #[arg(short = 'f', long = "filename")]
        file: Option<PathBuf>,
        /// A recipient: age1..., ssh-ed25519 ..., ssh-rsa ... (repeatable).
        #[arg(short = 'r', long = "recipient")]
        recipients: Vec<String>,
        /// A file of recipients, one a line (repeatable).
        #[arg(short = 'R', long = "recipients-file")]
        recipients_files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = ScopeArg::Strict)]
        scope: ScopeArg,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
        output: OutputFormat,
        /// Seal one value (from -f or stdin) and print only its envelope.
        #[arg(long, requires = "key")]
        raw: bool,
        /// With --raw: the SealedSecret's name (strict scope).
        #[arg(long)]
        name: Option<String>,
        /// With --raw: its namespace (strict and namespace-wide scopes).
        #[arg(long)]
        namespace: Option<String>,
        /// With --raw: the Secret key.
        #[arg(long)]
        key: Option<String>,
        /// Add or replace these keys in an existing SealedSecret file, in place.
        #[arg(long, value_name = "FILE", conflicts_with = "raw")]
        merge_into: Option<PathBuf>,
        /// With --merge-into: identities that show which values are unchanged
        /// (their ciphertext is then kept byte for byte).
        #[arg(short = 'i', long = "identity")]
        identities: Vec<PathBuf>,
    },
    /// Decrypt a SealedSecret offline (recovery): prints the Secret.
    Unseal {
        #[arg(short = 'f', long = "filename")]
        file: Option<PathBuf>,
        /// An identity file: age (AGE-SECRET-KEY-1...) or SSH private key (repeatable).
        #[arg(short = 'i', long = "identity", required = true)]
        identities: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
        output: OutputFormat,
    },
    /// Re-encrypt every value of a SealedSecret to a new set of recipients.
    /// With the same recipients, nothing changes, byte for byte.
    Reseal {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[arg(short = 'i', long = "identity", required = true)]
        identities: Vec<PathBuf>,
        #[arg(short = 'r', long = "recipient")]
        recipients: Vec<String>,
        #[arg(short = 'R', long = "recipients-file")]
        recipients_files: Vec<PathBuf>,
        /// Write the result back to the file instead of stdout.
        #[arg(long)]
        in_place: bool,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
        output: OutputFormat,
    },
    /// Print the CustomResourceDefinitions (what crds/ holds).
    Crdgen {
        /// Write one file per CRD into DIR (ESO-compatible ones into DIR/compat) instead of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Render {
            files,
            output,
            out_dir,
            namespace,
        } => run_render(&files, output, out_dir.as_deref(), &namespace).await,
        Command::Crdgen { out_dir } => run_crdgen(out_dir.as_deref()),
        Command::Keygen { output } => report(sealing::keygen(&output)),
        Command::Seal {
            file,
            recipients,
            recipients_files,
            scope,
            output,
            raw,
            name,
            namespace,
            key,
            merge_into,
            identities,
        } => report(sealing::seal(sealing::SealArgs {
            file,
            recipients,
            recipients_files,
            scope: scope.into(),
            output,
            raw,
            name,
            namespace,
            key,
            merge_into,
            identities,
        })),
        Command::Unseal {
            file,
            identities,
            output,
        } => report(sealing::unseal(file, &identities, output)),
        Command::Reseal {
            file,
            identities,
            recipients,
            recipients_files,
            in_place,
            output,
        } => report(sealing::reseal(
            &file,
            &identities,
            recipients,
            &recipients_files,
            in_place,
            output,
        )),
        Command::Controller {
            health_address,
            no_leader_election,
            lease_namespace,
            lease_name,
            identity,
            lease_duration,
            eso_compat,
            sealing_keys_secret,
        } => {
            let sealing_keys = Some(secretsync::controller::sealed_secret::SealingKeys {
                namespace: lease_namespace.clone(),
                name: sealing_keys_secret,
            });
            let identity = identity.unwrap_or_else(|| format!("secretsync-{}", std::process::id()));
            let leader = (!no_leader_election).then(|| secretsync::controller::LeaderSettings {
                namespace: lease_namespace,
                name: lease_name,
                identity,
                duration: std::time::Duration::from_secs(lease_duration),
            });
            let settings = secretsync::controller::Settings {
                health_address,
                leader,
                retry: Default::default(),
                aws_base: None,
                eso_compat,
                sealing_keys,
            };
            run_controller(settings).await
        }
    }
}

async fn run_controller(settings: secretsync::controller::Settings) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!(
                "error: no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match secretsync::controller::run(client, settings, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller failed");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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

async fn run_render(
    files: &[PathBuf],
    format: OutputFormat,
    out_dir: Option<&std::path::Path>,
    namespace: &str,
) -> ExitCode {
    let rendered = render::render(files, namespace, Default::default()).await;
    let mut ok = rendered.errors.is_empty();
    match out_dir {
        None => {
            let text = render::to_stdout_text(&rendered.secrets, format);
            if std::io::stdout().write_all(text.as_bytes()).is_err() {
                ok = false;
            }
        }
        Some(dir) => match render::write_out_dir(dir, &rendered.secrets, format) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => {
                eprintln!("error: writing into {}: {e}", dir.display());
                ok = false;
            }
        },
    }
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    for error in &rendered.errors {
        eprintln!("error: {error}");
    }
    if !rendered.errors.is_empty() {
        eprintln!(
            "{} Secret(s) rendered, {} error(s)",
            rendered.secrets.len(),
            rendered.errors.len()
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_crdgen(out_dir: Option<&std::path::Path>) -> ExitCode {
    let crds = secretsync::api::crds();
    let result = match out_dir {
        None => {
            let text: String = crds
                .iter()
                .map(|crd| {
                    format!(
                        "---\n{}",
                        serde_yaml_ng::to_string(crd).expect("a CRD serializes")
                    )
                })
                .collect();
            std::io::stdout().write_all(text.as_bytes())
        }
        Some(dir) => {
            let compat = secretsync::api::eso_compat_crds();
            let files = crds
                .iter()
                .map(|crd| (dir.to_path_buf(), crd))
                .chain(compat.iter().map(|crd| (dir.join("compat"), crd)));
            files.into_iter().try_for_each(|(dir, crd)| {
                let name = crd.metadata.name.as_deref().expect("a CRD has a name");
                let text = serde_yaml_ng::to_string(crd).expect("a CRD serializes");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join(format!("{name}.yaml")), text)
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
