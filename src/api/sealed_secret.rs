//! `SealedSecret`: a Secret committed to Git with every value sealed by age.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, TemplateMetadata};

// Each `printcolumn(...)` repeats `name`/`type_`/`json_path`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "secretsync.io",
    version = "v1",
    kind = "SealedSecret",
    doc = "A Secret whose values are age envelopes, decrypted in the cluster by secretsync.",
    namespaced,
    status = "SealedSecretStatus",
    shortname = "sealed",
    category = "secretsync",
    printcolumn(name = "Scope", type_ = "string", json_path = ".spec.scope"),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedSecretSpec {
    /// Secret key -> ASCII-armored age envelope (see README: "Sealed secrets").
    pub encrypted_data: BTreeMap<String, String>,
    /// Where the values may be decrypted into; bound inside every envelope.
    #[serde(default)]
    pub scope: SealedScope,
    /// The recipients the values were sealed to (public keys), so `reseal`
    /// knows when nothing needs re-encrypting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SealedSecretTemplate>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SealedScope {
    /// Only into this namespace and this SealedSecret's name.
    #[default]
    Strict,
    /// Into any name in this namespace.
    NamespaceWide,
    /// Anywhere.
    ClusterWide,
}

impl SealedScope {
    pub fn as_str(&self) -> &'static str {
        match self {
            SealedScope::Strict => "strict",
            SealedScope::NamespaceWide => "namespace-wide",
            SealedScope::ClusterWide => "cluster-wide",
        }
    }
}

/// The Secret made from the decrypted values.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedSecretTemplate {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
    #[serde(default)]
    pub metadata: TemplateMetadata,
    /// Extra keys rendered with the decrypted values (`{{ .password }}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
