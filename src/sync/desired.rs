//! ExternalSecret + fetched values -> the Secret that should exist.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::admission::{self, SecretShape, shown};
use super::decoding::decode;
use super::property::{PropertyError, field_value, json_property};
use super::requests::{find_request, value_request};
use super::rewrite::{convert_key, rewrite_keys};
use super::templating::{TemplateSources, apply_template};
use super::{CONTENT_HASH_ANNOTATION, MANAGED_LABEL, SyncError, check, hash};
use crate::SecretValue;
use crate::api::{
    ConversionStrategy, CreationPolicy, ExternalSecret, NullBytePolicy, RemoteRef,
    is_valid_secret_key,
};
use crate::provider::{FetchResults, Fetched, ProviderError, RemoteRequest};
use crate::template::RenderLimits;

/// The Secret an ExternalSecret should produce. Built whole or not at all: a
/// failure anywhere yields an error, never a partial Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredSecret {
    pub name: String,
    pub namespace: String,
    pub type_: String,
    pub immutable: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, SecretValue>,
    /// Also set as the `secretsync.io/content-hash` annotation.
    pub content_hash: String,
}

/// Annotations of an ExternalSecret that describe it, not its Secret.
const NOT_COPIED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    super::FORCE_SYNC_ANNOTATION,
    super::ESO_FORCE_SYNC_ANNOTATION,
];

/// What generators made for an ExternalSecret: by `dataFrom` index, each
/// generator's output keys and values.
pub type GeneratedData = BTreeMap<usize, BTreeMap<String, SecretValue>>;

/// Builds the desired Secret from what the provider answered for
/// [`remote_requests`](super::remote_requests) of this ExternalSecret. Its
/// templates together stay within `limits`. CPU work: drivers run it off the
/// async runtime. An ExternalSecret with generators needs
/// [`desired_secret_with_generated`].
pub fn desired_secret(
    es: &ExternalSecret,
    fetched: &FetchResults,
    sources: &TemplateSources,
    limits: &RenderLimits,
) -> Result<DesiredSecret, SyncError> {
    desired_secret_with_generated(es, fetched, &GeneratedData::new(), sources, limits)
}

