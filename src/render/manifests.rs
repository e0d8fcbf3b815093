//! Reading manifests for `render`: multi-document YAML (or JSON) files, and
//! directories walked recursively, into typed objects. Every problem names the
//! file, the document, the object and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::{ClusterSecretStore, ExternalSecret, SecretStore};

/// Where an object came from: file and 1-based document number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)
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

impl<T> Located<T> {
    fn at(source: &Source, object: T) -> Self {
        Self {
            source: source.clone(),
            object,
        }
    }
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
}

/// API groups whose ExternalSecret and store manifests `render` reads. ESO's own
/// are read with the same (AWS and fake) schema.
const GROUPS: &[&str] = &[
    "secretsync.io/v1",
    "external-secrets.io/v1",
    "external-secrets.io/v1beta1",
];

/// Reads every path; `namespace` is given to namespaced objects that lack one.
pub fn load(paths: &[PathBuf], namespace: &str) -> (Inputs, Vec<InputError>) {
    let mut inputs = Inputs::default();
    let mut errors = Vec::new();
    let files: Vec<PathBuf> = paths
        .iter()
        .flat_map(|path| manifest_files(path, &mut errors))
        .collect();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(InputError {
                    source: None,
                    object: None,
                    message: format!("{}: cannot read: {e}", file.display()),
                });
                continue;
            }
        };
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let source = Source {
                file: file.clone(),
                document: index + 1,
            };
            match serde_json::Value::deserialize(document) {
                Ok(serde_json::Value::Null) => {}
                Ok(value) => {
                    if let Err(error) = inputs.add(source.clone(), value, namespace) {
                        errors.push(error);
                    }
                }
                Err(e) => {
                    errors.push(InputError {
                        source: Some(source),
                        object: None,
                        message: format!("invalid YAML: {e}"),
                    });
                    // The parser cannot resynchronise after a syntax error (it
                    // would yield the same error forever): skip the file's rest.
                    break;
                }
            }
        }
    }
    (inputs, errors)
}

/// The manifest files under `path`, sorted so output order is stable.
fn manifest_files(path: &Path, errors: &mut Vec<InputError>) -> Vec<PathBuf> {
    let problem = |message: String| InputError {
        source: None,
        object: None,
        message: format!("{}: {message}", path.display()),
    };
    match std::fs::metadata(path) {
        Err(e) => {
            errors.push(problem(format!("cannot read: {e}")));
            Vec::new()
        }
        Ok(meta) if meta.is_dir() => {
            let mut entries = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .collect::<Vec<_>>(),
                Err(e) => {
                    errors.push(problem(format!("cannot list directory: {e}")));
                    return Vec::new();
                }
            };
            entries.sort();
            entries
                .into_iter()
                .filter(|p| p.is_dir() || is_manifest(p))
                .flat_map(|p| manifest_files(&p, errors))
                .collect()
        }
        Ok(_) => vec![path.to_path_buf()],
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

impl Inputs {
    fn add(
        &mut self,
        source: Source,
        value: serde_json::Value,
        namespace: &str,
    ) -> Result<(), InputError> {
        let text = |field: &str| {
            value
                .get(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        let name = value
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let error = |object: Option<String>, message: String| InputError {
            source: Some(source.clone()),
            object,
            message,
        };
        if api_version.is_empty() || kind.is_empty() {
            return Err(error(
                None,
                "not a Kubernetes object: apiVersion and kind are required".into(),
            ));
        }
        let ours = GROUPS.contains(&api_version.as_str());
        let cluster_scoped = matches!(kind.as_str(), "ClusterSecretStore" | "Namespace");
        let object_namespace = value
            .pointer("/metadata/namespace")
            .and_then(|v| v.as_str())
            .unwrap_or(namespace)
            .to_string();
        let label = if cluster_scoped {
            format!("{kind} {name}")
        } else {
            format!("{kind} {object_namespace}/{name}")
        };
        if api_version.starts_with("secretsync.io/") && !ours {
            return Err(error(
                Some(label),
                format!("apiVersion {api_version:?} is not served (use secretsync.io/v1)"),
            ));
        }
        let mut value = value;
        if !cluster_scoped
            && let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut())
        {
            metadata.insert("namespace".into(), object_namespace.clone().into());
        }
        if name.is_empty() {
            return Err(error(Some(label), "metadata.name: is required".into()));
        }
        match (ours, api_version.as_str(), kind.as_str()) {
            (true, _, "ExternalSecret") => self
                .external_secrets
                .push(Located::at(&source, typed(value, &source, &label)?)),
            (true, _, "SecretStore") => self
                .secret_stores
                .push(Located::at(&source, typed(value, &source, &label)?)),
            (true, _, "ClusterSecretStore") => self
                .cluster_secret_stores
                .push(Located::at(&source, typed(value, &source, &label)?)),
            (true, _, other) => {
                return Err(error(
                    Some(label),
                    format!("kind {other:?} is not served by {api_version}"),
                ));
            }
            (false, "v1", "ConfigMap") => self
                .config_maps
                .push(Located::at(&source, typed(value, &source, &label)?)),
            (false, "v1", "Secret") => self
                .secrets
                .push(Located::at(&source, typed(value, &source, &label)?)),
            (false, "v1", "Namespace") => self
                .namespaces
                .push(Located::at(&source, typed(value, &source, &label)?)),
            _ => tracing::debug!(%source, %label, "skipping object render does not read"),
        }
        Ok(())
    }
}

/// Deserializes with the path of the failing field in the message.
fn typed<T: DeserializeOwned>(
    value: serde_json::Value,
    source: &Source,
    label: &str,
) -> Result<T, InputError> {
    crate::api::from_json(value).map_err(|message| InputError {
        source: Some(source.clone()),
        object: Some(label.to_string()),
        message,
    })
}

/// Namespace labels as the API server sets them: the declared ones (if the
/// Namespace is in the input) plus `kubernetes.io/metadata.name`.
pub fn namespace_labels(inputs: &Inputs, namespace: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = inputs
        .namespaces
        .iter()
        .find(|n| n.object.metadata.name.as_deref() == Some(namespace))
        .and_then(|n| n.object.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
    labels
}
