//! `ExternalSecret`: which remote values make up which Kubernetes Secret.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::{dns_subdomain_problem, secret_key_problem};
use super::{Condition, FieldErrors, GoDuration, SyncWindows};

/// The pattern a `secretKey` must match: Kubernetes' rule for Secret keys
/// (letters, digits, `-`, `_`, `.`; not `.`, `..` or starting with `..`).
pub const SECRET_KEY_PATTERN: &str = r"^([-_a-zA-Z0-9]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$";
/// The pattern of an object name such as a Secret's (lowercase RFC 1123 subdomain).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

// Each `printcolumn(...)` repeats `name`/`type_`/`json_path`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "secretsync.io",
    version = "v1",
    kind = "ExternalSecret",
    doc = "Which remote values (AWS Secrets Manager, SSM Parameter Store, fake) make up which Kubernetes Secret.",
    namespaced,
    status = "ExternalSecretStatus",
    shortname = "es",
    category = "secretsync",
    printcolumn(
        name = "Store",
        type_ = "string",
        json_path = ".spec.secretStoreRef.name"
    ),
    printcolumn(
        name = "Refresh",
        type_ = "string",
        json_path = ".spec.refreshInterval"
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
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretSpec {
    /// How often values are read again, as a Go duration (`1h`, `15m`); `0` reads once.
    #[serde(default = "default_refresh_interval")]
    #[schemars(extend("default" = "1h"))]
    pub refresh_interval: GoDuration,
    #[serde(default)]
    pub refresh_policy: RefreshPolicy,
    /// When periodic refreshes may happen (evaluated in UTC). First syncs,
    /// spec changes and force-syncs are never held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_windows: Option<SyncWindows>,
    /// The store `data` and `dataFrom` entries read; may be left out when
    /// every entry is a `dataFrom[].sourceRef.generatorRef`.
    #[serde(default)]
    pub secret_store_ref: SecretStoreRef,
    #[serde(default)]
    pub target: ExternalSecretTarget,
    /// One Secret key per remote value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<ExternalSecretData>,
    /// Many Secret keys from one remote value (`extract`) or many (`find`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_from: Vec<ExternalSecretDataFrom>,
}

fn default_refresh_interval() -> GoDuration {
    GoDuration::from_secs(3600)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RefreshPolicy {
    /// Every `refreshInterval`.
    #[default]
    Periodic,
    /// Only when the ExternalSecret's spec, labels or annotations change.
    OnChange,
    /// Once, when the Secret is created; never updated afterwards.
    CreatedOnce,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretStoreRef {
    pub name: String,
    #[serde(default)]
    pub kind: StoreKind,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum StoreKind {
    #[default]
    SecretStore,
    ClusterSecretStore,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretTarget {
    /// Name of the Secret; defaults to the ExternalSecret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub name: Option<String>,
    #[serde(default)]
    pub creation_policy: CreationPolicy,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CreationPolicy {
    /// Create the Secret and own it: it goes away with the ExternalSecret.
    #[default]
    Owner,
    /// Create the Secret but leave it behind when the ExternalSecret goes.
    Orphan,
    /// Write only this ExternalSecret's keys into a Secret that already exists.
    Merge,
    /// Do not write a Secret at all.
    None,
    /// Create the Secret if it is missing (owned by no one, left behind when
    /// the ExternalSecret goes); if it exists, write this ExternalSecret's
    /// keys into it and keep the others (ESO v1's policy of that name).
    CreateOrMerge,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the Secret as it is when remote values disappear.
    #[default]
    Retain,
    /// Delete the Secret when every remote value is gone.
    Delete,
    /// Remove only the keys whose remote value is gone.
    Merge,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretTemplate {
    /// Secret type; `Opaque` when unset.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Only `v2` (Go templates with sprig-style functions) is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<TemplateEngineVersion>,
    #[serde(default)]
    pub metadata: TemplateMetadata,
    /// Secret key -> Go template rendered with the fetched values (`{{ .key }}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_from: Vec<TemplateFrom>,
    #[serde(default)]
    pub merge_policy: TemplateMergePolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateEngineVersion {
    #[serde(rename = "v2")]
    V2,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateMergePolicy {
    /// The Secret holds only what the templates produce.
    #[default]
    Replace,
    /// The Secret holds the fetched values, with templated keys on top.
    Merge,
}

/// Templates kept outside the ExternalSecret: keys of a ConfigMap or Secret of its
/// namespace, or a literal.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TemplateRef>,
    /// A template whose output is a YAML map of keys to values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    #[serde(default)]
    pub target: TemplateTarget,
    /// How each value these templates produce is decoded before it is stored,
    /// as ESO does (`decoded: SGVsbG8=` with `Base64` stores `Hello`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_decoding_strategy: Option<DecodingStrategy>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRef {
    pub name: String,
    pub items: Vec<TemplateRefItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRefItem {
    pub key: String,
    #[serde(default)]
    pub template_as: TemplateScope,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateScope {
    /// The item's key names the Secret key; its value is the template.
    #[default]
    Values,
    /// The rendered template is a YAML map of Secret keys to values.
    KeysAndValues,
}

/// Where a `templateFrom` entry's output goes. Spelled in any case, as ESO
/// matches it (`annotations`, `Annotations`, `ANNOTATIONS`); empty means `Data`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TemplateTarget {
    #[default]
    Data,
    Labels,
    Annotations,
}

impl TemplateTarget {
    const NAMES: [(&'static str, TemplateTarget); 3] = [
        ("Data", TemplateTarget::Data),
        ("Labels", TemplateTarget::Labels),
        ("Annotations", TemplateTarget::Annotations),
    ];

    /// `^...$` with every letter of the three names in either case: the API
    /// server's patterns have no case-insensitive flag.
    fn pattern() -> String {
        let any_case = |name: &str| {
            name.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
                .collect::<String>()
        };
        let names: Vec<String> = Self::NAMES.iter().map(|(n, _)| any_case(n)).collect();
        format!("^({})?$", names.join("|"))
    }
}

impl Serialize for TemplateTarget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let name = Self::NAMES
            .iter()
            .find(|(_, t)| t == self)
            .map_or("Data", |(n, _)| n);
        serializer.serialize_str(name)
    }
}

impl<'de> Deserialize<'de> for TemplateTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(TemplateTarget::Data);
        }
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&text))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                serde::de::Error::invalid_value(
                    serde::de::Unexpected::Str(&text),
                    &"one of Data, Labels, Annotations (any case)",
                )
            })
    }
}

impl JsonSchema for TemplateTarget {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TemplateTarget".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Data, Labels or Annotations, in any case; empty means Data.",
            "pattern": Self::pattern(),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretData {
    /// The key in the Secret.
    #[schemars(regex(pattern = SECRET_KEY_PATTERN), length(max = 253))]
    pub secret_key: String,
    pub remote_ref: RemoteRef,
}

/// A remote value: its key, optionally a version and a JSON property inside it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteRef {
    pub key: String,
    /// Dotted path into a JSON value: `db.host`, `hosts.0`; `\.` escapes a dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// Provider-specific version: a stage or `uuid/<id>` (Secrets Manager), a
    /// number or label (Parameter Store), or the fake provider's `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub decoding_strategy: DecodingStrategy,
    /// For `extract` without `rewrite`: how its field names become keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// `Fetch`: the secret's (or parameter's) tags instead of its value, as
    /// a JSON object; `property` picks one tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_policy: Option<MetadataPolicy>,
    /// `Fail`: a value holding a NUL byte (after decoding) fails the sync
    /// instead of landing in the Secret. Unset is `Ignore`, as in ESO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<NullBytePolicy>,
}

/// What to do with a value that holds NUL bytes: most often binary data
/// landed in a text secret by mistake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NullBytePolicy {
    /// Keep it as it is (binary data on purpose).
    #[default]
    Ignore,
    /// Refuse it: the sync fails naming the reference, the Secret stays.
    Fail,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DecodingStrategy {
    /// Use the value as it is.
    #[default]
    None,
    /// Standard base64, padded.
    Base64,
    /// URL-safe base64, padded.
    #[serde(rename = "Base64URL")]
    Base64Url,
    /// Base64, else URL-safe base64, else the value as it is.
    Auto,
}

/// How `extract` and `find` turn remote names into Secret keys (when no
/// `rewrite` is given), for characters a key may not hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConversionStrategy {
    /// Each becomes `_`: `app/db` -> `app_db`.
    #[default]
    Default,
    /// Each becomes `_U<hex code point>_`: `app/db` -> `app_U002f_db`, so
    /// names that differ only there stay apart.
    Unicode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MetadataPolicy {
    /// The value.
    None,
    /// The tags.
    Fetch,
}

/// One `dataFrom` entry: exactly one of `extract`, `find` or
/// `sourceRef.generatorRef`, then `rewrite`s.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretDataFrom {
    /// ESO's `sourceRef`: only `generatorRef` is supported (values made by a
    /// generator, each of its output keys a Secret key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
    /// Every field of one JSON object value becomes a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<RemoteRef>,
    /// Every remote secret matching becomes a key (named after the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<FindRef>,
    /// Applied in order to the keys `extract` or `find` produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<Rewrite>,
}

