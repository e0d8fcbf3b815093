//! AWS Secrets Manager and SSM Parameter Store behind the [`Provider`] trait,
//! through the official SDK. Endpoints come from the environment
//! (`AWS_ENDPOINT_URL`) or the base config, as the SDK reads them.

pub mod auth;
pub mod change_events;
mod parameter_store;
mod secrets_manager;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;

pub use auth::{KubernetesAuth, NoKubernetes, ServiceAccountToken};
pub use parameter_store::{BATCH_LIMIT as PARAMETERS_PER_CALL, SERVICE as SSM_SERVICE};
pub use secrets_manager::{
    BATCH_LIMIT as SECRETS_PER_CALL, BatchPermission, SERVICE as SECRETS_MANAGER_SERVICE,
};

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{
    ApiFailure, CallCounts, Checked, FetchResults, FindQuery, Markers, Provider, ProviderError,
    PushWrite, ReadParts, RemoteRequest, RemoteSecret,
};
use crate::api::{
    AwsProvider as AwsSpec, AwsService, MANAGED_BY_TAG, MANAGED_BY_US, MAX_ATTEMPTS,
    SecretsManagerSettings, StoreRetrySettings,
};
use parameter_store::ParameterStore;
use secrets_manager::SecretsManager;

/// How AWS calls are retried: the SDK's standard mode, exponential backoff with
/// jitter and a retry quota that stops retrying when most calls fail, so a
/// throttled fleet never storms. (Adaptive mode adds a process-wide rate limiter
/// that, once throttled, holds every store of a service and region to a fraction
/// of a request a second; one noisy store would then starve all the others.)
#[derive(Clone, Debug)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Wait exactly `initial_backoff` between attempts (ESO's
    /// `retryInterval`), without growth or jitter.
    pub fixed_delay: bool,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            fixed_delay: false,
        }
    }
}

impl RetrySettings {
    fn config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
            .with_use_static_exponential_base(self.fixed_delay)
    }

    /// These settings as a store's `retrySettings` change them: attempts in
    /// all (3 when unset, as ESO), and a fixed wait when an interval is given.
    pub fn for_store(&self, store: Option<&StoreRetrySettings>) -> RetrySettings {
        let Some(store) = store else {
            return self.clone();
        };
        let attempts = store.max_retries.unwrap_or(3).clamp(1, MAX_ATTEMPTS);
        let mut settings = RetrySettings {
            max_attempts: u32::try_from(attempts).unwrap_or(1),
            ..self.clone()
        };
        if let Some(interval) = store.retry_interval.filter(|i| !i.is_zero()) {
            // initial * 2^0 capped at max: exactly the interval, every time.
            settings.initial_backoff = interval.to_std();
            settings.max_backoff = interval.to_std();
            settings.fixed_delay = true;
        }
        settings
    }
}

/// One store's connection: a client for its service, its credentials (cached
/// and refreshed by the client), and its key prefix.
pub struct AwsProvider {
    backend: Backend,
    prefix: String,
    /// How a pushed secret is deleted (Secrets Manager's recovery window).
    deletion: SecretsManagerSettings,
}

enum Backend {
    SecretsManager(SecretsManager),
    ParameterStore(ParameterStore),
}

impl AwsProvider {
    /// Builds the clients; makes no AWS call (credentials are fetched on
    /// first use). `batch` is what is known of the identity's right to
    /// BatchGetSecretValue: shared by the clients of one identity.
    pub async fn connect(
        spec: &AwsSpec,
        store_namespace: Option<&str>,
        base: &SdkConfig,
        kube: Arc<dyn KubernetesAuth>,
        retry: &RetrySettings,
        calls: Arc<CallCounts>,
        batch: Arc<BatchPermission>,
    ) -> Result<Self, ProviderError> {
        let credentials = auth::credentials_provider(spec, store_namespace, base, kube).await?;
        let config = base
            .to_builder()
            .region(aws_config::Region::new(spec.region.clone()))
            .credentials_provider(credentials)
            .retry_config(retry.config())
            .build();
        let backend = match spec.service {
            AwsService::SecretsManager => Backend::SecretsManager(SecretsManager::new(
                aws_sdk_secretsmanager::Client::new(&config),
                calls,
                batch,
            )),
            AwsService::ParameterStore => Backend::ParameterStore(ParameterStore::new(
                aws_sdk_ssm::Client::new(&config),
                calls,
            )),
        };
        Ok(Self {
            backend,
            prefix: spec.prefix.clone().unwrap_or_default(),
            deletion: spec.secrets_manager.clone().unwrap_or_default(),
        })
    }

