//! `PushSecret` and `ClusterPushSecret` (`v1alpha1`, ESO's field names): a
//! Kubernetes Secret copied to Secrets Manager or Parameter Store, so that
//! what runs outside the cluster can read it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::{
    dns_subdomain_problem, nest_errors, validate_label_selector, validate_namespace_picking,
};
use super::{
    AwsService, Condition, ExternalSecretMetadata, ExternalSecretTemplate, FieldErrors,
    GeneratorRef, GoDuration, NamespaceFailure, PushMetadata, StoreKind, secret_key_problem,
};

/// The version PushSecret and ClusterPushSecret are served at, in our group
/// and (with `--eso-compat`) in ESO's.
pub const PUSH_VERSION: &str = "v1alpha1";

#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "secretsync.io",
    version = "v1alpha1",
    kind = "PushSecret",
    doc = "A Kubernetes Secret written to AWS Secrets Manager or SSM Parameter Store.",
    namespaced,
    status = "PushSecretStatus",
    shortname = "ps",
    category = "secretsync",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSpec {
    /// How often the remote values are checked and written again if they
    /// differ (changes of the source Secret are pushed when seen); `0`: once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<GoDuration>,
    pub secret_store_refs: Vec<PushSecretStoreRef>,
    #[serde(default)]
    pub update_policy: PushUpdatePolicy,
    #[serde(default)]
    pub deletion_policy: PushDeletionPolicy,
    pub selector: PushSecretSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<PushSecretData>,
    /// ESO's bulk push rules: not supported (refused with a clear status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("items" = {"type": "object", "x-kubernetes-preserve-unknown-fields": true}))]
    pub data_to: Vec<serde_json::Value>,
    /// Renders the pushed Secret from the source's values first, as an
    /// ExternalSecret's template renders its target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
}

