//! What a Mount request carries, as the Secrets Store CSI driver (1.5 and
//! 1.6) sends it: `attributes` is a JSON object of strings (the
//! SecretProviderClass parameters, plus what the kubelet adds:
//! `csi.storage.k8s.io/pod.name`, `pod.namespace`, `pod.uid`,
//! `serviceAccount.name`, `ephemeral` and, when the CSIDriver has
//! `tokenRequests`, `csi.storage.k8s.io/serviceAccount.tokens`; 1.5's
//! rotation sends only the parameters and the pod's keys); `secrets` is
//! Go's JSON of a map of strings that may be nil (`null`): the
//! nodePublishSecretRef data and, on 1.6 with `serviceAccountTokenInSecrets`,
//! the tokens (then in the attributes too); `permission` is a JSON number
//! (decimal mode bits, `"420"`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::SecretValue;

pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
pub const SERVICE_ACCOUNT: &str = "csi.storage.k8s.io/serviceAccount.name";
pub const TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";
pub const USE_POD_IDENTITY: &str = "usePodIdentity";
pub const PREFERRED_ADDRESS_TYPE: &str = "preferredAddressType";
/// Keys the driver itself adds beside the kubelet's `csi.storage.k8s.io/*`.
const DRIVER_KEYS: &[&str] = &["secretProviderClass", "providerName"];
/// ASCP's own parameters.
const ASCP_KEYS: &[&str] = &[
    crate::agent::objects::REGION,
    crate::agent::objects::FAILOVER_REGION,
    crate::agent::objects::PATH_TRANSLATION,
    crate::agent::objects::OBJECTS,
    USE_POD_IDENTITY,
    PREFERRED_ADDRESS_TYPE,
];

/// A Mount request, parsed.
pub struct MountAttributes {
    pub pod: PodIdentity,
    /// Tokens by audience.
    pub tokens: BTreeMap<String, SecretValue>,
    /// The SecretProviderClass parameters (every attribute, for `Objects`).
    pub parameters: BTreeMap<String, String>,
    /// Mode for files whose object sets no `filePermission`.
    pub permission: u32,
}

/// Who is mounting: the kubelet fills these in from the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AttributesError(pub String);

#[derive(Deserialize)]
struct TokenEntry {
    token: String,
}

