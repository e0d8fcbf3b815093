//! `secretsync agent --serve ADDR`: the AWS Secrets Manager Agent's HTTP API
//! (`GET /secretsmanager/get?secretId=`, `GET /v1/SECRET_ID`, `GET /ping`)
//! and the Lambda parameters-and-secrets extension's parameter path
//! (`GET /systemsmanager/parameters/get?name=`), so an application written
//! for either runs unchanged beside secretsync.
//!
//! As the AWS agent: every request but `/ping` carries the SSRF token
//! ([`token`]) or gets 403 `Bad Token` (400 `Forwarded` with
//! `X-Forwarded-For`); only GET (405); answers are cached for a TTL, and an
//! expired secret costs one DescribeSecret, with GetSecretValue only when its
//! version moved ([`answer::still_current`]); `refreshNow=true` fetches at
//! once. Unlike it, a throttled call counts as transient like a 5xx or a
//! timeout: the cached answer is served stale rather than an error. The
//! listener is loopback only unless the operator says otherwise, and its
//! connections leave with an IP TTL of 1, as the AWS agent's do.

pub mod answer;
pub mod cache;
pub mod query;
pub mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::provider::ApiFailure;
use crate::provider::aws::{describe, failure_of};
use answer::{Body, CachedParameter, CachedSecret, Refusal, still_current};
use cache::{Cache, Lookup};
use query::{ParameterQuery, SecretQuery, Selector};
pub use token::{Token, TokenError};

/// The AWS agent's and the Lambda extension's port.
pub const DEFAULT_PORT: u16 = 2773;
/// The AWS agent's defaults and bounds (`ttl_seconds`, `cache_size`, `max_conn`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
pub const MAX_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_CACHE_SIZE: usize = 1000;
pub const MAX_CACHE_SIZE: usize = 1000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 800;
pub const MAX_CONNECTIONS: usize = 1000;
/// The AWS agent's path form: `/v1/SECRET_ID`.
const PATH_PREFIX: &str = "/v1/";

#[derive(Clone, Debug)]
pub struct Settings {
    pub address: SocketAddr,
    /// Listen on an address other hosts can reach.
    pub allow_non_loopback: bool,
    /// How long a secret is served from the cache before its version is checked.
    pub ttl: Duration,
    /// How long a parameter is served from the cache before it is fetched again.
    pub parameter_ttl: Duration,
    /// Answers kept, secrets and parameters together.
    pub cache_size: usize,
    /// Requests handled at once; more get 429.
    pub max_connections: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "--serve {address} is not a loopback address: anything that reaches it could ask for \
         secrets with the token; add --serve-non-loopback to mean it"
    )]
    NotLoopback { address: SocketAddr },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("--serve: no AWS region (set AWS_REGION, or give one in --config)")]
    NoRegion,
    #[error("--serve {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving on {address}: {source}")]
    Serve {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Refuses an address other hosts could reach unless allowed.
pub fn check_address(address: SocketAddr, allow_non_loopback: bool) -> Result<(), EndpointError> {
    if address.ip().is_loopback() || allow_non_loopback {
        Ok(())
    } else {
        Err(EndpointError::NotLoopback { address })
    }
}

/// The AWS config the endpoint uses when the agent writes no files: the
/// default chain (IRSA, EKS Pod Identity, environment keys), region from the
/// environment.
pub async fn default_aws_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Secret {
        id: String,
        version_id: Option<String>,
        version_stage: Option<String>,
    },
    Parameter {
        name: String,
        decrypt: bool,
        selector: Option<Selector>,
    },
}

#[derive(Debug)]
enum Cached {
    Secret(CachedSecret),
    Parameter(CachedParameter),
}

struct Endpoint {
    secrets_manager: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    token: Token,
    cache: Mutex<Cache<Key, Cached>>,
    ttl: Duration,
    parameter_ttl: Duration,
    max_connections: usize,
    in_flight: AtomicUsize,
}

/// The endpoint, bound and ready to [`run`](Bound::run).
pub struct Bound {
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    endpoint: Arc<Endpoint>,
}

