//! What to mount, in the AWS provider's (ASCP's) SecretProviderClass syntax:
//! `region`, `failoverRegion`, `pathTranslation` and `objects`, a list of
//! `{objectName, objectType, objectAlias, objectVersion, objectVersionLabel,
//! filePermission, jmesPath[]{path, objectAlias, filePermission}, failoverObject}`.
//! The agent reads it from its config file; the CSI provider from the
//! SecretProviderClass parameters the driver sends. Values are fetched through
//! the providers (batched and de-duplicated there), then turned into files:
//! one per object, plus one per `jmesPath` entry.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::files::{FileName, FileSet, SecretFile, parse_mode};
use crate::SecretValue;
use crate::api::{AwsAuth, AwsProvider, AwsService, StoreKind, StoreProvider};
use crate::provider::{
    ApiFailure, FetchResults, Fetched, ProviderError, Providers, RemoteRequest, StoreIdentity,
};

/// The mount's parameters, checked: every object resolved to a service, a
/// request and file names, every JMESPath compiled.
#[derive(Clone, Debug)]
pub struct Objects {
    region: String,
    failover_region: Option<String>,
    objects: Vec<Resolved>,
    /// Object keys ASCP ignores (`objects[0].foo`), accepted and named.
    ignored: Vec<String>,
}

/// A parameter problem, naming the parameter or object field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParametersError(pub String);

/// Why no files could be produced: every object that failed, each naming the
/// object and the reason, never a value; and whether asking again may help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .failures.join("; "))]
pub struct FetchError {
    pub failures: Vec<String>,
    /// The most hopeful kind among the failures: `Transient` when any one
    /// of them may pass on a retry.
    pub kind: FailureKind,
}

/// What kind of failure kept an object from its file, the most hopeful
/// first: a retry can only help with the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// AWS throttled, failed (5xx), or could not be reached.
    Transient,
    /// The identity may not read it, or its credentials were refused.
    Denied,
    /// No such secret, parameter or version.
    NotFound,
    /// The request or the value does not fit (a bad name, a jmesPath that
    /// matches nothing, a value that is not JSON).
    Invalid,
}

impl FailureKind {
    pub fn of(error: &ProviderError) -> Self {
        match error {
            ProviderError::NotFound { .. } | ProviderError::VersionNotFound { .. } => {
                FailureKind::NotFound
            }
            ProviderError::Api { failure, .. } => match failure {
                ApiFailure::Transient => FailureKind::Transient,
                ApiFailure::Denied => FailureKind::Denied,
                ApiFailure::Rejected => FailureKind::Invalid,
            },
            _ => FailureKind::Invalid,
        }
    }
}

impl FetchError {
    /// Failures of one kind.
    pub fn new(failures: Vec<String>, kind: FailureKind) -> Self {
        Self { failures, kind }
    }
}

/// `objects` as written: a YAML string (SecretProviderClass parameters are
/// strings) or, in the agent's config, a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum ObjectsText {
    Text(String),
    List(Vec<serde_json::Value>),
}

/// Keys ASCP does not read are ignored there (Go's YAML decoding drops
/// them): accepted here too, and named in a warning.
#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a mapping with objectName, objectType and the other object keys"
)]
struct ObjectSpec {
    #[serde(default)]
    object_name: String,
    #[serde(default)]
    object_type: Option<String>,
    #[serde(default)]
    object_alias: Option<String>,
    #[serde(default)]
    object_version: Option<String>,
    #[serde(default)]
    object_version_label: Option<String>,
    #[serde(default)]
    file_permission: Option<String>,
    #[serde(default)]
    jmes_path: Vec<JmesPathSpec>,
    #[serde(default)]
    failover_object: Option<FailoverSpec>,
    #[serde(flatten)]
    ignored: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a mapping with path, objectAlias and filePermission"
)]
struct JmesPathSpec {
    #[serde(default)]
    path: String,
    #[serde(default)]
    object_alias: String,
    #[serde(default)]
    file_permission: Option<String>,
    #[serde(flatten)]
    ignored: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a mapping with objectName, objectVersion and objectVersionLabel"
)]
struct FailoverSpec {
    #[serde(default)]
    object_name: String,
    #[serde(default)]
    object_version: Option<String>,
    #[serde(default)]
    object_version_label: Option<String>,
    #[serde(flatten)]
    ignored: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Clone, Debug)]
struct Resolved {
    /// `objects[i]` and the object's name, for messages.
    label: String,
    service: AwsService,
    request: RemoteRequest,
    failover: Option<RemoteRequest>,
    file: FileName,
    mode: u32,
    jmes: Vec<Jmes>,
}

#[derive(Clone, Debug)]
struct Jmes {
    path: String,
    file: FileName,
    mode: u32,
}

/// The parameter names of ASCP this module reads. `usePodIdentity` and
/// `preferredAddressType` are the caller's business (credentials).
pub const REGION: &str = "region";
pub const FAILOVER_REGION: &str = "failoverRegion";
pub const PATH_TRANSLATION: &str = "pathTranslation";
pub const OBJECTS: &str = "objects";