    /// A pushed key as AWS sees it: after the store's prefix, as reads do.
    fn prefixed_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The request as AWS sees it: the store's prefix before keys and paths.
    fn prefixed(&self, request: &RemoteRequest) -> RemoteRequest {
        match request {
            RemoteRequest::Value { key, version } => RemoteRequest::Value {
                key: self.prefixed_key(key),
                version: version.clone(),
            },
            RemoteRequest::Find(query) => RemoteRequest::Find(FindQuery {
                path: match (&query.path, self.prefix.is_empty()) {
                    (Some(path), _) => Some(format!("{}{path}", self.prefix)),
                    (None, false) => Some(self.prefix.clone()),
                    (None, true) => None,
                },
                ..query.clone()
            }),
            RemoteRequest::Tags { key } => RemoteRequest::Tags {
                key: self.prefixed_key(key),
            },
        }
    }
}

/// The description a pushed secret gets when its metadata gives none (ESO's
/// text, naming us instead of ESO).
pub(super) fn default_description() -> String {
    format!("secret '{MANAGED_BY_TAG}:{MANAGED_BY_US}'")
}

/// The wanted tags that `current` lacks or holds with another value: the
/// only ones a push of an existing secret writes. Tags are never removed:
/// a tag someone else put on the remote secret is theirs to keep.
pub(super) fn tags_to_add<'a>(
    wanted: &'a BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> Vec<(&'a String, &'a String)> {
    wanted
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(*value))
        .collect()
}

/// Tags as `metadataPolicy: Fetch` answers them: one JSON object.
pub(super) fn tags_value(tags: &BTreeMap<String, String>) -> crate::SecretValue {
    crate::SecretValue::from(serde_json::to_string(tags).unwrap_or_default())
}

#[async_trait]
impl Provider for AwsProvider {
    async fn fetch_batch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults {
        self.fetch_marked(requests).await.0
    }

    async fn fetch_marked(&self, requests: &BTreeSet<RemoteRequest>) -> (FetchResults, Markers) {
        let prefixed: BTreeSet<RemoteRequest> = requests.iter().map(|r| self.prefixed(r)).collect();
        let (mut answers, mut markers) = match &self.backend {
            Backend::SecretsManager(backend) => backend.fetch(&prefixed).await,
            Backend::ParameterStore(backend) => backend.fetch(&prefixed).await,
        };
        let mut results = FetchResults::new();
        let mut marked = Markers::new();
        for request in requests {
            let as_sent = self.prefixed(request);
            let answer = answers.remove(&as_sent).unwrap_or_else(|| {
                Err(ProviderError::Unsupported(
                    "the provider gave no answer for this reference".into(),
                ))
            });
            if let Some(marker) = markers.remove(&as_sent) {
                marked.insert(request.clone(), marker);
            }
            results.insert(request.clone(), answer);
        }
        (results, marked)
    }

    async fn still_current(
        &self,
        known: &Markers,
    ) -> Result<BTreeSet<RemoteRequest>, ProviderError> {
        let by_sent: BTreeMap<RemoteRequest, (&RemoteRequest, &String)> = known
            .iter()
            .map(|(request, marker)| (self.prefixed(request), (request, marker)))
            .collect();
        let sent: Markers = by_sent
            .iter()
            .map(|(sent, (_, marker))| (sent.clone(), (*marker).clone()))
            .collect();
        let current = match &self.backend {
            Backend::SecretsManager(backend) => backend.still_current(&sent).await?,
            Backend::ParameterStore(backend) => backend.still_current(&sent).await?,
        };
        Ok(current
            .iter()
            .filter_map(|sent| by_sent.get(sent).map(|(request, _)| (*request).clone()))
            .collect())
    }

    async fn check(&self) -> Result<Checked, ProviderError> {
        match &self.backend {
            Backend::SecretsManager(backend) => backend.check().await,
            Backend::ParameterStore(backend) => backend.check().await,
        }
    }

    fn batch_refused(&self) -> Option<String> {
        match &self.backend {
            Backend::SecretsManager(backend) => backend.batch_refused(),
            Backend::ParameterStore(_) => None,
        }
    }