/// Where one `dataFrom` entry's values come from instead of the ExternalSecret's store.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceRef {
    /// ESO's per-entry store: not supported (refused, naming this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<SecretStoreRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// A generator of the ExternalSecret's namespace, or a ClusterGenerator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorRef {
    /// `generators.secretsync.io/v1alpha1` or ESO's
    /// `generators.external-secrets.io/v1alpha1`; unset: the generator group
    /// that goes with the ExternalSecret's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Password, UUID, ECRAuthorizationToken, STSSessionToken or ClusterGenerator.
    pub kind: String,
    pub name: String,
}

impl GeneratorRef {
    fn validate(&self, field: &str, errors: &mut FieldErrors) {
        if self.name.is_empty() {
            errors.push(format!("{field}.name"), "must not be empty");
        }
        if !super::GENERATOR_KINDS.contains(&self.kind.as_str()) {
            errors.push(
                format!("{field}.kind"),
                format!(
                    "{:?} is not a generator kind secretsync runs ({})",
                    self.kind,
                    super::GENERATOR_KINDS.join(", ")
                ),
            );
        }
        if let Some(api_version) = &self.api_version {
            let known = [super::GENERATOR_GROUP, super::ESO_GENERATOR_GROUP]
                .map(|group| format!("{group}/{}", super::GENERATOR_VERSION));
            if !known.contains(api_version) {
                errors.push(
                    format!("{field}.apiVersion"),
                    format!("{api_version:?} is not one of {}", known.join(", ")),
                );
            }
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindRef {
    /// Only remote names under this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Only remote secrets carrying all these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub decoding_strategy: DecodingStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// As on `remoteRef`, for every value found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<NullBytePolicy>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindName {
    pub regexp: String,
}

/// Exactly one of `regexp` or `transform`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
}

/// Replaces every match of `source` in a key with `target` (`$1`, `${name}`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewriteRegexp {
    pub source: String,
    pub target: String,
}

/// A template producing the new key from the old one, given as `.value`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewriteTransform {
    pub template: String,
}

