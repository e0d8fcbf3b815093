//! Reading one Secret's or ConfigMap's data (a GET), reduced at once to a
//! digest: the values travel as [`SecretValue`]s, zeroed when dropped, and
//! only the digest is kept.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Resource;
use kube::api::GetParams;
use serde::Deserialize;

use super::hash::data_digest;
use super::tracker::ReadResult;
use super::{ObjKey, ObjKind};
use crate::SecretValue;

/// A value as the API server sent it (base64 for a Secret's `data` and a
/// ConfigMap's `binaryData`), never printed.
struct Opaque(SecretValue);

impl<'de> Deserialize<'de> for Opaque {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Opaque(SecretValue::from(text)))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    resource_version: Option<String>,
}

/// The parts of a Secret or ConfigMap that count.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectData {
    metadata: Metadata,
    data: Option<BTreeMap<String, Opaque>>,
    binary_data: Option<BTreeMap<String, Opaque>>,
}

fn values(map: Option<BTreeMap<String, Opaque>>) -> BTreeMap<String, SecretValue> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the object, retrying twice (after 1 s, then 2 s) on errors.
pub async fn read(client: kube::Client, key: ObjKey) -> (ObjKey, ReadResult) {
    let path = match key.kind {
        ObjKind::Secret => Secret::url_path(&(), Some(&key.namespace)),
        ObjKind::ConfigMap => ConfigMap::url_path(&(), Some(&key.namespace)),
        // Never asked for: its pod statuses say what its mounts hold.
        ObjKind::SecretProviderClass => return (key, ReadResult::Failed),
    };
    let request = kube::core::Request::new(path);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        let get = match request.get(&key.name, &GetParams::default()) {
            Ok(get) => get,
            Err(e) => {
                tracing::warn!(object = %key, error = %e, "reload: cannot read");
                return (key, ReadResult::Failed);
            }
        };
        let answer = tokio::time::timeout(TIMEOUT, client.request::<ObjectData>(get)).await;
        match answer {
            Ok(Ok(object)) => {
                let data = values(object.data);
                let digest = match key.kind {
                    ObjKind::Secret => data_digest(&[("data", &data)]),
                    ObjKind::ConfigMap | ObjKind::SecretProviderClass => {
                        let binary = values(object.binary_data);
                        data_digest(&[("data", &data), ("binaryData", &binary)])
                    }
                };
                let resource_version = object.metadata.resource_version.unwrap_or_default();
                return (
                    key,
                    ReadResult::Present {
                        resource_version,
                        digest,
                    },
                );
            }
            Ok(Err(kube::Error::Api(status))) if status.is_not_found() => {
                return (key, ReadResult::Absent);
            }
            Ok(Err(e)) => {
                tracing::debug!(object = %key, attempt, error = %e, "reload: read failed");
            }
            Err(_) => tracing::debug!(object = %key, attempt, "reload: read timed out"),
        }
    }
    tracing::warn!(object = %key, "reload: could not read its data; trying again later");
    (key, ReadResult::Failed)
}