impl Objects {
    /// From SecretProviderClass-style parameters (every value a string).
    /// `default_region` stands in for a missing `region` (the process's own).
    pub fn from_parameters(
        parameters: &BTreeMap<String, String>,
        default_region: Option<&str>,
        default_mode: u32,
    ) -> Result<Self, ParametersError> {
        let objects = parameters
            .get(OBJECTS)
            .ok_or_else(|| ParametersError(format!("parameters.{OBJECTS} is required")))?;
        Self::new(
            parameters.get(REGION).map(String::as_str),
            parameters.get(FAILOVER_REGION).map(String::as_str),
            parameters.get(PATH_TRANSLATION).map(String::as_str),
            &serde_json::Value::String(objects.clone()),
            default_region,
            default_mode,
        )
    }

    /// From the parts; `objects` is a YAML string or a list.
    pub fn new(
        region: Option<&str>,
        failover_region: Option<&str>,
        path_translation: Option<&str>,
        objects: &serde_json::Value,
        default_region: Option<&str>,
        default_mode: u32,
    ) -> Result<Self, ParametersError> {
        let fail = |m: String| Err(ParametersError(m));
        let region = match region.filter(|r| !r.is_empty()).or(default_region) {
            Some(region) => region.to_string(),
            None => {
                return fail(format!(
                    "parameters.{REGION} is required (no default region is configured: set AWS_REGION)"
                ));
            }
        };
        let failover_region = failover_region
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        if failover_region.as_deref() == Some(region.as_str()) {
            return fail(format!(
                "parameters.{FAILOVER_REGION}: {region:?} cannot be the same as the primary region"
            ));
        }
        let translate = match path_translation {
            None | Some("") => Some('_'),
            Some(t) if t.eq_ignore_ascii_case("false") => None,
            Some(t) => {
                let mut chars = t.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c != '/' && c != '\0' => Some(c),
                    _ => {
                        return fail(format!(
                            "parameters.{PATH_TRANSLATION}: {t:?} must be \"False\" or a single character other than \"/\""
                        ));
                    }
                }
            }
        };
        let list = match serde_json::from_value::<ObjectsText>(objects.clone()) {
            Ok(ObjectsText::List(list)) => list,
            Ok(ObjectsText::Text(text)) => {
                serde_yaml_ng::from_str::<Option<Vec<serde_json::Value>>>(&text)
                    .map_err(|e| {
                        ParametersError(format!("parameters.{OBJECTS}: not a YAML list: {e}"))
                    })?
                    .unwrap_or_default()
            }
            Err(_) => {
                return fail(format!(
                    "parameters.{OBJECTS}: must be a list or a YAML string"
                ));
            }
        };
        if list.is_empty() {
            return fail(format!("parameters.{OBJECTS}: lists no object"));
        }
        let context = Context {
            region: &region,
            failover_region: failover_region.as_deref(),
            translate,
            default_mode,
        };
        let mut resolved = Vec::new();
        let mut ignored = Vec::new();
        let mut duplicates = Duplicates::default();
        for (i, value) in list.into_iter().enumerate() {
            let field = format!("{OBJECTS}[{i}]");
            if value.is_null() {
                return fail(format!("{field} is empty"));
            }
            let spec: ObjectSpec = serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                let at = if path == "." {
                    field.clone()
                } else {
                    format!("{field}.{path}")
                };
                ParametersError(format!("{at}: {}", readable(&e.inner().to_string())))
            })?;
            ignored.extend(spec.ignored.keys().map(|k| format!("{field}.{k}")));
            for (j, entry) in spec.jmes_path.iter().enumerate() {
                ignored.extend(
                    entry
                        .ignored
                        .keys()
                        .map(|k| format!("{field}.jmesPath[{j}].{k}")),
                );
            }
            if let Some(failover) = &spec.failover_object {
                ignored.extend(
                    failover
                        .ignored
                        .keys()
                        .map(|k| format!("{field}.failoverObject.{k}")),
                );
            }
            duplicates.check(&field, &spec)?;
            resolved.push(context.resolve(&field, spec)?);
        }
        // Two objects that land on one file name: ASCP answers both files and
        // the driver writes them in order, so the later one is what the pod
        // sees. The same here, said in the log.
        let mut names: BTreeMap<FileName, String> = BTreeMap::new();
        for object in &resolved {
            let files = std::iter::once(&object.file).chain(object.jmes.iter().map(|j| &j.file));
            for file in files {
                if let Some(earlier) = names.insert(file.clone(), object.label.clone()) {
                    tracing::warn!(
                        file = %file,
                        earlier = %earlier,
                        later = %object.label,
                        "two objects land on one file name: the later one is written, as ASCP does"
                    );
                }
            }
        }
        // A name that is a directory of another (`a` and `a/b`) cannot be both.
        for name in names.keys() {
            let name = name.as_str();
            for (end, _) in name.match_indices('/') {
                let parent = &name[..end];
                if names.keys().any(|n| n.as_str() == parent) {
                    return fail(format!(
                        "file names {parent:?} and {name:?} collide: one would be a directory of the other"
                    ));
                }
            }
        }
        if !ignored.is_empty() {
            tracing::warn!(
                keys = %ignored.join(", "),
                "SecretProviderClass object keys that ASCP ignores are ignored"
            );
        }
        Ok(Self {
            region,
            failover_region,
            objects: resolved,
            ignored,
        })
    }

    /// The primary region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The failover region, if any.
    pub fn failover_region(&self) -> Option<&str> {
        self.failover_region.as_deref()
    }

    /// Object keys ASCP ignores that were given (`objects[0].foo`).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// How many files a successful fetch produces.
    pub fn file_count(&self) -> usize {
        self.objects.iter().map(|o| 1 + o.jmes.len()).sum()
    }

    /// Fetches every object (one batch per service and region) and builds the
    /// files. All or nothing: if any object fails, no file set is returned.
    /// `auth` is how the stores authenticate: `None` for the default chain.
    ///
    /// With a failover region, both regions are asked for every object, at
    /// once, as ASCP asks them: a final answer (not found, denied, refused)
    /// from either fails the object; a passing failure (throttling, 5xx, no
    /// connection) of one leaves the other's value; the primary's value wins
    /// when both have one.
    pub async fn fetch(
        &self,
        providers: &Providers,
        auth: Option<&AwsAuth>,
    ) -> Result<FileSet, FetchError> {
        let primary = self.fetch_from(providers, auth, &self.region, |o| Some(&o.request));
        let failover = async {
            match &self.failover_region {
                Some(region) => {
                    self.fetch_from(providers, auth, region, |o| o.failover.as_ref())
                        .await
                }
                None => Answers::new(),
            }
        };
        let (primary, failover) = futures::join!(Box::pin(primary), Box::pin(failover));
        let objects = self.objects.clone();
        let failover_region = self.failover_region.clone();
        let build = move || build_files(&objects, &primary, &failover, failover_region.as_deref());
        tokio::task::spawn_blocking(build).await.map_err(|e| {
            FetchError::new(
                vec![format!("building the files failed: {e}")],
                FailureKind::Transient,
            )
        })?
    }

    async fn fetch_from(
        &self,
        providers: &Providers,
        auth: Option<&AwsAuth>,
        region: &str,
        pick: impl Fn(&Resolved) -> Option<&RemoteRequest>,
    ) -> Answers {
        let mut by_service: BTreeMap<&'static str, (AwsService, BTreeSet<RemoteRequest>)> =
            BTreeMap::new();
        for object in &self.objects {
            if let Some(request) = pick(object) {
                by_service
                    .entry(service_name(object.service))
                    .or_insert_with(|| (object.service, BTreeSet::new()))
                    .1
                    .insert(request.clone());
            }
        }
        let mut answers = Answers::new();
        for (name, (service, requests)) in by_service {
            let (identity, spec) = store_for(service, region, auth);
            let fetched: FetchResults = match providers.for_store(&identity, &spec).await {
                Ok(provider) => provider.fetch_batch(&requests).await,
                Err(e) => requests
                    .iter()
                    .map(|r| (r.clone(), Err(e.clone())))
                    .collect(),
            };
            answers.extend(fetched.into_iter().map(|(r, v)| ((name, r), v)));
        }
        answers
    }
}

