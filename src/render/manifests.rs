//! Reading manifests for `render`: the documents of every file (see
//! [`documents`](super::documents)) into typed objects. Every problem names the
//! file, the document, the object and the field; one bad document or object
//! never stops the others.
//!
//! - `kind: List` (what `kubectl get -o yaml` prints) is read item by item.
//! - Unknown versions of the groups secretsync reads, kinds of those groups it
//!   does not serve, and groups a typo away from them are errors, never skipped.
//! - Two objects of the same kind, namespace and name are errors, and neither
//!   is used: which one was meant cannot be told.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::documents::{self, Document};
use crate::api::{
    ClusterSecretStore, ExternalSecret, GROUP, SecretStore, dns_label_problem,
    dns_subdomain_problem,
};
use crate::sync::admission::shown;

/// Where an object came from: file, 1-based document number, and its index
/// in a `List`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    pub document: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(item) = self.item {
            write!(f, ": items[{item}]")?;
        }
        Ok(())
    }
}

/// A problem with the input, printed as `SOURCE: OBJECT: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub source: Option<Source>,
    /// e.g. `ExternalSecret team-a/app`.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{source}: ")?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// One object read from the input, with where it came from.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub source: Source,
    pub object: T,
}

/// Everything `render` reads, by kind. Objects of other kinds are skipped.
#[derive(Default)]
pub struct Inputs {
    pub external_secrets: Vec<Located<ExternalSecret>>,
    pub secret_stores: Vec<Located<SecretStore>>,
    pub cluster_secret_stores: Vec<Located<ClusterSecretStore>>,
    pub config_maps: Vec<Located<ConfigMap>>,
    pub secrets: Vec<Located<Secret>>,
    pub namespaces: Vec<Located<Namespace>>,
    /// SealedSecrets found (render does not decrypt them), by label.
    pub sealed_secrets: Vec<String>,
    /// Objects defined more than once, by label (`SecretStore team/x`); none
    /// of their definitions is used.
    pub duplicated: BTreeSet<String>,
}

/// What reading the input gave: the objects, the errors, and warnings that
/// do not fail the run (an empty file).
#[derive(Default)]
pub struct Loaded {
    pub inputs: Inputs,
    pub errors: Vec<InputError>,
    pub warnings: Vec<String>,
}

/// ExternalSecret and store kinds, read from secretsync's group and ESO's.
const STORE_AND_SECRET_KINDS: &[&str] = &["ExternalSecret", "SecretStore", "ClusterSecretStore"];
/// ESO's API group; its versions read as secretsync's own.
const ESO_GROUP: &str = "external-secrets.io";
const ESO_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// Reads every path; `namespace` is given to namespaced objects that lack one.
pub fn load(paths: &[PathBuf], namespace: &str) -> Loaded {
    let mut loader = Loader::new(namespace);
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    let files: Vec<PathBuf> = paths
        .iter()
        .flat_map(|path| documents::manifest_files(path, &mut seen, &mut problems))
        .collect();
    loader
        .errors
        .extend(problems.into_iter().map(InputError::plain));
    let mut total = 0;
    for file in files {
        match documents::read_text(&file, &mut total) {
            Ok(text) => loader.read_file(&file, &text),
            Err(message) => loader.errors.push(InputError::plain(message)),
        }
    }
    loader.finish()
}

/// Reads `text` as if it were the file `file` (for tests and fuzzing).
pub fn load_text(text: &str, file: &Path, namespace: &str) -> Loaded {
    let mut loader = Loader::new(namespace);
    loader.read_file(file, text);
    loader.finish()
}

impl InputError {
    fn plain(message: String) -> Self {
        Self {
            source: None,
            object: None,
            message,
        }
    }
}

/// An object read, before duplicates are set aside.
enum Object {
    ExternalSecret(Box<ExternalSecret>),
    SecretStore(Box<SecretStore>),
    ClusterSecretStore(Box<ClusterSecretStore>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    Namespace(Box<Namespace>),
    SealedSecret,
}

struct Loader<'a> {
    namespace: &'a str,
    /// Every object read, with its label (kind, namespace, name) and source.
    objects: Vec<(String, Source, Object)>,
    errors: Vec<InputError>,
    warnings: Vec<String>,
}

