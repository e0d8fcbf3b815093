//! Errors that name the field of a manifest that is wrong.

use std::fmt;

/// One problem with one field, e.g. `spec.data[1].secretKey: must match ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one object; validation reports them all at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

/// Deserializes `value`, or says which field is wrong: `spec.data[0].secretKey:
/// ...`. serde quotes the offending input in "invalid type/value" errors, and
/// that input may be a secret, so it is left out.
pub fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = without_literal(&e.into_inner().to_string());
        if path == "." {
            message
        } else {
            format!("{path}: {message}")
        }
    })
}

/// "invalid type: integer `42`, expected a string" -> "invalid type: integer, expected a string".
fn without_literal(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let prefix = &message[..message.len() - rest.len()];
    let what = rest.split([' ', ',']).next().unwrap_or_default();
    match rest.rfind(", expected") {
        Some(at) => format!("{prefix}{what}{}", &rest[at..]),
        None => format!("{prefix}{what}"),
    }
}

/// Kubernetes' rule for a Secret data key (`^[-._a-zA-Z0-9]+$`).
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Kubernetes' rule for an object name (RFC 1123 DNS subdomain).
pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_follow_kubernetes_rules() {
        for good in ["a", "DB_PASSWORD", "tls.crt", "a-b_c.d", "0"] {
            assert!(is_valid_secret_key(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "ключ", "a:b"] {
            assert!(!is_valid_secret_key(bad), "{bad}");
        }
    }

    #[test]
    fn literals_are_dropped_from_serde_messages() {
        assert_eq!(
            without_literal("invalid type: integer `424242`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_literal("invalid value: string \"p@ss, word\", expected base64"),
            "invalid value: string, expected base64"
        );
        assert_eq!(
            without_literal("unknown field `foo`"),
            "unknown field `foo`"
        );
    }

    #[test]
    fn names_are_dns_subdomains() {
        assert!(is_dns_subdomain("my-app.secrets"));
        assert!(!is_dns_subdomain("My-App"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
    }
}
