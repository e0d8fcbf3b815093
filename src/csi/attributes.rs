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
//!
//! Parameters ASCP does not read are ignored by ASCP; here too, and named
//! (the caller logs them). Beside ASCP's own, a SecretProviderClass may name
//! a role to assume after the pod's identity (`assumeRoleArn`,
//! `assumeRoleExternalId`, `assumeRoleDurationSeconds`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::SecretValue;

pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
pub const SERVICE_ACCOUNT: &str = "csi.storage.k8s.io/serviceAccount.name";
pub const TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";
pub const USE_POD_IDENTITY: &str = "usePodIdentity";
pub const PREFERRED_ADDRESS_TYPE: &str = "preferredAddressType";
pub const ASSUME_ROLE_ARN: &str = "assumeRoleArn";
pub const ASSUME_ROLE_EXTERNAL_ID: &str = "assumeRoleExternalId";
pub const ASSUME_ROLE_DURATION: &str = "assumeRoleDurationSeconds";
/// The audience of the token EKS Pod Identity takes.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
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
    ASSUME_ROLE_ARN,
    ASSUME_ROLE_EXTERNAL_ID,
    ASSUME_ROLE_DURATION,
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
    /// How the pod's identity is had.
    pub auth: Auth,
    /// A role to assume with the pod's credentials.
    pub assume_role: Option<AssumeRole>,
    /// Parameters neither ASCP nor secretsync reads, ignored.
    pub ignored: Vec<String>,
}

/// How a mount gets the pod's AWS identity (`usePodIdentity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// IRSA: the pod's `sts.amazonaws.com` token for its ServiceAccount's role.
    Irsa,
    /// EKS Pod Identity: the pod's `pods.eks.amazonaws.com` token, given to
    /// the node's Pod Identity agent.
    PodIdentity(AddressPreference),
}

/// Which address of the Pod Identity agent to try (`preferredAddressType`),
/// as ASCP reads it: `ipv4`, `ipv6`, else (`auto`, empty, anything else)
/// IPv4 then IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressPreference {
    Auto,
    Ipv4,
    Ipv6,
}

/// A role chained after the pod's identity: AssumeRole, signed with the
/// pod's credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AssumeRole {
    pub arn: String,
    pub external_id: Option<String>,
    pub duration: Option<Duration>,
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
        let ignored: Vec<String> = parameters
            .keys()
            .filter(|key| {
                !(key.starts_with("csi.storage.k8s.io/")
                    || DRIVER_KEYS.contains(&key.as_str())
                    || ASCP_KEYS.contains(&key.as_str()))
            })
            .cloned()
            .collect();
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
        let auth = match parameters.get(USE_POD_IDENTITY).map(String::as_str) {
            None | Some("") => Auth::Irsa,
            Some(text) => match go_bool(text) {
                Some(false) => Auth::Irsa,
                Some(true) => Auth::PodIdentity(address_preference(
                    parameters
                        .get(PREFERRED_ADDRESS_TYPE)
                        .map(String::as_str)
                        .unwrap_or_default(),
                )),
                None => {
                    return fail(format!(
                        "usePodIdentity {text:?} is not a boolean: use \"true\" or \"false\" (also taken: 1, 0, t, f, True, False, TRUE, FALSE)"
                    ));
                }
            },
        };
        let assume_role = assume_role(&parameters)?;
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
            auth,
            assume_role,
            ignored,
        })
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it, which is how ASCP reads
/// `usePodIdentity`.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `preferredAddressType` as ASCP reads it: any case; a value it does not
/// know is `auto`, not an error.
fn address_preference(text: &str) -> AddressPreference {
    match text.to_ascii_lowercase().as_str() {
        "ipv4" => AddressPreference::Ipv4,
        "ipv6" => AddressPreference::Ipv6,
        _ => AddressPreference::Auto,
    }
}

