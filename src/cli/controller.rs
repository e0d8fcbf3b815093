//! `secretsync controller`: flags to settings, then the controller until SIGTERM.

use std::process::ExitCode;

use secretsync::controller::{LeaderSettings, Settings, reload, sealed_secret::SealingKeys};

#[derive(clap::Args)]
pub struct Args {
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
    /// Also serve Bitnami's bitnami.com/v1alpha1 SealedSecrets, decrypted with
    /// the keys exported from Bitnami's controller (CRD in crds/compat/ if
    /// Bitnami's own is not installed; README: "Moving from Sealed Secrets").
    #[arg(long)]
    bitnami_compat: bool,
    /// With --bitnami-compat: the namespace of the key Secrets (labelled
    /// sealedsecrets.bitnami.com/sealed-secrets-key=active). Default: the
    /// controller's own (--lease-namespace).
    #[arg(long, value_name = "NAMESPACE", value_parser = namespace, requires = "bitnami_compat")]
    bitnami_keys_namespace: Option<String>,
    /// Kubernetes API requests in flight at once (reconciles in flight: twice
    /// that). A real API server's in-flight limit is 400 reads, 200 writes.
    #[arg(long, default_value_t = secretsync::controller::DEFAULT_API_CONCURRENCY)]
    api_concurrency: usize,
    /// Watch only these namespaces (comma-separated; repeatable), e.g. when the
    /// controller may list and watch nowhere else. ClusterSecretStores and
    /// namespaces are read cluster-wide. Default: the whole cluster.
    #[arg(long, value_delimiter = ',', value_name = "NAMESPACE", value_parser = namespace)]
    namespaces: Vec<String>,
    #[command(flatten)]
    templates: super::render::TemplateLimitArgs,
    /// Restart opted-in Deployments, StatefulSets, DaemonSets and Argo Rollouts
    /// when the data of a Secret or ConfigMap they use changes (README:
    /// "Workload restarts").
    #[arg(long)]
    reload: bool,
    /// With --reload: changes to one workload's inputs within this window
    /// (from the first) make one restart. Go duration.
    #[arg(long, default_value = "5s", value_parser = reload::parse_duration)]
    reload_debounce: std::time::Duration,
    /// With --reload: at most this many workload patches per second across the
    /// cluster, sent one at a time in the order they fell due.
    #[arg(long, default_value_t = reload::DEFAULT_RATE, value_parser = parse_rate)]
    reload_rate: f64,
    /// With --reload: post an alert to this webhook after each restart
    /// (Reloader's ALERT_ON_RELOAD=true with ALERT_WEBHOOK_URL does the same).
    #[arg(long, value_name = "URL")]
    reload_alert_webhook: Option<String>,
    /// With --reload: the alert's shape: slack, teams, gchat, json, raw
    /// (default: ALERT_SINK, else raw).
    #[arg(long, value_name = "SINK")]
    reload_alert_sink: Option<String>,
    /// An SQS queue EventBridge feeds with Secrets Manager and Parameter
    /// Store changes (README: "AWS change events"): the ExternalSecrets that
    /// read a changed key refresh within seconds, the interval stays the
    /// safety net. Read with the controller's own AWS identity; the region
    /// is the URL's. Repeat (or separate with commas) for more queues.
    #[arg(
        long = "change-events-queue",
        env = "SECRETSYNC_CHANGE_EVENTS_QUEUES",
        value_delimiter = ',',
        value_name = "URL",
        value_parser = queue_url
    )]
    change_events_queues: Vec<String>,
}

/// An SQS queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
fn queue_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.path().len() > 1 => {
            Ok(text.to_string())
        }
        _ => Err(format!(
            "{text:?} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
        )),
    }
}

/// A rate between one an hour and a thousand a second.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (1.0 / 3600.0..=1000.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: give patches per second, between 0.0003 and 1000"
        )),
    }
}

fn namespace(text: &str) -> Result<String, String> {
    match secretsync::api::dns_label_problem(text) {
        None => Ok(text.to_string()),
        Some(problem) => Err(format!("not a valid namespace: it {problem}")),
    }
}

pub async fn run(args: Args) -> ExitCode {
    let shutdown = super::shutdown_signal();
    let bitnami_keys_namespace = args.bitnami_compat.then(|| {
        args.bitnami_keys_namespace
            .clone()
            .unwrap_or_else(|| args.lease_namespace.clone())
    });
    let sealing_keys = Some(SealingKeys {
        namespace: args.lease_namespace.clone(),
        name: args.sealing_keys_secret,
    });
    let identity = args
        .identity
        .unwrap_or_else(|| format!("secretsync-{}", std::process::id()));
    let leader = (!args.no_leader_election).then(|| LeaderSettings {
        namespace: args.lease_namespace,
        name: args.lease_name,
        identity,
        duration: std::time::Duration::from_secs(args.lease_duration),
    });
    let settings = Settings {
        health_address: args.health_address,
        leader,
        retry: Default::default(),
        aws_base: None,
        eso_compat: args.eso_compat,
        sealing_keys,
        bitnami_keys_namespace,
        api_concurrency: args.api_concurrency,
        namespaces: args.namespaces,
        template_limits: args.templates.limits(),
        reload: args.reload.then_some(reload::Settings {
            debounce: args.reload_debounce,
            rate: args.reload_rate,
            alerts: reload::alert::Alerts::resolve(
                args.reload_alert_webhook.as_deref(),
                args.reload_alert_sink.as_deref(),
                |name| std::env::var(name).ok(),
            ),
        }),
        change_events_queues: args.change_events_queues,
    };
    let Some(config) = super::kube_config().await else {
        return ExitCode::FAILURE;
    };
    match secretsync::controller::run(config, settings, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller failed");
            ExitCode::FAILURE
        }
    }
}
