//! AWS Secrets Manager. Current values are fetched in batches of at most 20
//! ids (BatchGetSecretValue, AWS's limit); values pinned to a stage or version
//! id one by one (GetSecretValue); `find` lists names with ListSecrets, filters
//! on the client, then fetches in batches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

use super::{api_error, counted, outcome};
use crate::SecretValue;
use crate::provider::{CallCounts, FetchResults, Fetched, FindQuery, ProviderError, RemoteRequest};

pub const SERVICE: &str = "secretsmanager";
/// BatchGetSecretValue takes at most this many ids.
pub const BATCH_LIMIT: usize = 20;
const CURRENT_STAGE: &str = "AWSCURRENT";
/// `version: uuid/<id>` selects a VersionId instead of a stage.
const VERSION_ID_PREFIX: &str = "uuid/";

pub(super) struct SecretsManager {
    client: Client,
    calls: Arc<CallCounts>,
}

impl SecretsManager {
    pub fn new(client: Client, calls: Arc<CallCounts>) -> Self {
        Self { client, calls }
    }

    /// One cheap call: the credentials work and may list.
    pub async fn check(&self) -> Result<(), ProviderError> {
        let response = self.client.list_secrets().max_results(1).send().await;
        counted(&self.calls, SERVICE, "ListSecrets", response).map(|_| ())
    }

    pub async fn fetch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults {
        let mut results = FetchResults::new();
        let mut current = Vec::new();
        for request in requests {
            match request {
                RemoteRequest::Value { key, version } => match version.as_deref() {
                    None | Some(CURRENT_STAGE) => current.push((request, key.clone())),
                    Some(version) => {
                        let value = self.get_version(key, version).await.map(Fetched::Value);
                        results.insert(request.clone(), value);
                    }
                },
                RemoteRequest::Find(query) => {
                    results.insert(request.clone(), self.find(query).await.map(Fetched::Found));
                }
            }
        }
        // No version and `AWSCURRENT` are the same value: ask for it once.
        let ids: BTreeSet<String> = current.iter().map(|(_, id)| id.clone()).collect();
        let values = self.batch_get(&ids.into_iter().collect::<Vec<_>>()).await;
        for (request, id) in current {
            let value = values
                .get(&id)
                .cloned()
                .unwrap_or(Err(ProviderError::NotFound { key: id }));
            results.insert(request.clone(), value.map(Fetched::Value));
        }
        results
    }

    /// Current values of `ids` (names or ARNs), 20 to a call.
    async fn batch_get(
        &self,
        ids: &[String],
    ) -> BTreeMap<String, Result<SecretValue, ProviderError>> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(BATCH_LIMIT) {
            let response = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.to_vec()))
                .send()
                .await;
            let response = match counted(&self.calls, SERVICE, "BatchGetSecretValue", response) {
                Ok(response) => response,
                Err(error) => {
                    out.extend(chunk.iter().map(|id| (id.clone(), Err(error.clone()))));
                    continue;
                }
            };
            for entry in response.secret_values() {
                let value = entry_value(
                    entry.secret_string(),
                    entry.secret_binary().map(|b| b.as_ref()),
                );
                let Some(value) = value else { continue };
                // The answer names the secret both ways; it answers every id
                // that asked for it, by name or by ARN.
                let asked = chunk.iter().filter(|id| {
                    Some(id.as_str()) == entry.arn() || Some(id.as_str()) == entry.name()
                });
                for id in asked {
                    out.insert(id.clone(), Ok(value.clone()));
                }
            }
            for error in response.errors() {
                let Some(id) = error.secret_id() else {
                    continue;
                };
                let result = match error.error_code() {
                    Some("ResourceNotFoundException") => ProviderError::NotFound {
                        key: id.to_string(),
                    },
                    code => ProviderError::Api {
                        service: SERVICE.into(),
                        call: "BatchGetSecretValue".into(),
                        message: format!(
                            "{}: {}",
                            code.unwrap_or("error"),
                            error.message().unwrap_or_default()
                        ),
                    },
                };
                out.insert(id.to_string(), Err(result));
            }
        }
        out
    }

    /// A value at a stage (`AWSPREVIOUS`, custom) or a VersionId (`uuid/<id>`).
    async fn get_version(&self, id: &str, version: &str) -> Result<SecretValue, ProviderError> {
        let request = self.client.get_secret_value().secret_id(id);
        let request = match version.strip_prefix(VERSION_ID_PREFIX) {
            Some(version_id) => request.version_id(version_id),
            None => request.version_stage(version),
        };
        let response = request.send().await;
        self.calls
            .record(SERVICE, "GetSecretValue", outcome(&response));
        match response {
            Ok(output) => entry_value(
                output.secret_string(),
                output.secret_binary().map(|b| b.as_ref()),
            )
            .ok_or_else(|| ProviderError::NotFound { key: id.into() }),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                // AWS says the same for a missing secret and a missing version.
                if self.exists(id).await {
                    Err(ProviderError::VersionNotFound {
                        key: id.into(),
                        version: version.into(),
                    })
                } else {
                    Err(ProviderError::NotFound { key: id.into() })
                }
            }
            Err(e) => Err(api_error(SERVICE, "GetSecretValue", &e)),
        }
    }

    async fn exists(&self, id: &str) -> bool {
        let response = self.client.describe_secret().secret_id(id).send().await;
        counted(&self.calls, SERVICE, "DescribeSecret", response).is_ok()
    }

    /// Names matching the query (ListSecrets, then exact checks here), fetched
    /// in batches.
    async fn find(
        &self,
        query: &FindQuery,
    ) -> Result<BTreeMap<String, SecretValue>, ProviderError> {
        let name = query.name_regex()?;
        let mut filters = Vec::new();
        if let Some(path) = &query.path {
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(path)
                    .build(),
            );
        }
        for (key, value) in &query.tags {
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .values(key)
                    .build(),
            );
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::TagValue)
                    .values(value)
                    .build(),
            );
        }
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_secrets()
            .set_filters((!filters.is_empty()).then_some(filters))
            .into_paginator()
            .page_size(100)
            .send();
        while let Some(page) = pages.next().await {
            let page = counted(&self.calls, SERVICE, "ListSecrets", page)?;
            for secret in page.secret_list() {
                let Some(secret_name) = secret.name() else {
                    continue;
                };
                // AWS's name filter is a case-insensitive prefix and its tag
                // filters match keys and values apart: check exactly here.
                let under_path = query
                    .path
                    .as_deref()
                    .is_none_or(|p| secret_name.starts_with(p));
                let tagged = query.tags.iter().all(|(k, v)| {
                    secret
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some(k.as_str()) && t.value() == Some(v.as_str()))
                });
                let named = name.as_ref().is_none_or(|re| re.is_match(secret_name));
                if under_path && tagged && named {
                    names.push(secret_name.to_string());
                }
            }
        }
        let mut found = BTreeMap::new();
        for (name, value) in self.batch_get(&names).await {
            match value {
                Ok(value) => {
                    found.insert(name, value);
                }
                // Deleted between the listing and the fetch: not part of the result.
                Err(ProviderError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }
}

fn entry_value(string: Option<&str>, binary: Option<&[u8]>) -> Option<SecretValue> {
    string
        .map(SecretValue::from)
        .or_else(|| binary.map(SecretValue::new))
}