/// Checks the address, binds it and makes the clients. Makes no AWS call.
pub async fn bind(
    settings: &Settings,
    base: &SdkConfig,
    token: Token,
) -> Result<Bound, EndpointError> {
    check_address(settings.address, settings.allow_non_loopback)?;
    if base.region().is_none() {
        return Err(EndpointError::NoRegion);
    }
    let listener = tokio::net::TcpListener::bind(settings.address)
        .await
        .map_err(|source| EndpointError::Bind {
            address: settings.address,
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| EndpointError::Bind {
            address: settings.address,
            source,
        })?;
    // A caller waits on us: few quick retries, and a bound on each attempt.
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(2));
    let timeout = TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build();
    let secrets_manager = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(base)
            .retry_config(retry.clone())
            .timeout_config(timeout.clone())
            .build(),
    );
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(base)
            .retry_config(retry)
            .timeout_config(timeout)
            .build(),
    );
    Ok(Bound {
        listener,
        address,
        endpoint: Arc::new(Endpoint {
            secrets_manager,
            ssm,
            token,
            cache: Mutex::new(Cache::new(settings.cache_size)),
            ttl: settings.ttl,
            parameter_ttl: settings.parameter_ttl,
            max_connections: settings.max_connections,
            in_flight: AtomicUsize::new(0),
        }),
    })
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Answers until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), EndpointError> {
        use axum::serve::ListenerExt;
        let address = self.address;
        tracing::info!(%address, "serving the Secrets Manager Agent API");
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(self.endpoint);
        // No hop past the first router, as the AWS agent's sockets.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_ttl(1);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| EndpointError::Serve { address, source })
    }
}

/// One request in flight; counted until dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    axum::extract::State(endpoint): axum::extract::State<Arc<Endpoint>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, _) = request.into_parts();
    let in_flight = endpoint
        .in_flight
        .fetch_add(1, Ordering::SeqCst)
        .saturating_add(1);
    let _slot = Slot(&endpoint.in_flight);
    let answer = endpoint.answer(&parts, in_flight).await;
    let path = parts.uri.path();
    let (status, body) = match answer {
        Ok(mut body) => (200, std::mem::take(&mut *body)),
        Err(refusal) => (refusal.status, refusal.body.into_bytes()),
    };
    tracing::debug!(method = %parts.method, path, status, "answered");
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

fn transient<
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
>(
    error: &SdkError<E, HttpResponse>,
) -> bool {
    failure_of(error) == ApiFailure::Transient
}

impl Endpoint {
    /// The AWS agent's order: connection limit, token, method, path.
    async fn answer(
        &self,
        parts: &http::request::Parts,
        in_flight: usize,
    ) -> Result<Body, Refusal> {
        let path = parts.uri.path();
        let limit = if path == "/ping" {
            self.max_connections.saturating_add(2)
        } else {
            self.max_connections
        };
        if in_flight > limit {
            return Err(Refusal::new(429, "Connection limit exceeded"));
        }
        if path != "/ping" {
            if parts.headers.contains_key("X-Forwarded-For") {
                tracing::warn!(path, "refused a request with X-Forwarded-For");
                return Err(Refusal::new(400, "Forwarded"));
            }
            if !self.token.admits(&parts.headers) {
                tracing::warn!(path, "refused a request without the right SSRF token");
                return Err(Refusal::new(403, "Bad Token"));
            }
        }
        if parts.method != http::Method::GET {
            return Err(Refusal::new(405, "Not allowed"));
        }
        let query = parts.uri.query();
        let bad = |query::BadRequest(text)| Refusal::new(400, text);
        match path {
            "/ping" => Ok(zeroize::Zeroizing::new(b"healthy".to_vec())),
            "/secretsmanager/get" => self.secret(query::secret_query(query).map_err(bad)?).await,
            "/systemsmanager/parameters/get" => {
                self.parameter(query::parameter_query(query).map_err(bad)?)
                    .await
            }
            _ => match path.strip_prefix(PATH_PREFIX) {
                Some(rest) => {
                    self.secret(query::secret_path(rest, query).map_err(bad)?)
                        .await
                }
                None => Err(Refusal::new(404, "Not found")),
            },
        }
    }

