//! Each Mount acts as the pod, never as the provider. With IRSA (the
//! default) the pod's own ServiceAccount token (which the kubelet minted for
//! the mount, audience `sts.amazonaws.com`) is exchanged with
//! AssumeRoleWithWebIdentity for the role annotated on the pod's
//! ServiceAccount (`eks.amazonaws.com/role-arn`); with `usePodIdentity` the
//! pod's `pods.eks.amazonaws.com` token goes to the node's EKS Pod Identity
//! agent ([`super::pod_identity`]). AWS (or the agent) checks the token, so
//! a pod gets exactly what its own role may read. A SecretProviderClass may
//! chain one more role (`assumeRoleArn`): AssumeRole signed with the pod's
//! credentials, so the target role's trust policy decides whether the pod's
//! role may use it.
//!
//! The IRSA exchange is the provider layer's own (provider/aws/auth.rs), fed
//! with the token from the mount request instead of a TokenRequest. A pod
//! gets one credentials provider, behind one cache, that every store of the
//! mount uses (Secrets Manager and SSM, both regions): one STS call per pod
//! and token, however many services it reads. Those providers are kept per
//! (pod's ServiceAccount, role, token, chained role), so a remount or a
//! rotation poll with the same token reuses clients and credentials (no STS
//! call until they near expiry). The pod's credentials are had before
//! anything is read, so every pod's token is proven by AWS (or the agent)
//! even when its values come from a fetch it shares with other pods.
//! What a role may call (BatchGetSecretValue or only GetSecretValue) is
//! remembered per role, for every pod that uses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError as SdkCredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use base64::Engine;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use sha2::{Digest, Sha256};

use super::attributes::{AssumeRole, Auth, MountAttributes, POD_IDENTITY_AUDIENCE, PodIdentity};
use super::pod_identity::{Agent, PodIdentityCredentials};
use crate::SecretValue;
use crate::provider::aws::auth::{ROLE_ARN_ANNOTATION, service_account_credentials};
use crate::provider::aws::{BatchPermission, KubernetesAuth, RetrySettings, ServiceAccountToken};
use crate::provider::{ProviderContext, Providers};

/// A pod's providers are kept this long at most: a kubelet token lives an
/// hour by default, and a newer one makes a new entry anyway.
const MAX_AGE: Duration = Duration::from_secs(50 * 60);
/// At most this many pods' providers (and roles' permissions) are kept.
const CACHE_LIMIT: usize = 2048;
/// Credentials are had again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The session name of a chained `assumeRoleArn`.
const SESSION_NAME: &str = "secretsync-csi";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The request lacks what acting as the pod needs (token, annotation).
    #[error("{0}")]
    Precondition(String),
    /// The token is not the pod's own, or AWS (the agent) refused it.
    #[error("{0}")]
    Denied(String),
    /// The API server, STS or the agent failed in a way that may pass.
    #[error("{0}")]
    Unavailable(String),
}

/// Who a mount acts as, and its clients.
pub struct PodSession {
    pub providers: Arc<Providers>,
    /// The AWS identity the mount reads as (IRSA: namespace, ServiceAccount
    /// and role; Pod Identity: the credentials themselves; then any chained
    /// role). Two mounts with the same identity may read the same things.
    pub identity: String,
}

/// (auth, namespace, ServiceAccount, role, token digest, chained role).
type CacheKey = (String, String, String, String, String, Option<AssumeRole>);

struct Entry {
    made: Instant,
    providers: Arc<Providers>,
    credentials: Arc<Verified>,
    identity: String,
}

pub struct PodCredentials {
    kube: kube::Client,
    base: SdkConfig,
    audience: String,
    agent: Agent,
    cache: Mutex<HashMap<CacheKey, Arc<Entry>>>,
    batch_permissions: Mutex<HashMap<String, Arc<BatchPermission>>>,
}

impl PodCredentials {
    /// `base` gives AWS endpoints and the default region; its own credentials
    /// are never used for a mount. `agent` is where Pod Identity is asked.
    pub fn new(kube: kube::Client, base: SdkConfig, audience: String, agent: Agent) -> Self {
        Self {
            kube,
            base,
            audience,
            agent,
            cache: Mutex::new(HashMap::new()),
            batch_permissions: Mutex::new(HashMap::new()),
        }
    }

