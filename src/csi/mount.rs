//! One Mount: parse the request, act as the pod, fetch its objects, answer with
//! the files and their versions. The provider writes nothing itself: the driver
//! writes `files` into the pod's volume.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_config::SdkConfig;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use super::attributes::MountAttributes;
use super::credentials::{CredentialsError, PodCredentials};
use super::v1alpha1::{File, MountRequest, MountResponse, ObjectVersion};
use crate::agent::files::FileSet;
use crate::agent::objects::{FailureKind, Objects};

pub struct Mounter {
    pub base: SdkConfig,
    pub credentials: PodCredentials,
}

impl Mounter {
    pub async fn mount(&self, request: &MountRequest) -> Result<MountResponse, Status> {
        let started = Instant::now();
        let attributes =
            MountAttributes::parse(&request.attributes, &request.secrets, &request.permission)
                .map_err(|e| Status::invalid_argument(e.0))?;
        let pod = &attributes.pod;
        let default_region = self.base.region().map(|r| r.as_ref().to_string());
        let objects = Objects::from_parameters(
            &attributes.parameters,
            default_region.as_deref(),
            attributes.permission,
        )
        .map_err(|e| Status::invalid_argument(format!("SecretProviderClass {}", e.0)))?;

        let providers = self
            .credentials
            .for_pod(pod, &attributes.tokens, objects.region())
            .await
            .map_err(|e| match e {
                CredentialsError::Precondition(m) => Status::failed_precondition(m),
                CredentialsError::Denied(m) => Status::permission_denied(m),
                CredentialsError::Unavailable(m) => Status::unavailable(m),
            })?;
        let files = objects.fetch(&providers, None).await.map_err(|e| {
            Status::new(
                code_for(e.kind),
                format!("pod {}/{}: {e}", pod.namespace, pod.name),
            )
        })?;

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
            namespace = %pod.namespace,
            pod = %pod.name,
            service_account = %pod.service_account,
            files = files.len(),
            changed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mounted"
        );
        Ok(response)
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
