//! AWS SSM Parameter Store. Values are fetched with GetParameters (at most 10
//! names a call, AWS's limit, a few calls at once), decrypted; a `version` is
//! a number (`name:3`) or a label (`name:prod`). Change detection lists the
//! names asked for with DescribeParameters (50 a call). `find` walks a path with GetParametersByPath, or
//! lists names with DescribeParameters when it needs tags or only a regexp.
//! PushSecret writes with PutParameter and AddTagsToResource.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{
    ParameterStringFilter, ParameterTier, ParameterType, ResourceTypeForTagging, Tag,
};

use super::{CONCURRENT_CALLS, at_most, counted, refusable, stop_listing};
use crate::SecretValue;
use crate::api::{ParameterStorePush, PushMetadata};
use crate::provider::{
    CallCounts, Checked, FetchResults, Fetched, FindQuery, Markers, ProviderError, PushWrite,
    ReadParts, RemoteRequest, RemoteSecret,
};

pub const SERVICE: &str = "ssm";
/// GetParameters takes at most this many names.
pub const BATCH_LIMIT: usize = 10;

pub(super) struct ParameterStore {
    client: Client,
    calls: Arc<CallCounts>,
}

/// DescribeParameters takes at most this many names in a filter, and
/// answers at most this many parameters a page.
const DESCRIBE_LIMIT: usize = 50;
/// The marker of a value pinned to a version number.
const PINNED: &str = "pinned";

/// A `version`: a number (`3`) or a label (`stable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Selector {
    Number(i64),
    Label,
}

impl Selector {
    fn of(version: &str) -> Selector {
        version.parse().map_or(Selector::Label, Selector::Number)
    }
}

/// Version and modification time: a parameter deleted and recreated starts
/// again at version 1, at another time.
fn marker(version: i64, modified: Option<&aws_sdk_ssm::primitives::DateTime>) -> String {
    let modified = modified.map(|t| (t.secs(), t.subsec_nanos()));
    format!("{version}\n{modified:?}")
}

