//! The pure half of a push: given a source Secret's values and what the
//! remote secret holds, which value goes where, whether it may be written
//! and whether it must be. No network, no Kubernetes client.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::SecretValue;
use crate::api::{
    ADVANCED_PARAMETER_MAX_VALUE, AwsService, ExternalSecretTemplate, MANAGED_BY_ESO,
    MANAGED_BY_TAG, MANAGED_BY_US, OWNER_TAG, ParameterStorePush, PushConversionStrategy,
    PushMetadata, PushSecretData, SECRETS_MANAGER_MAX_VALUE, STANDARD_PARAMETER_MAX_VALUE,
    TierType,
};
use crate::template::RenderLimits;

use super::SyncError;
use super::templating::{TemplateSources, apply_template};

/// Why one entry cannot be pushed. Names keys and fields, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("{field}: the source has no key {key:?}")]
    MissingKey { field: String, key: String },
    #[error("{field}: two source keys become {key:?} after conversion")]
    KeyCollision { field: String, key: String },
    #[error("{field}: the value is {size} bytes; {limit} is the most {service} takes{hint}")]
    TooLarge {
        field: String,
        size: usize,
        limit: usize,
        service: &'static str,
        hint: &'static str,
    },
    #[error(
        "{field}: the remote value of {key:?} is not a JSON object, so property {property:?} cannot be set in it"
    )]
    NotJsonObject {
        field: String,
        key: String,
        property: String,
    },
    #[error("{field}: {service} takes text only, and the value is not UTF-8{hint}")]
    NotText {
        field: String,
        service: &'static str,
        hint: &'static str,
    },
}

/// The source's values after the PushSecret's template, if any.
pub fn rendered_source(
    data: BTreeMap<String, SecretValue>,
    template: Option<&ExternalSecretTemplate>,
    limits: &RenderLimits,
) -> Result<BTreeMap<String, SecretValue>, SyncError> {
    let Some(template) = template else {
        return Ok(data);
    };
    let mut budget = limits.start();
    let rendered = apply_template(template, data, &TemplateSources::default(), &mut budget)?;
    Ok(rendered.data)
}

static UNICODE_ESCAPE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new("_U([0-9a-fA-F]{4,5})_").unwrap_or_else(|_| unreachable!()));

/// A key with ExternalSecret's `Unicode` escapes (`_U002f_`) turned back
/// into their characters; escapes that name no character stay as they are.
fn reverse_unicode(key: &str) -> String {
    UNICODE_ESCAPE
        .replace_all(key, |captures: &regex::Captures| {
            u32::from_str_radix(&captures[1], 16)
                .ok()
                .and_then(char::from_u32)
                .map(String::from)
                .unwrap_or_else(|| captures[0].to_string())
        })
        .into_owned()
}

/// The value one `data[]` entry pushes, before any property merge: the
/// Secret key's value, or with no `secretKey` the whole Secret as one JSON
/// object (Secrets Manager: values as text; Parameter Store: base64 unless
/// `encodeAsDecoded`, as ESO).
pub fn entry_value(
    entry: &PushSecretData,
    field: &str,
    source: &BTreeMap<String, SecretValue>,
    metadata: &PushMetadata,
    service: AwsService,
) -> Result<SecretValue, PushError> {
    let converted;
    let source = if entry.conversion_strategy == PushConversionStrategy::ReverseUnicode {
        let mut out = BTreeMap::new();
        for (key, value) in source {
            let key = reverse_unicode(key);
            if out.insert(key.clone(), value.clone()).is_some() {
                return Err(PushError::KeyCollision {
                    field: format!("{field}.conversionStrategy"),
                    key,
                });
            }
        }
        converted = out;
        &converted
    } else {
        source
    };
    if let Some(key) = &entry.match_.secret_key {
        return source
            .get(key)
            .cloned()
            .ok_or_else(|| PushError::MissingKey {
                field: format!("{field}.match.secretKey"),
                key: key.clone(),
            });
    }
    let as_text = match (service, metadata) {
        (AwsService::SecretsManager, _) => true,
        (AwsService::ParameterStore, PushMetadata::ParameterStore(ps)) => ps.encode_as_decoded,
        (AwsService::ParameterStore, _) => false,
    };
    let object: serde_json::Map<String, serde_json::Value> = source
        .iter()
        .map(|(key, value)| {
            let text = if as_text {
                String::from_utf8_lossy(value.expose()).into_owned()
            } else {
                base64::engine::general_purpose::STANDARD.encode(value.expose())
            };
            (key.clone(), serde_json::Value::String(text))
        })
        .collect();
    Ok(SecretValue::from(
        serde_json::to_string(&object).unwrap_or_default(),
    ))
}