/// Answers by (service name, request).
type Answers = BTreeMap<(&'static str, RemoteRequest), Result<Fetched, ProviderError>>;

fn service_name(service: AwsService) -> &'static str {
    match service {
        AwsService::SecretsManager => "secretsmanager",
        AwsService::ParameterStore => "ssmparameter",
    }
}

/// The store a (service, region) pair stands for, authenticating with `auth`
/// (the default chain when `None`), no prefix.
fn store_for(
    service: AwsService,
    region: &str,
    auth: Option<&AwsAuth>,
) -> (StoreIdentity, StoreProvider) {
    let identity = StoreIdentity {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: format!("{}-{region}", service_name(service)),
        tenant: None,
    };
    let spec = StoreProvider {
        aws: Some(AwsProvider {
            service,
            region: region.to_string(),
            role: None,
            additional_roles: Vec::new(),
            external_id: None,
            session_tags: Vec::new(),
            session_tags_policy: None,
            custom_session_tags: Default::default(),
            transitive_tag_keys: Vec::new(),
            secrets_manager: None,
            prefix: None,
            auth: auth.cloned(),
        }),
        fake: None,
        retry: None,
    };
    (identity, spec)
}

/// ASCP's checks of objects that name one secret twice: the same
/// `objectAlias` (or `jmesPath` alias) twice, or the same `objectName` with
/// neither alias nor version label to tell the two apart. Each object is
/// compared with the last one of its name, as ASCP compares.
#[derive(Default)]
struct Duplicates {
    names: BTreeMap<String, (String, String)>,
    aliases: BTreeSet<String>,
}

