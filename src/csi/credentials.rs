//! Each Mount acts as the pod, never as the provider: the pod's own
//! ServiceAccount token (which the kubelet minted for the mount, audience
//! `sts.amazonaws.com`) is exchanged with AssumeRoleWithWebIdentity for the
//! role annotated on the pod's ServiceAccount (`eks.amazonaws.com/role-arn`).
//! AWS checks the token against the role's trust policy, so a pod gets exactly
//! what its own role may read.
//!
//! The exchange is the provider layer's own (provider/aws/auth.rs), fed with
//! the token from the mount request instead of a TokenRequest. A pod gets one
//! credentials provider, behind one cache, that every store of the mount uses
//! (Secrets Manager and SSM, both regions): one STS call per pod and token,
//! however many services it reads. Those providers are kept per (pod's
//! ServiceAccount, role, token), so a remount or a rotation poll with the
//! same token reuses clients and credentials (no STS call until they near
//! expiry). What a role may call (BatchGetSecretValue or only
//! GetSecretValue) is remembered per role, for every pod that uses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::identity::IdentityCache;
use base64::Engine;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use sha2::{Digest, Sha256};

use super::attributes::PodIdentity;
use crate::SecretValue;
use crate::provider::aws::auth::{ROLE_ARN_ANNOTATION, service_account_credentials};
use crate::provider::aws::{BatchPermission, KubernetesAuth, ServiceAccountToken};
use crate::provider::{ProviderContext, Providers};

/// A pod's providers are kept this long at most: a kubelet token lives an
/// hour by default, and a newer one makes a new entry anyway.
const MAX_AGE: Duration = Duration::from_secs(50 * 60);
/// At most this many pods' providers (and roles' permissions) are kept.
const CACHE_LIMIT: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The request lacks what acting as the pod needs (token, annotation).
    #[error("{0}")]
    Precondition(String),
    /// The token is not the pod's own.
    #[error("{0}")]
    Denied(String),
    /// The API server failed.
    #[error("{0}")]
    Unavailable(String),
}

type CacheKey = (String, String, String, String);

pub struct PodCredentials {
    kube: kube::Client,
    base: SdkConfig,
    audience: String,
    cache: Mutex<HashMap<CacheKey, (Instant, Arc<Providers>)>>,
    batch_permissions: Mutex<HashMap<String, Arc<BatchPermission>>>,
}

impl PodCredentials {
    /// `base` gives AWS endpoints and the default region; its own credentials
    /// are never used for a mount.
    pub fn new(kube: kube::Client, base: SdkConfig, audience: String) -> Self {
        Self {
            kube,
            base,
            audience,
            cache: Mutex::new(HashMap::new()),
            batch_permissions: Mutex::new(HashMap::new()),
        }
    }

    /// Providers acting as the pod, from the pod's token for our audience;
    /// every store they build uses the pod's credentials (no store `auth`).
    /// `region` is where STS is asked (the mount's primary region).
    pub async fn for_pod(
        &self,
        pod: &PodIdentity,
        tokens: &std::collections::BTreeMap<String, SecretValue>,
        region: &str,
    ) -> Result<Arc<Providers>, CredentialsError> {
        let account = format!("ServiceAccount {}/{}", pod.namespace, pod.service_account);
        let token = tokens.get(&self.audience).ok_or_else(|| {
            let given: Vec<&String> = tokens.keys().collect();
            CredentialsError::Precondition(format!(
                "no ServiceAccount token for audience {:?} in the mount request (given: {given:?}): set tokenRequests: [{{audience: {:?}}}] on the CSIDriver secrets-store.csi.k8s.io",
                self.audience, self.audience
            ))
        })?;
        let text = token.expose_str().ok_or_else(|| {
            CredentialsError::Denied("the ServiceAccount token is not text".into())
        })?;
        check_subject(text, pod)?;
        let role = self.role_of(pod, &account).await?;
        let key = (
            pod.namespace.clone(),
            pod.service_account.clone(),
            role.clone(),
            hex::encode(Sha256::digest(text.as_bytes())),
        );
        let batch_permission = self.batch_permission(&role);
        let providers = self.providers(key, || {
            let credentials = service_account_credentials(
                Arc::new(MountToken {
                    pod: pod.clone(),
                    token: token.clone(),
                    role,
                }),
                pod.namespace.clone(),
                pod.service_account.clone(),
                Vec::new(),
                &self.base,
                region,
            );
            // A cache of the pod's own, dropped with its providers.
            let as_pod = self
                .base
                .to_builder()
                .credentials_provider(credentials)
                .identity_cache(IdentityCache::lazy().build())
                .build();
            Providers::new(ProviderContext {
                aws_base: Some(as_pod),
                batch_permission: Some(batch_permission),
                ..Default::default()
            })
        });
        Ok(providers)
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

    /// What is known of `role`'s right to BatchGetSecretValue, shared by
    /// every pod that acts as it.
    fn batch_permission(&self, role: &str) -> Arc<BatchPermission> {
        let mut known = self
            .batch_permissions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if known.len() >= CACHE_LIMIT && !known.contains_key(role) {
            known.clear();
        }
        known.entry(role.to_string()).or_default().clone()
    }

    /// The cached providers for `key`, or new ones.
    fn providers(&self, key: CacheKey, make: impl FnOnce() -> Providers) -> Arc<Providers> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (made, _)| made.elapsed() < MAX_AGE);
        if let Some((_, providers)) = cache.get(&key) {
            return providers.clone();
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        let providers = Arc::new(make());
        cache.insert(key, (Instant::now(), providers.clone()));
        providers
    }
}

/// The Kubernetes side of the exchange for one mount: the pod's token from
/// the request and the role read from its ServiceAccount. It answers for that
/// ServiceAccount only.
struct MountToken {
    pod: PodIdentity,
    token: SecretValue,
    role: String,
}

#[async_trait]
impl KubernetesAuth for MountToken {
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        _: &[String],
    ) -> Result<ServiceAccountToken, String> {
        if namespace != self.pod.namespace || name != self.pod.service_account {
            return Err(format!(
                "a mount of a pod of ServiceAccount {}/{} cannot act as {namespace}/{name}",
                self.pod.namespace, self.pod.service_account
            ));
        }
        Ok(ServiceAccountToken {
            token: self.token.clone(),
            role_arn: Some(self.role.clone()),
        })
    }

    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        _: &str,
    ) -> Result<SecretValue, String> {
        Err(format!("a mount reads no Secret ({namespace}/{name})"))
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

    #[tokio::test]
    async fn the_mount_token_answers_for_the_pods_account_only() {
        let auth = MountToken {
            pod: pod(),
            token: SecretValue::from("t"),
            role: "arn:aws:iam::1:role/r".into(),
        };
        let own = auth
            .service_account_token("team", "app", &[])
            .await
            .unwrap();
        assert_eq!(own.role_arn.as_deref(), Some("arn:aws:iam::1:role/r"));
        assert!(
            auth.service_account_token("team", "admin", &[])
                .await
                .is_err()
        );
        assert!(
            auth.service_account_token("other", "app", &[])
                .await
                .is_err()
        );
    }
}
