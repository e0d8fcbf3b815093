//! A provider for the Kubernetes Secrets Store CSI driver: the driver's
//! `v1alpha1.CSIDriverProvider` gRPC API (Version, Mount) on a unix socket,
//! from the upstream proto (`proto/`). Mount takes ASCP's SecretProviderClass
//! parameters ([`crate::agent::objects`]), acts as the mounting pod
//! ([`credentials`]: IRSA, or EKS Pod Identity through [`pod_identity`], then
//! any chained role), shares a fetch with pods that read the same objects as
//! the same identity ([`shared`]) and answers with the files; the driver
//! writes them.

pub mod attributes;
pub mod credentials;
mod mount;
pub mod pod_identity;
pub mod shared;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use credentials::PodCredentials;
use mount::Mounter;
use shared::SharedFetches;
use v1alpha1::csi_driver_provider_server::{CsiDriverProvider, CsiDriverProviderServer};
use v1alpha1::{MountRequest, MountResponse, VersionRequest, VersionResponse};

/// Generated from `proto/secrets-store-csi-driver/v1alpha1/service.proto`.
#[allow(clippy::all, missing_docs)]
pub mod v1alpha1 {
    tonic::include_proto!("v1alpha1");
}

/// What `Version` answers as the runtime name.
pub const RUNTIME_NAME: &str = "secretsync";

pub struct Settings {
    /// The unix socket the driver dials (`/var/run/secrets-store-csi-providers/secretsync.sock`).
    pub socket: PathBuf,
    /// The audience of the pod token to exchange (the CSIDriver's tokenRequests).
    pub audience: String,
    /// Mounts served at once; others wait.
    pub concurrency: usize,
    /// A Mount taking longer fails (the driver retries); passing failures
    /// are tried again within it.
    pub mount_timeout: Duration,
    /// Where EKS Pod Identity is asked.
    pub pod_identity: pod_identity::Agent,
    /// How long a fetch's result may serve other mounts of the same objects
    /// as the same identity; zero: every mount fetches its own.
    pub share_for: Duration,
}

/// `wait` spread over its second half, so mounts that failed together do
/// not all try again at the same instant.
pub(crate) fn jitter(wait: Duration) -> Duration {
    use rand::Rng;
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Server(#[from] tonic::transport::Error),
}

struct Service {
    mounter: Mounter,
    slots: Semaphore,
    timeout: Duration,
}

#[tonic::async_trait]
impl CsiDriverProvider for Service {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "v1alpha1".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn mount(
        &self,
        request: Request<MountRequest>,
    ) -> Result<Response<MountResponse>, Status> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the provider is stopping"))?;
        let request = request.into_inner();
        let deadline = std::time::Instant::now() + self.timeout;
        // The mount stops itself at the deadline; this only guards it.
        let guard = self.timeout + Duration::from_secs(1);
        let answer = tokio::time::timeout(guard, Box::pin(self.mounter.mount(&request, deadline)))
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "the mount took over {:?}",
                    self.timeout
                )))
            });
        if let Err(status) = &answer {
            tracing::warn!(code = ?status.code(), message = %status.message(), "mount failed");
        }
        answer.map(Response::new)
    }
}

/// Serves until `shutdown` completes, then removes the socket.
pub async fn serve(
    settings: Settings,
    kube: kube::Client,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let socket_error = |source| ServeError::Socket {
        path: settings.socket.display().to_string(),
        source,
    };
    // A socket left by an earlier run would make bind fail.
    match std::fs::remove_file(&settings.socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(socket_error(e)),
        _ => {}
    }
    if let Some(parent) = settings.socket.parent() {
        std::fs::create_dir_all(parent).map_err(socket_error)?;
    }
    let listener = tokio::net::UnixListener::bind(&settings.socket).map_err(socket_error)?;
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let service = Service {
        mounter: Mounter {
            credentials: PodCredentials::new(
                kube,
                base.clone(),
                settings.audience.clone(),
                settings.pod_identity.clone(),
            ),
            shared: SharedFetches::new(settings.share_for),
            base,
        },
        slots: Semaphore::new(settings.concurrency.max(1)),
        timeout: settings.mount_timeout,
    };
    tracing::info!(socket = %settings.socket.display(), "serving the Secrets Store CSI provider API");
    let served = tonic::transport::Server::builder()
        .add_service(CsiDriverProviderServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown,
        )
        .await;
    let _ = std::fs::remove_file(&settings.socket);
    served.map_err(ServeError::from)
}
