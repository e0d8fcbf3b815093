//! `/openapi/v2`, for kubectl before 1.27 (Debian 12's `kubernetes-client` is
//! 1.20), which asks for it before every `apply` and `create -f`, in protobuf
//! (gnostic's `openapi.v2.Document`) or JSON.
//!
//! Simplified against the real server: the document names no paths and no
//! definitions. Old kubectl then finds no schema for a kind and skips
//! client-side validation (the fake validates on write itself) and patches
//! custom resources with a JSON merge patch, as it does on a real server.

use prost::Message;
use serde_json::{Value, json};

/// The media type old kubectl asks for.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The same, as the real server answers it (`@` is not allowed in a media
/// type, and Go's parser refuses it).
pub const PROTOBUF_ANSWER: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// gnostic's `openapi.v2.Document`, the fields the fake fills in.
#[derive(Clone, PartialEq, Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

/// No paths (`openapi.v2.Paths`, every field left out).
#[derive(Clone, PartialEq, Message)]
pub struct Paths {}

/// No definitions (`openapi.v2.Definitions`, every field left out).
#[derive(Clone, PartialEq, Message)]
pub struct Definitions {}

const TITLE: &str = "Kubernetes (secretsync fake)";
const VERSION: &str = "v1.32.0";

pub fn protobuf() -> Vec<u8> {
    Document {
        swagger: "2.0".into(),
        info: Some(Info {
            title: TITLE.into(),
            version: VERSION.into(),
        }),
        paths: Some(Paths {}),
        definitions: Some(Definitions {}),
    }
    .encode_to_vec()
}

pub fn json() -> Value {
    json!({"swagger": "2.0", "info": {"title": TITLE, "version": VERSION}, "paths": {}, "definitions": {}})
}