    /// Providers acting as the pod, from the pod's token; every store they
    /// build uses the pod's credentials (no store `auth`). `region` is where
    /// STS is asked (the mount's primary region). The credentials are had
    /// here, so a token AWS refuses fails the mount before anything is read.
    pub async fn for_pod(
        &self,
        attributes: &MountAttributes,
        region: &str,
    ) -> Result<PodSession, CredentialsError> {
        let pod = &attributes.pod;
        let account = format!("ServiceAccount {}/{}", pod.namespace, pod.service_account);
        let audience = match attributes.auth {
            Auth::Irsa => self.audience.as_str(),
            Auth::PodIdentity(_) => POD_IDENTITY_AUDIENCE,
        };
        let tokens = &attributes.tokens;
        let token = tokens.get(audience).ok_or_else(|| {
            let given: Vec<&str> = tokens.keys().map(String::as_str).collect();
            let given = if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            };
            CredentialsError::Precondition(format!(
                "the mount request has no ServiceAccount token for audience {audience} (given: {given}): add {{audience: {audience}}} to tokenRequests of the CSIDriver secrets-store.csi.k8s.io"
            ))
        })?;
        let text = token.expose_str().ok_or_else(|| {
            CredentialsError::Denied("the ServiceAccount token is not text".into())
        })?;
        check_subject(text, pod)?;
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let (auth, role) = match attributes.auth {
            Auth::Irsa => ("irsa".to_string(), self.role_of(pod, &account).await?),
            Auth::PodIdentity(preference) => {
                (format!("pod-identity {preference:?}"), String::new())
            }
        };
        let key: CacheKey = (
            auth,
            pod.namespace.clone(),
            pod.service_account.clone(),
            role.clone(),
            digest,
            attributes.assume_role.clone(),
        );
        let entry = match self.cached(&key) {
            Some(entry) => entry,
            None => {
                let made = self.make(attributes, token, role, region).await;
                self.keep(key, made)
            }
        };
        // Proves the token (one exchange per pod and token, then cached).
        let credentials = entry.credentials.credentials().await.map_err(|e| {
            let reason = crate::provider::aws::explain(&e);
            match e {
                SdkCredentialsError::InvalidConfiguration(_)
                | SdkCredentialsError::CredentialsNotLoaded(_) => CredentialsError::Denied(reason),
                _ => CredentialsError::Unavailable(reason),
            }
        })?;
        let identity = if entry.identity.is_empty() {
            // Pod Identity: the credentials are the identity (their session
            // tags name the pod), so only mounts holding the same may share.
            let digest = Sha256::digest(credentials.access_key_id().as_bytes());
            format!("pod-identity {}", hex::encode(&digest[..16]))
        } else {
            entry.identity.clone()
        };
        let identity = match &attributes.assume_role {
            None => identity,
            Some(chained) => format!(
                "{identity} then {} {:?} {:?}",
                chained.arn, chained.external_id, chained.duration
            ),
        };
        Ok(PodSession {
            providers: entry.providers.clone(),
            identity,
        })
    }

    /// A pod's providers and credentials.
    async fn make(
        &self,
        attributes: &MountAttributes,
        token: &SecretValue,
        role: String,
        region: &str,
    ) -> Entry {
        let pod = &attributes.pod;
        let (mut credentials, identity, mut batch_key) = match attributes.auth {
            Auth::Irsa => (
                service_account_credentials(
                    Arc::new(MountToken {
                        pod: pod.clone(),
                        token: token.clone(),
                        role: role.clone(),
                    }),
                    pod.namespace.clone(),
                    pod.service_account.clone(),
                    Vec::new(),
                    &self.base,
                    region,
                ),
                format!("irsa {}/{} {role}", pod.namespace, pod.service_account),
                role,
            ),
            Auth::PodIdentity(preference) => (
                SharedCredentialsProvider::new(PodIdentityCredentials {
                    agent: self.agent.clone(),
                    token: token.clone(),
                    preference,
                }),
                String::new(),
                format!("pod-identity {}/{}", pod.namespace, pod.service_account),
            ),
        };
        if let Some(chained) = &attributes.assume_role {
            let mut builder = AssumeRoleProvider::builder(chained.arn.clone())
                .session_name(SESSION_NAME)
                .region(aws_config::Region::new(region.to_string()))
                .configure(&self.base);
            if let Some(external_id) = &chained.external_id {
                builder = builder.external_id(external_id.clone());
            }
            if let Some(duration) = chained.duration {
                builder = builder.session_length(duration);
            }
            credentials =
                SharedCredentialsProvider::new(builder.build_from_provider(credentials).await);
            batch_key = chained.arn.clone();
        }
        let verified = Arc::new(Verified::new(credentials));
        // A cache of the pod's own, dropped with its providers.
        let as_pod = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(SharedVerified(
                verified.clone(),
            )))
            .identity_cache(IdentityCache::lazy().build())
            .build();
        let providers = Arc::new(Providers::new(ProviderContext {
            aws_base: Some(as_pod),
            batch_permission: Some(self.batch_permission(&batch_key)),
            // Short SDK retries: the mount tries again as a whole, with
            // backoff, for as long as its deadline allows.
            retry: RetrySettings {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                fixed_delay: false,
            },
            ..Default::default()
        }));
        Entry {
            made: Instant::now(),
            providers,
            credentials: verified,
            identity,
        }
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
                    "{account} has no {ROLE_ARN_ANNOTATION} annotation: annotate it with the IAM role the pod may use (or set usePodIdentity: \"true\" for EKS Pod Identity)"
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

    /// The cached entry for `key`, if young enough.
    fn cached(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, entry| entry.made.elapsed() < MAX_AGE);
        cache.get(key).cloned()
    }

    /// Keeps `made` for `key`, unless a mount of the same pod made one first.
    fn keep(&self, key: CacheKey, made: Entry) -> Arc<Entry> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = cache.get(&key) {
            return entry.clone();
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        let entry = Arc::new(made);
        cache.insert(key, entry.clone());
        entry
    }
}

/// Credentials had once and kept until shortly before they expire, so that
/// proving a pod's token before a mount and signing its calls cost one
/// exchange. Concurrent askers wait for one exchange.
#[derive(Debug)]
struct Verified {
    inner: SharedCredentialsProvider,
    held: tokio::sync::Mutex<Option<Credentials>>,
}

impl Verified {
    fn new(inner: SharedCredentialsProvider) -> Self {
        Self {
            inner,
            held: tokio::sync::Mutex::new(None),
        }
    }

    async fn credentials(&self) -> Result<Credentials, SdkCredentialsError> {
        let mut held = self.held.lock().await;
        if let Some(credentials) = held.as_ref() {
            let fresh = credentials
                .expiry()
                .is_none_or(|expiry| expiry > SystemTime::now() + REFRESH_BEFORE);
            if fresh {
                return Ok(credentials.clone());
            }
        }
        let credentials = self.inner.provide_credentials().await?;
        *held = Some(credentials.clone());
        Ok(credentials)
    }
}

/// The SDK's handle on a pod's [`Verified`] credentials.
#[derive(Debug)]
struct SharedVerified(Arc<Verified>);

impl ProvideCredentials for SharedVerified {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.0.credentials())
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