impl<'a> Loader<'a> {
    fn new(namespace: &'a str) -> Self {
        Self {
            namespace,
            objects: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn read_file(&mut self, file: &Path, text: &str) {
        let documents = documents::documents(text);
        if documents.iter().all(|d| matches!(d.value, Ok(Value::Null))) {
            self.warnings
                .push(format!("{}: empty file (no documents)", file.display()));
        }
        for Document { number, value } in documents {
            let source = Source {
                file: file.to_path_buf(),
                document: number,
                item: None,
            };
            match value {
                Ok(Value::Null) => {}
                Ok(value) => self.read_value(source, value),
                Err(message) => self.errors.push(InputError {
                    source: Some(source),
                    object: None,
                    message,
                }),
            }
        }
    }

    fn error(&mut self, source: &Source, object: Option<String>, message: String) {
        self.errors.push(InputError {
            source: Some(source.clone()),
            object,
            message,
        });
    }

    /// One document (or `List` item).
    fn read_value(&mut self, source: Source, value: Value) {
        let Value::Object(map) = &value else {
            return self.error(
                &source,
                None,
                "not a Kubernetes object: a document must be a mapping with apiVersion and kind"
                    .into(),
            );
        };
        let text = |field: &str| map.get(field).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind) = (text("apiVersion").to_string(), text("kind").to_string());
        if api_version.is_empty() || kind.is_empty() {
            return self.error(
                &source,
                None,
                "not a Kubernetes object: apiVersion and kind are required (as strings)".into(),
            );
        }
        if is_list(&kind) {
            return self.read_list(source, value, &kind);
        }
        let class = match classify(&api_version, &kind) {
            Ok(Some(class)) => class,
            Ok(None) => {
                tracing::debug!(%source, %api_version, %kind, "skipping a kind render does not read");
                return;
            }
            Err(message) => {
                let label = self.label(&value, &kind, false).0;
                return self.error(&source, Some(label), message);
            }
        };
        let cluster_scoped = matches!(class, Class::ClusterSecretStore | Class::Namespace);
        let (label, namespace) = self.label(&value, &kind, cluster_scoped);
        let mut value = value;
        if let Err(message) = self.check_metadata(&mut value, &class, namespace) {
            return self.error(&source, Some(label), message);
        }
        let object = match class {
            Class::ExternalSecret => typed(value).map(|o| Object::ExternalSecret(Box::new(o))),
            Class::SecretStore => typed(value).map(|o| Object::SecretStore(Box::new(o))),
            Class::ClusterSecretStore => {
                typed(value).map(|o| Object::ClusterSecretStore(Box::new(o)))
            }
            Class::ConfigMap => typed(value).map(|o| Object::ConfigMap(Box::new(o))),
            Class::Secret => typed(value).map(|o| Object::Secret(Box::new(o))),
            Class::Namespace => typed(value).map(|o| Object::Namespace(Box::new(o))),
            Class::SealedSecret => Ok(Object::SealedSecret),
        };
        match object {
            Ok(object) => self.objects.push((label, source, object)),
            Err(message) => self.error(&source, Some(label), message),
        }
    }

    fn read_list(&mut self, source: Source, value: Value, kind: &str) {
        if source.item.is_some() {
            return self.error(
                &source,
                None,
                format!("a {kind} inside a List is not read: flatten it"),
            );
        }
        let Some(Value::Array(items)) = value.get("items").cloned() else {
            return self.error(
                &source,
                Some(kind.to_string()),
                "items: a List needs an items array".into(),
            );
        };
        for (i, item) in items.into_iter().enumerate() {
            let source = Source {
                item: Some(i),
                ..source.clone()
            };
            self.read_value(source, item);
        }
    }

    /// `Kind namespace/name` (or `Kind name`), and the namespace the object is in.
    fn label(&self, value: &Value, kind: &str, cluster_scoped: bool) -> (String, Option<String>) {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Long names are shortened only when too long to be valid anyway, so
        // a label identifies its object.
        let shown = |text: &str| {
            if text.len() <= crate::api::MAX_SUBDOMAIN_LEN {
                text.to_string()
            } else {
                shown(text)
            }
        };
        if cluster_scoped {
            return (format!("{kind} {}", shown(name)), None);
        }
        let namespace = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(self.namespace)
            .to_string();
        (
            format!("{kind} {}/{}", shown(&namespace), shown(name)),
            Some(namespace),
        )
    }

    /// Checks name and namespace as the API server does and sets the default
    /// namespace on namespaced objects that lack one.
    fn check_metadata(
        &self,
        value: &mut Value,
        class: &Class,
        namespace: Option<String>,
    ) -> Result<(), String> {
        let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err("metadata.name: is required".into());
        };
        let name = match metadata.get("name") {
            None => return Err("metadata.name: is required".into()),
            Some(Value::String(name)) if name.is_empty() => {
                return Err("metadata.name: is required".into());
            }
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err("metadata.name: must be a string".into()),
        };
        let problem = match class {
            Class::Namespace => dns_label_problem(&name),
            _ => dns_subdomain_problem(&name),
        };
        if let Some(problem) = problem {
            return Err(format!(
                "metadata.name: {:?} is not a valid name: it {problem}",
                shown(&name)
            ));
        }
        if let Some(namespace) = namespace {
            if let Some(problem) = dns_label_problem(&namespace) {
                return Err(format!(
                    "metadata.namespace: {:?} is not a valid namespace: it {problem}",
                    shown(&namespace)
                ));
            }
            metadata.insert("namespace".into(), namespace.into());
        }
        Ok(())
    }