/// `current` with `property` (a dotted path) set to `value` as text; a
/// missing or empty current value starts from `{}`. The other fields stay.
pub fn merge_property(
    current: Option<&SecretValue>,
    property: &str,
    value: &SecretValue,
    field: &str,
    key: &str,
) -> Result<SecretValue, PushError> {
    let not_object = || PushError::NotJsonObject {
        field: format!("{field}.match.remoteRef.property"),
        key: key.to_string(),
        property: property.to_string(),
    };
    let mut root = match current.filter(|c| !c.is_empty()) {
        Some(current) => serde_json::from_slice::<serde_json::Value>(current.expose())
            .map_err(|_| not_object())?,
        None => serde_json::Value::Object(serde_json::Map::new()),
    };
    let text = serde_json::Value::String(String::from_utf8_lossy(value.expose()).into_owned());
    let mut node = &mut root;
    let mut segments = property.split('.').peekable();
    while let Some(segment) = segments.next() {
        let object = node.as_object_mut().ok_or_else(not_object)?;
        if segments.peek().is_none() {
            object.insert(segment.to_string(), text);
            break;
        }
        node = object
            .entry(segment.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    Ok(SecretValue::from(
        serde_json::to_string(&root).unwrap_or_default(),
    ))
}

/// Checks the value against the service's limits before any call: too
/// large a value, or bytes Parameter Store cannot hold.
pub fn check_value(
    value: &SecretValue,
    field: &str,
    service: AwsService,
    metadata: &PushMetadata,
) -> Result<(), PushError> {
    let size = value.len();
    match service {
        AwsService::SecretsManager => {
            if size > SECRETS_MANAGER_MAX_VALUE {
                return Err(PushError::TooLarge {
                    field: field.to_string(),
                    size,
                    limit: SECRETS_MANAGER_MAX_VALUE,
                    service: "Secrets Manager",
                    hint: "",
                });
            }
            let as_string = matches!(metadata, PushMetadata::SecretsManager(sm)
                if sm.secret_push_format == Some(crate::api::SecretPushFormat::String));
            if as_string && value.expose_str().is_none() {
                return Err(PushError::NotText {
                    field: field.to_string(),
                    service: "secretPushFormat: string",
                    hint: " (leave secretPushFormat at binary for bytes)",
                });
            }
        }
        AwsService::ParameterStore => {
            let advanced = matches!(metadata, PushMetadata::ParameterStore(ParameterStorePush { tier: Some(tier), .. })
                if tier.tier != TierType::Standard);
            let (limit, hint) = if advanced {
                (ADVANCED_PARAMETER_MAX_VALUE, "")
            } else {
                (
                    STANDARD_PARAMETER_MAX_VALUE,
                    " in a standard parameter (metadata tier.type: Advanced takes 8192)",
                )
            };
            if size > limit {
                return Err(PushError::TooLarge {
                    field: field.to_string(),
                    size,
                    limit,
                    service: "Parameter Store",
                    hint,
                });
            }
            if value.expose_str().is_none() {
                return Err(PushError::NotText {
                    field: field.to_string(),
                    service: "Parameter Store",
                    hint: " (push it to Secrets Manager, or base64 it with a template)",
                });
            }
        }
    }
    Ok(())
}

/// The tags a remote secret pushed for `owner` (`namespace/name`) carries:
/// the entry's own, then ours, which win.
pub fn wanted_tags(metadata: &PushMetadata, owner: &str) -> BTreeMap<String, String> {
    let mut tags = metadata.tags();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY_US.into());
    tags.insert(OWNER_TAG.into(), owner.into());
    tags
}

/// Whether a PushSecret may write over (or delete) a remote secret that
/// exists with `tags`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Pushed by this PushSecret (or by ESO for it, before the move).
    Ours,
    /// Not to be touched; why, in words.
    Foreign(String),
}

pub fn ownership(tags: &BTreeMap<String, String>, owner: &str, key: &str) -> Ownership {
    let managed = tags.get(MANAGED_BY_TAG).map(String::as_str);
    match (managed, tags.get(OWNER_TAG)) {
        (Some(MANAGED_BY_US | MANAGED_BY_ESO), None) => Ownership::Ours,
        (Some(MANAGED_BY_US | MANAGED_BY_ESO), Some(tagged)) if tagged == owner => Ownership::Ours,
        (Some(MANAGED_BY_US | MANAGED_BY_ESO), Some(tagged)) => Ownership::Foreign(format!(
            "remote secret {key:?} is pushed by PushSecret {tagged}, not by this one"
        )),
        _ => Ownership::Foreign(format!(
            "remote secret {key:?} exists and is not managed by secretsync (no tag {MANAGED_BY_TAG}: {MANAGED_BY_US}); it is left alone"
        )),
    }
}