/// [`desired_secret`], with what the generators of its `dataFrom` entries
/// made: their keys merge into the Secret as an `extract`'s do (rewrites and
/// templates apply).
pub fn desired_secret_with_generated(
    es: &ExternalSecret,
    fetched: &FetchResults,
    generated: &GeneratedData,
    sources: &TemplateSources,
    limits: &RenderLimits,
) -> Result<DesiredSecret, SyncError> {
    check(es)?;
    // templates: one budget for every template of this ExternalSecret.
    let mut budget = limits.start();
    let spec = &es.spec;
    let mut data = BTreeMap::new();

    for (i, item) in spec.data_from.iter().enumerate() {
        let entry = format!("spec.dataFrom[{i}]");
        if item.generator_ref().is_some() {
            let field = format!("{entry}.sourceRef.generatorRef");
            let map = generated
                .get(&i)
                .cloned()
                .ok_or_else(|| SyncError::NotGenerated {
                    field: field.clone(),
                })?;
            let map = rewrite_keys(map, &item.rewrite, &entry, &mut budget)?;
            for (key, value) in map {
                if !is_valid_secret_key(&key) {
                    return Err(SyncError::InvalidKey { field, key });
                }
                data.insert(key, value);
            }
        } else if let Some(extract) = &item.extract {
            let field = format!("{entry}.extract");
            let value = fetch_value(fetched, extract, &field)?;
            let map = json_object_fields(&value, extract, &field)?
                .into_iter()
                .map(|(k, v)| {
                    let v = decoded(v, extract, &field)?;
                    let what = || format!("of key {k:?} of remote key {:?}", extract.key);
                    refuse_null_bytes(&v, extract.null_byte_policy, &field, what)?;
                    Ok((k, v))
                })
                .collect::<Result<_, SyncError>>()?;
            if item.rewrite.is_empty() {
                // As ESO: field names become keys by `conversionStrategy`.
                insert_converted(&mut data, map, extract.conversion_strategy, &field, "")?;
                continue;
            }
            let map = rewrite_keys(map, &item.rewrite, &entry, &mut budget)?;
            for (key, value) in map {
                if !is_valid_secret_key(&key) {
                    return Err(SyncError::InvalidKey { field, key });
                }
                data.insert(key, value);
            }
        } else if let Some(find) = &item.find {
            let field = format!("{entry}.find");
            let request = find_request(find);
            let found = match lookup(fetched, &request) {
                Ok(Fetched::Found(found)) => found.clone(),
                Ok(Fetched::Value(_)) => BTreeMap::new(),
                Err(source) => {
                    return Err(SyncError::Provider {
                        field,
                        key: find.path.clone().unwrap_or_default(),
                        source,
                    });
                }
            };
            let mut map = BTreeMap::new();
            for (name, value) in found {
                let value = decode(value, find.decoding_strategy).map_err(|strategy| {
                    SyncError::Decoding {
                        field: field.clone(),
                        key: name.clone(),
                        strategy,
                    }
                })?;
                refuse_null_bytes(&value, find.null_byte_policy, &field, || {
                    format!("of remote key {name:?}")
                })?;
                map.insert(name, value);
            }
            let map = rewrite_keys(map, &item.rewrite, &entry, &mut budget)?;
            insert_converted(
                &mut data,
                map,
                find.conversion_strategy,
                &field,
                " (rename one with rewrite)",
            )?;
        }
    }

    for (i, item) in spec.data.iter().enumerate() {
        let field = format!("spec.data[{i}].remoteRef");
        let remote = &item.remote_ref;
        let mut value = fetch_value(fetched, remote, &field)?;
        if let Some(property) = &remote.property {
            value = json_property(&value, property).map_err(|e| match e {
                PropertyError::NotJson => SyncError::NotJson {
                    field: field.clone(),
                    key: remote.key.clone(),
                    property: Some(property.clone()),
                },
                PropertyError::NotFound => SyncError::PropertyNotFound {
                    field: field.clone(),
                    key: remote.key.clone(),
                    property: property.clone(),
                },
            })?;
        }
        let value = decoded(value, remote, &field)?;
        refuse_null_bytes(&value, remote.null_byte_policy, &field, || {
            format!("of remote key {:?}", remote.key)
        })?;
        data.insert(item.secret_key.clone(), value);
    }

    let rendered = match &spec.target.template {
        Some(template) => apply_template(template, data, sources, &mut budget)?,
        None => super::templating::Rendered {
            type_: "Opaque".into(),
            labels: es.metadata.labels.clone().unwrap_or_default(),
            annotations: es
                .metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| !NOT_COPIED_ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            data,
        },
    };

    let mut labels = rendered.labels;
    labels.insert(MANAGED_LABEL.into(), "true".into());
    let mut annotations = rendered.annotations;
    annotations.remove(CONTENT_HASH_ANNOTATION);
    let immutable = spec.target.immutable;
    let content_hash = hash::content_hash(
        &rendered.type_,
        immutable,
        &labels,
        &annotations,
        &rendered.data,
    );
    annotations.insert(CONTENT_HASH_ANNOTATION.into(), content_hash.clone());
    let secret = DesiredSecret {
        name: es.target_name().to_string(),
        namespace: es.metadata.namespace.clone().unwrap_or_default(),
        type_: rendered.type_,
        immutable,
        labels,
        annotations,
        data: rendered.data,
        content_hash,
    };
    // Nothing is written under creationPolicy None, so nothing can be refused.
    if spec.target.creation_policy != CreationPolicy::None {
        secret.admissible()?;
    }
    Ok(secret)
}

impl DesiredSecret {
    /// What the API server's checks read of this Secret.
    pub fn shape(&self) -> SecretShape<'_> {
        SecretShape {
            name: &self.name,
            namespace: &self.namespace,
            type_: &self.type_,
            labels: &self.labels,
            annotations: &self.annotations,
            data: self
                .data
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect(),
        }
    }

    /// Whether the API server would take this Secret; if not, every reason.
    pub fn admissible(&self) -> Result<(), SyncError> {
        admission::check(&self.shape()).map_err(|errors| SyncError::Refused {
            secret: format!("{}/{}", self.namespace, self.name),
            errors,
        })
    }

    /// The Secret object, ready to apply. This is where values leave their
    /// wrapper: call it only to write the Secret.
    pub fn to_secret(&self) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels.clone()),
                annotations: Some(self.annotations.clone()),
                ..Default::default()
            },
            type_: Some(self.type_.clone()),
            immutable: self.immutable.then_some(true),
            data: Some(
                self.data
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }
}