    fn lookup(&self, key: &Key, ttl: Duration) -> Lookup<Cached> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key, ttl, Instant::now())
    }

    fn store(&self, key: Key, value: Arc<Cached>) {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .put(key, value, Instant::now());
    }

    /// GetSecretValue through the cache, as the AWS agent: fresh, served;
    /// expired, checked with DescribeSecret and fetched only if its version
    /// moved; a transient failure serves what is cached.
    async fn secret(&self, asked: SecretQuery) -> Result<Body, Refusal> {
        let key = Key::Secret {
            id: asked.secret_id.clone(),
            version_id: asked.version_id.clone(),
            version_stage: asked.version_stage.clone(),
        };
        let id = asked.secret_id.as_str();
        let mut stale = None;
        if !asked.refresh_now {
            match self.lookup(&key, self.ttl) {
                Lookup::Fresh(cached) => {
                    if let Cached::Secret(secret) = &*cached {
                        return Ok(secret.render());
                    }
                }
                Lookup::Expired(cached) => stale = Some(cached),
                Lookup::Missing => {}
            }
        }
        if let Some(cached) = &stale
            && let Cached::Secret(secret) = &**cached
        {
            let described = self
                .secrets_manager
                .describe_secret()
                .secret_id(secret.arn.as_deref().unwrap_or(id))
                .send()
                .await;
            let current = match &described {
                Ok(out) => still_current(
                    out.version_ids_to_stages.as_ref(),
                    asked.version_id.as_deref(),
                    asked.version_stage.as_deref(),
                    secret.version_id.as_deref(),
                ),
                Err(e) if transient(e) => {
                    tracing::warn!(secret = id, error = %describe(e), "DescribeSecret failed; serving the cached value");
                    true
                }
                Err(e) => {
                    tracing::info!(secret = id, error = %describe(e), "DescribeSecret refused");
                    return Err(Refusal::from_sdk(e));
                }
            };
            if current {
                self.store(key, cached.clone());
                return Ok(secret.render());
            }
        }
        let fetched = self
            .secrets_manager
            .get_secret_value()
            .secret_id(id)
            .set_version_id(asked.version_id.clone())
            .set_version_stage(asked.version_stage.clone())
            .send()
            .await;
        match fetched {
            Ok(output) => {
                let secret = CachedSecret::from_output(output);
                let body = secret.render();
                self.store(key, Arc::new(Cached::Secret(secret)));
                Ok(body)
            }
            Err(e) => match stale {
                Some(cached) if transient(&e) => {
                    tracing::warn!(secret = id, error = %describe(&e), "GetSecretValue failed; serving the cached value");
                    let body = match &*cached {
                        Cached::Secret(secret) => secret.render(),
                        Cached::Parameter(_) => return Err(Refusal::internal()),
                    };
                    self.store(key, cached);
                    Ok(body)
                }
                _ => {
                    tracing::info!(secret = id, error = %describe(&e), "GetSecretValue failed");
                    Err(Refusal::from_sdk(&e))
                }
            },
        }
    }

    /// GetParameter through the cache, as the Lambda extension: fetched again
    /// once its TTL is over (GetParameter costs what a check would); a
    /// transient failure serves what is cached.
    async fn parameter(&self, asked: ParameterQuery) -> Result<Body, Refusal> {
        let key = Key::Parameter {
            name: asked.name.clone(),
            decrypt: asked.with_decryption,
            selector: asked.selector.clone(),
        };
        let mut stale = None;
        if !asked.refresh_now {
            match self.lookup(&key, self.parameter_ttl) {
                Lookup::Fresh(cached) => {
                    if let Cached::Parameter(parameter) = &*cached {
                        return Ok(parameter.render());
                    }
                }
                Lookup::Expired(cached) => stale = Some(cached),
                Lookup::Missing => {}
            }
        }
        let name = asked.name.as_str();
        let fetched = self
            .ssm
            .get_parameter()
            .name(asked.selected_name())
            .with_decryption(asked.with_decryption)
            .send()
            .await;
        match fetched {
            Ok(output) => {
                let Some(parameter) = output.parameter else {
                    return Err(Refusal::internal());
                };
                let parameter = CachedParameter::from_parameter(parameter);
                let body = parameter.render();
                self.store(key, Arc::new(Cached::Parameter(parameter)));
                Ok(body)
            }
            Err(e) => match stale {
                Some(cached) if transient(&e) => {
                    tracing::warn!(parameter = name, error = %describe(&e), "GetParameter failed; serving the cached value");
                    let body = match &*cached {
                        Cached::Parameter(parameter) => parameter.render(),
                        Cached::Secret(_) => return Err(Refusal::internal()),
                    };
                    self.store(key, cached);
                    Ok(body)
                }
                _ => {
                    tracing::info!(parameter = name, error = %describe(&e), "GetParameter failed");
                    Err(Refusal::from_sdk(&e))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_unless_told() {
        for address in ["127.0.0.1:2773", "[::1]:2773", "127.0.0.2:1"] {
            check_address(address.parse().unwrap(), false).unwrap();
        }
        for address in ["0.0.0.0:2773", "[::]:2773", "10.0.0.5:2773"] {
            let error = check_address(address.parse().unwrap(), false).unwrap_err();
            assert!(
                error.to_string().contains("--serve-non-loopback"),
                "{error}"
            );
            check_address(address.parse().unwrap(), true).unwrap();
        }
    }
}
