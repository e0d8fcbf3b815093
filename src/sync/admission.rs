//! The rules the API server applies to a Secret, checked before anything is
//! written: what it would refuse, `render` refuses too, and the controller
//! reports it in the status instead of failing on the write. From Kubernetes'
//! own validation (`ValidateSecret`, `ValidateObjectMeta`, `ValidateLabels`,
//! `ValidateAnnotations`, `IsConfigMapKey`).
//!
//! Messages name the Secret's field and the key; never a value (a label or
//! annotation value may be template output, so it is not quoted either).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{
    FieldErrors, dns_label_problem, dns_subdomain_problem, label_value_problem,
    qualified_name_problem, secret_key_problem,
};

/// The most bytes a Secret's values may total (`core.MaxSecretSize`, 1 MiB).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
/// The most bytes an object's annotation keys and values may total (256 KiB).
pub const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;

/// What the checks read of a Secret; values only for their length and, for
/// the Docker types, whether they are JSON objects.
pub struct SecretShape<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub type_: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub data: BTreeMap<&'a str, &'a [u8]>,
}

impl<'a> SecretShape<'a> {
    /// The shape of a Secret object (SealedSecrets build these).
    pub fn of_secret(secret: &'a Secret, empty: &'a BTreeMap<String, String>) -> Self {
        Self {
            name: secret.metadata.name.as_deref().unwrap_or_default(),
            namespace: secret.metadata.namespace.as_deref().unwrap_or_default(),
            type_: secret.type_.as_deref().unwrap_or("Opaque"),
            labels: secret.metadata.labels.as_ref().unwrap_or(empty),
            annotations: secret.metadata.annotations.as_ref().unwrap_or(empty),
            data: secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.0.as_slice()))
                .collect(),
        }
    }
}

/// Checks a Secret object as the API server would; every problem, each with
/// its field.
pub fn check_secret(secret: &Secret) -> Result<(), FieldErrors> {
    let empty = BTreeMap::new();
    check(&SecretShape::of_secret(secret, &empty))
}

/// Every reason the API server would refuse a Secret of this shape.
pub fn check(secret: &SecretShape<'_>) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    if let Some(problem) = dns_subdomain_problem(secret.name) {
        errors.push(
            "metadata.name",
            format!(
                "{:?} is not a valid Secret name: it {problem}",
                shown(secret.name)
            ),
        );
    }
    if let Some(problem) = dns_label_problem(secret.namespace) {
        errors.push(
            "metadata.namespace",
            format!(
                "{:?} is not a valid namespace: it {problem}",
                shown(secret.namespace)
            ),
        );
    }
    for (key, value) in secret.labels {
        let field = format!("metadata.labels[{:?}]", shown(key));
        if let Some(problem) = qualified_name_problem(key) {
            errors.push(&field, format!("not a valid label key: it {problem}"));
        }
        if let Some(problem) = label_value_problem(value) {
            errors.push(&field, problem);
        }
    }
    let mut annotations_size: usize = 0;
    for (key, value) in secret.annotations {
        // The API server checks annotation keys lowercased.
        if let Some(problem) = qualified_name_problem(&key.to_ascii_lowercase()) {
            errors.push(
                format!("metadata.annotations[{:?}]", shown(key)),
                format!("not a valid annotation key: it {problem}"),
            );
        }
        annotations_size = annotations_size
            .saturating_add(key.len())
            .saturating_add(value.len());
    }
    if annotations_size > MAX_ANNOTATIONS_SIZE {
        errors.push(
            "metadata.annotations",
            format!(
                "keys and values total {annotations_size} bytes; the API server takes at most {MAX_ANNOTATIONS_SIZE} (256 KiB)"
            ),
        );
    }
    let mut size: usize = 0;
    for (key, value) in &secret.data {
        if let Some(problem) = secret_key_problem(key) {
            errors.push(
                format!("data[{:?}]", shown(key)),
                format!("not a valid Secret key: it {problem}"),
            );
        }
        size = size.saturating_add(value.len());
    }
    if size > MAX_SECRET_SIZE {
        errors.push(
            "data",
            format!(
                "the values total {size} bytes; the API server takes at most {MAX_SECRET_SIZE} (1 MiB) per Secret"
            ),
        );
    }
    check_type(secret, &mut errors);
    errors.into_result()
}

