//! `SecretStore` and `ClusterSecretStore`: where values come from and how to
//! authenticate there. Same field names as ESO v1 (AWS and fake subset).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, FieldErrors, GoDuration};

/// A store usable by ExternalSecrets of its own namespace only.
// Each `printcolumn(...)` repeats `name`/`type_`/`json_path`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "secretsync.io",
    version = "v1",
    kind = "SecretStore",
    doc = "Where values come from and how to authenticate there, for ExternalSecrets of this namespace.",
    namespaced,
    status = "SecretStoreStatus",
    shortname = "ss",
    category = "secretsync",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretStoreSpec {
    /// The provider this store reads from: exactly one of `aws` or `fake`.
    pub provider: StoreProvider,
    /// How often the store's credentials are re-checked, in seconds (ESO's meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<u32>,
    /// How the store's AWS calls are retried (ESO's `retrySettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_settings: Option<StoreRetrySettings>,
}

/// A store usable from many namespaces, limited by `conditions`.
// Each `printcolumn(...)` repeats `name`/`type_`/`json_path`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "secretsync.io",
    version = "v1",
    kind = "ClusterSecretStore",
    doc = "Where values come from and how to authenticate there, for ExternalSecrets of the namespaces its conditions admit.",
    status = "SecretStoreStatus",
    shortname = "css",
    category = "secretsync",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSecretStoreSpec {
    /// The provider this store reads from: exactly one of `aws` or `fake`.
    pub provider: StoreProvider,
    /// How often the store's credentials are re-checked, in seconds (ESO's meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<u32>,
    /// How the store's AWS calls are retried (ESO's `retrySettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_settings: Option<StoreRetrySettings>,
    /// Which namespaces may use this store. Empty: every namespace. Otherwise a
    /// namespace qualifies when any selector, name or regex of any entry matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterSecretStoreCondition>,
}

/// Namespaces that may use a ClusterSecretStore: by label selector, by name, or
/// by regular expression (unanchored, as in ESO).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSecretStoreCondition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_regexes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Exactly one provider. Providers ESO has and secretsync does not are rejected
/// as unknown fields, never ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fake: Option<FakeProvider>,
    /// The store's `spec.retrySettings`, carried along so that a provider is
    /// built (and rebuilt when they change) with them. Not part of
    /// `spec.provider` as written: see [`SecretStoreSpec::provider_to_build`].
    #[serde(skip)]
    pub retry: Option<StoreRetrySettings>,
}

/// ESO's store `retrySettings`: how the store's AWS calls are retried.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreRetrySettings {
    /// Attempts in all, the first included, as ESO counts them (its AWS
    /// provider's `AddWithMaxAttempts`); 3 when unset. 1 to 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// A fixed wait between attempts (`500ms`, `2s`); unset: the SDK's
    /// exponential backoff with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<GoDuration>,
}

/// Most attempts a store may ask for: beyond it a refresh waits on one
/// failing store for minutes.
pub const MAX_ATTEMPTS: i32 = 20;

impl StoreProvider {
    /// This provider with a store's `spec.retrySettings` carried along.
    /// As it serves `namespace` for the store `store_name` of `store_kind`:
    /// see [`AwsProvider::serving`].
    pub fn serving(&self, namespace: &str, store_name: &str, store_kind: &str) -> StoreProvider {
        StoreProvider {
            aws: self
                .aws
                .as_ref()
                .map(|aws| aws.serving(namespace, store_name, store_kind)),
            ..self.clone()
        }
    }

    fn with_retry(&self, retry: &Option<StoreRetrySettings>) -> StoreProvider {
        StoreProvider {
            retry: retry.clone(),
            ..self.clone()
        }
    }
}

