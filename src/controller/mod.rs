//! `secretsync controller`: keeps every ExternalSecret's Secret in step with its
//! store, and every store's Ready condition current. Watches ExternalSecrets,
//! stores, and only the Secrets it manages (`secretsync.io/managed=true`).

pub mod external_secret;
mod fetcher;
mod kube_auth;
pub mod leader;
mod metrics;
pub mod reload;
pub mod sealed_secret;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};

use crate::api::{ClusterSecretStore, ExternalSecret, SealedSecret, SecretStore};
use crate::provider::aws::RetrySettings;
use crate::provider::{ProviderContext, Providers};
use crate::sync::MANAGED_LABEL;
pub use metrics::Metrics;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "secretsync";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("serving health and metrics on {address}: {source}")]
    Serve {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Lease-based leader election.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

#[derive(Clone)]
pub struct Settings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub health_address: SocketAddr,
    pub leader: Option<LeaderSettings>,
    pub retry: RetrySettings,
    /// AWS base config; `None` reads the environment (IRSA) as the SDK does.
    pub aws_base: Option<SdkConfig>,
    /// Also serve ESO's `external-secrets.io` ExternalSecrets and stores.
    pub eso_compat: bool,
    /// The Secret holding the identities SealedSecrets are decrypted with.
    pub sealing_keys: Option<sealed_secret::SealingKeys>,
    /// Restart opted-in workloads when their Secrets and ConfigMaps change.
    pub reload: Option<reload::Settings>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub providers: Providers,
    fetcher: Arc<fetcher::Fetcher>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub sealing_keys: Option<sealed_secret::SealingKeys>,
    failures: Mutex<HashMap<String, u32>>,
    /// Per ExternalSecret: the spec hash and time of this process's last fetch.
    fetches: Mutex<HashMap<String, (String, std::time::Instant)>>,
}

impl Context {
    /// The wait before the next retry of this object; each failure doubles it.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap();
        let count = failures.entry(key.to_string()).or_default();
        let delay = backoff(*count);
        *count += 1;
        delay
    }

    pub fn last_fetch(&self, key: &str) -> Option<(String, std::time::Instant)> {
        self.fetches.lock().unwrap().get(key).cloned()
    }

    pub fn record_fetch(&self, key: &str, spec_hash: &str) {
        self.fetches.lock().unwrap().insert(
            key.to_string(),
            (spec_hash.to_string(), std::time::Instant::now()),
        );
    }

    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().unwrap().remove(key);
    }
}

/// Publishes an event about `regarding`; failing to publish is only logged.
pub(crate) async fn publish(
    ctx: &Context,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    type_: kube::runtime::events::EventType,
    action: &str,
    reason: &str,
    note: &str,
) {
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, regarding).await {
        tracing::debug!(error = %e, "could not publish an event");
    }
}

/// The object (same namespace, named by `annotation`) that writes this Secret.
pub(crate) fn writer_of<K>(secret: Secret, annotation: &str) -> Option<reflector::ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()>,
{
    let name = secret
        .metadata
        .annotations
        .as_ref()?
        .get(annotation)?
        .clone();
    let namespace = secret.metadata.namespace?;
    Some(reflector::ObjectRef::new(&name).within(&namespace))
}

/// 1s, 2s, 4s, ... after successive failures, capped at
/// [`external_secret::MAX_BACKOFF`] (about five minutes).
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(16)).min(external_secret::MAX_BACKOFF)
}

fn error_policy<K: kube::Resource>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    );
    tracing::warn!(object = %key, %error, "reconcile failed");
    Action::requeue(ctx.next_backoff(&key))
}

