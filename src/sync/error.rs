//! Why an ExternalSecret could not become a Secret. Every variant names the
//! reference or key at fault; none carries a value.

use crate::api::FieldErrors;
use crate::provider::ProviderError;
use crate::template::TemplateError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error("{0}")]
    InvalidSpec(FieldErrors),
    #[error("{field} (remote key {key:?}): {source}")]
    Provider {
        field: String,
        key: String,
        source: ProviderError,
    },
    #[error("{field}: property {property:?} not found in remote key {key:?}")]
    PropertyNotFound {
        field: String,
        key: String,
        property: String,
    },
    #[error("{field}: remote key {key:?} is not JSON{}", property.as_ref().map(|p| format!(", so property {p:?} cannot be read")).unwrap_or_default())]
    NotJson {
        field: String,
        key: String,
        property: Option<String>,
    },
    #[error(
        "{field}: remote key {key:?} is not a JSON object, so it cannot be extracted into keys"
    )]
    NotJsonObject { field: String, key: String },
    #[error("{field}: value of remote key {key:?} is not valid {strategy}")]
    Decoding {
        field: String,
        key: String,
        strategy: &'static str,
    },
    #[error("{field}: invalid regexp: {message}")]
    Regexp { field: String, message: String },
    #[error(
        "{field}: produced key {key:?}, which is not a valid Secret key (must match ^[-._a-zA-Z0-9]+$)"
    )]
    InvalidKey { field: String, key: String },
    #[error("{field}: {error}")]
    Template { field: String, error: TemplateError },
    #[error("{field}: {kind} {name:?} {problem}")]
    TemplateSource {
        field: String,
        kind: &'static str,
        name: String,
        problem: String,
    },
    #[error("{field}: {first:?} and {second:?} both become Secret key {key:?}{hint}")]
    KeyCollision {
        field: String,
        first: String,
        second: String,
        key: String,
        /// How to tell them apart, e.g. " (use rewrite to rename one)".
        hint: &'static str,
    },
    #[error("{field}: key {from:?} becomes an empty key")]
    EmptyKey { field: String, from: String },
    #[error(
        "{field}: the value {what} holds NUL bytes and nullBytePolicy is Fail (store it PEM- or base64-encoded, or unset nullBytePolicy for binary data)"
    )]
    NullBytes {
        field: String,
        /// Which value: `of remote key "db"`, `of key "cert" of remote key "db"`.
        what: String,
    },
    #[error(
        "{field}: generators run only in the controller (render and the agent cannot run them)"
    )]
    NotGenerated { field: String },
    #[error("the Secret {secret} would be refused by the API server: {errors}")]
    Refused { secret: String, errors: FieldErrors },
}