fn lookup(fetched: &FetchResults, request: &RemoteRequest) -> Result<Fetched, ProviderError> {
    match fetched.get(request) {
        Some(result) => result.clone(),
        None => Err(ProviderError::Unsupported(
            "the provider gave no answer for this reference".into(),
        )),
    }
}

fn fetch_value(
    fetched: &FetchResults,
    remote: &RemoteRef,
    field: &str,
) -> Result<SecretValue, SyncError> {
    match lookup(fetched, &value_request(remote)) {
        Ok(Fetched::Value(value)) => Ok(value),
        Ok(Fetched::Found(_)) => Err(SyncError::Provider {
            field: field.into(),
            key: remote.key.clone(),
            source: ProviderError::Unsupported(
                "the provider answered a value request with a list".into(),
            ),
        }),
        Err(source) => Err(SyncError::Provider {
            field: field.into(),
            key: remote.key.clone(),
            source,
        }),
    }
}

fn decoded(value: SecretValue, remote: &RemoteRef, field: &str) -> Result<SecretValue, SyncError> {
    decode(value, remote.decoding_strategy).map_err(|strategy| SyncError::Decoding {
        field: field.into(),
        key: remote.key.clone(),
        strategy,
    })
}

/// Inserts `map` under keys converted by `strategy`. As ESO: names that
/// differ only in characters a key may not hold (`app/db`, `app_db`) would
/// become one key; that is an error (`hint` says how to avoid it).
fn insert_converted(
    data: &mut BTreeMap<String, SecretValue>,
    map: BTreeMap<String, SecretValue>,
    strategy: Option<ConversionStrategy>,
    field: &str,
    hint: &'static str,
) -> Result<(), SyncError> {
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in map {
        let key = convert_key(&name, strategy);
        // Empty, `.` or `..`: no conversion makes those keys.
        if !is_valid_secret_key(&key) {
            return Err(SyncError::InvalidKey {
                field: field.into(),
                key: shown(&key),
            });
        }
        if let Some(first) = origin.get(&key) {
            return Err(SyncError::KeyCollision {
                field: field.into(),
                first: shown(first),
                second: shown(&name),
                key: shown(&key),
                hint,
            });
        }
        origin.insert(key.clone(), name);
        data.insert(key, value);
    }
    Ok(())
}

/// `nullBytePolicy: Fail`: a value holding a NUL byte fails the sync; the
/// message names the value, never shows it.
fn refuse_null_bytes(
    value: &SecretValue,
    policy: Option<NullBytePolicy>,
    field: &str,
    what: impl FnOnce() -> String,
) -> Result<(), SyncError> {
    if policy == Some(NullBytePolicy::Fail) && value.expose().contains(&0) {
        return Err(SyncError::NullBytes {
            field: field.into(),
            what: what(),
        });
    }
    Ok(())
}

/// `extract`: every field of a JSON object (at `property`, if set) as a key.
fn json_object_fields(
    value: &SecretValue,
    extract: &RemoteRef,
    field: &str,
) -> Result<BTreeMap<String, SecretValue>, SyncError> {
    let not_json = || SyncError::NotJson {
        field: field.into(),
        key: extract.key.clone(),
        property: extract.property.clone(),
    };
    let value = match &extract.property {
        Some(property) => json_property(value, property).map_err(|e| match e {
            PropertyError::NotJson => not_json(),
            PropertyError::NotFound => SyncError::PropertyNotFound {
                field: field.into(),
                key: extract.key.clone(),
                property: property.clone(),
            },
        })?,
        None => value.clone(),
    };
    let json: serde_json::Value = serde_json::from_slice(value.expose()).map_err(|_| not_json())?;
    let serde_json::Value::Object(object) = json else {
        return Err(SyncError::NotJsonObject {
            field: field.into(),
            key: extract.key.clone(),
        });
    };
    Ok(object
        .iter()
        .map(|(k, v)| (k.clone(), field_value(v)))
        .collect())
}