/// The keys each built-in Secret type requires.
fn check_type(secret: &SecretShape<'_>, errors: &mut FieldErrors) {
    let type_ = secret.type_;
    let has = |key: &str| secret.data.contains_key(key);
    let required = |errors: &mut FieldErrors, key: &str| {
        errors.push(
            format!("data[{key:?}]"),
            format!("is required by type {type_}"),
        );
    };
    match type_ {
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    required(errors, key);
                }
            }
        }
        "kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg" => {
            let key = if type_ == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match secret.data.get(key) {
                None => required(errors, key),
                Some(value) => {
                    let object = serde_json::from_slice::<serde_json::Value>(value)
                        .is_ok_and(|v| v.is_object());
                    if !object {
                        errors.push(
                            format!("data[{key:?}]"),
                            format!("must be a JSON object for type {type_}"),
                        );
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errors.push(
                "data",
                format!("type {type_} needs a \"username\" or a \"password\" key"),
            );
        }
        "kubernetes.io/ssh-auth"
            if secret
                .data
                .get("ssh-privatekey")
                .is_none_or(|v| v.is_empty()) =>
        {
            errors.push(
                "data[\"ssh-privatekey\"]",
                format!("is required, and must not be empty, for type {type_}"),
            );
        }
        "kubernetes.io/service-account-token" => {
            let name = "kubernetes.io/service-account.name";
            if secret.annotations.get(name).is_none_or(|v| v.is_empty()) {
                errors.push(
                    format!("metadata.annotations[{name:?}]"),
                    format!("is required by type {type_}"),
                );
            }
        }
        _ => {}
    }
}

/// A name or key as errors show it: at most 64 characters.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 64;
    let mut chars = text.chars();
    let shown: String = chars.by_ref().take(MAX).collect();
    if chars.next().is_some() {
        format!("{shown}...")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape<'a>(
        type_: &'a str,
        data: &[(&'a str, &'a [u8])],
        labels: &'a BTreeMap<String, String>,
        annotations: &'a BTreeMap<String, String>,
    ) -> SecretShape<'a> {
        SecretShape {
            name: "app",
            namespace: "team",
            type_,
            labels,
            annotations,
            data: data.iter().copied().collect(),
        }
    }

    fn problems(secret: &SecretShape<'_>) -> String {
        check(secret)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_plain_secret_passes() {
        let none = BTreeMap::new();
        assert_eq!(problems(&shape("Opaque", &[("a", b"1")], &none, &none)), "");
        assert_eq!(problems(&shape("custom/type", &[], &none, &none)), "");
    }

    #[test]
    fn names_keys_labels_and_annotations() {
        let labels: BTreeMap<String, String> = [
            ("bad key".to_string(), "ok".to_string()),
            ("app".to_string(), "has spaces s3cr3t".to_string()),
        ]
        .into();
        let annotations: BTreeMap<String, String> = [("a/b/c".to_string(), "x".to_string())].into();
        let mut secret = shape(
            "Opaque",
            &[("..data", b"v"), ("ok", b"v")],
            &labels,
            &annotations,
        );
        secret.name = "My_App";
        secret.namespace = "../../etc";
        let text = problems(&secret);
        for want in [
            "metadata.name: \"My_App\" is not a valid Secret name",
            "metadata.namespace: \"../../etc\" is not a valid namespace",
            "metadata.labels[\"bad key\"]: not a valid label key",
            "metadata.labels[\"app\"]: a label value may hold only",
            "metadata.annotations[\"a/b/c\"]: not a valid annotation key: it may hold at most one '/'",
            "data[\"..data\"]: not a valid Secret key: it must not start with '..'",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
        assert!(!text.contains("s3cr3t"), "label values are never quoted");
    }

    #[test]
    fn size_limits() {
        let none = BTreeMap::new();
        let big = vec![b'x'; MAX_SECRET_SIZE];
        assert_eq!(problems(&shape("Opaque", &[("a", &big)], &none, &none)), "");
        let text = problems(&shape("Opaque", &[("a", &big), ("b", b"1")], &none, &none));
        assert!(
            text.contains("data: the values total 1048577 bytes"),
            "{text}"
        );
        let annotations: BTreeMap<String, String> =
            [("a".to_string(), "v".repeat(MAX_ANNOTATIONS_SIZE))].into();
        let text = problems(&shape("Opaque", &[], &none, &annotations));
        assert!(
            text.contains("metadata.annotations: keys and values total 262145"),
            "{text}"
        );
    }

    #[test]
    fn required_keys_per_type() {
        let none = BTreeMap::new();
        type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], &'a str);
        let cases: &[Case] = &[
            (
                "kubernetes.io/tls",
                &[("tls.crt", b"c")],
                "data[\"tls.key\"]: is required by type kubernetes.io/tls",
            ),
            (
                "kubernetes.io/tls",
                &[("tls.crt", b"c"), ("tls.key", b"")],
                "",
            ),
            (
                "kubernetes.io/dockerconfigjson",
                &[],
                "data[\".dockerconfigjson\"]: is required",
            ),
            (
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", b"[1]")],
                "must be a JSON object",
            ),
            (
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", b"{\"auths\":{}}")],
                "",
            ),
            (
                "kubernetes.io/dockercfg",
                &[(".dockercfg", b"not json")],
                "data[\".dockercfg\"]: must be a JSON object",
            ),
            (
                "kubernetes.io/basic-auth",
                &[("user", b"u")],
                "needs a \"username\" or a \"password\" key",
            ),
            ("kubernetes.io/basic-auth", &[("password", b"")], ""),
            (
                "kubernetes.io/ssh-auth",
                &[("ssh-privatekey", b"")],
                "data[\"ssh-privatekey\"]: is required, and must not be empty",
            ),
            ("kubernetes.io/ssh-auth", &[("ssh-privatekey", b"k")], ""),
            (
                "kubernetes.io/service-account-token",
                &[],
                "metadata.annotations[\"kubernetes.io/service-account.name\"]: is required",
            ),
        ];
        for (type_, data, want) in cases {
            let text = problems(&shape(type_, data, &none, &none));
            if want.is_empty() {
                assert_eq!(text, "", "{type_}");
            } else {
                assert!(text.contains(want), "{type_}: {want}\n{text}");
            }
        }
    }

    #[test]
    fn secret_objects_are_checked_too() {
        use k8s_openapi::ByteString;
        let mut secret = Secret {
            type_: Some("kubernetes.io/tls".into()),
            data: Some([("..data".to_string(), ByteString(b"v".to_vec()))].into()),
            ..Default::default()
        };
        secret.metadata.name = Some("db".into());
        secret.metadata.namespace = Some("team".into());
        let text = check_secret(&secret).unwrap_err().to_string();
        assert!(
            text.contains("data[\"..data\"]: not a valid Secret key"),
            "{text}"
        );
        assert!(text.contains("data[\"tls.crt\"]: is required"), "{text}");
        secret.type_ = None;
        secret.data = None;
        assert_eq!(check_secret(&secret), Ok(()));
    }

    #[test]
    fn long_names_are_shortened() {
        let none = BTreeMap::new();
        let long = "k".repeat(300);
        let text = problems(&shape("Opaque", &[(&long, b"v")], &none, &none));
        assert!(
            text.contains("must be no more than 253 characters"),
            "{text}"
        );
        assert!(text.len() < 200, "{text}");
    }
}