    /// Sets duplicates aside and sorts the objects by kind.
    fn finish(self) -> Loaded {
        let mut loaded = Loaded {
            errors: self.errors,
            warnings: self.warnings,
            ..Default::default()
        };
        let mut first: BTreeMap<&str, &Source> = BTreeMap::new();
        let mut duplicated = BTreeSet::new();
        for (label, source, _) in &self.objects {
            match first.get(label.as_str()) {
                Some(first) => {
                    loaded.errors.push(InputError {
                        source: Some(source.clone()),
                        object: Some(label.clone()),
                        message: format!(
                            "defined more than once (also at {first}): neither definition is used"
                        ),
                    });
                    duplicated.insert(label.clone());
                }
                None => {
                    first.insert(label, source);
                }
            }
        }
        let inputs = &mut loaded.inputs;
        for (label, source, object) in self.objects {
            if duplicated.contains(&label) {
                continue;
            }
            match object {
                Object::ExternalSecret(o) => inputs.external_secrets.push(at(source, *o)),
                Object::SecretStore(o) => inputs.secret_stores.push(at(source, *o)),
                Object::ClusterSecretStore(o) => inputs.cluster_secret_stores.push(at(source, *o)),
                Object::ConfigMap(o) => inputs.config_maps.push(at(source, *o)),
                Object::Secret(o) => inputs.secrets.push(at(source, *o)),
                Object::Namespace(o) => inputs.namespaces.push(at(source, *o)),
                Object::SealedSecret => inputs.sealed_secrets.push(label),
            }
        }
        inputs.duplicated = duplicated;
        loaded
    }
}

fn at<T>(source: Source, object: T) -> Located<T> {
    Located { source, object }
}

/// What an object is to `render`.
enum Class {
    ExternalSecret,
    SecretStore,
    ClusterSecretStore,
    ConfigMap,
    Secret,
    Namespace,
    SealedSecret,
}

fn is_list(kind: &str) -> bool {
    kind == "List" || (kind.ends_with("List") && kind.len() > "List".len())
}

/// The generator kinds the controller serves.
const GENERATOR_KINDS: &[&str] = &[
    "Password",
    "UUID",
    "ECRAuthorizationToken",
    "STSSessionToken",
    "ClusterGenerator",
];

