//! Errors that name the field of a manifest that is wrong.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

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

/// The most bytes a Secret key, a DNS subdomain or a label/annotation key
/// prefix may have (Kubernetes' `DNS1123SubdomainMaxLength`).
pub const MAX_SUBDOMAIN_LEN: usize = 253;
/// The most bytes a DNS label, a label value or a qualified name's name part may have.
pub const MAX_LABEL_LEN: usize = 63;

/// Why `key` cannot be a key of a Secret (Kubernetes' `IsConfigMapKey`), or `None`.
pub fn secret_key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("must not be empty")
    } else if key.len() > MAX_SUBDOMAIN_LEN {
        Some("must be no more than 253 characters")
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        Some("may hold only letters, digits, '-', '_' and '.'")
    } else if key == "." || key == ".." {
        Some("must not be '.' or '..'")
    } else if key.starts_with("..") {
        Some("must not start with '..'")
    } else {
        None
    }
}

/// Kubernetes' rule for a Secret data key (`IsConfigMapKey`).
pub fn is_valid_secret_key(key: &str) -> bool {
    secret_key_problem(key).is_none()
}

/// Why `name` is not a lowercase RFC 1123 subdomain (the rule for most object
/// names, Secrets' among them), or `None`.
pub fn dns_subdomain_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_SUBDOMAIN_LEN {
        Some("must be no more than 253 characters")
    } else if !name.split('.').all(is_label_text) {
        Some(
            "must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
        )
    } else {
        None
    }
}

