//! Protobuf request bodies, as kubectl's typed commands (`kubectl create
//! namespace`, `create secret`, `create configmap`, `create serviceaccount`,
//! `create token`) and client-go's typed clients send them: the `k8s\0`
//! envelope around a `runtime.Unknown`, whose `raw` is the object. Decoding is
//! prost's, through kube-rs's `k8s-pb` bindings; the decoded object becomes the
//! JSON the rest of the fake works with.
//!
//! Simplified against the real server: only the kinds above are decoded (any
//! other gets 415, saying to send JSON, which `kubectl apply` does); responses
//! are JSON, which every client that sends protobuf also accepts.

use base64::Engine;
use k8s_pb::api::authentication::v1::TokenRequest;
use k8s_pb::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf body starts with these four bytes.
const MAGIC: &[u8] = b"k8s\0";

/// The object a protobuf body holds, as JSON.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body starts with the bytes \"k8s\\0\"")?;
    let unknown = Unknown::decode(envelope).map_err(|e| format!("runtime.Unknown: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let bad = |e: prost::DecodeError| format!("{api_version} {kind}: {e}");
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(Namespace::decode(raw.as_slice()).map_err(bad)?),
        ("v1", "Secret") => secret(Secret::decode(raw.as_slice()).map_err(bad)?),
        ("v1", "ConfigMap") => config_map(ConfigMap::decode(raw.as_slice()).map_err(bad)?),
        ("v1", "ServiceAccount") => {
            service_account(ServiceAccount::decode(raw.as_slice()).map_err(bad)?)
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            token_request(TokenRequest::decode(raw.as_slice()).map_err(bad)?)
        }
        _ => {
            return Err(format!(
                "the fake API server decodes protobuf bodies of Namespace, Secret, ConfigMap, \
                 ServiceAccount and TokenRequest only, not {api_version} {kind}: send JSON"
            ));
        }
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

/// Whether a Content-Type names protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with(CONTENT_TYPE)
}

/// Sets `key` when the value says something (not `None`, not empty).
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        map.insert(key.into(), value);
    }
}

fn base64_map(map: std::collections::BTreeMap<String, Vec<u8>>) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    map.into_iter()
        .map(|(k, v)| (k, Value::String(engine.encode(v))))
        .collect()
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut out = Map::new();
    put(&mut out, "name", json!(meta.name));
    put(&mut out, "generateName", json!(meta.generate_name));
    put(&mut out, "namespace", json!(meta.namespace));
    put(&mut out, "uid", json!(meta.uid));
    put(&mut out, "resourceVersion", json!(meta.resource_version));
    put(&mut out, "labels", json!(meta.labels));
    put(&mut out, "annotations", json!(meta.annotations));
    put(&mut out, "finalizers", json!(meta.finalizers));
    let owners: Vec<Value> = meta
        .owner_references
        .into_iter()
        .map(|o| {
            let mut owner = Map::new();
            put(&mut owner, "apiVersion", json!(o.api_version));
            put(&mut owner, "kind", json!(o.kind));
            put(&mut owner, "name", json!(o.name));
            put(&mut owner, "uid", json!(o.uid));
            put(&mut owner, "controller", json!(o.controller));
            put(
                &mut owner,
                "blockOwnerDeletion",
                json!(o.block_owner_deletion),
            );
            Value::Object(owner)
        })
        .collect();
    put(&mut out, "ownerReferences", json!(owners));
    Value::Object(out)
}

fn namespace(namespace: Namespace) -> Value {
    let mut out = Map::new();
    out.insert("metadata".into(), metadata(namespace.metadata));
    if let Some(spec) = namespace.spec {
        let mut s = Map::new();
        put(&mut s, "finalizers", json!(spec.finalizers));
        put(&mut out, "spec", Value::Object(s));
    }
    Value::Object(out)
}

fn secret(secret: Secret) -> Value {
    let mut out = Map::new();
    out.insert("metadata".into(), metadata(secret.metadata));
    put(&mut out, "type", json!(secret.r#type));
    put(&mut out, "immutable", json!(secret.immutable));
    put(&mut out, "data", base64_map(secret.data));
    put(&mut out, "stringData", json!(secret.string_data));
    Value::Object(out)
}

fn config_map(config_map: ConfigMap) -> Value {
    let mut out = Map::new();
    out.insert("metadata".into(), metadata(config_map.metadata));
    put(&mut out, "immutable", json!(config_map.immutable));
    put(&mut out, "data", json!(config_map.data));
    put(&mut out, "binaryData", base64_map(config_map.binary_data));
    Value::Object(out)
}

fn service_account(account: ServiceAccount) -> Value {
    let mut out = Map::new();
    out.insert("metadata".into(), metadata(account.metadata));
    put(
        &mut out,
        "automountServiceAccountToken",
        json!(account.automount_service_account_token),
    );
    let pull: Vec<Value> = account
        .image_pull_secrets
        .into_iter()
        .map(|r| json!({"name": r.name.unwrap_or_default()}))
        .collect();
    put(&mut out, "imagePullSecrets", json!(pull));
    Value::Object(out)
}

fn token_request(request: TokenRequest) -> Value {
    let mut out = Map::new();
    out.insert("metadata".into(), metadata(request.metadata));
    let spec = request.spec.unwrap_or_default();
    let mut s = Map::new();
    put(&mut s, "audiences", json!(spec.audiences));
    put(&mut s, "expirationSeconds", json!(spec.expiration_seconds));
    if let Some(bound) = spec.bound_object_ref {
        let mut b = Map::new();
        put(&mut b, "apiVersion", json!(bound.api_version));
        put(&mut b, "kind", json!(bound.kind));
        put(&mut b, "name", json!(bound.name));
        put(&mut b, "uid", json!(bound.u_id));
        put(&mut s, "boundObjectRef", Value::Object(b));
    }
    out.insert("spec".into(), Value::Object(s));
    Value::Object(out)
}

/// A body as a test client would send it: the object in the envelope.
pub fn encode<M: Message>(api_version: &str, kind: &str, object: &M) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}
