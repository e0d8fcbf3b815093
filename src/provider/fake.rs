//! The `fake` provider: values given inline in the store, as ESO's Fake
//! provider. It makes the whole pipeline run with no cloud account.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::{CallCounts, FetchResults, Fetched, FindQuery, Provider, ProviderError, RemoteRequest};
use crate::SecretValue;
use crate::api::FakeProvider as FakeSpec;

pub const SERVICE: &str = "fake";

pub struct FakeProvider {
    /// key -> version -> value; the `None` version is what an unversioned
    /// reference reads, else the entry listed last.
    entries: BTreeMap<String, Vec<(Option<String>, SecretValue)>>,
    calls: Arc<CallCounts>,
}

impl FakeProvider {
    pub fn new(spec: &FakeSpec, calls: Arc<CallCounts>) -> Self {
        let mut entries: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for entry in &spec.data {
            entries.entry(entry.key.clone()).or_default().push((
                entry.version.clone(),
                SecretValue::from(entry.value.as_str()),
            ));
        }
        Self { entries, calls }
    }

    pub fn calls(&self) -> &CallCounts {
        &self.calls
    }

    fn current(&self, key: &str) -> Option<&SecretValue> {
        let versions = self.entries.get(key)?;
        versions
            .iter()
            .find(|(version, _)| version.is_none())
            .or(versions.last())
            .map(|(_, value)| value)
    }

    fn get_value(&self, key: &str, version: Option<&str>) -> Result<Fetched, ProviderError> {
        let result = match version {
            None => self
                .current(key)
                .ok_or_else(|| ProviderError::NotFound { key: key.into() }),
            Some(wanted) => {
                let versions = self
                    .entries
                    .get(key)
                    .ok_or_else(|| ProviderError::NotFound { key: key.into() })?;
                versions
                    .iter()
                    .find(|(version, _)| version.as_deref() == Some(wanted))
                    .map(|(_, value)| value)
                    .ok_or_else(|| ProviderError::VersionNotFound {
                        key: key.into(),
                        version: wanted.into(),
                    })
            }
        };
        result.map(|value| Fetched::Value(value.clone()))
    }

    fn find(&self, query: &FindQuery) -> Result<Fetched, ProviderError> {
        if !query.tags.is_empty() {
            return Err(ProviderError::Unsupported(
                "the fake provider has no tags: find by path or name instead".into(),
            ));
        }
        let name = query.name_regex()?;
        let found = self
            .entries
            .keys()
            .filter(|key| {
                query
                    .path
                    .as_deref()
                    .is_none_or(|path| key.starts_with(path))
            })
            .filter(|key| name.as_ref().is_none_or(|re| re.is_match(key)))
            .filter_map(|key| Some((key.clone(), self.current(key)?.clone())))
            .collect();
        Ok(Fetched::Found(found))
    }
}

#[async_trait]
impl Provider for FakeProvider {
    async fn fetch_batch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults {
        self.calls.record(SERVICE, "FetchBatch", "success");
        requests
            .iter()
            .map(|request| {
                let (call, result) = match request {
                    RemoteRequest::Value { key, version } => {
                        ("GetValue", self.get_value(key, version.as_deref()))
                    }
                    RemoteRequest::Find(query) => ("Find", self.find(query)),
                    RemoteRequest::Tags { .. } => (
                        "GetTags",
                        Err(ProviderError::Unsupported(
                            "metadataPolicy Fetch: the fake provider keeps no tags".into(),
                        )),
                    ),
                };
                let outcome = if result.is_ok() { "success" } else { "error" };
                self.calls.record(SERVICE, call, outcome);
                (request.clone(), result)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakeProviderData;

    fn provider() -> FakeProvider {
        let entry = |key: &str, value: &str, version: Option<&str>| FakeProviderData {
            key: key.into(),
            value: value.into(),
            version: version.map(Into::into),
        };
        FakeProvider::new(
            &FakeSpec {
                data: vec![
                    entry("db/password", "pw-current", None),
                    entry("db/password", "pw-v1", Some("v1")),
                    entry("db/user", "admin", None),
                    entry("api/token", "tok", Some("v7")),
                ],
            },
            Arc::default(),
        )
    }

    fn value(result: &Result<Fetched, ProviderError>) -> &[u8] {
        match result {
            Ok(Fetched::Value(v)) => v.expose(),
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn answers_each_request_and_counts_calls() {
        let provider = provider();
        let request = |key: &str, version: Option<&str>| RemoteRequest::Value {
            key: key.into(),
            version: version.map(Into::into),
        };
        let requests: BTreeSet<_> = [
            request("db/password", None),
            request("db/password", Some("v1")),
            request("api/token", None),
            request("missing", None),
            request("db/user", Some("v9")),
        ]
        .into();
        let results = provider.fetch_batch(&requests).await;
        assert_eq!(results.len(), 5);
        assert_eq!(
            value(&results[&request("db/password", None)]),
            b"pw-current"
        );
        assert_eq!(
            value(&results[&request("db/password", Some("v1"))]),
            b"pw-v1"
        );
        assert_eq!(value(&results[&request("api/token", None)]), b"tok");
        assert_eq!(
            results[&request("missing", None)].as_ref().unwrap_err(),
            &ProviderError::NotFound {
                key: "missing".into()
            }
        );
        assert!(matches!(
            results[&request("db/user", Some("v9"))],
            Err(ProviderError::VersionNotFound { .. })
        ));
        assert_eq!(provider.calls().total(SERVICE, "FetchBatch"), 1);
        assert_eq!(provider.calls().total(SERVICE, "GetValue"), 5);
    }

    #[tokio::test]
    async fn find_by_path_and_name() {
        let provider = provider();
        let query = FindQuery {
            path: Some("db/".into()),
            name_regexp: Some("pass".into()),
            tags: BTreeMap::new(),
        };
        let request = RemoteRequest::Find(query);
        let results = provider.fetch_batch(&[request.clone()].into()).await;
        let Ok(Fetched::Found(found)) = &results[&request] else {
            panic!()
        };
        assert_eq!(found.keys().collect::<Vec<_>>(), ["db/password"]);
        assert_eq!(found["db/password"].expose(), b"pw-current");
    }
}
