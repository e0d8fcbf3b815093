//! EKS Pod Identity for a mount, as ASCP does it with `usePodIdentity: "true"`:
//! the pod's own ServiceAccount token of audience `pods.eks.amazonaws.com`
//! (from the mount request) goes, as the `Authorization` header, to the Pod
//! Identity agent on the node (`http://169.254.170.23/v1/credentials`, or
//! `http://[fd00:ec2::23]/v1/credentials`), which answers with the
//! credentials of the role associated with the pod's ServiceAccount, in the
//! JSON the SDKs' container credential provider reads (`AccessKeyId`,
//! `SecretAccessKey`, `Token`, `Expiration`).
//!
//! The agent speaks plain HTTP on a link-local address and answers one GET.
//! Throttling
//! (429), 5xx answers and failed connections are retried with backoff, so a
//! node starting many pods at once does not fail mounts on a passing error.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};

use super::attributes::AddressPreference;
use crate::SecretValue;

pub const IPV4_ENDPOINT: &str = "http://169.254.170.23/v1/credentials";
pub const IPV6_ENDPOINT: &str = "http://[fd00:ec2::23]/v1/credentials";
/// Attempts per endpoint for a passing failure.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// An answer larger than this is not the agent's.
const MAX_ANSWER: u64 = 64 * 1024;

/// Where the node's Pod Identity agent is, and how long one request may take.
#[derive(Clone, Debug)]
pub struct Agent {
    /// Replaces both addresses when set (a stand-in agent, tests).
    pub endpoint: Option<String>,
    pub timeout: Duration,
}

