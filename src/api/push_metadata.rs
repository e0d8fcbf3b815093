//! `PushSecret.spec.data[].metadata`: ESO's `PushSecretMetadata` envelope,
//! whose `spec` depends on the store's service (Secrets Manager or Parameter
//! Store). Parsed strictly: a field of the other service, or one ESO does not
//! have, is an error naming it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::AwsService;

/// The envelope's `apiVersion`, as ESO writes it.
pub const PUSH_METADATA_API_VERSION: &str = "kubernetes.external-secrets.io/v1alpha1";
/// The envelope's `kind`.
pub const PUSH_METADATA_KIND: &str = "PushSecretMetadata";

/// The tag every pushed secret carries; a remote secret without it (or
/// with another value than ours or ESO's) is never written or deleted.
pub const MANAGED_BY_TAG: &str = "managed-by";
/// Our value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY_US: &str = "secretsync";
/// ESO's value of [`MANAGED_BY_TAG`], accepted so that a migrated PushSecret
/// keeps the remote secrets ESO pushed for it.
pub const MANAGED_BY_ESO: &str = "external-secrets";
/// The tag naming the PushSecret (`namespace/name`) that owns a pushed secret.
pub const OWNER_TAG: &str = "secretsync.io/owner";

/// What one `data[]` entry asks of the remote secret, beside its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PushMetadata {
    /// No `metadata`: the service's defaults.
    #[default]
    Defaults,
    SecretsManager(SecretsManagerPush),
    ParameterStore(ParameterStorePush),
}

/// Secrets Manager's `metadata.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretsManagerPush {
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `binary` (ESO's default: `SecretBinary`) or `string` (`SecretString`).
    #[serde(default)]
    pub secret_push_format: Option<SecretPushFormat>,
    /// Only used when the secret is created (AWS's default key when unset).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub resource_policy: Option<ResourcePolicy>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretPushFormat {
    #[default]
    Binary,
    String,
}

/// A resource policy put on the pushed secret, read from a ConfigMap or
/// Secret of the PushSecret's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcePolicy {
    #[serde(default)]
    pub block_public_policy: Option<bool>,
    pub policy_source_ref: PolicySourceRef,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySourceRef {
    /// `ConfigMap` or `Secret`.
    pub kind: String,
    pub name: String,
    pub key: String,
}

/// Parameter Store's `metadata.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParameterStorePush {
    /// `String` (ESO's default), `StringList` or `SecureString`.
    #[serde(default)]
    pub secret_type: Option<ParameterType>,
    /// For a `SecureString` (AWS's default key when unset).
    #[serde(default, rename = "kmsKeyID")]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tier: Option<ParameterTier>,
    /// A whole Secret pushed as JSON keeps its values as text instead of base64.
    #[serde(default)]
    pub encode_as_decoded: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum ParameterType {
    #[default]
    String,
    StringList,
    SecureString,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterTier {
    #[serde(rename = "type", default)]
    pub tier: TierType,
    /// Parameter policies (Advanced tier), as AWS takes them: a JSON array.
    #[serde(default)]
    pub policies: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum TierType {
    #[default]
    Standard,
    Advanced,
    #[serde(rename = "Intelligent-Tiering")]
    IntelligentTiering,
}

impl TierType {
    pub fn as_str(self) -> &'static str {
        match self {
            TierType::Standard => "Standard",
            TierType::Advanced => "Advanced",
            TierType::IntelligentTiering => "Intelligent-Tiering",
        }
    }
}

/// The envelope around either spec.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope {
    api_version: String,
    kind: String,
    #[serde(default)]
    spec: serde_json::Value,
}