/// How often a PushSecret is pushed again by default (ESO: 1h).
pub const DEFAULT_PUSH_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretStoreRef {
    /// A store by name ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ... or every store of `kind` whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(default)]
    pub kind: StoreKind,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PushUpdatePolicy {
    /// Write the value whenever it differs from the remote one.
    #[default]
    Replace,
    /// Create the remote secret if missing; never change one that exists.
    IfNotExists,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PushDeletionPolicy {
    /// Leave the remote secrets in place.
    #[default]
    None,
    /// Delete the remote secrets this PushSecret wrote when it is deleted,
    /// when its source Secret is, or when an entry leaves `data`.
    Delete,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSelector {
    /// A Secret of the PushSecret's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<PushSecretSource>,
    /// Values made by a generator instead of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretData {
    #[serde(rename = "match")]
    pub match_: PushSecretMatch,
    /// ESO's `PushSecretMetadata` envelope; its spec depends on the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "type" = "object"))]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "PushConversionStrategy::is_none")]
    pub conversion_strategy: PushConversionStrategy,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretMatch {
    /// The Secret key pushed; left out, the whole Secret is pushed as one
    /// JSON object of its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    pub remote_ref: PushRemoteRef,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushRemoteRef {
    /// The remote secret's name (before the store's prefix).
    pub remote_key: String,
    /// Set: the value goes into this field of the remote JSON object, whose
    /// other fields are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PushConversionStrategy {
    #[default]
    None,
    /// Secret keys written as `_U0024_` (ExternalSecret's `Unicode`
    /// conversion) are turned back into the characters they stand for.
    ReverseUnicode,
}

impl PushConversionStrategy {
    fn is_none(&self) -> bool {
        *self == PushConversionStrategy::None
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// The PushSecret's resourceVersion when it was last pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// Store (`Kind/name`) -> remote key (`key` or `key/property`) -> the
    /// entry pushed there. Never a value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub synced_push_secrets: BTreeMap<String, BTreeMap<String, PushSecretData>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Secrets Manager's largest value (SecretString or SecretBinary).
pub const SECRETS_MANAGER_MAX_VALUE: usize = 65_536;
/// Parameter Store's largest value, standard tier.
pub const STANDARD_PARAMETER_MAX_VALUE: usize = 4_096;
/// Parameter Store's largest value, advanced tier.
pub const ADVANCED_PARAMETER_MAX_VALUE: usize = 8_192;

impl PushSecretData {
    /// The status key of this entry: `remoteKey`, or `remoteKey/property`.
    pub fn status_key(&self) -> String {
        let remote = &self.match_.remote_ref;
        match remote.property.as_deref().filter(|p| !p.is_empty()) {
            Some(property) => format!("{}/{property}", remote.remote_key),
            None => remote.remote_key.clone(),
        }
    }
}

impl PushSecretSpec {
    /// Checks what the schema cannot express; every problem names its field.
    /// Metadata is checked per store (it depends on the service): see
    /// [`PushSecretSpec::validate_for`].
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if self.secret_store_refs.is_empty() {
            errors.push("spec.secretStoreRefs", "at least one store is required");
        }
        for (i, store) in self.secret_store_refs.iter().enumerate() {
            let field = format!("spec.secretStoreRefs[{i}]");
            match (&store.name, &store.label_selector) {
                (Some(name), None) if !name.is_empty() => {}
                (None, Some(selector)) => validate_label_selector(
                    selector,
                    &format!("{field}.labelSelector"),
                    &mut errors,
                ),
                _ => errors.push(field, "exactly one of name or labelSelector is required"),
            }
        }
        match (&self.selector.secret, &self.selector.generator_ref) {
            (Some(source), None) => match (&source.name, &source.selector) {
                (Some(name), None) => {
                    if let Some(problem) = dns_subdomain_problem(name) {
                        errors.push(
                            "spec.selector.secret.name",
                            format!("{name:?} is not a valid Secret name: it {problem}"),
                        );
                    }
                }
                (None, Some(selector)) => {
                    validate_label_selector(selector, "spec.selector.secret.selector", &mut errors)
                }
                _ => errors.push(
                    "spec.selector.secret",
                    "exactly one of name or selector is required",
                ),
            },
            (None, Some(generator)) => {
                if generator.name.is_empty() || generator.kind.is_empty() {
                    errors.push("spec.selector.generatorRef", "kind and name are required");
                }
            }
            _ => errors.push(
                "spec.selector",
                "exactly one of secret or generatorRef is required",
            ),
        }
        if !self.data_to.is_empty() {
            errors.push(
                "spec.dataTo",
                "not supported by secretsync: list each remote key under data",
            );
        }
        let mut seen = BTreeMap::new();
        for (i, item) in self.data.iter().enumerate() {
            let field = format!("spec.data[{i}].match");
            if let Some(key) = &item.match_.secret_key
                && let Some(problem) = secret_key_problem(key)
            {
                errors.push(
                    format!("{field}.secretKey"),
                    format!("{key:?} is not a valid Secret key: {problem}"),
                );
            }
            let remote = &item.match_.remote_ref;
            if remote.remote_key.is_empty() {
                errors.push(format!("{field}.remoteRef.remoteKey"), "must not be empty");
            }
            if let Some(property) = &remote.property
                && property.is_empty()
            {
                errors.push(
                    format!("{field}.remoteRef.property"),
                    "must not be empty when given",
                );
            }
            if let Some(first) = seen.insert(item.status_key(), i) {
                errors.push(
                    format!("{field}.remoteRef"),
                    format!("pushes to the same remote key as spec.data[{first}]"),
                );
            }
        }
        errors.into_result()
    }

    /// The entries' metadata, parsed for a store of `service`, and their
    /// remote keys checked against the service's naming rules.
    pub fn validate_for(&self, service: AwsService) -> Result<Vec<PushMetadata>, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut parsed = Vec::with_capacity(self.data.len());
        for (i, item) in self.data.iter().enumerate() {
            let key = &item.match_.remote_ref.remote_key;
            if let Some(problem) = remote_key_problem(key, service) {
                errors.push(
                    format!("spec.data[{i}].match.remoteRef.remoteKey"),
                    format!("{key:?} is not a valid {}: {problem}", remote_name(service)),
                );
            }
            match PushMetadata::parse(item.metadata.as_ref(), service) {
                Ok(metadata) => parsed.push(metadata),
                Err(problem) => {
                    errors.push(
                        format!("spec.data[{i}].metadata.{problem}"),
                        "invalid metadata",
                    );
                    parsed.push(PushMetadata::Defaults);
                }
            }
        }
        errors.into_result().map(|()| parsed)
    }
}

fn remote_name(service: AwsService) -> &'static str {
    match service {
        AwsService::SecretsManager => "Secrets Manager secret name",
        AwsService::ParameterStore => "SSM parameter name",
    }
}

/// Why `key` is not a name AWS takes for `service`, if it is not.
pub fn remote_key_problem(key: &str, service: AwsService) -> Option<&'static str> {
    match service {
        AwsService::SecretsManager => {
            if key.is_empty() || key.len() > 512 {
                return Some("it must be 1 to 512 characters long");
            }
            let allowed = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c);
            if !key.chars().all(allowed) {
                return Some("it may hold only letters, digits and /_+=.@-");
            }
            None
        }
        AwsService::ParameterStore => {
            if key.is_empty() || key.len() > 1011 {
                return Some("it must be 1 to 1011 characters long");
            }
            let allowed = |c: char| c.is_ascii_alphanumeric() || "/_.-".contains(c);
            if !key.chars().all(allowed) {
                return Some("it may hold only letters, digits and /_.-");
            }
            if key.contains('/') && !key.starts_with('/') {
                return Some("a name with levels must begin with / (AWS: fully qualified)");
            }
            let bare = key.trim_start_matches('/').to_ascii_lowercase();
            if bare.starts_with("aws") || bare.starts_with("ssm") {
                return Some("names beginning with aws or ssm are reserved by AWS");
            }
            if key.split('/').count() > 16 {
                return Some("it may have at most 15 levels");
            }
            None
        }
    }
}

// ClusterPushSecret ----------------------------------------------------------

#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "secretsync.io",
    version = "v1alpha1",
    kind = "ClusterPushSecret",
    doc = "One PushSecret spec written into every namespace a selector or name list picks.",
    status = "ClusterPushSecretStatus",
    shortname = "cps",
    category = "secretsync",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPushSecretSpec {
    pub push_secret_spec: PushSecretSpec,
    /// How often namespaces are checked again without a change seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<GoDuration>,
    /// The PushSecrets' name; the ClusterPushSecret's own when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "ExternalSecretMetadata::is_empty")]
    pub push_secret_metadata: ExternalSecretMetadata,
    /// Namespaces whose labels match any of these get a PushSecret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Namespaces picked by name, besides those the selectors pick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPushSecretStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_namespaces: Vec<NamespaceFailure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioned_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ClusterPushSecretSpec {
    pub fn push_secret_name<'a>(&'a self, own_name: &'a str) -> &'a str {
        self.push_secret_name
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or(own_name)
    }

    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Some(name) = &self.push_secret_name
            && let Some(problem) = dns_subdomain_problem(name)
        {
            errors.push(
                "spec.pushSecretName",
                format!("{name:?} is not a valid object name: it {problem}"),
            );
        }
        validate_namespace_picking(&self.namespaces, &self.namespace_selectors, &mut errors);
        if let Err(inner) = self.push_secret_spec.validate() {
            nest_errors(inner, "pushSecretSpec", &mut errors);
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_keys_follow_each_services_naming_rules() {
        let sm = AwsService::SecretsManager;
        let ps = AwsService::ParameterStore;
        assert_eq!(remote_key_problem("prod/db+1@x", sm), None);
        assert!(remote_key_problem("prod db", sm).is_some());
        assert!(remote_key_problem(&"a".repeat(513), sm).is_some());
        assert_eq!(remote_key_problem("/prod/db", ps), None);
        assert!(remote_key_problem("/aws/x", ps).is_some());
        assert!(remote_key_problem("prod@db", ps).is_some());
    }

    #[test]
    fn a_spec_names_each_problem() {
        let spec: PushSecretSpec = serde_json::from_value(serde_json::json!({
            "secretStoreRefs": [{"name": "a", "labelSelector": {}}],
            "selector": {},
            "data": [
                {"match": {"secretKey": "a b", "remoteRef": {"remoteKey": "k"}}},
                {"match": {"remoteRef": {"remoteKey": "k"}}},
            ],
        }))
        .unwrap();
        let errors = spec.validate().unwrap_err().to_string();
        for field in [
            "spec.secretStoreRefs[0]",
            "spec.selector",
            "spec.data[0].match.secretKey",
            "spec.data[1].match.remoteRef",
        ] {
            assert!(errors.contains(field), "{field} not in {errors}");
        }
    }
}