/// Whether `parameter` answers the name asked for: its name, or its ARN (a
/// parameter asked for by ARN, as a shared one must be, is answered under its
/// bare name).
fn answers_for(parameter: &aws_sdk_ssm::types::Parameter, asked: &str) -> bool {
    parameter.name() == Some(asked) || parameter.arn() == Some(asked)
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

    /// One cheap call: the credentials work, and may list. A policy that
    /// does not allow DescribeParameters (ESO's `ssm:GetParameter*`) still
    /// proves them: AWS knew the caller and refused the action.
    pub async fn check(&self) -> Result<Checked, ProviderError> {
        let response = self
            .client
            .describe_parameters()
            .max_results(1)
            .send()
            .await;
        let listed = refusable(&self.calls, SERVICE, "DescribeParameters", response)?;
        Ok(Checked {
            cannot_list: listed.err().map(|why| {
                format!(
                    "DescribeParameters is denied to this store's identity, so every refresh fetches every value: {why}"
                )
            }),
        })
    }

    /// Every request answered; values of the current version carry a marker
    /// (version and modification time), pinned numbers the marker `pinned`.
    pub async fn fetch(&self, requests: &BTreeSet<RemoteRequest>) -> (FetchResults, Markers) {
        let mut results = FetchResults::new();
        let mut markers = Markers::new();
        let mut values = Vec::new();
        let mut tagged = Vec::new();
        for request in requests {
            match request {
                RemoteRequest::Value { key, version } => {
                    values.push((request, key.as_str(), version.as_deref()))
                }
                RemoteRequest::Find(query) => {
                    results.insert(request.clone(), self.find(query).await.map(Fetched::Found));
                }
                RemoteRequest::Tags { key } => tagged.push((request, key.as_str())),
            }
        }
        // SSM has no call that lists many parameters' tags: one
        // ListTagsForResource per distinct parameter, a few at once.
        let calls = tagged.into_iter().map(|(request, name)| async move {
            let response = self
                .client
                .list_tags_for_resource()
                .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                .resource_id(name)
                .send()
                .await;
            let answer = match response {
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_invalid_resource_id()) =>
                {
                    self.calls.record(SERVICE, "ListTagsForResource", "error");
                    Err(ProviderError::NotFound { key: name.into() })
                }
                response => {
                    counted(&self.calls, SERVICE, "ListTagsForResource", response).map(|listed| {
                        let tags: BTreeMap<String, String> = listed
                            .tag_list()
                            .iter()
                            .map(|t| (t.key().to_string(), t.value().to_string()))
                            .collect();
                        Fetched::Value(super::tags_value(&tags))
                    })
                }
            };
            (request.clone(), answer)
        });
        results.extend(at_most(CONCURRENT_CALLS, calls.collect()).await);
        let wanted: Vec<(&str, Option<&str>)> = values
            .iter()
            .map(|(_, name, version)| (*name, *version))
            .collect();
        let mut fetched = self.get_parameters(&wanted).await;
        for (request, name, version) in values {
            let value = fetched
                .remove(&selector(name, version))
                .unwrap_or_else(|| Err(ProviderError::NotFound { key: name.into() }));
            if let Ok((_, marker)) = &value {
                match version.map(Selector::of) {
                    None => {
                        markers.insert(request.clone(), marker.clone());
                    }
                    Some(Selector::Number(_)) => {
                        markers.insert(request.clone(), PINNED.into());
                    }
                    // A label can move to another version without the
                    // parameter changing: always fetched.
                    Some(Selector::Label) => {}
                }
            }
            results.insert(request.clone(), value.map(|(v, _)| Fetched::Value(v)));
        }
        (results, markers)
    }

    /// Which earlier answers are still current, from DescribeParameters
    /// (version and modification time, by exact names, 50 a call). A current
    /// value counts as current when version and time are those it had; a
    /// pinned version number when its parameter still has that version.
    pub async fn still_current(
        &self,
        known: &Markers,
    ) -> Result<BTreeSet<RemoteRequest>, ProviderError> {
        let mut wanted: BTreeMap<&str, Vec<(&RemoteRequest, &str)>> = BTreeMap::new();
        for (request, marker) in known {
            if let RemoteRequest::Value { key, .. } = request {
                wanted
                    .entry(key.as_str())
                    .or_default()
                    .push((request, marker));
            }
        }
        let fetch_cost = known.len().div_ceil(BATCH_LIMIT);
        let names: Vec<&str> = wanted.keys().copied().collect();
        let (mut calls, mut seen, mut changed) = (0, 0, 0);
        let mut current = BTreeSet::new();
        'chunks: for chunk in names.chunks(DESCRIBE_LIMIT) {
            let filter = ParameterStringFilter::builder()
                .key("Name")
                .option("Equals")
                .set_values(Some(chunk.iter().map(|n| n.to_string()).collect()))
                .build()
                .map_err(|e| ProviderError::Unsupported(format!("DescribeParameters: {e}")))?;
            let mut pages = self
                .client
                .describe_parameters()
                .parameter_filters(filter)
                .into_paginator()
                .page_size(DESCRIBE_LIMIT as i32)
                .send();
            while let Some(page) = pages.next().await {
                let page = counted(&self.calls, SERVICE, "DescribeParameters", page)?;
                calls += 1;
                for parameter in page.parameters() {
                    let Some(uses) = parameter.name().and_then(|n| wanted.get(n)) else {
                        continue;
                    };
                    let now = marker(parameter.version(), parameter.last_modified_date());
                    for (request, marker) in uses {
                        seen += 1;
                        let still = match request {
                            RemoteRequest::Value {
                                version: Some(version),
                                ..
                            } => matches!(
                                Selector::of(version),
                                Selector::Number(n) if n <= parameter.version()
                            ),
                            _ => **marker == now,
                        };
                        if still {
                            current.insert((*request).clone());
                        } else {
                            changed += 1;
                        }
                    }
                }
                if stop_listing(calls, fetch_cost, seen, changed) {
                    break 'chunks;
                }
            }
        }
        Ok(current)
    }

    /// Values by selector, each with its marker. A response may not say which
    /// selector an entry answers (moto does not), so a call asks for any name
    /// with at most one unnumbered selector (current or a label), matched by
    /// name, and any number of version numbers, matched by version.
    async fn get_parameters(
        &self,
        wanted: &[(&str, Option<&str>)],
    ) -> BTreeMap<String, Result<(SecretValue, String), ProviderError>> {
        let mut rounds: Vec<Vec<(&str, Option<&str>)>> = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut numbered = Vec::new();
        for &(name, version) in wanted {
            if let Some(Selector::Number(_)) = version.map(Selector::of) {
                numbered.push((name, version));
                continue;
            }
            let round = seen.entry(name).or_default();
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            if let Some(calls) = rounds.get_mut(*round) {
                calls.push((name, version));
            }
            *round += 1;
        }
        match rounds.first_mut() {
            Some(first) => first.extend(numbered),
            None => rounds.push(numbered),
        }
        let calls: Vec<_> = rounds
            .iter()
            .flat_map(|round| round.chunks(BATCH_LIMIT))
            .map(|chunk| self.get_parameters_once(chunk))
            .collect();
        at_most(CONCURRENT_CALLS, calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn get_parameters_once(
        &self,
        chunk: &[(&str, Option<&str>)],
    ) -> BTreeMap<String, Result<(SecretValue, String), ProviderError>> {
        let mut out = BTreeMap::new();
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
                return out;
            }
        };
        let mut unclaimed: Vec<&aws_sdk_ssm::types::Parameter> = Vec::new();
        for parameter in response.parameters() {
            let (Some(_), Some(value)) = (parameter.name(), parameter.value()) else {
                continue;
            };
            let answer = (
                SecretValue::from(value),
                marker(parameter.version(), parameter.last_modified_date()),
            );
            // The selector, when the response says it (AWS does: `:3`, `:label`).
            if let Some(said) = parameter.selector().filter(|s| !s.is_empty()) {
                let asked = chunk.iter().find(|(n, v)| {
                    answers_for(parameter, n)
                        && v.map(|v| format!(":{v}")).as_deref() == Some(said)
                        && !out.contains_key(&selector(n, *v))
                });
                if let Some(&(n, v)) = asked {
                    out.insert(selector(n, v), Ok(answer));
                    continue;
                }
            }
            let number = chunk.iter().find(|(n, v)| {
                answers_for(parameter, n)
                    && v.map(Selector::of) == Some(Selector::Number(parameter.version()))
                    && !out.contains_key(&selector(n, *v))
            });
            match number {
                Some(&(n, v)) => {
                    out.insert(selector(n, v), Ok(answer));
                }
                None => unclaimed.push(parameter),
            }
        }
        // What is left answers the one unnumbered selector of its name (or a
        // number that shares its version with the current one).
        for parameter in unclaimed {
            let (Some(_), Some(value)) = (parameter.name(), parameter.value()) else {
                continue;
            };
            let open = chunk
                .iter()
                .find(|(n, v)| answers_for(parameter, n) && !out.contains_key(&selector(n, *v)));
            if let Some(&(n, v)) = open {
                let answer = (
                    SecretValue::from(value),
                    marker(parameter.version(), parameter.last_modified_date()),
                );
                out.insert(selector(n, v), Ok(answer));
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
                        Ok((value, _)) => {
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

/// PushSecret's reads and writes.
impl ParameterStore {
    /// GetParameter, decrypted (version and value come together), and
    /// ListTagsForResource when tags are asked for. GetParameter does not
    /// give the description; it is left out rather than paid for with
    /// DescribeParameters.
    pub async fn read_pushed(
        &self,
        name: &str,
        parts: ReadParts,
    ) -> Result<Option<RemoteSecret>, ProviderError> {
        let response = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await;
        let output = match response {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                self.calls.record(SERVICE, "GetParameter", "error");
                return Ok(None);
            }
            response => counted(&self.calls, SERVICE, "GetParameter", response)?,
        };
        let Some(parameter) = output.parameter() else {
            return Ok(None);
        };
        let mut remote = RemoteSecret {
            version: parameter.version().to_string(),
            value: parameter.value().map(SecretValue::from),
            ..RemoteSecret::default()
        };
        if parts.tags {
            let response = self
                .client
                .list_tags_for_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(name)
                .send()
                .await;
            let listed = counted(&self.calls, SERVICE, "ListTagsForResource", response)?;
            remote.tags = listed
                .tag_list()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
        }
        Ok(Some(remote))
    }

    /// PutParameter: with the tags when it creates the parameter; over an
    /// existing one (AWS refuses tags with `Overwrite`), then
    /// AddTagsToResource for the wanted tags it lacks (none is ever
    /// removed). The tier is sent only when the metadata names one, so an
    /// overwrite never asks to downgrade an Advanced parameter. Answers the
    /// new version number.
    pub async fn push(&self, write: &PushWrite<'_>) -> Result<String, ProviderError> {
        let name = write.key;
        let metadata = match write.metadata {
            PushMetadata::ParameterStore(metadata) => metadata,
            _ => &ParameterStorePush::default(),
        };
        let value = write.value.expose_str().ok_or_else(|| {
            ProviderError::Unsupported(format!(
                "the value pushed to remote key {name:?} is not UTF-8 text: Parameter Store holds only text"
            ))
        })?;
        let kind = metadata.secret_type.unwrap_or_default();
        let key_id = metadata
            .kms_key_id
            .clone()
            .filter(|_| kind == crate::api::ParameterType::SecureString);
        let tier = metadata.tier.as_ref();
        let policies = tier
            .and_then(|t| t.policies.as_ref())
            .map(|p| p.to_string());
        let request = self
            .client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::from(kind.as_str()))
            .overwrite(write.current.is_some())
            .description(
                metadata
                    .description
                    .clone()
                    .unwrap_or_else(super::default_description),
            )
            .set_key_id(key_id)
            .set_tier(tier.map(|t| ParameterTier::from(t.tier.as_str())))
            .set_policies(policies);
        let request = match write.current {
            None if !write.tags.is_empty() => request.set_tags(Some(tags(write.tags.iter())?)),
            _ => request,
        };
        let response = request.send().await;
        let written = counted(&self.calls, SERVICE, "PutParameter", response)?;
        if let Some(current) = write.current {
            let missing = super::tags_to_add(write.tags, &current.tags);
            if !missing.is_empty() {
                let response = self
                    .client
                    .add_tags_to_resource()
                    .resource_type(ResourceTypeForTagging::Parameter)
                    .resource_id(name)
                    .set_tags(Some(tags(missing.into_iter())?))
                    .send()
                    .await;
                counted(&self.calls, SERVICE, "AddTagsToResource", response)?;
            }
        }
        Ok(written.version().to_string())
    }

    /// DeleteParameter; a parameter already gone is no error.
    pub async fn delete_pushed(&self, name: &str) -> Result<(), ProviderError> {
        let response = self.client.delete_parameter().name(name).send().await;
        match response {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                self.calls.record(SERVICE, "DeleteParameter", "error");
                Ok(())
            }
            response => counted(&self.calls, SERVICE, "DeleteParameter", response).map(|_| ()),
        }
    }
}

/// Tags as SSM takes them (key and value both required).
fn tags<'a>(
    tags: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<Tag>, ProviderError> {
    tags.map(|(key, value)| {
        Tag::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(|e| ProviderError::Unsupported(format!("tag {key:?}: {e}")))
    })
    .collect()
}
