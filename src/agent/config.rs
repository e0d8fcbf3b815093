//! The agent's config file: what to write, as
//!
//! - a `SecretProviderClass` (secrets-store.csi.x-k8s.io, provider `aws` or
//!   `secretsync`) whose `spec.parameters` are ASCP's, so the one a CSI mount
//!   uses works here unchanged;
//! - or those parameters alone, as a plain mapping (`region`, `objects`, ...),
//!   where `objects` may also be a YAML list instead of a string;
//! - and/or `ExternalSecret` manifests with their stores (as `render` reads
//!   them), each key written as one file with exactly the bytes the controller
//!   would put in the Secret.
//!
//! Several documents may share the file (`---`); the plain mapping only alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::files::{FileName, FileSet, SecretFile};
use super::objects::{FailureKind, FetchError, Objects, ParametersError};
use crate::provider::Providers;

const SPC_GROUP: &str = "secrets-store.csi.x-k8s.io/";
const PROVIDERS: &[&str] = &["aws", "secretsync"];
/// ASCP parameters the agent accepts beyond what `Objects` reads: the default
/// credential chain already uses EKS Pod Identity when EKS injects it.
const IGNORED_BY_AGENT: &[&str] = &["usePodIdentity"];

/// A config file, parsed and checked.
#[derive(Debug)]
pub struct Config {
    path: PathBuf,
    objects: Option<Objects>,
    /// The file holds ExternalSecrets: rendered through `render` on each refresh.
    external_secrets: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {document}: {message}")]
    Invalid {
        path: String,
        document: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

impl Config {
    /// Reads and checks the file. `default_region` stands in for a missing
    /// `region`; `default_mode` for a missing `filePermission`.
    pub fn load(
        path: &Path,
        default_region: Option<&str>,
        default_mode: u32,
    ) -> Result<Self, ConfigError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: label.clone(),
            source,
        })?;
        let mut objects = None;
        let mut external_secrets = false;
        let mut documents = 0;
        let mut plain = false;
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let invalid = |message: String| ConfigError::Invalid {
                path: label.clone(),
                document: index + 1,
                message,
            };
            let value = match serde_json::Value::deserialize(document) {
                Ok(serde_json::Value::Null) => continue,
                Ok(value) => value,
                Err(e) => return Err(invalid(format!("invalid YAML: {e}"))),
            };
            documents += 1;
            let api_version = value.get("apiVersion").and_then(|v| v.as_str());
            let kind = value.get("kind").and_then(|v| v.as_str());
            let parsed = match (api_version, kind) {
                (Some(v), Some("SecretProviderClass")) if v.starts_with(SPC_GROUP) => {
                    Some(secret_provider_class(&value, default_region, default_mode))
                }
                (None, None) if value.get(super::objects::OBJECTS).is_some() => {
                    plain = true;
                    Some(plain_parameters(&value, default_region, default_mode))
                }
                (Some(_), Some("ExternalSecret")) => {
                    external_secrets = true;
                    None
                }
                (Some(_), Some(_)) => None,
                _ => {
                    return Err(invalid(
                        "neither a Kubernetes object (apiVersion, kind) nor ASCP parameters (objects)"
                            .into(),
                    ));
                }
            };
            if let Some(parsed) = parsed {
                if objects.is_some() {
                    return Err(invalid(
                        "a second SecretProviderClass: list every object in one".into(),
                    ));
                }
                objects = Some(parsed.map_err(|e| invalid(e.0))?);
            }
        }
        if plain && documents > 1 {
            return Err(ConfigError::File {
                path: label,
                message: "plain ASCP parameters must be the file's only document: with ExternalSecrets, write them as a SecretProviderClass".into(),
            });
        }
        if objects.is_none() && !external_secrets {
            return Err(ConfigError::File {
                path: label,
                message: "nothing to write: the file has no SecretProviderClass, ASCP parameters or ExternalSecret".into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            objects,
            external_secrets,
        })
    }

    /// The region the objects use (for the AWS base config when the
    /// environment names none).
    pub fn objects(&self) -> Option<&Objects> {
        self.objects.as_ref()
    }

    /// Fetches everything the config asks for and returns the files; all or
    /// nothing. `providers` serve the ASCP objects and `renderer` the
    /// ExternalSecrets (both kept across refreshes, so unchanged values are
    /// not fetched again), with `namespace` for manifests that name none.
    pub async fn fetch(
        &self,
        providers: &Providers,
        renderer: &mut crate::render::Renderer,
        namespace: &str,
        default_mode: u32,
        template_limits: &crate::template::RenderLimits,
    ) -> Result<FileSet, FetchError> {
        let mut files = match &self.objects {
            Some(objects) => objects.fetch(providers, None).await?,
            None => FileSet::new(),
        };
        if !self.external_secrets {
            return Ok(files);
        }
        let rendered = renderer
            .render(std::slice::from_ref(&self.path), namespace, template_limits)
            .await;
        if !rendered.errors.is_empty() {
            return Err(FetchError::new(
                rendered.errors.iter().map(ToString::to_string).collect(),
                FailureKind::Invalid,
            ));
        }
        for note in &rendered.notes {
            tracing::info!(%note, "ExternalSecret writes no file");
        }
        let mut errors = Vec::new();
        for secret in rendered.secrets {
            for (key, value) in secret.data {
                let file = match FileName::new(&key) {
                    Ok(file) => file,
                    Err(e) => {
                        errors.push(format!(
                            "ExternalSecret {}/{}: key {e}",
                            secret.namespace, secret.name
                        ));
                        continue;
                    }
                };
                if files.contains_key(&file) {
                    errors.push(format!(
                        "ExternalSecret {}/{}: key {key:?}: another object already writes a file of that name",
                        secret.namespace, secret.name
                    ));
                    continue;
                }
                files.insert(
                    file,
                    SecretFile {
                        mode: default_mode,
                        contents: value,
                    },
                );
            }
        }
        if errors.is_empty() {
            Ok(files)
        } else {
            Err(FetchError::new(errors, FailureKind::Invalid))
        }
    }
}