impl MountAttributes {
    pub fn parse(
        attributes: &str,
        secrets: &str,
        permission: &str,
    ) -> Result<Self, AttributesError> {
        let fail = |m: String| Err(AttributesError(m));
        let parameters: BTreeMap<String, String> = match serde_json::from_str(attributes) {
            Ok(parameters) => parameters,
            Err(_) => return fail("attributes: not a JSON object of strings".into()),
        };
        // Go's json.Marshal of the driver's nil map (no nodePublishSecretRef,
        // no tokens in secrets) is `null`: the usual case, not an error.
        let secrets: BTreeMap<String, String> = if secrets.trim().is_empty() {
            BTreeMap::new()
        } else {
            match serde_json::from_str::<Option<BTreeMap<String, String>>>(secrets) {
                Ok(secrets) => secrets.unwrap_or_default(),
                // Never echo any part of it: it holds Secret data.
                Err(_) => return fail("secrets: not a JSON object of strings".into()),
            }
        };
        for key in parameters.keys() {
            let known = key.starts_with("csi.storage.k8s.io/")
                || DRIVER_KEYS.contains(&key.as_str())
                || ASCP_KEYS.contains(&key.as_str());
            if !known {
                return fail(format!(
                    "SecretProviderClass parameter {key:?} is not supported (known: region, failoverRegion, pathTranslation, objects, usePodIdentity, preferredAddressType)"
                ));
            }
        }
        let required = |key: &str| -> Result<String, AttributesError> {
            match parameters
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
            {
                Some(value) => Ok(value.to_string()),
                None => Err(AttributesError(format!(
                    "attribute {key} is missing: the CSIDriver object needs podInfoOnMount: true"
                ))),
            }
        };
        let pod = PodIdentity {
            namespace: required(POD_NAMESPACE)?,
            name: required(POD_NAME)?,
            uid: parameters.get(POD_UID).cloned().unwrap_or_default(),
            service_account: required(SERVICE_ACCOUNT)?,
        };
        match parameters
            .get(USE_POD_IDENTITY)
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => {}
            Some(v) if ["", "false", "f", "0"].contains(&v.as_str()) => {}
            Some(v) if ["true", "t", "1"].contains(&v.as_str()) => {
                return fail(
                    "usePodIdentity: EKS Pod Identity is not supported by the secretsync CSI provider; it uses IRSA with the pod's own ServiceAccount token".into(),
                );
            }
            Some(v) => return fail(format!("usePodIdentity: {v:?} is not a boolean")),
        }
        if parameters
            .get(PREFERRED_ADDRESS_TYPE)
            .is_some_and(|v| !v.trim().is_empty())
        {
            return fail("preferredAddressType applies to EKS Pod Identity only, which the secretsync CSI provider does not use".into());
        }
        // Driver 1.6 may move the tokens into `secrets` (and copies them into
        // the attributes); 1.5 sends them in the attributes only.
        let tokens_text = secrets
            .get(TOKENS)
            .filter(|t| !t.is_empty())
            .or_else(|| parameters.get(TOKENS));
        let tokens =
            match tokens_text.map(|t| serde_json::from_str::<BTreeMap<String, TokenEntry>>(t)) {
                None => BTreeMap::new(),
                Some(Ok(tokens)) => tokens
                    .into_iter()
                    .map(|(aud, t)| (aud, SecretValue::from(t.token)))
                    .collect(),
                Some(Err(_)) => {
                    return fail(format!(
                        "{TOKENS}: not a JSON object of {{\"<audience>\": {{\"token\": ...}}}}"
                    ));
                }
            };
        let permission = match permission.trim() {
            "" => 0o644,
            text => match text.parse::<u32>() {
                Ok(mode) if mode <= 0o777 => mode,
                _ => {
                    return fail(format!(
                        "permission {text:?} is not a file mode (decimal, at most 511)"
                    ));
                }
            },
        };
        Ok(Self {
            pod,
            tokens,
            parameters,
            permission,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(extra: &[(&str, &str)]) -> String {
        let mut map = serde_json::json!({
            POD_NAME: "app-1", POD_NAMESPACE: "team", POD_UID: "uid-1",
            SERVICE_ACCOUNT: "app", "secretProviderClass": "spc",
            "objects": "- {objectName: a, objectType: secretsmanager}",
        });
        for (k, v) in extra {
            map[*k] = serde_json::Value::String(v.to_string());
        }
        map.to_string()
    }

    #[test]
    fn reads_what_the_driver_sends() {
        let tokens =
            r#"{"sts.amazonaws.com":{"token":"t0k","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#;
        let parsed = MountAttributes::parse(
            &attributes(&[(TOKENS, tokens), ("region", "eu-west-1")]),
            "{}",
            "420",
        )
        .unwrap();
        assert_eq!(parsed.pod.service_account, "app");
        assert_eq!(parsed.pod.namespace, "team");
        assert_eq!(parsed.permission, 0o644);
        assert_eq!(parsed.tokens["sts.amazonaws.com"].expose(), b"t0k");
        // Driver 1.5+: the tokens in `secrets` win.
        let secrets =
            serde_json::json!({TOKENS: r#"{"sts.amazonaws.com":{"token":"fromsecrets"}}"#})
                .to_string();
        let parsed =
            MountAttributes::parse(&attributes(&[(TOKENS, tokens)]), &secrets, "256").unwrap();
        assert_eq!(parsed.tokens["sts.amazonaws.com"].expose(), b"fromsecrets");
        assert_eq!(parsed.permission, 0o400);
        // No nodePublishSecretRef: Go's JSON of the driver's nil map.
        let parsed =
            MountAttributes::parse(&attributes(&[(TOKENS, tokens)]), "null", "420").unwrap();
        assert_eq!(parsed.tokens["sts.amazonaws.com"].expose(), b"t0k");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let error = |a: &str, s: &str, p: &str| MountAttributes::parse(a, s, p).err().unwrap().0;
        assert!(error("nope", "", "420").contains("attributes"));
        assert!(
            error(&attributes(&[("usePodIdentity", "true")]), "", "420").contains("Pod Identity")
        );
        assert!(
            error(&attributes(&[("vaultAddress", "x")]), "", "420").contains("\"vaultAddress\"")
        );
        assert!(error(&attributes(&[]), "", "4095").contains("permission"));
        let e = error(&attributes(&[]), "{\"password\": hunter2", "420");
        assert!(e.contains("secrets") && !e.contains("hunter2"));
        let no_account = serde_json::json!({POD_NAME: "p", POD_NAMESPACE: "n"}).to_string();
        assert!(error(&no_account, "", "420").contains(SERVICE_ACCOUNT));
    }
}