/// What the controller last did. Never holds a secret value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// `resourceVersion` of the Secret last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Content hash of the Secret last written (type, metadata, data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Hash of the spec, labels and annotations last synced: a change (such as a
    /// new `secretsync.io/force-sync` value) triggers a refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
}

impl ExternalSecret {
    /// Name of the Secret this ExternalSecret writes.
    pub fn target_name(&self) -> &str {
        self.spec
            .target
            .name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

impl ExternalSecretSpec {
    /// Checks what the schema cannot express. Reports every problem, each with
    /// the path of its field. Templates are checked by the sync core.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if self.secret_store_ref.name.is_empty() && self.reads_a_store() {
            errors.push("spec.secretStoreRef.name", "must not be empty");
        }
        self.target.validate(&mut errors);
        if self.data.is_empty() && self.data_from.is_empty() {
            errors.push("spec", "one of data or dataFrom is required");
        }
        if let Some(windows) = &self.sync_windows
            && let Err(problems) = super::SyncWindowSchedule::compile(windows)
        {
            errors.0.extend(problems.0);
        }
        let mut seen = BTreeSet::new();
        for (i, item) in self.data.iter().enumerate() {
            let field = format!("spec.data[{i}]");
            if let Some(problem) = secret_key_problem(&item.secret_key) {
                errors.push(
                    format!("{field}.secretKey"),
                    format!("{:?} is not a valid Secret key: {problem}", item.secret_key),
                );
            } else if !seen.insert(item.secret_key.as_str()) {
                errors.push(
                    format!("{field}.secretKey"),
                    format!("duplicate secretKey {:?}", item.secret_key),
                );
            }
            item.remote_ref
                .validate(&format!("{field}.remoteRef"), &mut errors);
        }
        for (i, item) in self.data_from.iter().enumerate() {
            item.validate(&format!("spec.dataFrom[{i}]"), &mut errors);
        }
        errors.into_result()
    }
}

impl ExternalSecretSpec {
    /// Whether some entry reads the store (every entry but generators').
    pub fn reads_a_store(&self) -> bool {
        !self.data.is_empty() || self.data_from.iter().any(|d| d.generator_ref().is_none())
    }