impl StoreRetrySettings {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(n) = self.max_retries
            && !(1..=MAX_ATTEMPTS).contains(&n)
        {
            errors.push(
                "spec.retrySettings.maxRetries",
                format!("{n} is not 1 to {MAX_ATTEMPTS} (attempts in all, the first included)"),
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AwsService {
    SecretsManager,
    ParameterStore,
}

/// AWS Secrets Manager or SSM Parameter Store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsProvider {
    pub service: AwsService,
    pub region: String,
    /// Role to assume last, after `additionalRoles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Roles assumed in order before `role` (role chaining).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_roles: Vec<String>,
    #[serde(
        rename = "externalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_tags: Vec<AwsTag>,
    /// `Simple`: the role is assumed with ESO's session tags `esoNamespace`
    /// (the ExternalSecret's namespace), `esoStoreName` and `esoStoreKind`,
    /// in place of `sessionTags`; `Custom`: those plus `customSessionTags`.
    /// A ClusterSecretStore then has credentials per namespace it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tags_policy: Option<SessionTagsPolicy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_session_tags: BTreeMap<String, String>,
    /// Keys of `sessionTags` passed on to the sessions `role` assumes in
    /// turn (AssumeRole's `TransitiveTagKeys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_tag_keys: Vec<String>,
    /// ESO's deletion settings for secrets it pushes: accepted, and checked
    /// as ESO does; they take effect with PushSecret, which is not served yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_manager: Option<SecretsManagerSettings>,
    /// Prepended to every remote key this store reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionTagsPolicy {
    #[default]
    None,
    Simple,
    Custom,
}

/// The session tags ESO adds under `sessionTagsPolicy: Simple` and `Custom`.
pub const ESO_SESSION_TAG_KEYS: [&str; 3] = ["esoNamespace", "esoStoreName", "esoStoreKind"];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretsManagerSettings {
    #[serde(default)]
    pub force_delete_without_recovery: bool,
    #[serde(default)]
    pub recovery_window_in_days: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsTag {
    pub key: String,
    pub value: String,
}

/// How to get AWS credentials; none set means the pod's own (IRSA, default chain).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<AwsJwtAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AwsSecretRef>,
}

/// IRSA for a chosen ServiceAccount: a TokenRequest exchanged with
/// AssumeRoleWithWebIdentity for the role in its annotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsJwtAuth {
    pub service_account_ref: ServiceAccountSelector,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountSelector {
    pub name: String,
    /// Only a ClusterSecretStore may name another namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Audiences requested besides `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

/// Static keys read from a Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsSecretRef {
    #[serde(rename = "accessKeyIDSecretRef")]
    pub access_key_id_secret_ref: SecretKeySelector,
    pub secret_access_key_secret_ref: SecretKeySelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_secret_ref: Option<SecretKeySelector>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    pub name: String,
    #[schemars(regex(pattern = super::SECRET_KEY_PATTERN), length(max = 253))]
    pub key: String,
    /// Only a ClusterSecretStore may name another namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Values given inline, as ESO's Fake provider: for trying secretsync without AWS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FakeProvider {
    #[serde(default)]
    pub data: Vec<FakeProviderData>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FakeProviderData {
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What both store kinds share; the sync core and providers see stores through it.
pub trait Store {
    fn provider(&self) -> &StoreProvider;
    /// The namespace its references resolve in: `Some` for a SecretStore.
    fn own_namespace(&self) -> Option<&str>;
}

impl Store for SecretStore {
    fn provider(&self) -> &StoreProvider {
        &self.spec.provider
    }
    fn own_namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }
}

impl Store for ClusterSecretStore {
    fn provider(&self) -> &StoreProvider {
        &self.spec.provider
    }
    fn own_namespace(&self) -> Option<&str> {
        None
    }
}

impl StoreProvider {
    /// Checks the provider block; `namespace` is the store's own namespace for a
    /// namespaced SecretStore, whose references may not leave it.
    pub fn validate(&self, namespace: Option<&str>) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        match (&self.aws, &self.fake) {
            (Some(aws), None) => aws.validate(namespace, &mut errors),
            (None, Some(fake)) => fake.validate(&mut errors),
            (None, None) => errors.push(
                "spec.provider",
                "exactly one provider is required (supported: aws, fake)",
            ),
            (Some(_), Some(_)) => errors.push(
                "spec.provider",
                "exactly one provider is allowed, found both aws and fake",
            ),
        }
        errors.into_result()
    }
}

impl AwsProvider {
    /// Whether its session tags name the namespace served
    /// (`sessionTagsPolicy: Simple` or `Custom`).
    pub fn tags_name_the_namespace(&self) -> bool {
        matches!(
            self.session_tags_policy,
            Some(SessionTagsPolicy::Simple | SessionTagsPolicy::Custom)
        )
    }

    /// This provider as it serves `namespace` for the store `store_name` of
    /// `store_kind`: under `sessionTagsPolicy` `Simple` or `Custom`, its
    /// session tags are ESO's (plus `customSessionTags` for `Custom`, empty
    /// ones left out) in place of `sessionTags`, as ESO sets them.
    pub fn serving(&self, namespace: &str, store_name: &str, store_kind: &str) -> AwsProvider {
        let mut tags = BTreeMap::new();
        match self.session_tags_policy {
            None | Some(SessionTagsPolicy::None) => return self.clone(),
            Some(SessionTagsPolicy::Simple) => {}
            Some(SessionTagsPolicy::Custom) => {
                for (key, value) in &self.custom_session_tags {
                    if !key.is_empty() && !value.is_empty() {
                        tags.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        for (key, value) in ESO_SESSION_TAG_KEYS
            .into_iter()
            .zip([namespace, store_name, store_kind])
        {
            tags.insert(key.to_string(), value.to_string());
        }
        AwsProvider {
            session_tags: tags
                .into_iter()
                .map(|(key, value)| AwsTag { key, value })
                .collect(),
            ..self.clone()
        }
    }

    fn validate(&self, namespace: Option<&str>, errors: &mut FieldErrors) {
        let base = "spec.provider.aws";
        if self.region.trim().is_empty() {
            errors.push(format!("{base}.region"), "must not be empty");
        }
        let roles = self
            .additional_roles
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("{base}.additionalRoles[{i}]"), r));
        let role = self.role.iter().map(|r| (format!("{base}.role"), r));
        for (field, arn) in roles.chain(role) {
            if !(arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/")) {
                errors.push(
                    field,
                    format!("{arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                );
            }
        }
        for (i, tag) in self.session_tags.iter().enumerate() {
            if tag.key.is_empty() {
                errors.push(format!("{base}.sessionTags[{i}].key"), "must not be empty");
            }
        }
        for key in self.custom_session_tags.keys() {
            if ESO_SESSION_TAG_KEYS.contains(&key.as_str()) {
                errors.push(
                    format!("{base}.customSessionTags"),
                    format!("{key:?} is added by sessionTagsPolicy itself: customSessionTags cannot hold esoNamespace, esoStoreName or esoStoreKind"),
                );
            }
        }
        for (i, key) in self.transitive_tag_keys.iter().enumerate() {
            if key.is_empty() {
                errors.push(
                    format!("{base}.transitiveTagKeys[{i}]"),
                    "must not be empty",
                );
            }
        }
        if let Some(settings) = &self.secrets_manager {
            let window = settings.recovery_window_in_days;
            if settings.force_delete_without_recovery && window != 0 {
                errors.push(
                    format!("{base}.secretsManager"),
                    "forceDeleteWithoutRecovery and recoveryWindowInDays cannot be combined",
                );
            } else if window != 0 && !(7..=30).contains(&window) {
                errors.push(
                    format!("{base}.secretsManager.recoveryWindowInDays"),
                    "must be between 7 and 30 (days)",
                );
            }
        }
        let Some(auth) = &self.auth else { return };
        let mut foreign = |field: String, other: &Option<String>| {
            if let (Some(own), Some(other)) = (namespace, other)
                && own != other
            {
                errors.push(
                    field,
                    format!(
                        "a SecretStore in namespace {own:?} cannot reference namespace {other:?}"
                    ),
                );
            }
        };
        if let Some(jwt) = &auth.jwt {
            foreign(
                format!("{base}.auth.jwt.serviceAccountRef.namespace"),
                &jwt.service_account_ref.namespace,
            );
        }
        if let Some(secret_ref) = &auth.secret_ref {
            let refs = [
                (
                    "accessKeyIDSecretRef",
                    Some(&secret_ref.access_key_id_secret_ref),
                ),
                (
                    "secretAccessKeySecretRef",
                    Some(&secret_ref.secret_access_key_secret_ref),
                ),
                (
                    "sessionTokenSecretRef",
                    secret_ref.session_token_secret_ref.as_ref(),
                ),
            ];
            for (name, selector) in refs {
                if let Some(selector) = selector {
                    foreign(
                        format!("{base}.auth.secretRef.{name}.namespace"),
                        &selector.namespace,
                    );
                }
            }
        }
        if auth.jwt.is_some() && auth.secret_ref.is_some() {
            errors.push(
                format!("{base}.auth"),
                "set either jwt or secretRef, not both",
            );
        }
    }
}

impl FakeProvider {
    fn validate(&self, errors: &mut FieldErrors) {
        let mut seen = BTreeMap::new();
        for (i, entry) in self.data.iter().enumerate() {
            if entry.key.is_empty() {
                errors.push(
                    format!("spec.provider.fake.data[{i}].key"),
                    "must not be empty",
                );
            }
            if let Some(first) = seen.insert((&entry.key, &entry.version), i) {
                errors.push(
                    format!("spec.provider.fake.data[{i}]"),
                    format!(
                        "key {:?} with this version is already given at data[{first}]",
                        entry.key
                    ),
                );
            }
        }
    }
}

impl SecretStoreSpec {
    /// The provider and the retry settings: every field error at once.
    pub fn validate(&self, namespace: Option<&str>) -> Result<(), FieldErrors> {
        let mut errors = match self.provider.validate(namespace) {
            Ok(()) => FieldErrors::default(),
            Err(errors) => errors,
        };
        if let Some(retry) = &self.retry_settings {
            retry.validate(&mut errors);
        }
        errors.into_result()
    }

    /// What a provider is built from: `spec.provider` with `spec.retrySettings`.
    pub fn provider_to_build(&self) -> StoreProvider {
        self.provider.with_retry(&self.retry_settings)
    }
}

impl ClusterSecretStoreSpec {
    /// What a provider is built from: `spec.provider` with `spec.retrySettings`.
    pub fn provider_to_build(&self) -> StoreProvider {
        self.provider.with_retry(&self.retry_settings)
    }

    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = match self.provider.validate(None) {
            Ok(()) => FieldErrors::default(),
            Err(errors) => errors,
        };
        if let Some(retry) = &self.retry_settings {
            retry.validate(&mut errors);
        }
        for (i, condition) in self.conditions.iter().enumerate() {
            if let Some(selector) = &condition.namespace_selector {
                super::validate_label_selector(
                    selector,
                    &format!("spec.conditions[{i}].namespaceSelector"),
                    &mut errors,
                );
            }
            for (j, pattern) in condition.namespace_regexes.iter().enumerate() {
                if let Err(e) = regex::Regex::new(pattern) {
                    errors.push(
                        format!("spec.conditions[{i}].namespaceRegexes[{j}]"),
                        format!("invalid regular expression: {e}"),
                    );
                }
            }
        }
        errors.into_result()
    }
}
