//! Where values come from. A provider is handed every distinct remote request of
//! one refresh at once, so it can batch and de-duplicate, and answers each
//! request on its own: one missing key fails only the references that asked.

#[cfg(feature = "clients")]
pub mod aws;
mod cache;
pub mod fake;
#[cfg(feature = "clients")]
mod providers;
mod push;

pub use cache::Cached;
#[cfg(feature = "clients")]
pub use providers::{AwsStore, ProviderContext, Providers};
pub use push::{PushWrite, ReadParts, RemoteSecret};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::SecretValue;
use crate::api::StoreKind;

/// One thing to read from a store. Equal requests are fetched once per refresh,
/// whatever number of ExternalSecrets (or properties of one value) need them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemoteRequest {
    /// A value by key, at a version (provider-specific) or the current one.
    Value {
        key: String,
        version: Option<String>,
    },
    /// Every remote secret matching a query.
    Find(FindQuery),
    /// A remote secret's tags (`metadataPolicy: Fetch`), answered as one
    /// JSON object of tag keys to values.
    Tags { key: String },
}

/// `dataFrom[].find`: every part that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindQuery {
    pub path: Option<String>,
    pub name_regexp: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl FindQuery {
    /// The compiled `name.regexp`, if any; it matches anywhere in a name, as
    /// Go's `regexp.MatchString` does for ESO.
    pub fn name_regex(&self) -> Result<Option<regex::Regex>, ProviderError> {
        self.name_regexp
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| ProviderError::Unsupported(format!("invalid name regexp: {e}")))
    }
}

/// A provider's answer to one request.
#[derive(Clone, Debug)]
pub enum Fetched {
    Value(SecretValue),
    /// Remote name -> value, for a `Find`.
    Found(BTreeMap<String, SecretValue>),
}

/// One answer per request handed to [`Provider::fetch_batch`].
pub type FetchResults = BTreeMap<RemoteRequest, Result<Fetched, ProviderError>>;

/// Per request, a backend's marker for the version of its answer (Secrets
/// Manager: ARN and version id; Parameter Store: version and modification
/// time): the marker changes whenever the answer does.
pub type Markers = BTreeMap<RemoteRequest, String>;

/// Why a request failed. Names the remote key; never holds a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("remote key {key:?} not found")]
    NotFound { key: String },
    #[error("version {version:?} of remote key {key:?} not found")]
    VersionNotFound { key: String, version: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{service} {call} failed: {message}")]
    Api {
        service: &'static str,
        call: &'static str,
        message: String,
        /// Whether asking again may help: callers that answer someone who
        /// retries (the CSI driver) tell a final failure from a passing one.
        failure: ApiFailure,
    },
}

impl ProviderError {
    /// Whether asking again may help without anyone changing anything
    /// (throttling, a 5xx, a timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Api {
                failure: ApiFailure::Transient,
                ..
            }
        )
    }
}

/// How a failed AWS call may fare if made again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiFailure {
    /// Throttling, a 5xx, a timeout or a failed connection: a retry may succeed.
    Transient,
    /// The identity may not make the call (IAM), or its credentials were
    /// refused: nothing changes until someone changes a policy.
    Denied,
    /// AWS refused the request as written (any other 4xx).
    Rejected,
}

/// A backend: where one store's values come from. Drivers reach it through
/// [`Cached`], which keeps answers and asks [`Provider::still_current`] before
/// fetching again.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Fetches every request, batching as the backend allows. The result holds
    /// exactly one entry per request.
    async fn fetch_batch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults;

    /// [`fetch_batch`](Provider::fetch_batch), with a version marker for every
    /// answer the backend can version. Backends that cannot, give none.
    async fn fetch_marked(&self, requests: &BTreeSet<RemoteRequest>) -> (FetchResults, Markers) {
        (self.fetch_batch(requests).await, Markers::new())
    }

    /// Which of these earlier answers (request -> marker it had) are still
    /// current, found with calls cheaper than fetching them again; a backend
    /// may stop looking once most of what it saw changed (the rest is then
    /// fetched). An error means the backend cannot tell at all.
    async fn still_current(
        &self,
        _known: &Markers,
    ) -> Result<BTreeSet<RemoteRequest>, ProviderError> {
        Ok(BTreeSet::new())
    }

    /// A cheap call or two proving the store's credentials work, and
    /// finding out what the identity may not do (list, batch).
    async fn check(&self) -> Result<Checked, ProviderError> {
        Ok(Checked::default())
    }

    /// Why values are read one call each instead of in batches, if they are
    /// (the identity may not make the batch call): for the store's status.
    fn batch_refused(&self) -> Option<String> {
        None
    }

    /// PushSecret: what `key` holds now, `None` when it does not exist.
    async fn read_pushed(
        &self,
        _key: &str,
        _parts: ReadParts,
    ) -> Result<Option<RemoteSecret>, ProviderError> {
        Err(ProviderError::Unsupported(
            "this store's provider cannot be pushed to".into(),
        ))
    }

    /// PushSecret: writes one value (creating the remote secret when
    /// `write.current` is `None`) and its tags; answers the new version.
    async fn push(&self, _write: &PushWrite<'_>) -> Result<String, ProviderError> {
        Err(ProviderError::Unsupported(
            "this store's provider cannot be pushed to".into(),
        ))
    }

    /// PushSecret `deletionPolicy: Delete`: deletes `key` (Secrets Manager:
    /// with the store's recovery window). A key already gone is no error.
    async fn delete_pushed(&self, _key: &str) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported(
            "this store's provider cannot be pushed to".into(),
        ))
    }
}

/// What a store check found besides working credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The identity may not list (ListSecrets, DescribeParameters): why.
    /// Refreshes then fetch every value instead of asking what changed.
    pub cannot_list: Option<String>,
}

/// Which store a provider serves, as an ExternalSecret names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreIdentity {
    pub kind: StoreKind,
    /// A SecretStore's namespace; `None` for a ClusterSecretStore.
    pub namespace: Option<String>,
    pub name: String,
    /// The namespace a ClusterSecretStore serves here, when its session tags
    /// name it (`sessionTagsPolicy`): each such namespace gets credentials,
    /// a provider and batches of its own. `None` otherwise.
    pub tenant: Option<String>,
}

impl StoreIdentity {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        }
    }
}

impl std::fmt::Display for StoreIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind_name(), self.name)?,
            None => write!(f, "{} {}", self.kind_name(), self.name)?,
        }
        match &self.tenant {
            Some(tenant) => write!(f, " (serving namespace {tenant})"),
            None => Ok(()),
        }
    }
}

/// Calls a provider made, by (service, call, outcome), for metrics and tests.
#[derive(Debug, Default)]
pub struct CallCounts {
    counts: Mutex<BTreeMap<CallKey, u64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallKey {
    pub service: &'static str,
    pub call: &'static str,
    pub outcome: &'static str,
}

impl CallCounts {
    pub fn record(&self, service: &'static str, call: &'static str, outcome: &'static str) {
        let key = CallKey {
            service,
            call,
            outcome,
        };
        *self.lock().entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.lock().clone()
    }

    /// Calls of one kind, whatever their outcome.
    pub fn total(&self, service: &str, call: &str) -> u64 {
        self.lock()
            .iter()
            .filter(|(k, _)| k.service == service && k.call == call)
            .map(|(_, n)| n)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CallKey, u64>> {
        // A panic while counting leaves the counts usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}
