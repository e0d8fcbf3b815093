//! AWS credentials for a store, in ESO's order: `auth.jwt` (a ServiceAccount
//! token exchanged with AssumeRoleWithWebIdentity), else `auth.secretRef`
//! (static keys from a Secret), else the default chain (the pod's own IRSA
//! through `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, or static env keys).
//! Then `additionalRoles` in order, then `role` with `externalID`,
//! `sessionTags` and `transitiveTagKeys`. Credentials are cached by the SDK client and refreshed
//! shortly before they expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::SecretValue;
use crate::api::{AwsProvider as AwsSpec, SecretKeySelector};
use crate::provider::{ApiFailure, ProviderError};

/// Audience every IRSA token carries.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// ServiceAccount annotation naming the IAM role for IRSA.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
const SESSION_NAME: &str = "secretsync";
/// Static keys from a Secret are read again this often, so a rotation is seen.
const SECRET_REF_REREAD: Duration = Duration::from_secs(300);

/// The Kubernetes side of store credentials. The controller implements it with
/// the API server; `render` with the manifests it was given; tests with fixtures.
#[async_trait]
pub trait KubernetesAuth: Send + Sync {
    /// A token for the ServiceAccount (TokenRequest with these audiences) and
    /// the role ARN its `eks.amazonaws.com/role-arn` annotation names.
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
    ) -> Result<ServiceAccountToken, String>;

    /// One key of a Secret.
    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<SecretValue, String>;
}

pub struct ServiceAccountToken {
    pub token: SecretValue,
    pub role_arn: Option<String>,
}

/// For callers with no cluster: every Kubernetes-backed credential is refused
/// with a message saying so.
pub struct NoKubernetes;

#[async_trait]
impl KubernetesAuth for NoKubernetes {
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        _: &[String],
    ) -> Result<ServiceAccountToken, String> {
        Err(format!(
            "cannot request a token for ServiceAccount {namespace}/{name} without a cluster"
        ))
    }
    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        _: &str,
    ) -> Result<SecretValue, String> {
        Err(format!(
            "Secret {namespace}/{name} is not available without a cluster"
        ))
    }
}

/// The credentials provider a store's spec asks for. `store_namespace` is the
/// namespace of a SecretStore; a ClusterSecretStore's references must name theirs.
pub async fn credentials_provider(
    spec: &AwsSpec,
    store_namespace: Option<&str>,
    base: &SdkConfig,
    kube: Arc<dyn KubernetesAuth>,
) -> Result<SharedCredentialsProvider, ProviderError> {
    let auth = spec.auth.clone().unwrap_or_default();
    let namespace_of = |field: &str, given: &Option<String>| {
        given
            .as_deref()
            .or(store_namespace)
            .map(str::to_string)
            .ok_or_else(|| {
                ProviderError::Unsupported(format!(
                    "{field}.namespace is required in a ClusterSecretStore"
                ))
            })
    };
    let mut provider = if let Some(jwt) = &auth.jwt {
        let account = &jwt.service_account_ref;
        let field = "spec.provider.aws.auth.jwt.serviceAccountRef";
        let mut audiences = vec![STS_AUDIENCE.to_string()];
        audiences.extend(account.audiences.iter().cloned());
        service_account_credentials(
            kube,
            namespace_of(field, &account.namespace)?,
            account.name.clone(),
            audiences,
            base,
            &spec.region,
        )
    } else if let Some(secret_ref) = &auth.secret_ref {
        let field = "spec.provider.aws.auth.secretRef";
        let selector = |name: &str, s: &SecretKeySelector| -> Result<_, ProviderError> {
            Ok((
                namespace_of(&format!("{field}.{name}"), &s.namespace)?,
                s.name.clone(),
                s.key.clone(),
            ))
        };
        SharedCredentialsProvider::new(SecretRefCredentials {
            kube,
            access_key_id: selector("accessKeyIDSecretRef", &secret_ref.access_key_id_secret_ref)?,
            secret_access_key: selector(
                "secretAccessKeySecretRef",
                &secret_ref.secret_access_key_secret_ref,
            )?,
            session_token: secret_ref
                .session_token_secret_ref
                .as_ref()
                .map(|s| selector("sessionTokenSecretRef", s))
                .transpose()?,
        })
    } else {
        base.credentials_provider().ok_or_else(|| {
            ProviderError::Unsupported("no AWS credentials: the default chain found none".into())
        })?
    };

    let region = aws_config::Region::new(spec.region.clone());
    let chain = spec.additional_roles.iter().map(|arn| (arn, false));
    for (arn, last) in chain.chain(spec.role.iter().map(|arn| (arn, true))) {
        if last && !spec.transitive_tag_keys.is_empty() {
            provider = SharedCredentialsProvider::new(TransitiveRoleCredentials {
                role_arn: arn.clone(),
                spec: spec.clone(),
                sts: signed_sts_client(base, &spec.region, provider),
            });
            continue;
        }
        let mut builder = AssumeRoleProvider::builder(arn.clone())
            .session_name(SESSION_NAME)
            .region(region.clone())
            .configure(base);
        if last {
            if let Some(external_id) = &spec.external_id {
                builder = builder.external_id(external_id.clone());
            }
            builder = builder.tags(
                spec.session_tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone())),
            );
        }
        provider = SharedCredentialsProvider::new(builder.build_from_provider(provider).await);
    }
    Ok(provider)
}