/// Whether the remote tags already hold every wanted tag.
pub fn tags_in_place(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> bool {
    wanted.iter().all(|(k, v)| current.get(k) == Some(v))
}

/// A keyed digest of a value, to tell later whether it changed without
/// keeping the value. Kept in memory only.
pub fn fingerprint(value: &SecretValue) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"secretsync push fingerprint\0");
    hasher.update(value.expose());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PushRemoteRef, PushSecretMatch};

    fn entry(secret_key: Option<&str>) -> PushSecretData {
        PushSecretData {
            match_: PushSecretMatch {
                secret_key: secret_key.map(String::from),
                remote_ref: PushRemoteRef {
                    remote_key: "k".into(),
                    property: None,
                },
            },
            ..Default::default()
        }
    }

    fn source() -> BTreeMap<String, SecretValue> {
        BTreeMap::from([
            ("user".to_string(), SecretValue::from("admin")),
            ("pass_U0024_".to_string(), SecretValue::from("p<w>")),
        ])
    }

    #[test]
    fn a_key_or_the_whole_secret_as_eso_pushes_them() {
        let defaults = PushMetadata::Defaults;
        let one = entry_value(
            &entry(Some("user")),
            "f",
            &source(),
            &defaults,
            AwsService::SecretsManager,
        )
        .unwrap();
        assert_eq!(one.expose(), b"admin");
        let whole = entry_value(
            &entry(None),
            "f",
            &source(),
            &defaults,
            AwsService::SecretsManager,
        )
        .unwrap();
        assert_eq!(
            whole.expose_str(),
            Some(r#"{"pass_U0024_":"p<w>","user":"admin"}"#)
        );
        let whole = entry_value(
            &entry(None),
            "f",
            &source(),
            &defaults,
            AwsService::ParameterStore,
        )
        .unwrap();
        assert_eq!(
            whole.expose_str(),
            Some(r#"{"pass_U0024_":"cDx3Pg==","user":"YWRtaW4="}"#)
        );
        let mut reversed = entry(Some("pass$"));
        reversed.conversion_strategy = PushConversionStrategy::ReverseUnicode;
        let value = entry_value(
            &reversed,
            "f",
            &source(),
            &defaults,
            AwsService::SecretsManager,
        )
        .unwrap();
        assert_eq!(value.expose(), b"p<w>");
        let missing = entry_value(
            &entry(Some("nope")),
            "spec.data[0]",
            &source(),
            &defaults,
            AwsService::SecretsManager,
        )
        .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "spec.data[0].match.secretKey: the source has no key \"nope\""
        );
    }

    #[test]
    fn a_property_merges_into_the_remote_object() {
        let current = SecretValue::from(r#"{"host":"db","auth":{"user":"a"}}"#);
        let merged = merge_property(
            Some(&current),
            "auth.pass",
            &SecretValue::from("s3"),
            "f",
            "k",
        )
        .unwrap();
        assert_eq!(
            merged.expose_str(),
            Some(r#"{"auth":{"pass":"s3","user":"a"},"host":"db"}"#)
        );
        let fresh = merge_property(None, "pass", &SecretValue::from("s3"), "f", "k").unwrap();
        assert_eq!(fresh.expose_str(), Some(r#"{"pass":"s3"}"#));
        let error = merge_property(
            Some(&SecretValue::from("plain-secret")),
            "pass",
            &SecretValue::from("s3"),
            "f",
            "k",
        )
        .unwrap_err()
        .to_string();
        assert!(
            !error.contains("plain-secret") && !error.contains("s3"),
            "{error}"
        );
    }

    #[test]
    fn limits_are_checked_before_any_call() {
        let defaults = PushMetadata::Defaults;
        let big = SecretValue::new(vec![b'a'; 70 * 1024]);
        let error =
            check_value(&big, "spec.data[0]", AwsService::SecretsManager, &defaults).unwrap_err();
        assert!(error.to_string().contains("65536"), "{error}");
        let eight = SecretValue::new(vec![b'a'; 8 * 1024]);
        assert!(check_value(&eight, "f", AwsService::ParameterStore, &defaults).is_err());
        assert!(check_value(&eight, "f", AwsService::SecretsManager, &defaults).is_ok());
        let bytes = SecretValue::new(vec![0xff, 0xfe]);
        assert!(check_value(&bytes, "f", AwsService::ParameterStore, &defaults).is_err());
    }

    #[test]
    fn only_our_own_or_esos_untaken_secrets_are_ours() {
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            ownership(
                &tags(&[("managed-by", "secretsync"), (OWNER_TAG, "a/p")]),
                "a/p",
                "k"
            ),
            Ownership::Ours
        );
        assert_eq!(
            ownership(&tags(&[("managed-by", "external-secrets")]), "a/p", "k"),
            Ownership::Ours
        );
        assert!(matches!(
            ownership(
                &tags(&[("managed-by", "secretsync"), (OWNER_TAG, "b/p")]),
                "a/p",
                "k"
            ),
            Ownership::Foreign(_)
        ));
        assert!(matches!(
            ownership(&tags(&[]), "a/p", "k"),
            Ownership::Foreign(_)
        ));
    }
}