fn secret_provider_class(
    value: &serde_json::Value,
    default_region: Option<&str>,
    default_mode: u32,
) -> Result<Objects, ParametersError> {
    let provider = value
        .pointer("/spec/provider")
        .and_then(|p| p.as_str())
        .unwrap_or_default();
    if !PROVIDERS.contains(&provider) {
        return Err(ParametersError(format!(
            "spec.provider {provider:?}: the agent reads SecretProviderClasses of provider \"aws\" or \"secretsync\""
        )));
    }
    let parameters: BTreeMap<String, String> = value
        .pointer("/spec/parameters")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|_| ParametersError("spec.parameters: every value must be a string".into()))?
        .unwrap_or_default();
    check_known(parameters.keys().map(String::as_str), "spec.parameters")?;
    Objects::from_parameters(&parameters, default_region, default_mode).map_err(|e| {
        ParametersError(format!(
            "spec.parameters.{}",
            e.0.trim_start_matches("parameters.")
        ))
    })
}

fn plain_parameters(
    value: &serde_json::Value,
    default_region: Option<&str>,
    default_mode: u32,
) -> Result<Objects, ParametersError> {
    let Some(map) = value.as_object() else {
        return Err(ParametersError("not a mapping".into()));
    };
    check_known(map.keys().map(String::as_str), "parameters")?;
    let text = |key: &str| -> Result<Option<String>, ParametersError> {
        match map.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ParametersError(format!(
                "parameters.{key} must be a string"
            ))),
        }
    };
    let objects = map
        .get(super::objects::OBJECTS)
        .cloned()
        .unwrap_or_default();
    Objects::new(
        text(super::objects::REGION)?.as_deref(),
        text(super::objects::FAILOVER_REGION)?.as_deref(),
        text(super::objects::PATH_TRANSLATION)?.as_deref(),
        &objects,
        default_region,
        default_mode,
    )
}

/// Unknown parameters are errors, never ignored.
fn check_known<'a>(keys: impl Iterator<Item = &'a str>, at: &str) -> Result<(), ParametersError> {
    use super::objects::{FAILOVER_REGION, OBJECTS, PATH_TRANSLATION, REGION};
    for key in keys {
        let known = [REGION, FAILOVER_REGION, PATH_TRANSLATION, OBJECTS].contains(&key)
            || IGNORED_BY_AGENT.contains(&key);
        if !known {
            return Err(ParametersError(format!(
                "{at}.{key}: not supported (known: region, failoverRegion, pathTranslation, objects, usePodIdentity)"
            )));
        }
    }
    Ok(())
}