impl Duplicates {
    fn check(&mut self, field: &str, spec: &ObjectSpec) -> Result<(), ParametersError> {
        let name = &spec.object_name;
        let alias = spec.object_alias.clone().unwrap_or_default();
        let label = spec.object_version_label.clone().unwrap_or_default();
        let fail = |m: String| Err(ParametersError(format!("{field} ({name:?}): {m}")));
        if let Some((seen_alias, seen_label)) = self.names.get(name) {
            let same_alias = !alias.is_empty() && alias == *seen_alias;
            let same_label = !label.is_empty() && label == *seen_label;
            let no_alias = alias.is_empty() && seen_alias.is_empty();
            let no_label = label.is_empty() && seen_label.is_empty();
            let why = if same_alias && no_label {
                Some(format!(
                    "the same objectAlias {alias:?} and no objectVersionLabel"
                ))
            } else if no_alias && same_label {
                Some(format!(
                    "no objectAlias and the same objectVersionLabel {label:?}"
                ))
            } else if same_alias && same_label {
                Some(format!(
                    "the same objectAlias {alias:?} and objectVersionLabel {label:?}"
                ))
            } else if no_alias && no_label {
                Some("neither objectAlias nor objectVersionLabel to tell them apart".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return fail(format!(
                    "objectName is listed more than once with {why} (set objectAlias)"
                ));
            }
        }
        self.names.insert(name.clone(), (alias.clone(), label));
        if !alias.is_empty() && !self.aliases.insert(alias.clone()) {
            return fail(format!(
                "objectAlias {alias:?} is already used by another object"
            ));
        }
        for (j, entry) in spec.jmes_path.iter().enumerate() {
            if !entry.object_alias.is_empty() && !self.aliases.insert(entry.object_alias.clone()) {
                return fail(format!(
                    "jmesPath[{j}].objectAlias {:?} is already used by another object",
                    entry.object_alias
                ));
            }
        }
        Ok(())
    }
}

/// A serde message as a sentence for a person: what was expected, then what
/// was found (`must be a string, not an integer "1"`).
fn readable(message: &str) -> String {
    let message = message.replace('`', "\"");
    match message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "))
    {
        Some((found, expected)) => {
            let found = match found {
                "sequence" => "a list".to_string(),
                "map" => "a mapping".to_string(),
                "null" | "unit value" => "empty".to_string(),
                f if f.starts_with("integer") => format!("an {f}"),
                f => format!("a {f}"),
            };
            format!("must be {expected}, not {found}")
        }
        None => message,
    }
}

struct Context<'a> {
    region: &'a str,
    failover_region: Option<&'a str>,
    translate: Option<char>,
    default_mode: u32,
}

