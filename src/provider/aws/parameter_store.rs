//! AWS SSM Parameter Store. Values are fetched with GetParameters (at most 10
//! names a call, AWS's limit), decrypted; a `version` is a number (`name:3`)
//! or a label (`name:prod`). `find` walks a path with GetParametersByPath, or
//! lists names with DescribeParameters when it needs tags or only a regexp.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::ParameterStringFilter;

use super::counted;
use crate::SecretValue;
use crate::provider::{CallCounts, FetchResults, Fetched, FindQuery, ProviderError, RemoteRequest};

pub const SERVICE: &str = "ssm";
/// GetParameters takes at most this many names.
pub const BATCH_LIMIT: usize = 10;

pub(super) struct ParameterStore {
    client: Client,
    calls: Arc<CallCounts>,
}

/// `name` or `name:version`, as GetParameters takes it.
fn selector(name: &str, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("{name}:{version}"),
        None => name.to_string(),
    }
}

impl ParameterStore {
    pub fn new(client: Client, calls: Arc<CallCounts>) -> Self {
        Self { client, calls }
    }

    /// One cheap call: the credentials work and may list.
    pub async fn check(&self) -> Result<(), ProviderError> {
        let response = self
            .client
            .describe_parameters()
            .max_results(1)
            .send()
            .await;
        counted(&self.calls, SERVICE, "DescribeParameters", response).map(|_| ())
    }

    pub async fn fetch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults {
        let mut results = FetchResults::new();
        let mut values = Vec::new();
        for request in requests {
            match request {
                RemoteRequest::Value { key, version } => {
                    values.push((request, key.as_str(), version.as_deref()))
                }
                RemoteRequest::Find(query) => {
                    results.insert(request.clone(), self.find(query).await.map(Fetched::Found));
                }
            }
        }
        let wanted: Vec<(&str, Option<&str>)> = values
            .iter()
            .map(|(_, name, version)| (*name, *version))
            .collect();
        let mut fetched = self.get_parameters(&wanted).await;
        for (request, name, version) in values {
            let value = fetched
                .remove(&selector(name, version))
                .unwrap_or_else(|| Err(ProviderError::NotFound { key: name.into() }));
            results.insert(request.clone(), value.map(Fetched::Value));
        }
        results
    }

    /// Values by selector. A response names parameters without their version
    /// selector, so each call asks for any name at most once: versions of one
    /// name go to separate calls.
    async fn get_parameters(
        &self,
        wanted: &[(&str, Option<&str>)],
    ) -> BTreeMap<String, Result<SecretValue, ProviderError>> {
        let mut rounds: Vec<Vec<(&str, Option<&str>)>> = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for &(name, version) in wanted {
            let round = seen.entry(name).or_default();
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push((name, version));
            *round += 1;
        }
        let mut out = BTreeMap::new();
        for chunk in rounds.iter().flat_map(|round| round.chunks(BATCH_LIMIT)) {
            let selectors: Vec<String> = chunk.iter().map(|(n, v)| selector(n, *v)).collect();
            let response = self
                .client
                .get_parameters()
                .set_names(Some(selectors.clone()))
                .with_decryption(true)
                .send()
                .await;
            let response = match counted(&self.calls, SERVICE, "GetParameters", response) {
                Ok(response) => response,
                Err(error) => {
                    out.extend(selectors.into_iter().map(|s| (s, Err(error.clone()))));
                    continue;
                }
            };
            for parameter in response.parameters() {
                let (Some(name), Some(value)) = (parameter.name(), parameter.value()) else {
                    continue;
                };
                if let Some(&(name, version)) = chunk.iter().find(|(n, _)| *n == name) {
                    out.insert(selector(name, version), Ok(SecretValue::from(value)));
                }
            }
            for invalid in response.invalid_parameters() {
                let error = match chunk.iter().find(|(n, v)| selector(n, *v) == *invalid) {
                    Some(&(name, Some(version))) => ProviderError::VersionNotFound {
                        key: name.into(),
                        version: version.into(),
                    },
                    _ => ProviderError::NotFound {
                        key: invalid.clone(),
                    },
                };
                out.insert(invalid.clone(), Err(error));
            }
        }
        out
    }

    async fn find(
        &self,
        query: &FindQuery,
    ) -> Result<BTreeMap<String, SecretValue>, ProviderError> {
        let name = query.name_regex()?;
        let named = |n: &str| name.as_ref().is_none_or(|re| re.is_match(n));
        match (&query.path, query.tags.is_empty()) {
            (Some(path), true) => {
                let found = self.by_path(path).await?;
                Ok(found.into_iter().filter(|(n, _)| named(n)).collect())
            }
            _ => {
                let names: Vec<String> = self
                    .describe(query)
                    .await?
                    .into_iter()
                    .filter(|n| named(n))
                    .collect();
                let wanted: Vec<(&str, Option<&str>)> =
                    names.iter().map(|n| (n.as_str(), None)).collect();
                let mut found = BTreeMap::new();
                for (name, value) in self.get_parameters(&wanted).await {
                    match value {
                        Ok(value) => {
                            found.insert(name, value);
                        }
                        // Deleted between the listing and the fetch.
                        Err(ProviderError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(found)
            }
        }
    }

    /// Every parameter under `path`, recursively, decrypted.
    async fn by_path(&self, path: &str) -> Result<BTreeMap<String, SecretValue>, ProviderError> {
        let mut found = BTreeMap::new();
        let mut pages = self
            .client
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .with_decryption(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = counted(&self.calls, SERVICE, "GetParametersByPath", page)?;
            for parameter in page.parameters() {
                if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                    found.insert(name.to_string(), SecretValue::from(value));
                }
            }
        }
        Ok(found)
    }

    /// Names of parameters with every tag (and under the path, if given).
    async fn describe(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        let mut filters = Vec::new();
        let filter = |key: String, option: &str, value: &str| {
            ParameterStringFilter::builder()
                .key(key)
                .option(option)
                .values(value)
                .build()
                .map_err(|e| ProviderError::Unsupported(format!("find: {e}")))
        };
        if let Some(path) = &query.path {
            filters.push(filter("Path".into(), "Recursive", path)?);
        }
        for (key, value) in &query.tags {
            filters.push(filter(format!("tag:{key}"), "Equals", value)?);
        }
        let mut names = Vec::new();
        let mut pages = self
            .client
            .describe_parameters()
            .set_parameter_filters((!filters.is_empty()).then_some(filters))
            .into_paginator()
            .page_size(50)
            .send();
        while let Some(page) = pages.next().await {
            let page = counted(&self.calls, SERVICE, "DescribeParameters", page)?;
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
        }
        Ok(names)
    }
}