    async fn read_pushed(
        &self,
        key: &str,
        parts: ReadParts,
    ) -> Result<Option<RemoteSecret>, ProviderError> {
        let name = self.prefixed_key(key);
        match &self.backend {
            Backend::SecretsManager(backend) => backend.read_pushed(&name, parts).await,
            Backend::ParameterStore(backend) => backend.read_pushed(&name, parts).await,
        }
    }

    async fn push(&self, write: &PushWrite<'_>) -> Result<String, ProviderError> {
        let name = self.prefixed_key(write.key);
        let write = PushWrite {
            key: &name,
            ..write.clone()
        };
        match &self.backend {
            Backend::SecretsManager(backend) => backend.push(&write).await,
            Backend::ParameterStore(backend) => backend.push(&write).await,
        }
    }

    async fn delete_pushed(&self, key: &str) -> Result<(), ProviderError> {
        let name = self.prefixed_key(key);
        match &self.backend {
            Backend::SecretsManager(backend) => backend.delete_pushed(&name, &self.deletion).await,
            Backend::ParameterStore(backend) => backend.delete_pushed(&name).await,
        }
    }
}

/// Counts one AWS call by its outcome and turns its error into a
/// [`ProviderError`] naming the call.
pub(super) fn counted<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    calls: &CallCounts,
    service: &'static str,
    call: &'static str,
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Result<T, ProviderError> {
    calls.record(service, call, outcome(&result));
    result.map_err(|e| api_error(service, call, &e))
}

pub(super) fn outcome<T, E>(result: &Result<T, E>) -> &'static str {
    if result.is_ok() { "success" } else { "error" }
}

/// Calls of one fetch that may be in flight at once, per store: enough to
/// hide latency, few enough that a large refresh never becomes a burst.
pub(super) const CONCURRENT_CALLS: usize = 4;

/// Runs `calls`, at most `limit` at a time; answers in any order.
pub(super) async fn at_most<F: std::future::Future>(limit: usize, calls: Vec<F>) -> Vec<F::Output> {
    use futures::StreamExt;
    futures::stream::iter(calls)
        .buffer_unordered(limit)
        .collect()
        .await
}

/// Whether change detection should stop listing and fetch the rest: once it
/// has listed as many pages as fetching everything would cost, or once most
/// of what it saw had changed (then fetching all is cheaper than listing on).
pub(super) fn stop_listing(pages: usize, fetch_cost: usize, seen: usize, changed: usize) -> bool {
    pages >= fetch_cost || (seen >= 10 && changed * 2 > seen)
}

/// A failed call, explained (AWS error text holds no secret values).
pub(crate) fn api_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    service: &'static str,
    call: &'static str,
    error: &SdkError<E, HttpResponse>,
) -> ProviderError {
    ProviderError::Api {
        service,
        call,
        message: describe(error),
        failure: failure_of(error),
    }
}

/// A failed call as a stable sentence: for an answer AWS gave, its error
/// code and message only (`ThrottlingException: Rate exceeded`), never the
/// request id or the SDK's debug text, so the same failure reads the same at
/// every attempt (a status that does not change is not written again);
/// otherwise [`explain`].
pub(crate) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, HttpResponse>,
) -> String {
    match error {
        SdkError::ServiceError(service) => answer_text(
            service.err().code(),
            service.err().message(),
            service.raw().status().as_u16(),
        ),
        other => explain(other),
    }
}

/// AWS's error code and message; the HTTP status when it gave neither
/// (moto's IAM check answers 403 with a body the SDK cannot read).
fn answer_text(code: Option<&str>, message: Option<&str>, status: u16) -> String {
    match (code, message.filter(|m| !m.is_empty())) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        (None, Some(message)) => format!("HTTP {status}: {message}"),
        (None, None) => format!("HTTP {status} without an error code"),
    }
}

/// Error codes AWS gives when it is too busy; a later call may pass.
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalServiceError",
    "InternalFailure",
    "InternalServerError",
];
/// Error codes that say the identity may not do this, or is not one AWS knows.
const DENIED: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "IncompleteSignature",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
];