    /// Whether some `dataFrom` entry is a generator's.
    pub fn has_generators(&self) -> bool {
        self.data_from.iter().any(|d| d.generator_ref().is_some())
    }
}

impl ExternalSecretTarget {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(name) = &self.name
            && let Some(problem) = dns_subdomain_problem(name)
        {
            errors.push(
                "spec.target.name",
                format!("{name:?} is not a valid Secret name: it {problem}"),
            );
        }
        match (self.creation_policy, self.deletion_policy) {
            (CreationPolicy::Owner, _) => {}
            (_, DeletionPolicy::Delete) => errors.push(
                "spec.target.deletionPolicy",
                "Delete requires creationPolicy Owner: secretsync deletes only Secrets it owns",
            ),
            (CreationPolicy::None, DeletionPolicy::Merge) => errors.push(
                "spec.target.deletionPolicy",
                "Merge cannot be combined with creationPolicy None: there is no Secret to merge into",
            ),
            _ => {}
        }
        let Some(template) = &self.template else {
            return;
        };
        for (i, from) in template.template_from.iter().enumerate() {
            let set = [
                from.config_map.is_some(),
                from.secret.is_some(),
                from.literal.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                errors.push(
                    format!("spec.target.template.templateFrom[{i}]"),
                    "exactly one of configMap, secret or literal is required",
                );
            }
            let refs = [("configMap", &from.config_map), ("secret", &from.secret)];
            for (kind, template_ref) in refs {
                if let Some(template_ref) = template_ref
                    && template_ref.items.is_empty()
                {
                    errors.push(
                        format!("spec.target.template.templateFrom[{i}].{kind}.items"),
                        "must list at least one key",
                    );
                }
            }
        }
    }
}

impl RemoteRef {
    fn validate(&self, field: &str, errors: &mut FieldErrors) {
        if self.key.is_empty() {
            errors.push(format!("{field}.key"), "must not be empty");
        }
        if self.property.as_deref() == Some("") {
            errors.push(format!("{field}.property"), "must not be empty when set");
        }
    }
}

impl ExternalSecretDataFrom {
    /// The generator this entry's values come from, if any.
    pub fn generator_ref(&self) -> Option<&GeneratorRef> {
        self.source_ref.as_ref()?.generator_ref.as_ref()
    }

    fn validate(&self, field: &str, errors: &mut FieldErrors) {
        if let Some(source) = &self.source_ref {
            let source_field = format!("{field}.sourceRef");
            if source.store_ref.is_some() {
                errors.push(
                    format!("{source_field}.storeRef"),
                    "is not supported by secretsync: name the store in spec.secretStoreRef",
                );
            }
            match &source.generator_ref {
                Some(generator) => {
                    if self.extract.is_some() || self.find.is_some() {
                        errors.push(
                            field,
                            "sourceRef.generatorRef cannot be combined with extract or find",
                        );
                    }
                    generator.validate(&format!("{source_field}.generatorRef"), errors);
                }
                None if source.store_ref.is_none() => {
                    errors.push(source_field, "generatorRef is required")
                }
                None => {}
            }
        } else {
            match (&self.extract, &self.find) {
                (Some(extract), None) => extract.validate(&format!("{field}.extract"), errors),
                (None, Some(find)) => find.validate(&format!("{field}.find"), errors),
                _ => errors.push(
                    field,
                    "exactly one of extract or find is required (or sourceRef.generatorRef)",
                ),
            }
        }
        for (i, rewrite) in self.rewrite.iter().enumerate() {
            let field = format!("{field}.rewrite[{i}]");
            match (&rewrite.regexp, &rewrite.transform) {
                (Some(regexp), None) => {
                    if let Err(e) = regex::Regex::new(&regexp.source) {
                        errors.push(
                            format!("{field}.regexp.source"),
                            format!("invalid regular expression: {e}"),
                        );
                    }
                }
                (None, Some(_)) => {}
                _ => errors.push(field, "exactly one of regexp or transform is required"),
            }
        }
    }
}

impl FindRef {
    fn validate(&self, field: &str, errors: &mut FieldErrors) {
        if self.path.is_none() && self.name.is_none() && self.tags.is_empty() {
            errors.push(field, "at least one of path, name or tags is required");
        }
        if let Some(name) = &self.name
            && let Err(e) = regex::Regex::new(&name.regexp)
        {
            errors.push(
                format!("{field}.name.regexp"),
                format!("invalid regular expression: {e}"),
            );
        }
    }
}