impl Default for Agent {
    fn default() -> Self {
        Self {
            endpoint: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why the agent gave no credentials; `final_` when asking again cannot help
/// (the agent answered 4xx: a token it refuses, no association).
#[derive(Debug)]
struct Failure {
    message: String,
    final_: bool,
}

impl Agent {
    /// The endpoints to try, in order, for a preference (ASCP's order).
    pub fn endpoints(&self, preference: AddressPreference) -> Vec<String> {
        if let Some(endpoint) = &self.endpoint {
            return vec![endpoint.clone()];
        }
        match preference {
            AddressPreference::Auto => vec![IPV4_ENDPOINT.into(), IPV6_ENDPOINT.into()],
            AddressPreference::Ipv4 => vec![IPV4_ENDPOINT.into()],
            AddressPreference::Ipv6 => vec![IPV6_ENDPOINT.into()],
        }
    }

    /// The pod's credentials. An answer of the agent (even a refusal) ends
    /// the search; an endpoint that cannot be reached passes on to the next.
    pub async fn credentials(
        &self,
        token: &SecretValue,
        preference: AddressPreference,
    ) -> Result<Credentials, CredentialsError> {
        let token = token.expose_str().ok_or_else(|| {
            CredentialsError::invalid_configuration("the Pod Identity token is not text")
        })?;
        let mut last = None;
        for endpoint in self.endpoints(preference) {
            match self.with_retries(&endpoint, token).await {
                Ok(credentials) => return Ok(credentials),
                Err(failure) if failure.final_ => {
                    return Err(CredentialsError::invalid_configuration(failure.message));
                }
                Err(failure) => {
                    tracing::warn!(%endpoint, reason = %failure.message, "the Pod Identity agent could not be asked");
                    last = Some(failure.message);
                }
            }
        }
        Err(CredentialsError::provider_error(last.unwrap_or_else(
            || "no Pod Identity agent endpoint to ask".into(),
        )))
    }

    async fn with_retries(&self, endpoint: &str, token: &str) -> Result<Credentials, Failure> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(self.timeout, ask(endpoint, token)).await {
                Ok(result) => result,
                Err(_) => Err(Failure {
                    message: format!(
                        "the Pod Identity agent at {endpoint} did not answer within {:?}",
                        self.timeout
                    ),
                    final_: false,
                }),
            };
            match result {
                Err(failure) if !failure.final_ && attempt < ATTEMPTS => {
                    tracing::debug!(%endpoint, attempt, reason = %failure.message, "retrying the Pod Identity agent");
                    tokio::time::sleep(super::jitter(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// One GET of the agent's credentials endpoint (ureq, on a blocking thread).
async fn ask(endpoint: &str, token: &str) -> Result<Credentials, Failure> {
    let url = url::Url::parse(endpoint).map_err(|e| Failure {
        message: format!("the Pod Identity agent endpoint {endpoint:?} is not a URL: {e}"),
        final_: true,
    })?;
    if url.scheme() != "http" || url.host_str().is_none() {
        return Err(Failure {
            message: format!(
                "the Pod Identity agent endpoint {endpoint:?} must be an http:// URL with a host"
            ),
            final_: true,
        });
    }
    let token = token.to_string();
    let (status, body) = tokio::task::spawn_blocking(move || get(url, &token))
        .await
        .map_err(|e| format!("asking failed: {e}"))
        .and_then(|answer| answer)
        .map_err(|reason| Failure {
            message: format!("the Pod Identity agent at {endpoint}: {reason}"),
            final_: false,
        })?;
    if status != 200 {
        // The agent's error JSON says `code` and `message`; nothing else of
        // the body is repeated.
        let said = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .map(|v| {
                ["code", "message"]
                    .iter()
                    .filter_map(|k| v.get(k).and_then(|m| m.as_str()))
                    .map(|m| m.chars().take(200).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .filter(|s| !s.is_empty())
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        return Err(Failure {
            message: format!(
                "the Pod Identity agent at {endpoint} refused the pod's token with HTTP {status}{said}"
            ),
            final_: status != 429 && status < 500,
        });
    }
    credentials_from(&body).map_err(|m| Failure {
        message: format!("the Pod Identity agent at {endpoint} answered {m}"),
        final_: false,
    })
}

/// Status and body (at most [`MAX_ANSWER`] bytes) of the GET; no proxy, no
/// redirect: the agent is on the node's link-local address.
fn get(url: url::Url, token: &str) -> Result<(u16, Vec<u8>), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .user_agent(concat!("secretsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent
        .get(url.as_str())
        .header("Authorization", token)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::Io(e) => format!("the connection failed: {e}"),
            _ => "could not connect".to_string(),
        })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|_| "the answer could not be read (or is larger than 64 KiB)".to_string())?;
    Ok((status, body))
}

/// The container credential provider's JSON.
fn credentials_from(body: &[u8]) -> Result<Credentials, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        expiration: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|_| {
        "a body that is not the credentials JSON (AccessKeyId, SecretAccessKey, Token, Expiration)"
            .to_string()
    })?;
    let expiry = match answer.expiration.as_deref() {
        None => None,
        Some(text) => Some(SystemTime::from(
            text.parse::<jiff::Timestamp>()
                .map_err(|_| format!("an Expiration that is not a time: {text:?}"))?,
        )),
    };
    Ok(Credentials::new(
        answer.access_key_id,
        answer.secret_access_key,
        answer.token,
        expiry,
        "secretsync-pod-identity",
    ))
}

/// The SDK's view of one pod's Pod Identity credentials.
#[derive(Debug)]
pub struct PodIdentityCredentials {
    pub agent: Agent,
    pub token: SecretValue,
    pub preference: AddressPreference,
}

impl ProvideCredentials for PodIdentityCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.agent.credentials(&self.token, self.preference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_preference_as_in_ascp() {
        let agent = Agent::default();
        assert_eq!(
            agent.endpoints(AddressPreference::Auto),
            [IPV4_ENDPOINT, IPV6_ENDPOINT]
        );
        assert_eq!(agent.endpoints(AddressPreference::Ipv6), [IPV6_ENDPOINT]);
        assert_eq!(agent.endpoints(AddressPreference::Ipv4), [IPV4_ENDPOINT]);
        let stand_in = Agent {
            endpoint: Some("http://127.0.0.1:9/v1/credentials".into()),
            ..Agent::default()
        };
        assert_eq!(
            stand_in.endpoints(AddressPreference::Ipv6),
            ["http://127.0.0.1:9/v1/credentials"]
        );
    }

    #[test]
    fn reads_the_credentials_json() {
        let body = r#"{"AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","AccountId":"1","Expiration":"2030-01-01T00:00:00Z"}"#;
        let credentials = credentials_from(body.as_bytes()).unwrap();
        assert_eq!(credentials.access_key_id(), "ASIA1");
        assert_eq!(credentials.session_token(), Some("t"));
        assert!(credentials.expiry().is_some());
        let e = credentials_from(b"{\"SecretAccessKey\":\"hunter2\"}").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