/// How a failed call may fare if made again: by AWS's error code, then by
/// the HTTP status (403: denied; 429 and 5xx: passing), and for a call that
/// never got an answer, by why (credentials that STS refused are final; a
/// connection or a timeout is passing).
pub(crate) fn failure_of<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, HttpResponse>,
) -> ApiFailure {
    match error {
        SdkError::ServiceError(service) => {
            answer_failure(service.err().code(), service.raw().status().as_u16())
        }
        // Credentials that could not be had surface as a dispatch failure.
        _ => {
            let mut cause = std::error::Error::source(error);
            while let Some(error) = cause {
                if let Some(credentials) = error.downcast_ref::<CredentialsError>() {
                    return match credentials {
                        CredentialsError::InvalidConfiguration(_)
                        | CredentialsError::CredentialsNotLoaded(_) => ApiFailure::Denied,
                        _ => ApiFailure::Transient,
                    };
                }
                cause = error.source();
            }
            match error {
                SdkError::ConstructionFailure(_) => ApiFailure::Rejected,
                _ => ApiFailure::Transient,
            }
        }
    }
}

/// A call the identity's policy may not allow (listing, batches), counted:
/// its answer; `Ok(Err(why))` when AWS knew the caller and refused only the
/// action (the credentials work, the policy lacks the action); `Err` for any
/// other failure (unknown credentials included).
pub(super) fn refusable<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    calls: &CallCounts,
    service: &'static str,
    call: &'static str,
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Result<Result<T, String>, ProviderError> {
    match result {
        Err(e) if matches!(e.code(), Some("AccessDeniedException" | "AccessDenied")) => {
            calls.record(service, call, "error");
            Ok(Err(describe(&e)))
        }
        result => counted(calls, service, call, result).map(Ok),
    }
}

/// [`failure_of`] for an answer AWS gave: its error code and HTTP status.
pub(crate) fn answer_failure(code: Option<&str>, status: u16) -> ApiFailure {
    match code {
        Some(code) if THROTTLED.contains(&code) => ApiFailure::Transient,
        Some(code) if DENIED.contains(&code) => ApiFailure::Denied,
        _ if status == 403 => ApiFailure::Denied,
        _ if status == 429 || status >= 500 => ApiFailure::Transient,
        _ => ApiFailure::Rejected,
    }
}

