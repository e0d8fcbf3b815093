//! Where values come from. A provider is handed every distinct remote request of
//! one refresh at once, so it can batch and de-duplicate, and answers each
//! request on its own: one missing key fails only the references that asked.

pub mod fake;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::SecretValue;
use crate::api::StoreProvider;

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
}

/// `dataFrom[].find`: every part that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindQuery {
    pub path: Option<String>,
    pub name_regexp: Option<String>,
    pub tags: BTreeMap<String, String>,
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
        service: String,
        call: String,
        message: String,
    },
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Fetches every request, batching as the backend allows. The result holds
    /// exactly one entry per request.
    async fn fetch_batch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults;
}

/// The provider a store's `spec.provider` describes.
pub fn for_store(spec: &StoreProvider) -> Result<Arc<dyn Provider>, ProviderError> {
    match (&spec.aws, &spec.fake) {
        (None, Some(fake)) => Ok(Arc::new(fake::FakeProvider::new(fake))),
        (Some(_), None) => Err(ProviderError::Unsupported(
            "spec.provider.aws: the AWS provider is not part of this build yet".into(),
        )),
        _ => Err(ProviderError::Unsupported(
            "spec.provider: exactly one of aws or fake is required".into(),
        )),
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