/// STS signed with `credentials`: the previous hop of a role chain.
fn signed_sts_client(
    base: &SdkConfig,
    region: &str,
    credentials: SharedCredentialsProvider,
) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::config::Builder::from(base)
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(credentials);
    aws_sdk_sts::Client::from_conf(config.build())
}

/// The last role of a chain assumed with `transitiveTagKeys` beside its
/// `sessionTags` and `externalID`: aws-config's `AssumeRoleProvider` has no
/// way to pass them, so this makes the AssumeRole call itself. The clients
/// given this provider cache what it returns until near expiry, as they do
/// `AssumeRoleProvider`'s.
#[derive(Debug)]
struct TransitiveRoleCredentials {
    role_arn: String,
    spec: AwsSpec,
    sts: aws_sdk_sts::Client,
}

impl TransitiveRoleCredentials {
    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let mut request = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(SESSION_NAME)
            .set_external_id(self.spec.external_id.clone())
            .set_transitive_tag_keys(Some(self.spec.transitive_tag_keys.clone()));
        for tag in &self.spec.session_tags {
            let tag = aws_sdk_sts::types::Tag::builder()
                .key(&tag.key)
                .value(&tag.value)
                .build()
                .map_err(CredentialsError::invalid_configuration)?;
            request = request.tags(tag);
        }
        let role_arn = &self.role_arn;
        let output = request
            .send()
            .await
            .map_err(|e| sts_failure(&e, format!("AssumeRole for {role_arn}")))?;
        session_credentials(output.credentials, "AssumeRole", "secretsync-assume-role")
    }
}

/// An STS failure as a credentials error, `what` failed: a refused token,
/// trust policy or tag stays refused, and says so, so that callers do not
/// retry what cannot pass.
fn sts_failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, HttpResponse>,
    what: String,
) -> CredentialsError {
    let message = format!("{what}: {}", super::describe(error));
    match super::failure_of(error) {
        ApiFailure::Transient => CredentialsError::provider_error(message),
        _ => CredentialsError::invalid_configuration(message),
    }
}

/// The session an STS `call` returned, as the SDK's credentials.
fn session_credentials(
    session: Option<aws_sdk_sts::types::Credentials>,
    call: &str,
    provider: &'static str,
) -> Result<Credentials, CredentialsError> {
    let session = session.ok_or_else(|| {
        CredentialsError::provider_error(format!("{call} returned no credentials"))
    })?;
    let expiry = SystemTime::try_from(session.expiration).ok();
    Ok(Credentials::new(
        session.access_key_id,
        session.secret_access_key,
        Some(session.session_token),
        expiry,
        provider,
    ))
}