/// An SDK error as a sentence: what kind of failure, then each cause in turn
/// (`could not connect to AWS: io error: ... Connection refused`; for a
/// service error, AWS's code and message), never the SDK's debug dump.
pub(crate) fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = next {
        next = cause.source();
        let text = match cause.downcast_ref::<ErrorMetadata>() {
            // An answer the SDK has no type for: its code and message, not
            // its Display (a debug struct with the request id and extras).
            Some(meta) => match (meta.code(), meta.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(text), None) | (None, Some(text)) => text.to_string(),
                (None, None) => continue,
            },
            // "unhandled error (Code)": the metadata that follows says it.
            None if next.is_some_and(|n| n.is::<ErrorMetadata>()) => continue,
            None => cause.to_string(),
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    let kind = match parts.first().map(String::as_str) {
        Some("dispatch failure") => Some("could not connect to AWS"),
        Some("timeout error") => Some("AWS did not answer in time"),
        Some("response error") => Some("AWS's response could not be read"),
        Some("failed to construct request") => Some("the request could not be built"),
        Some("service error") => None,
        _ => return parts.join(": "),
    };
    let causes = parts.into_iter().skip(1);
    kind.map(str::to_string)
        .into_iter()
        .chain(causes)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    type Error = SdkError<ErrorMetadata, HttpResponse>;

    fn refused_credentials(error: CredentialsError) -> Error {
        SdkError::dispatch_failure(ConnectorError::other(Box::new(error), None))
    }

    #[test]
    fn a_failure_is_final_only_when_asking_again_cannot_help() {
        assert_eq!(
            answer_failure(Some("AccessDeniedException"), 400),
            ApiFailure::Denied
        );
        // moto's IAM check answers 403 with an XML body the JSON parser cannot name.
        assert_eq!(answer_failure(None, 403), ApiFailure::Denied);
        assert_eq!(
            answer_failure(Some("ThrottlingException"), 400),
            ApiFailure::Transient
        );
        assert_eq!(answer_failure(None, 503), ApiFailure::Transient);
        assert_eq!(answer_failure(None, 429), ApiFailure::Transient);
        assert_eq!(
            answer_failure(Some("InvalidParameterException"), 400),
            ApiFailure::Rejected
        );

        let refused = refused_credentials(CredentialsError::invalid_configuration("trust policy"));
        assert_eq!(failure_of(&refused), ApiFailure::Denied);
        let passing = refused_credentials(CredentialsError::provider_error("STS throttled"));
        assert_eq!(failure_of(&passing), ApiFailure::Transient);
        let timeout: Error = SdkError::timeout_error("slow");
        assert_eq!(failure_of(&timeout), ApiFailure::Transient);
        let unbuildable: Error = SdkError::construction_failure("bad input");
        assert_eq!(failure_of(&unbuildable), ApiFailure::Rejected);
    }

    /// What the SDK hands back for an answer: the operation's error with its
    /// metadata (the request id among the extras, as the SDK puts it there).
    fn answered<E>(error: E, status: u16) -> SdkError<E, HttpResponse> {
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap();
        SdkError::service_error(
            error,
            HttpResponse::new(status, aws_smithy_types::body::SdkBody::empty()),
        )
    }

    fn with_request_id(code: Option<&str>, message: Option<&str>) -> ErrorMetadata {
        let mut meta = ErrorMetadata::builder().custom("aws_request_id", "4f1e-req-77a0");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        if let Some(message) = message {
            meta = meta.message(message);
        }
        meta.build()
    }

    fn assert_stable(text: &str) {
        for noise in [
            "4f1e-req-77a0",
            "aws_request_id",
            "request id",
            "Unhandled",
            "unhandled error",
            "ErrorMetadata",
            "Error {",
            "extras",
            "{",
        ] {
            assert!(!text.contains(noise), "{noise:?} in {text:?}");
        }
    }

    #[test]
    fn an_answer_reads_as_its_code_and_message_without_request_id_or_debug_text() {
        use aws_sdk_secretsmanager::operation::list_secrets::ListSecretsError;
        use aws_sdk_secretsmanager::types::error::InvalidRequestException;

        // Not in the service's model: the SDK's "Unhandled" variant.
        let throttled = answered(
            ListSecretsError::generic(with_request_id(
                Some("ThrottlingException"),
                Some("Rate exceeded"),
            )),
            400,
        );
        assert_eq!(describe(&throttled), "ThrottlingException: Rate exceeded");
        assert_eq!(explain(&throttled), "ThrottlingException: Rate exceeded");
        let error = api_error("secretsmanager", "ListSecrets", &throttled);
        assert_eq!(
            error.to_string(),
            "secretsmanager ListSecrets failed: ThrottlingException: Rate exceeded"
        );
        assert_stable(&error.to_string());
        assert!(matches!(
            error,
            ProviderError::Api {
                failure: ApiFailure::Transient,
                ..
            }
        ));

        // In the model: its own type, the request id in its metadata.
        let modeled = answered(
            ListSecretsError::InvalidRequestException(
                InvalidRequestException::builder()
                    .message("You can't perform this operation on the secret")
                    .meta(with_request_id(
                        Some("InvalidRequestException"),
                        Some("You can't perform this operation on the secret"),
                    ))
                    .build(),
            ),
            400,
        );
        assert_eq!(
            describe(&modeled),
            "InvalidRequestException: You can't perform this operation on the secret"
        );
        assert_stable(&explain(&modeled));

        // Neither code nor message (moto's IAM refusal): the status.
        let bare = answered(ListSecretsError::generic(with_request_id(None, None)), 403);
        assert_eq!(describe(&bare), "HTTP 403 without an error code");
        assert_stable(&explain(&bare));
        let message_only = answered(
            ListSecretsError::generic(with_request_id(None, Some("slow down"))),
            503,
        );
        assert_eq!(describe(&message_only), "HTTP 503: slow down");

        // The same answer twice, with other request ids: the same text.
        let again = answered(
            ListSecretsError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate exceeded")
                    .custom("aws_request_id", "another-id")
                    .build(),
            ),
            400,
        );
        assert_eq!(describe(&again), describe(&throttled));
    }

    /// The whole way: a real client reads a throttling answer with a request
    /// id header off the wire.
    #[tokio::test]
    async fn a_throttling_answer_off_the_wire_reads_without_its_request_id() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: 4f1e-req-77a0\r\nx-amzn-ErrorType: ThrottlingException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .retry_config(RetryConfig::disabled())
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(config);
        let error = client.list_secrets().send().await.unwrap_err();
        use aws_sdk_secretsmanager::operation::RequestId;
        assert_eq!(
            error.as_service_error().and_then(|e| e.request_id()),
            Some("4f1e-req-77a0"),
            "the SDK read the request id"
        );
        assert_eq!(describe(&error), "ThrottlingException: Rate exceeded");
        assert_eq!(explain(&error), "ThrottlingException: Rate exceeded");
        assert_eq!(failure_of(&error), ApiFailure::Transient);
    }
}
