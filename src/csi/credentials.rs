//! Each Mount acts as the pod, never as the provider: the pod's own
//! ServiceAccount token (which the kubelet minted for the mount, audience
//! `sts.amazonaws.com`) is exchanged with AssumeRoleWithWebIdentity for the
//! role annotated on the pod's ServiceAccount (`eks.amazonaws.com/role-arn`).
//! AWS checks the token against the role's trust policy, so a pod gets exactly
//! what its own role may read. Credentials are cached per (role, token) until
//! shortly before they expire: a rotation poll does not cost an STS call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_smithy_types::error::display::DisplayErrorContext;
use base64::Engine;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use sha2::{Digest, Sha256};

use super::attributes::PodIdentity;
use crate::SecretValue;
use crate::provider::aws::auth::ROLE_ARN_ANNOTATION;

/// Cached credentials are used until this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// At most this many credentials are cached (one per pod and token).
const CACHE_LIMIT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The request lacks what acting as the pod needs (token, annotation).
    #[error("{0}")]
    Precondition(String),
    /// The token is not the pod's own.
    #[error("{0}")]
    Denied(String),
    /// Kubernetes or STS failed or refused.
    #[error("{0}")]
    Unavailable(String),
}

pub struct PodCredentials {
    kube: kube::Client,
    sts: aws_sdk_sts::Client,
    audience: String,
    cache: Mutex<HashMap<(String, String), Credentials>>,
}

impl PodCredentials {
    /// `base` gives STS its endpoint and region; no credentials are used for
    /// AssumeRoleWithWebIdentity.
    pub fn new(kube: kube::Client, base: &SdkConfig, audience: String) -> Self {
        let mut config = aws_sdk_sts::config::Builder::from(base);
        config.set_credentials_provider(None);
        Self {
            kube,
            sts: aws_sdk_sts::Client::from_conf(config.build()),
            audience,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Credentials of the pod's role, from the pod's token for our audience.
    pub async fn for_pod(
        &self,
        pod: &PodIdentity,
        tokens: &std::collections::BTreeMap<String, SecretValue>,
    ) -> Result<Credentials, CredentialsError> {
        let account = format!("ServiceAccount {}/{}", pod.namespace, pod.service_account);
        let token = tokens.get(&self.audience).ok_or_else(|| {
            let given: Vec<&String> = tokens.keys().collect();
            CredentialsError::Precondition(format!(
                "no ServiceAccount token for audience {:?} in the mount request (given: {given:?}): set tokenRequests: [{{audience: {:?}}}] on the CSIDriver secrets-store.csi.k8s.io",
                self.audience, self.audience
            ))
        })?;
        let token = token.expose_str().ok_or_else(|| {
            CredentialsError::Denied("the ServiceAccount token is not text".into())
        })?;
        check_subject(token, pod)?;
        let role = self.role_of(pod, &account).await?;

        let key = (role.clone(), hex::encode(Sha256::digest(token.as_bytes())));
        if let Some(cached) = self.cached(&key) {
            return Ok(cached);
        }
        let output = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&role)
            .role_session_name(session_name(pod))
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| {
                CredentialsError::Unavailable(format!(
                    "{account}: AssumeRoleWithWebIdentity for {role}: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        let issued = output.credentials.ok_or_else(|| {
            CredentialsError::Unavailable(format!(
                "{account}: AssumeRoleWithWebIdentity returned no credentials"
            ))
        })?;
        let credentials = Credentials::new(
            issued.access_key_id,
            issued.secret_access_key,
            Some(issued.session_token),
            SystemTime::try_from(issued.expiration).ok(),
            "secretsync-csi",
        );
        self.remember(key, credentials.clone());
        Ok(credentials)
    }

    async fn role_of(&self, pod: &PodIdentity, account: &str) -> Result<String, CredentialsError> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.kube.clone(), &pod.namespace);
        let found = accounts
            .get_opt(&pod.service_account)
            .await
            .map_err(|e| CredentialsError::Unavailable(format!("reading {account}: {e}")))?
            .ok_or_else(|| CredentialsError::Precondition(format!("{account} not found")))?;
        found
            .metadata
            .annotations
            .and_then(|a| a.get(ROLE_ARN_ANNOTATION).cloned())
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| {
                CredentialsError::Precondition(format!(
                    "{account} has no {ROLE_ARN_ANNOTATION} annotation: annotate it with the IAM role the pod may use"
                ))
            })
    }

    fn cached(&self, key: &(String, String)) -> Option<Credentials> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let credentials = cache.get(key)?;
        let fresh = credentials
            .expiry()
            .is_none_or(|expiry| expiry > SystemTime::now() + EXPIRY_MARGIN);
        fresh.then(|| credentials.clone())
    }

    fn remember(&self, key: (String, String), credentials: Credentials) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            let soon = SystemTime::now() + EXPIRY_MARGIN;
            cache.retain(|_, c| c.expiry().is_none_or(|e| e > soon));
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(key, credentials);
    }
}

/// The token must be the pod's ServiceAccount's: its `sub` claim is
/// `system:serviceaccount:NAMESPACE:NAME`. (STS verifies the signature; this
/// refuses early, and clearly, a token that belongs to someone else.)
fn check_subject(token: &str, pod: &PodIdentity) -> Result<(), CredentialsError> {
    let expected = format!(
        "system:serviceaccount:{}:{}",
        pod.namespace, pod.service_account
    );
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .ok_or_else(|| CredentialsError::Denied("the ServiceAccount token is not a JWT".into()))?;
    match claims.get("sub").and_then(|s| s.as_str()) {
        Some(subject) if subject == expected => Ok(()),
        Some(subject) => Err(CredentialsError::Denied(format!(
            "the ServiceAccount token is for {subject:?}, not for the pod's {expected:?}"
        ))),
        None => Err(CredentialsError::Denied(
            "the ServiceAccount token has no sub claim".into(),
        )),
    }
}

/// `secretsync.NAMESPACE.POD`, within STS's 64 characters of `[\w+=,.@-]`,
/// so CloudTrail says which pod read what.
fn session_name(pod: &PodIdentity) -> String {
    let name: String = format!("secretsync.{}.{}", pod.namespace, pod.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodIdentity {
        PodIdentity {
            namespace: "team".into(),
            name: "app-7f9c".into(),
            uid: "u".into(),
            service_account: "app".into(),
        }
    }

    fn jwt(sub: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            engine.encode(r#"{"alg":"RS256"}"#),
            engine.encode(serde_json::json!({"sub": sub}).to_string())
        )
    }

    #[test]
    fn only_the_pods_own_token_is_accepted() {
        assert!(check_subject(&jwt("system:serviceaccount:team:app"), &pod()).is_ok());
        let other = check_subject(&jwt("system:serviceaccount:team:admin"), &pod()).unwrap_err();
        assert!(other.to_string().contains("team:admin"), "{other}");
        assert!(check_subject("not-a-jwt", &pod()).is_err());
    }

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name(&pod()), "secretsync.team.app-7f9c");
        let long = PodIdentity {
            name: "x".repeat(100),
            ..pod()
        };
        assert_eq!(session_name(&long).len(), 64);
    }
}
