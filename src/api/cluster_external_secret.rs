//! `ClusterExternalSecret`: one ExternalSecret spec stamped into every
//! namespace a selector or a name list picks. It never fetches values
//! itself; the ExternalSecrets it writes do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::{
    dns_subdomain_problem, nest_errors, validate_label_selector, validate_namespace_picking,
};
use super::{Condition, ExternalSecretSpec, FieldErrors, GoDuration};

#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "secretsync.io",
    version = "v1",
    kind = "ClusterExternalSecret",
    doc = "One ExternalSecret spec written into every namespace a selector or name list picks.",
    status = "ClusterExternalSecretStatus",
    shortname = "ces",
    category = "secretsync",
    printcolumn(
        name = "Store",
        type_ = "string",
        json_path = ".spec.externalSecretSpec.secretStoreRef.name"
    ),
    printcolumn(
        name = "Refresh Interval",
        type_ = "string",
        json_path = ".spec.refreshTime"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterExternalSecretSpec {
    /// The spec of every ExternalSecret written.
    pub external_secret_spec: ExternalSecretSpec,
    /// Their name; the ClusterExternalSecret's own name when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_name: Option<String>,
    /// Labels and annotations of every ExternalSecret written.
    #[serde(default, skip_serializing_if = "ExternalSecretMetadata::is_empty")]
    pub external_secret_metadata: ExternalSecretMetadata,
    /// Deprecated by ESO in favour of `namespaceSelectors`; still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces whose labels match any of these get an ExternalSecret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Namespaces picked by name, besides those the selectors pick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// How often namespaces are checked again even without a change seen
    /// (namespace changes are watched, so this is only a safety net).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<GoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ExternalSecretMetadata {
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty() && self.labels.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterExternalSecretStatus {
    /// The name of the ExternalSecrets written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_name: Option<String>,
    /// Namespaces picked where no ExternalSecret could be written, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_namespaces: Vec<NamespaceFailure>,
    /// Namespaces holding an ExternalSecret written by this object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioned_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceFailure {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How often a ClusterExternalSecret is checked again by default (ESO: 1h).
pub const DEFAULT_CLUSTER_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

impl ClusterExternalSecretSpec {
    /// The name of the ExternalSecrets written for the object named `own_name`.
    pub fn external_secret_name<'a>(&'a self, own_name: &'a str) -> &'a str {
        self.external_secret_name
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or(own_name)
    }

    /// Every selector, the deprecated one first.
    pub fn selectors(&self) -> impl Iterator<Item = &LabelSelector> {
        self.namespace_selector
            .iter()
            .chain(&self.namespace_selectors)
    }

    /// Checks what the schema cannot express, the ExternalSecret spec
    /// included (its fields under `spec.externalSecretSpec`).
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Some(name) = &self.external_secret_name
            && let Some(problem) = dns_subdomain_problem(name)
        {
            errors.push(
                "spec.externalSecretName",
                format!("{name:?} is not a valid object name: it {problem}"),
            );
        }
        validate_namespace_picking(&self.namespaces, &self.namespace_selectors, &mut errors);
        if let Some(selector) = &self.namespace_selector {
            validate_label_selector(selector, "spec.namespaceSelector", &mut errors);
        }
        if let Err(inner) = self.external_secret_spec.validate() {
            nest_errors(inner, "externalSecretSpec", &mut errors);
        }
        errors.into_result()
    }
}