/// The class of an object render reads, `None` for kinds it skips, or why a
/// manifest that looks meant for secretsync cannot be read.
fn classify(api_version: &str, kind: &str) -> Result<Option<Class>, String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ours = |kind: &str| match kind {
        "ExternalSecret" => Some(Class::ExternalSecret),
        "SecretStore" => Some(Class::SecretStore),
        "ClusterSecretStore" => Some(Class::ClusterSecretStore),
        _ => None,
    };
    if kind == "ClusterExternalSecret" && (group == GROUP || group == ESO_GROUP) {
        return Err(
            "a ClusterExternalSecret is served by `secretsync controller` only: render has no cluster whose namespaces it could pick (render the ExternalSecret it would write instead)"
                .into(),
        );
    }
    let push_kind = kind == "PushSecret" || kind == "ClusterPushSecret";
    if push_kind && (group == GROUP || group == ESO_GROUP) {
        return Err(format!(
            "a {kind} writes to AWS: it is served by `secretsync controller` only (render reads, and never writes anywhere but its output)"
        ));
    }
    match group {
        GROUP => {
            if version != "v1" {
                return Err(format!(
                    "apiVersion {api_version:?} is not served (use {GROUP}/v1)"
                ));
            }
            if kind == "SealedSecret" {
                return Ok(Some(Class::SealedSecret));
            }
            ours(kind).map(Some).ok_or_else(|| {
                format!(
                    "kind {kind:?} is not served by {api_version} (it serves ExternalSecret, SecretStore, ClusterSecretStore and SealedSecret){}",
                    did_you_mean(kind, &["ExternalSecret", "SecretStore", "ClusterSecretStore", "SealedSecret"])
                )
            })
        }
        ESO_GROUP => match ours(kind) {
            Some(class) if ESO_VERSIONS.contains(&version) => Ok(Some(class)),
            Some(_) => Err(format!(
                "apiVersion {api_version:?} is not read: use {ESO_GROUP}/v1 or {ESO_GROUP}/v1beta1 (or {GROUP}/v1)"
            )),
            None => Err(format!(
                "kind {kind:?} of {ESO_GROUP} is not supported by secretsync (it reads ExternalSecret, SecretStore and ClusterSecretStore){}",
                did_you_mean(kind, STORE_AND_SECRET_KINDS)
            )),
        },
        crate::api::GENERATOR_GROUP | crate::api::ESO_GENERATOR_GROUP => {
            // Read by the controller when an ExternalSecret or PushSecret
            // names them; render runs no generator (the ExternalSecret that
            // names one says so), so the manifest itself is passed over.
            if GENERATOR_KINDS.contains(&kind) {
                Ok(None)
            } else {
                Err(format!(
                    "generator kind {kind:?} is not served by secretsync (it serves {}){}",
                    GENERATOR_KINDS.join(", "),
                    did_you_mean(kind, GENERATOR_KINDS)
                ))
            }
        }
        _ if group.ends_with(".external-secrets.io") => Err(format!(
            "{kind} ({api_version}) is not supported by secretsync"
        )),
        "" if version == "v1" => Ok(match kind {
            "ConfigMap" => Some(Class::ConfigMap),
            "Secret" => Some(Class::Secret),
            "Namespace" => Some(Class::Namespace),
            _ => None,
        }),
        _ => {
            let near = [GROUP, ESO_GROUP]
                .into_iter()
                .find(|known| strsim::osa_distance(group, known) <= 2);
            if let Some(known) = near {
                return Err(format!(
                    "apiVersion {api_version:?}: no such API group; did you mean {known}/v1?"
                ));
            }
            if STORE_AND_SECRET_KINDS.contains(&kind) {
                return Err(format!(
                    "apiVersion {api_version:?}: {kind} is read from {GROUP}/v1 or {ESO_GROUP}/v1"
                ));
            }
            Ok(None)
        }
    }
}

/// `; did you mean "X"?` when `given` is a typo of one of `known`.
fn did_you_mean(given: &str, known: &[&str]) -> String {
    known
        .iter()
        .find(|k| strsim::osa_distance(&given.to_ascii_lowercase(), &k.to_ascii_lowercase()) <= 2)
        .map(|k| format!("; did you mean {k:?}?"))
        .unwrap_or_default()
}

