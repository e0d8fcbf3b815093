//! ESO's STSSessionToken generator: GetSessionToken, split into ESO's keys.

use std::collections::BTreeMap;

use super::{Generated, GeneratorError, unix_seconds};
use crate::SecretValue;
use crate::api::StsSessionTokenSpec;
use crate::provider::Providers;
use crate::provider::aws::api_error;

pub(super) async fn generate(
    spec: &StsSessionTokenSpec,
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
    let client = aws_sdk_sts::Client::new(&config);
    let parameters = spec.request_parameters.clone().unwrap_or_default();
    let answer = client
        .get_session_token()
        .set_duration_seconds(parameters.session_duration)
        .set_serial_number(parameters.serial_number)
        .set_token_code(parameters.token_code)
        .send()
        .await
        .map_err(|e| GeneratorError::Aws(api_error("STS", "GetSessionToken", &e)))?;
    let credentials = answer.credentials.ok_or_else(|| {
        GeneratorError::Failed("STS GetSessionToken returned no credentials".into())
    })?;
    let expires_at = jiff::Timestamp::from_second(credentials.expiration.secs())
        .map_err(|_| GeneratorError::Failed("STS returned an expiry out of range".into()))?;
    let values = BTreeMap::from([
        (
            "access_key_id".to_string(),
            SecretValue::from(credentials.access_key_id),
        ),
        (
            "secret_access_key".to_string(),
            SecretValue::from(credentials.secret_access_key),
        ),
        (
            "session_token".to_string(),
            SecretValue::from(credentials.session_token),
        ),
        ("expiration".to_string(), unix_seconds(expires_at)),
    ]);
    Ok(Generated {
        values,
        expires_at: Some(expires_at),
    })
}
