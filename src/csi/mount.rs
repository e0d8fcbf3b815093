//! One Mount: parse the request, act as the pod, fetch its objects, answer with
//! the files and their versions. The provider writes nothing itself: the driver
//! writes `files` into the pod's volume.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use super::attributes::MountAttributes;
use super::credentials::{CredentialsError, PodCredentials};
use super::shared::{SharedFetches, Source};
use super::v1alpha1::{File, MountRequest, MountResponse, ObjectVersion};
use crate::agent::files::FileSet;
use crate::agent::objects::{FailureKind, OBJECTS, Objects, PATH_TRANSLATION};

/// The first wait before a mount that failed in a passing way is tried
/// again; each later wait doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

pub struct Mounter {
    pub base: SdkConfig,
    pub credentials: PodCredentials,
    pub shared: SharedFetches,
}

impl Mounter {
    /// One mount, tried again with backoff while it fails in a passing way
    /// (STS, the Pod Identity agent or AWS throttled or failed, the API
    /// server did) and a new try can end before `deadline`: a node starting
    /// many pods at once does not fail a mount for a passing error.
    pub async fn mount(
        &self,
        request: &MountRequest,
        deadline: Instant,
    ) -> Result<MountResponse, Status> {
        let started = Instant::now();
        let attributes =
            MountAttributes::parse(&request.attributes, &request.secrets, &request.permission)
                .map_err(|e| Status::invalid_argument(e.0))?;
        let pod = &attributes.pod;
        let span = tracing::info_span!("mount", namespace = %pod.namespace, pod = %pod.name);
        let _entered = span.enter();
        if !attributes.ignored.is_empty() {
            tracing::warn!(
                parameters = %attributes.ignored.join(", "),
                "SecretProviderClass parameters that ASCP ignores are ignored"
            );
        }
        drop(_entered);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1u32;
        let mut passing: Option<Status> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Boxed: the try's future is large, and a worker's stack is not.
            let once = Box::pin(tracing::Instrument::instrument(
                self.once(&attributes),
                span.clone(),
            ));
            let result = match tokio::time::timeout(left, once).await {
                Ok(result) => result,
                // Out of time: the last passing failure says more than the clock.
                Err(_) => {
                    return Err(passing.unwrap_or_else(|| {
                        Status::deadline_exceeded(format!(
                            "the mount did not finish within {:?} (--mount-timeout)",
                            deadline.saturating_duration_since(started)
                        ))
                    }));
                }
            };
            match result {
                Err(status) if status.code() == Code::Unavailable => {
                    let wait = super::jitter(backoff);
                    // A try needs time of its own after the wait.
                    if Instant::now() + wait + backoff >= deadline {
                        return Err(status);
                    }
                    tracing::info!(
                        parent: &span,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        reason = %status.message(),
                        "mount failed in a passing way; trying again"
                    );
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                    passing = Some(status);
                }
                Err(status) => return Err(status),
                Ok((files, source)) => {
                    let current: BTreeMap<&str, &str> = request
                        .current_object_version
                        .iter()
                        .map(|v| (v.id.as_str(), v.version.as_str()))
                        .collect();
                    let response = response(&files, &pod.uid);
                    let changed = response
                        .object_version
                        .iter()
                        .filter(|v| current.get(v.id.as_str()) != Some(&v.version.as_str()))
                        .count();
                    tracing::info!(
                        parent: &span,
                        service_account = %pod.service_account,
                        files = files.len(),
                        changed,
                        shared = source == Source::Shared,
                        attempts = attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "mounted"
                    );
                    return Ok(response);
                }
            }
        }
    }

    /// One try: act as the pod, then fetch (or share a fetch of) its files.
    async fn once(
        &self,
        attributes: &MountAttributes,
    ) -> Result<(std::sync::Arc<FileSet>, Source), Status> {
        let pod = &attributes.pod;
        let default_region = self.base.region().map(|r| r.as_ref().to_string());
        let objects = Objects::from_parameters(
            &attributes.parameters,
            default_region.as_deref(),
            attributes.permission,
        )
        .map_err(|e| Status::invalid_argument(format!("SecretProviderClass {}", e.0)))?;
        let session = self
            .credentials
            .for_pod(attributes, objects.region())
            .await
            .map_err(|e| match e {
                CredentialsError::Precondition(m) => Status::failed_precondition(m),
                CredentialsError::Denied(m) => Status::permission_denied(m),
                CredentialsError::Unavailable(m) => Status::unavailable(m),
            })?;
        let parameter = |name: &str| {
            attributes
                .parameters
                .get(name)
                .map(String::as_str)
                .unwrap_or_default()
        };
        let permission = attributes.permission.to_string();
        let key = SharedFetches::key([
            session.identity.as_str(),
            objects.region(),
            objects.failover_region().unwrap_or_default(),
            parameter(PATH_TRANSLATION),
            parameter(OBJECTS),
            permission.as_str(),
        ]);
        let (files, source) = self
            .shared
            .files(key, Box::pin(objects.fetch(&session.providers, None)))
            .await;
        let files = files.map_err(|e| {
            Status::new(
                code_for(e.kind),
                format!("pod {}/{}: {e}", pod.namespace, pod.name),
            )
        })?;
        Ok((files, source))
    }
}

/// The driver retries only UNAVAILABLE, three times in about two seconds
/// (and the kubelet retries the whole mount later whatever the code): only a
/// failure that may pass gets it; one that cannot says what it is.
fn code_for(kind: FailureKind) -> Code {
    match kind {
        FailureKind::Transient => Code::Unavailable,
        FailureKind::Denied => Code::PermissionDenied,
        FailureKind::NotFound => Code::NotFound,
        FailureKind::Invalid => Code::InvalidArgument,
    }
}

/// Files and one version per file. A version is a digest of the pod, the path
/// and the contents: it changes exactly when a file does, and cannot be
/// compared across pods.
fn response(files: &FileSet, pod_uid: &str) -> MountResponse {
    let mut object_version = Vec::new();
    let mut out = Vec::new();
    for (name, file) in files {
        let mut digest = Sha256::new();
        for part in [
            b"secretsync csi object version".as_slice(),
            pod_uid.as_bytes(),
            name.as_str().as_bytes(),
        ] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        digest.update(file.contents.expose());
        object_version.push(ObjectVersion {
            id: name.as_str().to_string(),
            version: hex::encode(&digest.finalize()[..16]),
        });
        out.push(File {
            path: name.as_str().to_string(),
            mode: i32::try_from(file.mode).unwrap_or(0o644),
            contents: file.contents.expose().to_vec(),
        });
    }
    MountResponse {
        object_version,
        error: None,
        files: out,
    }
}