/// Deserializes with the path of the failing field in the message.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    crate::api::from_json(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        load_text(text, Path::new("in.yaml"), "default")
    }

    fn errors(loaded: &Loaded) -> Vec<String> {
        loaded.errors.iter().map(ToString::to_string).collect()
    }

    const STORE: &str = "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {name: s, namespace: team}\nspec: {provider: {fake: {data: []}}}\n";

    #[test]
    fn lists_are_read_item_by_item() {
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: c, namespace: team}}}}\n- {{apiVersion: v1, kind: ConfigMap}}\n",
            serde_json::to_string(&serde_yaml_ng::from_str::<Value>(STORE).unwrap()).unwrap()
        );
        let loaded = load(&list);
        assert_eq!(loaded.inputs.secret_stores.len(), 1);
        assert_eq!(loaded.inputs.config_maps.len(), 1);
        assert_eq!(
            errors(&loaded),
            ["in.yaml: document 1: items[2]: ConfigMap default/: metadata.name: is required"]
        );
    }

    #[test]
    fn groups_and_versions() {
        let object = |api_version: &str, kind: &str| {
            errors(&load(&format!(
                "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x, namespace: team}}\nspec: {{}}\n"
            )))
            .join("\n")
        };
        assert!(
            object("external-secrets.io/v1alpha1", "ExternalSecret")
                .contains("is not read: use external-secrets.io/v1")
        );
        assert!(
            object("secretsnyc.io/v1", "ExternalSecret").contains("did you mean secretsync.io/v1?")
        );
        assert!(
            object("external-secret.io/v1", "SecretStore")
                .contains("did you mean external-secrets.io/v1?")
        );
        assert!(
            object("example.com/v1", "ExternalSecret")
                .contains("ExternalSecret is read from secretsync.io/v1")
        );
        assert!(
            object("external-secrets.io/v1alpha1", "PushSecret")
                .contains("served by `secretsync controller` only")
        );
        assert!(
            object("external-secrets.io/v1beta1", "SecretSink")
                .contains("is not supported by secretsync")
        );
        assert!(
            object("generators.external-secrets.io/v1alpha1", "Webhook")
                .contains("generator kind \"Webhook\" is not served by secretsync")
        );
        assert!(
            object("generators.external-secrets.io/v1alpha1", "Pasword")
                .contains("did you mean \"Password\"?")
        );
        assert!(
            object("secretsync.io/v1", "ExternalSecrets")
                .contains("did you mean \"ExternalSecret\"?")
        );
        assert_eq!(
            object("apps/v1", "Deployment"),
            "",
            "other kinds are skipped"
        );
        assert_eq!(object("bitnami.com/v1alpha1", "SealedSecret"), "");
    }

    #[test]
    fn duplicates_are_errors_and_neither_is_used() {
        let loaded = load(&format!("{STORE}---\n{STORE}"));
        assert!(loaded.inputs.secret_stores.is_empty());
        assert_eq!(
            errors(&loaded),
            [
                "in.yaml: document 2: SecretStore team/s: defined more than once (also at in.yaml: document 1): neither definition is used"
            ]
        );
        assert!(loaded.inputs.duplicated.contains("SecretStore team/s"));
    }

    #[test]
    fn names_and_namespaces_are_checked() {
        let loaded = load(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ../../x, namespace: team}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: /abs}\n",
        );
        let errors = errors(&loaded).join("\n");
        assert!(
            errors.contains(
                "document 1: ConfigMap team/../../x: metadata.name: \"../../x\" is not a valid name"
            ),
            "{errors}"
        );
        assert!(errors.contains("document 2: ConfigMap /abs/ok: metadata.namespace: \"/abs\" is not a valid namespace"), "{errors}");
    }

    #[test]
    fn empty_files_warn() {
        assert_eq!(load("").warnings, ["in.yaml: empty file (no documents)"]);
        assert_eq!(load("# nothing\n---\n").warnings.len(), 1);
        assert!(load(STORE).warnings.is_empty());
    }
}