impl ProvideCredentials for TransitiveRoleCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// IRSA for a chosen ServiceAccount: a token from `kube` (a TokenRequest
/// with `audiences`, or the CSI driver's token for a mount) exchanged with
/// AssumeRoleWithWebIdentity, in `region`, for the role its annotation names.
/// One exchange serves every client given this provider, until the
/// credentials near expiry.
pub fn service_account_credentials(
    kube: Arc<dyn KubernetesAuth>,
    namespace: String,
    name: String,
    audiences: Vec<String>,
    base: &SdkConfig,
    region: &str,
) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(ServiceAccountCredentials {
        kube,
        namespace,
        name,
        audiences,
        sts: unsigned_sts_client(base, region),
    })
}

/// STS for AssumeRoleWithWebIdentity, which takes no AWS credentials.
fn unsigned_sts_client(base: &SdkConfig, region: &str) -> aws_sdk_sts::Client {
    let mut config = aws_sdk_sts::config::Builder::from(base)
        .region(aws_config::Region::new(region.to_string()));
    config.set_credentials_provider(None);
    aws_sdk_sts::Client::from_conf(config.build())
}

/// IRSA for a chosen ServiceAccount: TokenRequest, then AssumeRoleWithWebIdentity
/// for the role its annotation names.
#[derive(Debug)]
struct ServiceAccountCredentials {
    kube: Arc<dyn KubernetesAuth>,
    namespace: String,
    name: String,
    audiences: Vec<String>,
    sts: aws_sdk_sts::Client,
}

impl std::fmt::Debug for dyn KubernetesAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubernetesAuth")
    }
}

impl ServiceAccountCredentials {
    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let account = format!("ServiceAccount {}/{}", self.namespace, self.name);
        let token = self
            .kube
            .service_account_token(&self.namespace, &self.name, &self.audiences)
            .await
            .map_err(|e| CredentialsError::provider_error(format!("{account}: {e}")))?;
        let role_arn = token.role_arn.ok_or_else(|| {
            CredentialsError::invalid_configuration(format!(
                "{account} has no {ROLE_ARN_ANNOTATION} annotation"
            ))
        })?;
        let web_identity = token
            .token
            .expose_str()
            .ok_or_else(|| {
                CredentialsError::provider_error(format!("{account}: the token is not text"))
            })?
            .to_string();
        let output = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&role_arn)
            .role_session_name(SESSION_NAME)
            .web_identity_token(web_identity)
            .send()
            .await
            .map_err(|e| {
                sts_failure(
                    &e,
                    format!("{account}: AssumeRoleWithWebIdentity for {role_arn}"),
                )
            })?;
        session_credentials(
            output.credentials,
            "AssumeRoleWithWebIdentity",
            "secretsync-jwt",
        )
    }
}

impl ProvideCredentials for ServiceAccountCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// Static keys read from Secrets; given a short expiry so that a rotated
/// Secret is read again without rebuilding the client.
#[derive(Debug)]
struct SecretRefCredentials {
    kube: Arc<dyn KubernetesAuth>,
    access_key_id: (String, String, String),
    secret_access_key: (String, String, String),
    session_token: Option<(String, String, String)>,
}

impl SecretRefCredentials {
    async fn read(
        &self,
        (namespace, name, key): &(String, String, String),
    ) -> Result<String, CredentialsError> {
        let value = self
            .kube
            .secret_key(namespace, name, key)
            .await
            .map_err(|e| CredentialsError::provider_error(format!("auth.secretRef: {e}")))?;
        let text = value.expose_str().ok_or_else(|| {
            CredentialsError::provider_error(format!(
                "auth.secretRef: key {key:?} of Secret {namespace}/{name} is not text"
            ))
        })?;
        Ok(text.trim().to_string())
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let session_token = match &self.session_token {
            Some(selector) => Some(self.read(selector).await?),
            None => None,
        };
        Ok(Credentials::new(
            self.read(&self.access_key_id).await?,
            self.read(&self.secret_access_key).await?,
            session_token,
            Some(SystemTime::now() + SECRET_REF_REREAD),
            "secretsync-secret-ref",
        ))
    }
}

impl ProvideCredentials for SecretRefCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}
