//! Sealing and unsealing whole manifests (Secret <-> SealedSecret), as the
//! GitOps commands `seal`, `unseal` and `reseal` use them. A key whose plaintext
//! is unchanged keeps its ciphertext byte for byte (under `--merge-into` when an
//! identity can tell, and under `reseal` to unchanged recipients), so a Git diff
//! shows only what changed.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::envelope::{Binding, seal, unseal};
use super::keys::{BoxedIdentity, BoxedRecipient, parse_recipient};
use crate::SecretValue;
use crate::api::{
    SealedScope, SealedSecret, SealedSecretSpec, SealedSecretTemplate, TemplateMetadata,
};
use crate::template::{Context as TemplateContext, RenderLimits, Template};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

fn err(message: impl Into<String>) -> ManifestError {
    ManifestError(message.into())
}

/// The values of a Secret manifest (`data`, base64, and `stringData`).
pub fn secret_values(secret: &Secret) -> BTreeMap<String, SecretValue> {
    let mut values: BTreeMap<String, SecretValue> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), SecretValue::new(v.0.clone())))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        values.insert(k.clone(), SecretValue::from(v.as_str()));
    }
    values
}

/// The one document of a manifest, read as `render` reads its documents: a
/// key given twice in a mapping is an error (YAML and JSON parsers would
/// keep the last silently), as are YAML tags and alias bombs.
fn one_document(text: &str, source: &str) -> Result<serde_json::Value, ManifestError> {
    let mut documents = crate::render::documents::documents(text)
        .into_iter()
        .filter(|d| !matches!(d.value, Ok(serde_json::Value::Null)));
    match (documents.next(), documents.next()) {
        (None, _) => Err(err(format!("{source}: no document in it"))),
        (Some(document), None) => document
            .value
            .map_err(|e| err(format!("{source}: document {}: {e}", document.number))),
        (Some(_), Some(second)) => Err(err(format!(
            "{source}: document {} is a second document: give one manifest",
            second.number
        ))),
    }
}

pub fn parse_secret(text: &str, source: &str) -> Result<Secret, ManifestError> {
    let value = one_document(text, source)?;
    if value["kind"] != "Secret" {
        return Err(err(format!(
            "{source}: expected a Secret manifest (kind: Secret), found kind {}",
            value["kind"]
        )));
    }
    crate::api::from_json(value).map_err(|e| err(format!("{source}: {e}")))
}

pub fn parse_sealed(text: &str, source: &str) -> Result<SealedSecret, ManifestError> {
    let value = one_document(text, source)?;
    if value["kind"] != "SealedSecret" {
        return Err(err(format!(
            "{source}: expected a SealedSecret manifest, found kind {}",
            value["kind"]
        )));
    }
    crate::api::from_json(value).map_err(|e| err(format!("{source}: {e}")))
}

fn binding(scope: SealedScope, namespace: &str, name: &str, key: &str) -> Binding {
    Binding {
        scope,
        namespace: namespace.into(),
        name: name.into(),
        key: key.into(),
    }
}

/// What `seal` writes values into.
pub struct SealTarget {
    pub name: String,
    pub namespace: String,
    pub scope: SealedScope,
    /// Public keys, as given (`age1...`, `ssh-ed25519 ...`).
    pub recipients: Vec<String>,
}

/// Seals `values` into a SealedSecret, on top of `existing` (`--merge-into`):
/// existing keys not given are kept as they are; a given key whose plaintext
/// `identities` show unchanged keeps its ciphertext.
pub fn seal_values(
    values: &BTreeMap<String, SecretValue>,
    target: &SealTarget,
    template: Option<SealedSecretTemplate>,
    existing: Option<SealedSecret>,
    identities: &[BoxedIdentity],
) -> Result<SealedSecret, ManifestError> {
    if target.recipients.is_empty() {
        return Err(err("no recipients: give --recipient or --recipients-file"));
    }
    let recipient_names = target.recipients.clone();
    let recipients: Vec<BoxedRecipient> = recipient_names
        .iter()
        .map(|r| parse_recipient(r).map_err(|e| err(e.to_string())))
        .collect::<Result<_, _>>()?;
    let mut sealed = match existing {
        Some(existing) => {
            if existing.spec.scope != target.scope {
                return Err(err(format!(
                    "--merge-into: the SealedSecret has scope {}, not {}",
                    existing.spec.scope.as_str(),
                    target.scope.as_str()
                )));
            }
            if !existing.spec.recipients.is_empty() && existing.spec.recipients != recipient_names {
                return Err(err(
                    "--merge-into: the recipients differ from the SealedSecret's; use `secretsync reseal` to change them",
                ));
            }
            existing
        }
        None => {
            let mut sealed = SealedSecret::new(
                &target.name,
                SealedSecretSpec {
                    encrypted_data: BTreeMap::new(),
                    scope: target.scope,
                    recipients: recipient_names.clone(),
                    template: None,
                },
            );
            sealed.metadata.namespace = Some(target.namespace.clone());
            sealed
        }
    };
    sealed.spec.recipients = recipient_names;
    if template.is_some() {
        sealed.spec.template = template;
    }
    for (key, value) in values {
        let binding = binding(target.scope, &target.namespace, &target.name, key);
        let unchanged = sealed.spec.encrypted_data.get(key).is_some_and(|old| {
            !identities.is_empty()
                && unseal(old.as_bytes(), identities, &binding).is_ok_and(|plain| plain == *value)
        });
        if !unchanged {
            let ciphertext = seal(value, &binding, &recipients)
                .map_err(|e| err(format!("sealing key {key:?}: {e}")))?;
            sealed.spec.encrypted_data.insert(key.clone(), ciphertext);
        }
    }
    Ok(sealed)
}