/// Runs until `shutdown` resolves (or leadership is lost): then stops taking
/// work, lets running reconciles finish, and returns.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let providers = Providers::new(ProviderContext {
        kube: Arc::new(kube_auth::ClusterAuth {
            client: client.clone(),
        }),
        aws_base: settings.aws_base.clone(),
        retry: settings.retry.clone(),
    });
    let metrics = Arc::new(Metrics::new(providers.call_counts()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        }
    });
    let when_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };

    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(settings.health_address)
        .await
        .map_err(|source| Error::Serve {
            address: settings.health_address,
            source,
        })?;
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /healthz, /readyz and /metrics");
    tokio::spawn(serve_health(
        listener,
        metrics.clone(),
        ready.clone(),
        when_stopped(),
    ));

    if let Some(leader) = settings.leader.clone() {
        let election = Arc::new(leader::LeaderElection::new(
            client.clone(),
            &leader.namespace,
            &leader.name,
            &leader.identity,
            leader.duration,
        ));
        tracing::info!(identity = %leader.identity, lease = %format!("{}/{}", leader.namespace, leader.name), "waiting to lead");
        tokio::select! {
            _ = election.acquire() => {}
            _ = when_stopped() => return Ok(()),
        }
        tracing::info!(identity = %leader.identity, "leading");
        let stop = stop.clone();
        tokio::spawn(async move {
            election.hold().await;
            tracing::error!("lost the leader lease: stopping");
            let _ = stop.send(true);
        });
    }

    let ctx = Arc::new(Context {
        client: client.clone(),
        providers,
        fetcher: Arc::default(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: settings.leader.as_ref().map(|l| l.identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        sealing_keys: settings.sealing_keys.clone(),
        failures: Mutex::default(),
        fetches: Mutex::default(),
    });
    let managed = watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"));
    let secrets: Api<Secret> = Api::all(client.clone());

    let external_secrets = Controller::new(
        Api::<ExternalSecret>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        secrets.clone(),
        managed.clone(),
        external_secret::external_secret_of,
    )
    .graceful_shutdown_on(when_stopped())
    .run(external_secret::reconcile, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));
    let secret_stores = Controller::new(
        Api::<SecretStore>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(when_stopped())
    .run(store::reconcile_namespaced, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));
    let cluster_secret_stores = Controller::new(
        Api::<ClusterSecretStore>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(when_stopped())
    .run(store::reconcile_cluster, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));

    let sealed_secrets = Controller::new(
        Api::<SealedSecret>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        secrets.clone(),
        managed.clone(),
        sealed_secret::sealed_secret_of,
    )
    .graceful_shutdown_on(when_stopped())
    .run(sealed_secret::reconcile, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));

    let eso = if settings.eso_compat {
        let resource = external_secret::ESO.resource("ExternalSecret", "externalsecrets");
        let to_eso = {
            let resource = resource.clone();
            move |secret: Secret| {
                let es = external_secret::external_secret_of(secret)?;
                Some(
                    reflector::ObjectRef::new_with(&es.name, resource.clone())
                        .within(es.namespace.as_deref().unwrap_or_default()),
                )
            }
        };
        Controller::new_with(
            Api::<DynamicObject>::all_with(client.clone(), &resource),
            watcher::Config::default(),
            resource,
        )
        .watches(secrets.clone(), managed.clone(), to_eso)
        .graceful_shutdown_on(when_stopped())
        .run(external_secret::reconcile_eso, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()))
        .boxed()
    } else {
        futures::future::ready(()).boxed()
    };

    let restarts = match settings.reload.clone() {
        Some(reload) => reload::run(
            client.clone(),
            reload,
            metrics.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: settings.leader.as_ref().map(|l| l.identity.clone()),
            },
            when_stopped(),
        )
        .boxed(),
        None => futures::future::ready(()).boxed(),
    };

    // The managed-Secrets gauge follows the same label-filtered view.
    let (reader, writer) = reflector::store::<Secret>();
    let gauge = {
        let metrics = metrics.clone();
        let stopped = when_stopped();
        async move {
            let mut stopped = std::pin::pin!(stopped);
            let stream = reflector(writer, watcher(secrets, managed))
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    item = stream.next() => match item {
                        Some(_) => metrics.set_managed_secrets(reader.state().len()),
                        None => return,
                    },
                    _ = &mut stopped => return,
                }
            }
        }
    };
    ready.store(true, Ordering::SeqCst);
    tokio::join!(
        external_secrets,
        secret_stores,
        cluster_secret_stores,
        eso,
        sealed_secrets,
        gauge,
        restarts
    );
    Ok(())
}

async fn serve_health(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        metrics.render(),
                    )
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(error = %e, "health server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (0..12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn refreshes_are_spread_by_ten_percent() {
        let hour = Duration::from_secs(3600);
        let spread: Vec<Duration> = (0..200).map(|_| external_secret::jittered(hour)).collect();
        assert!(
            spread
                .iter()
                .all(|d| *d >= hour.mul_f64(0.9) && *d <= hour.mul_f64(1.1))
        );
        let distinct: std::collections::BTreeSet<_> = spread.iter().collect();
        assert!(distinct.len() > 100, "not in lockstep");
    }
}