/// `assumeRoleArn` and its companions, checked as STS would check them.
fn assume_role(
    parameters: &BTreeMap<String, String>,
) -> Result<Option<AssumeRole>, AttributesError> {
    let get = |key: &str| {
        parameters
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let fail = |m: String| Err(AttributesError(m));
    let Some(arn) = get(ASSUME_ROLE_ARN) else {
        for key in [ASSUME_ROLE_EXTERNAL_ID, ASSUME_ROLE_DURATION] {
            if get(key).is_some() {
                return fail(format!("{key} is set but {ASSUME_ROLE_ARN} is not"));
            }
        }
        return Ok(None);
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[5].starts_with("role/")
    {
        return fail(format!(
            "{ASSUME_ROLE_ARN} {arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        ));
    }
    let external_id = match get(ASSUME_ROLE_EXTERNAL_ID) {
        None => None,
        Some(id) => {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c);
            if !(2..=1224).contains(&id.len()) || !id.chars().all(allowed) {
                return fail(format!(
                    "{ASSUME_ROLE_EXTERNAL_ID} must be 2 to 1224 characters of letters, digits and +=,.@:/-_"
                ));
            }
            Some(id.to_string())
        }
    };
    let duration = match get(ASSUME_ROLE_DURATION) {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) if (900..=43200).contains(&seconds) => Some(Duration::from_secs(seconds)),
            _ => {
                return fail(format!(
                    "{ASSUME_ROLE_DURATION} {text:?} must be a number of seconds from 900 to 43200"
                ));
            }
        },
    };
    Ok(Some(AssumeRole {
        arn: arn.to_string(),
        external_id,
        duration,
    }))
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
    fn reads_use_pod_identity_as_ascp() {
        let auth = |v: &str, p: &str| {
            MountAttributes::parse(
                &attributes(&[(USE_POD_IDENTITY, v), (PREFERRED_ADDRESS_TYPE, p)]),
                "",
                "420",
            )
            .map(|a| a.auth)
        };
        for yes in ["true", "True", "TRUE", "t", "T", "1"] {
            assert_eq!(
                auth(yes, ""),
                Ok(Auth::PodIdentity(AddressPreference::Auto))
            );
        }
        for no in ["", "false", "False", "FALSE", "f", "F", "0"] {
            assert_eq!(auth(no, "ipv6"), Ok(Auth::Irsa));
        }
        for bad in ["yes", "tRuE", " true", "2"] {
            let e = auth(bad, "").unwrap_err().0;
            assert!(
                e.starts_with("usePodIdentity") && e.contains("not a boolean"),
                "{e}"
            );
        }
        assert_eq!(
            auth("true", "IPv6"),
            Ok(Auth::PodIdentity(AddressPreference::Ipv6))
        );
        assert_eq!(
            auth("true", "ipv4"),
            Ok(Auth::PodIdentity(AddressPreference::Ipv4))
        );
        assert_eq!(
            auth("true", "dual"),
            Ok(Auth::PodIdentity(AddressPreference::Auto))
        );
    }

    #[test]
    fn reads_the_role_to_assume() {
        let parse = |extra: &[(&str, &str)]| MountAttributes::parse(&attributes(extra), "", "420");
        let role = parse(&[
            (ASSUME_ROLE_ARN, "arn:aws:iam::222222222222:role/reader"),
            (ASSUME_ROLE_EXTERNAL_ID, "team-42"),
            (ASSUME_ROLE_DURATION, "900"),
        ])
        .unwrap()
        .assume_role
        .unwrap();
        assert_eq!(role.external_id.as_deref(), Some("team-42"));
        assert_eq!(role.duration, Some(Duration::from_secs(900)));
        assert!(parse(&[]).unwrap().assume_role.is_none());
        let e = parse(&[(ASSUME_ROLE_ARN, "reader")]).err().unwrap().0;
        assert!(e.contains("not an IAM role ARN"), "{e}");
        let e = parse(&[
            (ASSUME_ROLE_ARN, "arn:aws:iam::2:role/r"),
            (ASSUME_ROLE_DURATION, "60"),
        ])
        .err()
        .unwrap()
        .0;
        assert!(e.contains("from 900 to 43200"), "{e}");
        let e = parse(&[(ASSUME_ROLE_EXTERNAL_ID, "x1")]).err().unwrap().0;
        assert!(e.contains("assumeRoleArn is not"), "{e}");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let error = |a: &str, s: &str, p: &str| MountAttributes::parse(a, s, p).err().unwrap().0;
        assert!(error("nope", "", "420").contains("attributes"));
        // What ASCP ignores is ignored, and named.
        let parsed =
            MountAttributes::parse(&attributes(&[("vaultAddress", "x")]), "", "420").unwrap();
        assert_eq!(parsed.ignored, ["vaultAddress"]);
        assert!(error(&attributes(&[]), "", "4095").contains("permission"));
        let e = error(&attributes(&[]), "{\"password\": hunter2", "420");
        assert!(e.contains("secrets") && !e.contains("hunter2"));
        let no_account = serde_json::json!({POD_NAME: "p", POD_NAMESPACE: "n"}).to_string();
        assert!(error(&no_account, "", "420").contains(SERVICE_ACCOUNT));
    }
}
