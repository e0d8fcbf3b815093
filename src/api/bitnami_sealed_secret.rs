//! Bitnami's `bitnami.com/v1alpha1` SealedSecret, served with
//! `--bitnami-compat` so that a team's sealed manifests keep working unchanged
//! (README: "Moving from Sealed Secrets"). Field names and the status are
//! Bitnami's; the envelope format is in `sealed::bitnami`.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bitnami's API group.
pub const BITNAMI_GROUP: &str = "bitnami.com";
/// The version Bitnami serves SealedSecrets in.
pub const BITNAMI_VERSION: &str = "v1alpha1";

/// Annotations Bitnami reads: on the SealedSecret (scope) and on an
/// existing Secret (managed, patch) or the template (skip-set-owner-references).
pub const BITNAMI_CLUSTER_WIDE: &str = "sealedsecrets.bitnami.com/cluster-wide";
pub const BITNAMI_NAMESPACE_WIDE: &str = "sealedsecrets.bitnami.com/namespace-wide";
pub const BITNAMI_MANAGED: &str = "sealedsecrets.bitnami.com/managed";
pub const BITNAMI_PATCH: &str = "sealedsecrets.bitnami.com/patch";
pub const BITNAMI_SKIP_SET_OWNER_REFERENCES: &str =
    "sealedsecrets.bitnami.com/skip-set-owner-references";
/// The label of the Secrets holding Bitnami's sealing keys (value `active`).
pub const BITNAMI_KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";

// Each `printcolumn(...)` repeats `name`/`type_`/`json_path`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bitnami.com",
    version = "v1alpha1",
    kind = "SealedSecret",
    root = "BitnamiSealedSecret",
    doc = "Bitnami's SealedSecret: values sealed with RSA-OAEP and AES-GCM to the cluster's key, decrypted by secretsync with --bitnami-compat.",
    namespaced,
    status = "BitnamiSealedSecretStatus",
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[0].message"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[0].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSealedSecretSpec {
    /// Secret key -> base64 of one sealed value.
    #[serde(default)]
    pub encrypted_data: BTreeMap<String, String>,
    /// Deprecated: the whole Secret (JSON) sealed as one value, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default)]
    pub template: BitnamiSecretTemplate,
}

/// The Secret made from the decrypted values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSecretTemplate {
    /// As kubeseal writes it (`creationTimestamp: null` included): fields
    /// other than those kept here are accepted and left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub metadata: Option<BitnamiTemplateMetadata>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Extra keys: Go templates over the decrypted values (`{{ .password }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
}

/// The parts of the template's metadata a Secret takes (name and namespace
/// are always the SealedSecret's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiTemplateMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSealedSecretStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BitnamiCondition>,
}

/// Bitnami's condition: `Synced`, with an update time besides the transition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a Bitnami value may be decrypted: the scope is read from the
/// SealedSecret's own annotations, as Bitnami reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitnamiScope {
    Strict,
    NamespaceWide,
    ClusterWide,
}

impl BitnamiScope {
    pub fn of(annotations: Option<&BTreeMap<String, String>>) -> BitnamiScope {
        let set =
            |name: &str| annotations.and_then(|a| a.get(name)).map(String::as_str) == Some("true");
        if set(BITNAMI_CLUSTER_WIDE) {
            BitnamiScope::ClusterWide
        } else if set(BITNAMI_NAMESPACE_WIDE) {
            BitnamiScope::NamespaceWide
        } else {
            BitnamiScope::Strict
        }
    }

    /// The RSA-OAEP label a value of this scope was sealed with.
    pub fn label(self, namespace: &str, name: &str) -> Vec<u8> {
        match self {
            BitnamiScope::ClusterWide => Vec::new(),
            BitnamiScope::NamespaceWide => namespace.as_bytes().to_vec(),
            BitnamiScope::Strict => format!("{namespace}/{name}").into_bytes(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BitnamiScope::Strict => "strict",
            BitnamiScope::NamespaceWide => "namespace-wide",
            BitnamiScope::ClusterWide => "cluster-wide",
        }
    }
}

/// Bitnami's CRD as `crds/compat/` holds it, for clusters without Bitnami's own.
pub fn bitnami_compat_crds() -> Vec<CustomResourceDefinition> {
    vec![BitnamiSealedSecret::crd()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_and_label_follow_the_sealed_secrets_annotations() {
        let mut annotations = BTreeMap::new();
        assert_eq!(BitnamiScope::of(None).label("a", "b"), b"a/b");
        annotations.insert(BITNAMI_NAMESPACE_WIDE.to_string(), "true".to_string());
        assert_eq!(BitnamiScope::of(Some(&annotations)).label("a", "b"), b"a");
        annotations.insert(BITNAMI_CLUSTER_WIDE.to_string(), "true".to_string());
        assert_eq!(
            BitnamiScope::of(Some(&annotations)),
            BitnamiScope::ClusterWide
        );
        assert!(BitnamiScope::ClusterWide.label("a", "b").is_empty());
        annotations.insert(BITNAMI_CLUSTER_WIDE.to_string(), "True".to_string());
        // Bitnami compares with "true" exactly.
        assert_eq!(
            BitnamiScope::of(Some(&annotations)),
            BitnamiScope::NamespaceWide
        );
    }

    #[test]
    fn a_kubeseal_manifest_decodes() {
        let manifest = serde_json::json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "team-a"},
            "spec": {
                "encryptedData": {"password": "AgB..."},
                "template": {
                    "metadata": {"name": "db", "namespace": "team-a", "creationTimestamp": null},
                    "type": "Opaque"
                }
            }
        });
        let sealed: BitnamiSealedSecret = serde_json::from_value(manifest).unwrap();
        assert_eq!(sealed.spec.encrypted_data["password"], "AgB...");
        assert_eq!(sealed.spec.template.type_.as_deref(), Some("Opaque"));
    }
}
