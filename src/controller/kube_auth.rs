//! Store credentials from the cluster: TokenRequest for `auth.jwt`, Secrets
//! for `auth.secretRef`.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::SecretValue;
use crate::provider::aws::{KubernetesAuth, ServiceAccountToken, auth::ROLE_ARN_ANNOTATION};

pub struct ClusterAuth {
    pub client: kube::Client,
}

#[async_trait]
impl KubernetesAuth for ClusterAuth {
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
    ) -> Result<ServiceAccountToken, String> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let account = accounts
            .get(name)
            .await
            .map_err(|e| format!("ServiceAccount {namespace}/{name}: {e}"))?;
        let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": 3600}});
        let response: Value = accounts
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("TokenRequest for ServiceAccount {namespace}/{name}: {e}"))?;
        let token = response["status"]["token"].as_str().ok_or_else(|| {
            format!("TokenRequest for ServiceAccount {namespace}/{name} returned no token")
        })?;
        Ok(ServiceAccountToken {
            token: SecretValue::from(token),
            role_arn: account
                .metadata
                .annotations
                .and_then(|a| a.get(ROLE_ARN_ANNOTATION).cloned()),
        })
    }

    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<SecretValue, String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
        secret
            .data
            .and_then(|mut d| d.remove(key))
            .map(|v| SecretValue::new(v.0))
            .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))
    }
}
