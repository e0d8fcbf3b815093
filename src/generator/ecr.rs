//! ESO's ECRAuthorizationToken generator: GetAuthorizationToken of ECR
//! (private registries) or ECR Public, split into ESO's keys.

use std::collections::BTreeMap;

use super::{Generated, GeneratorError, split_basic_token, unix_seconds};
use crate::SecretValue;
use crate::api::{EcrAuthorizationTokenSpec, EcrScope};
use crate::provider::Providers;
use crate::provider::aws::api_error;

pub(super) async fn generate(
    spec: &EcrAuthorizationTokenSpec,
    providers: &Providers,
    namespace: &str,
) -> Result<Generated, GeneratorError> {
    let config = super::resolve::aws_config(
        &spec.region,
        spec.role.as_deref(),
        spec.auth.as_ref(),
        providers,
        namespace,
    )
    .await?;
    let (token, proxy_endpoint, expires_at) = match spec.scope.unwrap_or_default() {
        EcrScope::Private => {
            let client = aws_sdk_ecr::Client::new(&config);
            let answer =
                client.get_authorization_token().send().await.map_err(|e| {
                    GeneratorError::Aws(api_error("ECR", "GetAuthorizationToken", &e))
                })?;
            let [data] = answer.authorization_data() else {
                return Err(GeneratorError::Failed(format!(
                    "ECR GetAuthorizationToken returned {} authorization tokens, expected 1",
                    answer.authorization_data().len()
                )));
            };
            (
                data.authorization_token().map(str::to_string),
                data.proxy_endpoint().map(str::to_string),
                data.expires_at().map(|t| t.secs()),
            )
        }
        EcrScope::Public => {
            let client = aws_sdk_ecrpublic::Client::new(&config);
            let answer = client.get_authorization_token().send().await.map_err(|e| {
                GeneratorError::Aws(api_error("ECR Public", "GetAuthorizationToken", &e))
            })?;
            let data = answer.authorization_data();
            (
                data.and_then(|d| d.authorization_token())
                    .map(str::to_string),
                None,
                data.and_then(|d| d.expires_at()).map(|t| t.secs()),
            )
        }
    };
    // Held as a value from here on: it is the credential.
    let token = SecretValue::new(
        token
            .ok_or_else(|| GeneratorError::Failed("ECR returned no authorization token".into()))?
            .into_bytes(),
    );
    let (username, password) = split_basic_token(token.expose_str().unwrap_or_default())?;
    let expires_at = expires_at
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .ok_or_else(|| {
            GeneratorError::Failed("ECR returned no expiry for the authorization token".into())
        })?;
    let mut values = BTreeMap::from([
        ("username".to_string(), username),
        ("password".to_string(), password),
        ("expires_at".to_string(), unix_seconds(expires_at)),
    ]);
    if let Some(endpoint) = proxy_endpoint {
        values.insert("proxy_endpoint".into(), SecretValue::from(endpoint));
    }
    Ok(Generated {
        values,
        expires_at: Some(expires_at),
    })
}