impl Context<'_> {
    fn resolve(&self, field: &str, spec: ObjectSpec) -> Result<Resolved, ParametersError> {
        let name = spec.object_name.trim().to_string();
        let fail = |m: String| Err(ParametersError(format!("{field} ({name:?}): {m}")));
        if name.is_empty() {
            return Err(ParametersError(format!("{field}.objectName is required")));
        }
        let service = match self.service(&name, spec.object_type.as_deref(), self.region) {
            Ok(service) => service,
            Err(m) => return fail(m),
        };
        let request = match version_request(
            service,
            &name,
            &spec.object_version,
            &spec.object_version_label,
        ) {
            Ok(request) => request,
            Err(m) => return fail(m),
        };
        // As ASCP: a failoverObject without objectName is none.
        let failover_object = spec
            .failover_object
            .as_ref()
            .filter(|f| !f.object_name.trim().is_empty());
        let failover = match failover_object {
            None => None,
            Some(failover) => {
                let Some(failover_region) = self.failover_region else {
                    return fail(format!("failoverObject needs parameters.{FAILOVER_REGION}"));
                };
                if spec.object_alias.is_none() {
                    return fail("failoverObject needs objectAlias".into());
                }
                if failover.object_version != spec.object_version {
                    return fail("failoverObject.objectVersion must match objectVersion".into());
                }
                let failover_name = failover.object_name.trim();
                match self.service(failover_name, spec.object_type.as_deref(), failover_region) {
                    Ok(s) if s == service => {}
                    Ok(_) => return fail("failoverObject.objectName is of another service".into()),
                    Err(m) => return fail(format!("failoverObject: {m}")),
                }
                match version_request(
                    service,
                    failover_name,
                    &failover.object_version,
                    &failover.object_version_label,
                ) {
                    Ok(request) => Some(request),
                    Err(m) => return fail(format!("failoverObject: {m}")),
                }
            }
        };
        // Without failoverObject, the failover region is asked for the same object.
        let failover = failover.or_else(|| self.failover_region.map(|_| request.clone()));
        let mode = match spec.file_permission.as_deref().filter(|t| !t.is_empty()) {
            Some(text) => match file_permission(text) {
                Ok(mode) => mode,
                Err(m) => return fail(format!("filePermission {m}")),
            },
            None => self.default_mode,
        };
        let file = match self.file_name(spec.object_alias.as_deref().unwrap_or(&name)) {
            Ok(file) => file,
            Err(m) => {
                return fail(format!(
                    "{}: {m}",
                    if spec.object_alias.is_some() {
                        "objectAlias"
                    } else {
                        "objectName"
                    }
                ));
            }
        };
        let mut jmes = Vec::new();
        for (j, entry) in spec.jmes_path.iter().enumerate() {
            let at = format!("jmesPath[{j}]");
            if entry.path.is_empty() {
                return fail(format!("{at}.path is required"));
            }
            if entry.object_alias.is_empty() {
                return fail(format!("{at}.objectAlias is required"));
            }
            if let Err(e) = jmespath::compile(&entry.path) {
                return fail(format!(
                    "{at}.path {:?} is not a valid JMESPath expression: {e}",
                    entry.path
                ));
            }
            let file = match self.file_name(&entry.object_alias) {
                Ok(file) => file,
                Err(m) => return fail(format!("{at}.objectAlias: {m}")),
            };
            let mode = match entry.file_permission.as_deref().filter(|t| !t.is_empty()) {
                Some(text) => match file_permission(text) {
                    Ok(mode) => mode,
                    Err(m) => return fail(format!("{at}.filePermission {m}")),
                },
                None => mode,
            };
            jmes.push(Jmes {
                path: entry.path.clone(),
                file,
                mode,
            });
        }
        Ok(Resolved {
            label: format!("{field} ({name:?})"),
            service,
            request,
            failover,
            file,
            mode,
            jmes,
        })
    }

    /// The service from `objectType`, or from the ARN when there is none; an
    /// ARN must be of `region`.
    fn service(
        &self,
        name: &str,
        object_type: Option<&str>,
        region: &str,
    ) -> Result<AwsService, String> {
        let from_type = match object_type.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some("secretsmanager") => Some(AwsService::SecretsManager),
            Some("ssmparameter") => Some(AwsService::ParameterStore),
            Some(other) => {
                return Err(format!(
                    "objectType {other:?} must be secretsmanager or ssmparameter"
                ));
            }
        };
        let arn = name
            .strip_prefix("arn:")
            .map(|rest| rest.split(':').collect::<Vec<_>>());
        let from_arn = match &arn {
            None => None,
            Some(parts) => {
                let (Some(service), Some(arn_region)) = (parts.get(1), parts.get(2)) else {
                    return Err(
                        "is not a valid ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)".into(),
                    );
                };
                if parts.len() < 5 {
                    return Err(
                        "is not a valid ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)".into(),
                    );
                }
                if *arn_region != region {
                    return Err(format!(
                        "the ARN's region {arn_region:?} must be the region {region:?}"
                    ));
                }
                match *service {
                    "secretsmanager" => Some(AwsService::SecretsManager),
                    "ssm" => Some(AwsService::ParameterStore),
                    other => {
                        return Err(format!(
                            "the ARN's service {other:?} is not secretsmanager or ssm"
                        ));
                    }
                }
            }
        };
        match (from_type, from_arn) {
            (Some(t), Some(a)) if t != a => {
                Err("objectType does not match the ARN's service".into())
            }
            (Some(t), _) => Ok(t),
            (None, Some(a)) => Ok(a),
            (None, None) => Err("objectType is required when objectName is not a full ARN".into()),
        }
    }

    /// `objectAlias` or `objectName` as a file name: `/` translated (or a
    /// leading `/` dropped without translation), then checked to stay inside.
    fn file_name(&self, name: &str) -> Result<FileName, String> {
        let translated = match self.translate {
            Some(c) => name.replace('/', &c.to_string()),
            None => name.trim_start_matches('/').to_string(),
        };
        FileName::new(&translated).map_err(|e| e.to_string())
    }
}

/// `filePermission` as ASCP validates it: exactly four octal digits
/// (`"0644"`). The first digit (setuid, setgid, sticky) has no effect there
/// (Go's file modes keep those bits elsewhere), so only the permission bits
/// are kept.
fn file_permission(text: &str) -> Result<u32, String> {
    if text.len() != 4 || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "{text:?} must be exactly four octal digits, such as \"0644\""
        ));
    }
    parse_mode(&text[1..])
}

/// The provider request for an object at its version: for Secrets Manager a
/// VersionId (`uuid/<id>`) or a stage; for Parameter Store a version number or
/// a label.
fn version_request(
    service: AwsService,
    name: &str,
    version: &Option<String>,
    label: &Option<String>,
) -> Result<RemoteRequest, String> {
    let version = version.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let label = label.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let version = match (service, version, label) {
        (_, Some(_), Some(_)) => {
            return Err("objectVersion and objectVersionLabel cannot both be set".into());
        }
        (AwsService::SecretsManager, Some(id), None) => Some(format!("uuid/{id}")),
        (AwsService::ParameterStore, Some(number), None) => {
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "objectVersion {number:?} must be a parameter version number"
                ));
            }
            Some(number.to_string())
        }
        (_, None, Some(label)) => Some(label.to_string()),
        (_, None, None) => None,
    };
    Ok(RemoteRequest::Value {
        key: name.to_string(),
        version,
    })
}

/// Whether an answer settles the object whatever the other region says, as
/// ASCP's 4xx: not found, denied, refused.
fn is_final(error: &ProviderError) -> bool {
    FailureKind::of(error) != FailureKind::Transient
        && !matches!(error, ProviderError::Unsupported(_))
}