impl PushMetadata {
    /// Parses `metadata` for a store of `service`; the error names the field
    /// (relative to `metadata`) and never quotes a value.
    pub fn parse(
        metadata: Option<&serde_json::Value>,
        service: AwsService,
    ) -> Result<PushMetadata, String> {
        let Some(metadata) = metadata else {
            return Ok(PushMetadata::Defaults);
        };
        let envelope: Envelope = serde_path_to_error::deserialize(metadata)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        if envelope.api_version != PUSH_METADATA_API_VERSION {
            return Err(format!(
                "apiVersion: must be {PUSH_METADATA_API_VERSION:?}, not {:?}",
                envelope.api_version
            ));
        }
        if envelope.kind != PUSH_METADATA_KIND {
            return Err(format!(
                "kind: must be {PUSH_METADATA_KIND:?}, not {:?}",
                envelope.kind
            ));
        }
        let spec = if envelope.spec.is_null() {
            serde_json::json!({})
        } else {
            envelope.spec
        };
        let in_spec = |e: serde_path_to_error::Error<serde_json::Error>| {
            format!(
                "spec.{} (for a {} store): {}",
                e.path(),
                service_name(service),
                e.inner()
            )
        };
        let parsed = match service {
            AwsService::SecretsManager => PushMetadata::SecretsManager(
                serde_path_to_error::deserialize(&spec).map_err(in_spec)?,
            ),
            AwsService::ParameterStore => PushMetadata::ParameterStore(
                serde_path_to_error::deserialize(&spec).map_err(in_spec)?,
            ),
        };
        let tags = match &parsed {
            PushMetadata::SecretsManager(sm) => &sm.tags,
            PushMetadata::ParameterStore(ps) => &ps.tags,
            PushMetadata::Defaults => return Ok(parsed),
        };
        for reserved in [MANAGED_BY_TAG, OWNER_TAG] {
            if tags.contains_key(reserved) {
                return Err(format!(
                    "spec.tags.{reserved}: set by secretsync itself; it cannot be given"
                ));
            }
        }
        Ok(parsed)
    }

    /// The tags the entry asks for, without the ones secretsync adds.
    pub fn tags(&self) -> BTreeMap<String, String> {
        match self {
            PushMetadata::Defaults => BTreeMap::new(),
            PushMetadata::SecretsManager(sm) => sm.tags.clone(),
            PushMetadata::ParameterStore(ps) => ps.tags.clone(),
        }
    }
}

fn service_name(service: AwsService) -> &'static str {
    match service {
        AwsService::SecretsManager => "SecretsManager",
        AwsService::ParameterStore => "ParameterStore",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, service: AwsService) -> Result<PushMetadata, String> {
        let value: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
        PushMetadata::parse(Some(&value), service)
    }

    #[test]
    fn eso_metadata_for_each_service_parses() {
        let sm = parse(
            "apiVersion: kubernetes.external-secrets.io/v1alpha1\nkind: PushSecretMetadata\nspec:\n  secretPushFormat: string\n  description: db\n  kmsKeyId: alias/k\n  tags: {team: a}\n  resourcePolicy:\n    blockPublicPolicy: true\n    policySourceRef: {kind: ConfigMap, name: p, key: policy.json}\n",
            AwsService::SecretsManager,
        )
        .unwrap();
        let PushMetadata::SecretsManager(sm) = sm else {
            panic!("not Secrets Manager metadata")
        };
        assert_eq!(sm.secret_push_format, Some(SecretPushFormat::String));
        assert_eq!(sm.tags.get("team").map(String::as_str), Some("a"));
        let ps = parse(
            "apiVersion: kubernetes.external-secrets.io/v1alpha1\nkind: PushSecretMetadata\nspec:\n  secretType: SecureString\n  kmsKeyID: alias/k\n  tier: {type: Advanced, policies: [{Type: Expiration, Version: '1.0', Attributes: {Timestamp: '2030-01-01T00:00:00Z'}}]}\n",
            AwsService::ParameterStore,
        )
        .unwrap();
        let PushMetadata::ParameterStore(ps) = ps else {
            panic!("not Parameter Store metadata")
        };
        assert_eq!(ps.secret_type, Some(ParameterType::SecureString));
        assert_eq!(ps.tier.map(|t| t.tier), Some(TierType::Advanced));
    }

    #[test]
    fn unknown_or_other_service_fields_are_named() {
        let error = parse(
            "apiVersion: kubernetes.external-secrets.io/v1alpha1\nkind: PushSecretMetadata\nspec: {secretType: SecureString}\n",
            AwsService::SecretsManager,
        )
        .unwrap_err();
        assert!(error.contains("secretType"), "{error}");
        assert!(error.contains("SecretsManager"), "{error}");
        let error = parse(
            "apiVersion: kubernetes.external-secrets.io/v1alpha1\nkind: Other\n",
            AwsService::ParameterStore,
        )
        .unwrap_err();
        assert!(error.starts_with("kind:"), "{error}");
        let error = parse(
            "apiVersion: kubernetes.external-secrets.io/v1alpha1\nkind: PushSecretMetadata\nspec: {tags: {managed-by: me}}\n",
            AwsService::ParameterStore,
        )
        .unwrap_err();
        assert!(error.contains("spec.tags.managed-by"), "{error}");
    }
}