/// The template of a Secret manifest, carried into the SealedSecret.
pub fn template_of(secret: &Secret) -> Option<SealedSecretTemplate> {
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> = secret
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "kubectl.kubernetes.io/last-applied-configuration")
        .collect();
    let type_ = secret.type_.clone().filter(|t| t != "Opaque");
    let immutable = secret.immutable.unwrap_or(false);
    if labels.is_empty() && annotations.is_empty() && type_.is_none() && !immutable {
        return None;
    }
    Some(SealedSecretTemplate {
        type_,
        immutable,
        metadata: TemplateMetadata {
            labels,
            annotations,
        },
        data: BTreeMap::new(),
    })
}

/// Decrypts every key of a SealedSecret: its values by key, nothing from
/// the template (what `reseal` seals again).
pub fn decrypt_all(
    sealed: &SealedSecret,
    identities: &[BoxedIdentity],
) -> Result<BTreeMap<String, SecretValue>, ManifestError> {
    decrypt_values(sealed, identities).map_err(|e| {
        err(format!(
            "SealedSecret {}/{}: {e}",
            sealed.metadata.namespace.as_deref().unwrap_or_default(),
            sealed.metadata.name.as_deref().unwrap_or_default()
        ))
    })
}

/// [`decrypt_all`] as the controller reports it: an error names the field
/// (`spec.encryptedData.KEY: why`), not the object.
pub fn decrypt_values(
    sealed: &SealedSecret,
    identities: &[BoxedIdentity],
) -> Result<BTreeMap<String, SecretValue>, String> {
    let namespace = sealed.metadata.namespace.clone().unwrap_or_default();
    let name = sealed.metadata.name.clone().unwrap_or_default();
    let mut values = BTreeMap::new();
    for (key, ciphertext) in &sealed.spec.encrypted_data {
        let value = unseal(
            ciphertext.as_bytes(),
            identities,
            &binding(sealed.spec.scope, &namespace, &name, key),
        )
        .map_err(|e| format!("spec.encryptedData.{key}: {e}"))?;
        values.insert(key.clone(), value);
    }
    Ok(values)
}

/// Decrypts every key of a SealedSecret (offline recovery): the Secret it
/// stands for, with `spec.template.data` rendered as the controller renders
/// it, but without the controller's label, annotation and owner.
pub fn unseal_all(
    sealed: &SealedSecret,
    identities: &[BoxedIdentity],
    limits: &RenderLimits,
) -> Result<Secret, ManifestError> {
    let namespace = sealed.metadata.namespace.clone().unwrap_or_default();
    let name = sealed.metadata.name.clone().unwrap_or_default();
    let values = decrypt_all(sealed, identities)?;
    let template = sealed.spec.template.clone().unwrap_or_default();
    let rendered = render_template_data(&template.data, &values, limits)
        .map_err(|e| err(format!("SealedSecret {namespace}/{name}: {e}")))?;
    let mut data: BTreeMap<String, ByteString> = values
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.expose().to_vec())))
        .collect();
    data.extend(rendered);
    let mut secret = Secret {
        data: Some(data),
        type_: Some(template.type_.unwrap_or_else(|| "Opaque".into())),
        immutable: template.immutable.then_some(true),
        ..Default::default()
    };
    secret.metadata.name = Some(name);
    secret.metadata.namespace = Some(namespace);
    secret.metadata.labels =
        (!template.metadata.labels.is_empty()).then_some(template.metadata.labels);
    secret.metadata.annotations =
        (!template.metadata.annotations.is_empty()).then_some(template.metadata.annotations);
    Ok(secret)
}

/// `spec.template.data`, each text rendered with the unsealed values (a key
/// there replaces the decrypted key of that name), all within one budget.
/// An error names its key, never a value.
pub fn render_template_data(
    texts: &BTreeMap<String, String>,
    values: &BTreeMap<String, SecretValue>,
    limits: &RenderLimits,
) -> Result<BTreeMap<String, ByteString>, String> {
    let mut data = BTreeMap::new();
    if texts.is_empty() {
        return Ok(data);
    }
    let mut context = TemplateContext::new();
    for (k, v) in values {
        context.insert(k.clone(), v.clone());
    }
    let mut budget = limits.start();
    for (key, text) in texts {
        let rendered = Template::parse(text)
            .and_then(|mut t| t.render(&context, &mut budget))
            .map_err(|e| format!("spec.template.data.{key}: {e}"))?;
        data.insert(key.clone(), ByteString(rendered.expose().to_vec()));
    }
    Ok(data)
}