/// Every file, or every failure.
fn build_files(
    objects: &[Resolved],
    primary: &Answers,
    failover: &Answers,
    failover_region: Option<&str>,
) -> Result<FileSet, FetchError> {
    let mut files = FileSet::new();
    let mut errors = Vec::new();
    let mut kind = FailureKind::Invalid;
    for object in objects {
        let answer = |answers: &Answers, request: &RemoteRequest| {
            answers
                .get(&(service_name(object.service), request.clone()))
                .cloned()
        };
        let primary_answer = answer(primary, &object.request);
        let failover_answer = object.failover.as_ref().and_then(|r| answer(failover, r));
        let region = failover_region.unwrap_or_default();
        let value = match (primary_answer, failover_answer) {
            (Some(Err(e)), _) if is_final(&e) => {
                errors.push(format!("{}: {e}", object.label));
                kind = kind.min(FailureKind::of(&e));
                continue;
            }
            (_, Some(Err(f))) if is_final(&f) => {
                errors.push(format!(
                    "{}: in the failover region {region}: {f}",
                    object.label
                ));
                kind = kind.min(FailureKind::of(&f));
                continue;
            }
            (Some(Ok(Fetched::Value(value))), _) => value,
            (_, Some(Ok(Fetched::Value(value)))) => value,
            (Some(Err(e)), Some(Err(f))) => {
                errors.push(format!(
                    "{}: {e}; in the failover region {region}: {f}",
                    object.label
                ));
                kind = kind.min(FailureKind::of(&e)).min(FailureKind::of(&f));
                continue;
            }
            (Some(Err(e)), _) => {
                errors.push(format!("{}: {e}", object.label));
                kind = kind.min(FailureKind::of(&e));
                continue;
            }
            _ => {
                errors.push(format!("{}: the provider gave no value", object.label));
                kind = FailureKind::Transient;
                continue;
            }
        };
        match jmes_files(object, &value) {
            Ok(extra) => {
                files.insert(
                    object.file.clone(),
                    SecretFile {
                        mode: object.mode,
                        contents: value,
                    },
                );
                files.extend(extra);
            }
            Err(e) => errors.push(format!("{}: {e}", object.label)),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(FetchError::new(errors, kind))
    }
}

/// The files of an object's `jmesPath` entries. Messages name the path and
/// the alias, never what the value holds.
fn jmes_files(
    object: &Resolved,
    value: &SecretValue,
) -> Result<Vec<(FileName, SecretFile)>, String> {
    if object.jmes.is_empty() {
        return Ok(Vec::new());
    }
    let json: serde_json::Value = serde_json::from_slice(value.expose())
        .map_err(|_| "the value is not JSON, so jmesPath cannot be applied".to_string())?;
    let data = jmespath::Variable::try_from(json)
        .map_err(|_| "the value cannot be read as JMESPath data".to_string())?;
    let data = jmespath::Rcvar::new(data);
    let mut out = Vec::new();
    for entry in &object.jmes {
        let expression = jmespath::compile(&entry.path)
            .map_err(|_| format!("jmesPath {:?} is not valid", entry.path))?;
        let found = expression.search(data.clone()).map_err(|_| {
            format!(
                "jmesPath {:?} (objectAlias {:?}) could not be evaluated",
                entry.path,
                entry.file.as_str()
            )
        })?;
        let text = match &*found {
            jmespath::Variable::String(text) => text.clone(),
            jmespath::Variable::Null => {
                return Err(format!(
                    "jmesPath {:?} (objectAlias {:?}) matches nothing",
                    entry.path,
                    entry.file.as_str()
                ));
            }
            other => {
                return Err(format!(
                    "jmesPath {:?} (objectAlias {:?}) gives a {}, not a string",
                    entry.path,
                    entry.file.as_str(),
                    other.get_type()
                ));
            }
        };
        out.push((
            entry.file.clone(),
            SecretFile {
                mode: entry.mode,
                contents: SecretValue::from(text),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(yaml: &str) -> Result<Objects, ParametersError> {
        let parameters = BTreeMap::from([
            (REGION.to_string(), "eu-west-1".to_string()),
            (OBJECTS.to_string(), yaml.to_string()),
        ]);
        Objects::from_parameters(&parameters, None, 0o644)
    }

    fn error(yaml: &str) -> String {
        objects(yaml).unwrap_err().0
    }

    #[test]
    fn resolves_names_types_versions_and_files() {
        let o = objects(
            r#"
- objectName: prod/db
  objectType: secretsmanager
  filePermission: "0400"
  jmesPath:
    - {path: username, objectAlias: user}
    - {path: '"pass-word"', objectAlias: pw, filePermission: "0440"}
- objectName: arn:aws:secretsmanager:eu-west-1:111111111111:secret:api-AbCdEf
  objectAlias: api
  objectVersionLabel: AWSPREVIOUS
- {objectName: /app/flag, objectType: ssmparameter, objectVersion: "3"}
"#,
        )
        .unwrap();
        assert_eq!(o.file_count(), 5);
        let db = &o.objects[0];
        assert_eq!(db.file.as_str(), "prod_db");
        assert_eq!(
            (db.mode, db.jmes[0].mode, db.jmes[1].mode),
            (0o400, 0o400, 0o440)
        );
        assert_eq!(o.objects[1].service, AwsService::SecretsManager);
        assert_eq!(
            o.objects[1].request,
            RemoteRequest::Value {
                key: "arn:aws:secretsmanager:eu-west-1:111111111111:secret:api-AbCdEf".into(),
                version: Some("AWSPREVIOUS".into())
            }
        );
        let flag = &o.objects[2];
        assert_eq!(flag.file.as_str(), "_app_flag");
        assert_eq!(
            flag.request,
            RemoteRequest::Value {
                key: "/app/flag".into(),
                version: Some("3".into())
            }
        );
    }

    #[test]
    fn path_translation() {
        let with = |t: &str| {
            let parameters = BTreeMap::from([
                (REGION.to_string(), "eu-west-1".to_string()),
                (PATH_TRANSLATION.to_string(), t.to_string()),
                (
                    OBJECTS.to_string(),
                    "- {objectName: /a/b, objectType: ssmparameter}".to_string(),
                ),
            ]);
            Objects::from_parameters(&parameters, None, 0o644)
                .map(|o| o.objects[0].file.as_str().to_string())
        };
        assert_eq!(with("-").unwrap(), "-a-b");
        assert_eq!(with("False").unwrap(), "a/b");
        assert!(with("ab").is_err());
    }

    #[test]
    fn refuses_what_is_wrong_naming_the_field() {
        assert!(error("- {objectName: a}").contains("objects[0] (\"a\"): objectType is required"));
        assert!(error("- {objectName: a, objectType: vault}").contains("\"vault\""));
        // Keys ASCP ignores are accepted, and named.
        let o = objects("- {objectName: a, objectType: secretsmanager, bogus: 1, jmesPath: [{path: x, objectAlias: y, extra: z}]}").unwrap();
        assert_eq!(
            o.ignored(),
            ["objects[0].bogus", "objects[0].jmesPath[0].extra"]
        );
        // Types, as sentences.
        let e = error("- a");
        assert!(
            e.starts_with("objects[0]: must be a mapping with objectName") && !e.contains("struct"),
            "{e}"
        );
        let e = error("- {objectName: [1], objectType: secretsmanager}");
        assert!(
            e.contains("objects[0].objectName: must be a string, not a list"),
            "{e}"
        );
        assert!(error("- null").contains("objects[0] is empty"));
        assert!(
            error("- {objectName: arn:aws:secretsmanager:us-east-1:1:secret:x}").contains("region")
        );
        let escape = "- {objectName: a, objectType: secretsmanager, objectAlias: ../../etc/passwd}";
        let parameters = BTreeMap::from([
            (REGION.to_string(), "eu-west-1".to_string()),
            (PATH_TRANSLATION.to_string(), "False".to_string()),
            (OBJECTS.to_string(), escape.to_string()),
        ]);
        let e = Objects::from_parameters(&parameters, None, 0o644)
            .unwrap_err()
            .0;
        assert!(
            e.contains("objectAlias") && e.contains("could leave"),
            "{e}"
        );
        assert!(error("- {objectName: a, objectType: secretsmanager}\n- {objectName: a, objectType: secretsmanager}").contains("objects[1] (\"a\"): objectName is listed more than once with neither"));
        assert!(error("- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: b, objectType: secretsmanager, objectAlias: x}").contains("objectAlias \"x\" is already used"));
        assert!(error("- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: b, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: x}]}").contains("jmesPath[0].objectAlias \"x\" is already used"));
        assert!(error("- {objectName: a, objectType: secretsmanager, jmesPath: [{path: 'a[', objectAlias: x}]}").contains("not a valid JMESPath"));
        assert!(
            error("- {objectName: a, objectType: ssmparameter, objectVersion: latest}")
                .contains("version number")
        );
        // The first digit is accepted and has no effect, as in ASCP.
        let sticky =
            objects("- {objectName: a, objectType: secretsmanager, filePermission: '1640'}");
        assert_eq!(sticky.unwrap().objects[0].mode, 0o640);
        for bad in ["999", "644", "0999", "00644", "rw-r"] {
            let e = error(&format!(
                "- {{objectName: a, objectType: secretsmanager, filePermission: '{bad}'}}"
            ));
            assert!(
                e.contains("filePermission") && e.contains("exactly four octal digits"),
                "{e}"
            );
        }
        assert!(error("[]").contains("lists no object"));
        let nested = "- {objectName: a, objectType: ssmparameter}\n- {objectName: a/b, objectType: ssmparameter}";
        let parameters = BTreeMap::from([
            (REGION.to_string(), "eu-west-1".to_string()),
            (PATH_TRANSLATION.to_string(), "False".to_string()),
            (OBJECTS.to_string(), nested.to_string()),
        ]);
        let e = Objects::from_parameters(&parameters, None, 0o644)
            .unwrap_err()
            .0;
        assert!(e.contains("collide"), "{e}");
        assert!(error("- {objectName: a, objectType: secretsmanager, objectAlias: x, failoverObject: {objectName: b}}").contains("failoverRegion"));
        let no_region = Objects::from_parameters(
            &BTreeMap::from([(
                OBJECTS.to_string(),
                "- {objectName: a, objectType: ssmparameter}".to_string(),
            )]),
            None,
            0o644,
        );
        assert!(no_region.unwrap_err().0.contains("parameters.region"));
    }

    #[test]
    fn the_failover_region_answers_only_when_the_primary_could_not() {
        let parameters = BTreeMap::from([
            (REGION.to_string(), "eu-west-1".to_string()),
            (FAILOVER_REGION.to_string(), "eu-west-2".to_string()),
            (
                OBJECTS.to_string(),
                "- {objectName: a, objectType: secretsmanager, objectAlias: x, failoverObject: {objectName: a-replica}}\n- {objectName: b, objectType: secretsmanager}".to_string(),
            ),
        ]);
        let o = Objects::from_parameters(&parameters, None, 0o644).unwrap();
        let request = |key: &str| RemoteRequest::Value {
            key: key.into(),
            version: None,
        };
        let key = |k: &str| ("secretsmanager", request(k));
        let down = || {
            Err(ProviderError::Api {
                service: "secretsmanager",
                call: "BatchGetSecretValue",
                message: "503".into(),
                failure: crate::provider::ApiFailure::Transient,
            })
        };
        let value = |v: &str| Ok(Fetched::Value(SecretValue::from(v)));
        let primary = Answers::from([(key("a"), down()), (key("b"), value("b-primary"))]);
        let failover = Answers::from([(key("a-replica"), value("a-failover"))]);
        let files = build_files(&o.objects, &primary, &failover, Some("eu-west-2")).unwrap();
        assert_eq!(
            files[&FileName::new("x").unwrap()].contents.expose(),
            b"a-failover"
        );
        assert_eq!(
            files[&FileName::new("b").unwrap()].contents.expose(),
            b"b-primary"
        );
        // Not found is an answer: no failover, the mount fails.
        let missing = Answers::from([
            (key("a"), Err(ProviderError::NotFound { key: "a".into() })),
            (key("b"), value("b")),
        ]);
        let e = build_files(&o.objects, &missing, &failover, Some("eu-west-2")).unwrap_err();
        assert!(e.to_string().contains("\"a\" not found"), "{e}");
        assert_eq!(e.kind, FailureKind::NotFound);
        // Both have it: the primary's value.
        let both = Answers::from([(key("a"), value("a-primary")), (key("b"), value("b"))]);
        let files = build_files(&o.objects, &both, &failover, Some("eu-west-2")).unwrap();
        assert_eq!(
            files[&FileName::new("x").unwrap()].contents.expose(),
            b"a-primary"
        );
        // A final answer of the failover region fails the object too.
        let denied = Answers::from([
            (key("a-replica"), value("a-failover")),
            (
                key("b"),
                Err(ProviderError::Api {
                    service: "secretsmanager",
                    call: "GetSecretValue",
                    message: "AccessDeniedException".into(),
                    failure: crate::provider::ApiFailure::Denied,
                }),
            ),
        ]);
        let e = build_files(&o.objects, &both, &denied, Some("eu-west-2")).unwrap_err();
        assert!(
            e.to_string()
                .contains("objects[1] (\"b\"): in the failover region eu-west-2"),
            "{e}"
        );
        assert_eq!(e.kind, FailureKind::Denied);
        // Both down: a passing failure, naming both.
        let e = build_files(
            &o.objects,
            &Answers::from([(key("a"), down()), (key("b"), down())]),
            &Answers::from([(key("a-replica"), down()), (key("b"), value("b"))]),
            Some("eu-west-2"),
        )
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::Transient);
    }

    #[test]
    fn jmes_path_results_must_be_strings() {
        let o = objects(
            "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: user, objectAlias: u}, {path: port, objectAlias: p}, {path: nope, objectAlias: n}]}",
        )
        .unwrap();
        let mut object = o.objects[0].clone();
        let value = SecretValue::from(r#"{"user":"admin","port":5432}"#);
        object.jmes.truncate(1);
        let files = jmes_files(&object, &value).unwrap();
        assert_eq!(files[0].1.contents.expose(), b"admin");
        let mut port = o.objects[0].clone();
        port.jmes.remove(0);
        port.jmes.truncate(1);
        let e = jmes_files(&port, &value).unwrap_err();
        assert!(e.contains("not a string") && !e.contains("5432"), "{e}");
        let mut nope = o.objects[0].clone();
        nope.jmes.drain(..2);
        assert!(
            jmes_files(&nope, &value)
                .unwrap_err()
                .contains("matches nothing")
        );
        let e = jmes_files(&object, &SecretValue::from("hunter2")).unwrap_err();
        assert!(e.contains("not JSON") && !e.contains("hunter2"));
    }
}