/// Why `name` is not a lowercase RFC 1123 label (the rule for namespace names), or `None`.
pub fn dns_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_LABEL_LEN {
        Some("must be no more than 63 characters")
    } else if !is_label_text(name) {
        Some(
            "must be a lowercase RFC 1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit",
        )
    } else {
        None
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, length unchecked.
fn is_label_text(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, length unchecked.
fn is_qualified_name_text(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Why `key` cannot be a label or annotation key (Kubernetes' `IsQualifiedName`:
/// an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters), or `None`.
pub fn qualified_name_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.contains('/') {
        return Some("may hold at most one '/' (prefix/name)");
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("has an empty prefix before '/'");
        }
        if dns_subdomain_problem(prefix).is_some() {
            return Some(
                "prefix (before '/') must be a lowercase DNS subdomain of at most 253 characters",
            );
        }
    }
    if name.is_empty() {
        Some("must have a name (after any prefix/)")
    } else if name.len() > MAX_LABEL_LEN {
        Some("name part must be no more than 63 characters")
    } else if !is_qualified_name_text(name) {
        Some(
            "name part may hold only letters, digits, '-', '_' and '.', and must start and end with a letter or digit",
        )
    } else {
        None
    }
}

/// Why `value` cannot be a label value, or `None`. The message never quotes
/// the value: a templated label may carry data.
pub fn label_value_problem(value: &str) -> Option<&'static str> {
    if value.len() > MAX_LABEL_LEN {
        Some("a label value must be no more than 63 characters")
    } else if !value.is_empty() && !is_qualified_name_text(value) {
        Some(
            "a label value may hold only letters, digits, '-', '_' and '.', and must start and end with a letter or digit",
        )
    } else {
        None
    }
}

/// Checks a label selector as the API server does (`LabelSelectorAsSelector`):
/// `In`/`NotIn` need values, `Exists`/`DoesNotExist` take none, keys are
/// qualified names and values label values. `field` is the selector's path.
/// Namespaces picked by name (`spec.namespaces`) and by label selectors
/// (`spec.namespaceSelectors`), as ClusterExternalSecret and
/// ClusterPushSecret pick them: each checked.
pub fn validate_namespace_picking(
    namespaces: &[String],
    selectors: &[LabelSelector],
    errors: &mut FieldErrors,
) {
    for (i, namespace) in namespaces.iter().enumerate() {
        if let Some(problem) = dns_label_problem(namespace) {
            errors.push(
                format!("spec.namespaces[{i}]"),
                format!("{namespace:?} is not a namespace name: it {problem}"),
            );
        }
    }
    for (i, selector) in selectors.iter().enumerate() {
        validate_label_selector(selector, &format!("spec.namespaceSelectors[{i}]"), errors);
    }
}

/// The errors of a spec nested at `spec.<under>` (each `spec.x` becomes
/// `spec.<under>.x`), added to `errors`.
pub fn nest_errors(inner: FieldErrors, under: &str, errors: &mut FieldErrors) {
    for mut error in inner.0 {
        error.field = match error.field.strip_prefix("spec") {
            Some(rest) => format!("spec.{under}{rest}"),
            None => error.field,
        };
        errors.0.push(error);
    }
}

pub fn validate_label_selector(selector: &LabelSelector, field: &str, errors: &mut FieldErrors) {
    for key in selector.match_labels.iter().flatten().map(|(k, _)| k) {
        if let Some(problem) = qualified_name_problem(key) {
            errors.push(
                format!("{field}.matchLabels"),
                format!("key {key:?} {problem}"),
            );
        }
    }
    for (key, value) in selector.match_labels.iter().flatten() {
        if let Some(problem) = label_value_problem(value) {
            errors.push(format!("{field}.matchLabels.{key}"), problem);
        }
    }
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let field = format!("{field}.matchExpressions[{i}]");
        if let Some(problem) = qualified_name_problem(&requirement.key) {
            errors.push(
                format!("{field}.key"),
                format!("{:?} {problem}", requirement.key),
            );
        }
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(
                format!("{field}.values"),
                format!("operator {} needs at least one value", requirement.operator),
            ),
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(
                format!("{field}.values"),
                format!("operator {} takes no values", requirement.operator),
            ),
            "Exists" | "DoesNotExist" => {}
            _ => errors.push(
                format!("{field}.operator"),
                format!(
                    "{:?} is not an operator (use In, NotIn, Exists or DoesNotExist)",
                    requirement.operator
                ),
            ),
        }
        for (j, value) in values.iter().enumerate() {
            if let Some(problem) = label_value_problem(value) {
                errors.push(format!("{field}.values[{j}]"), problem);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_follow_kubernetes_rules() {
        for good in ["a", "DB_PASSWORD", "tls.crt", "a-b_c.d", "0"] {
            assert!(is_valid_secret_key(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "ключ", "a:b", ".", "..", "..data", "..a"] {
            assert!(!is_valid_secret_key(bad), "{bad}");
        }
        assert!(is_valid_secret_key(".hidden"));
        assert!(is_valid_secret_key("a..b"));
        assert!(is_valid_secret_key(&"k".repeat(253)));
        assert!(!is_valid_secret_key(&"k".repeat(254)));
    }

    #[test]
    fn secret_key_pattern_agrees_with_the_rule() {
        let pattern = regex::Regex::new(crate::api::SECRET_KEY_PATTERN).unwrap();
        for key in [
            "a", ".a", "a..b", "tls.crt", "_", "-", "..", ".", "..a", "", "a b", "a/b", "ä",
        ] {
            assert_eq!(pattern.is_match(key), is_valid_secret_key(key), "{key:?}");
        }
    }

    #[test]
    fn label_and_annotation_keys_are_qualified_names() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "a_b-c.d",
            "x/y",
            "A1",
            &"n".repeat(63),
        ] {
            assert_eq!(qualified_name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a/b/c",
            "-a",
            "a-",
            "a b",
            "UPPER.example/a",
            &"n".repeat(64),
            &format!("{}/a", "p".repeat(254)),
        ] {
            assert!(qualified_name_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("v1.2_x-y"), None);
        assert!(label_value_problem("a b").is_some());
        assert!(label_value_problem(&"v".repeat(64)).is_some());
        assert!(label_value_problem("-v").is_some());
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert_eq!(dns_label_problem("team-a"), None);
        for bad in ["", "a.b", "../x", "..", "A", &"n".repeat(64), "a/b"] {
            assert!(dns_label_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn selectors_are_checked_as_the_api_server_does() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let requirement = |operator: &str, values: Option<Vec<&str>>| LabelSelectorRequirement {
            key: "team".into(),
            operator: operator.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        };
        let check = |requirements: Vec<LabelSelectorRequirement>| {
            let mut errors = FieldErrors::default();
            let selector = LabelSelector {
                match_expressions: Some(requirements),
                match_labels: None,
            };
            validate_label_selector(&selector, "sel", &mut errors);
            errors.to_string()
        };
        assert_eq!(check(vec![requirement("In", Some(vec!["a"]))]), "");
        assert_eq!(check(vec![requirement("Exists", None)]), "");
        assert_eq!(
            check(vec![requirement("NotIn", None)]),
            "sel.matchExpressions[0].values: operator NotIn needs at least one value"
        );
        assert_eq!(
            check(vec![requirement("In", Some(vec![]))]),
            "sel.matchExpressions[0].values: operator In needs at least one value"
        );
        assert_eq!(
            check(vec![requirement("Exists", Some(vec!["a"]))]),
            "sel.matchExpressions[0].values: operator Exists takes no values"
        );
        assert!(check(vec![requirement("Equals", None)]).contains("is not an operator"));
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
        let is_dns_subdomain = |name: &str| dns_subdomain_problem(name).is_none();
        let pattern = regex::Regex::new(crate::api::DNS_SUBDOMAIN_PATTERN).unwrap();
        for name in [
            "a",
            "my-app.secrets",
            "a.b.c",
            "0",
            "A",
            "-a",
            "a-",
            "a..b",
            ".a",
            "",
            "a_b",
            "../x",
        ] {
            assert_eq!(pattern.is_match(name), is_dns_subdomain(name), "{name:?}");
        }
        assert!(is_dns_subdomain("my-app.secrets"));
        assert!(!is_dns_subdomain("My-App"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
        assert!(!is_dns_subdomain("../../../x"));
        assert!(!is_dns_subdomain("/etc/passwd"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }
}
