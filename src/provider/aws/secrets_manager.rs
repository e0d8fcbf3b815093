//! AWS Secrets Manager. Current values are fetched in batches of at most 20
//! ids (BatchGetSecretValue, AWS's limit); values pinned to a stage or version
//! id one by one (GetSecretValue); `find` lists names with ListSecrets, filters
//! on the client, then fetches in batches. PushSecret writes with
//! CreateSecret or PutSecretValue, then tags, description and resource policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};

use super::{
    CONCURRENT_CALLS, answer_failure, api_error, at_most, counted, outcome, refusable, stop_listing,
};
use crate::SecretValue;
use crate::api::{PushMetadata, SecretPushFormat, SecretsManagerPush, SecretsManagerSettings};
use crate::provider::{
    ApiFailure, CallCounts, Checked, FetchResults, Fetched, FindQuery, Markers, ProviderError,
    PushWrite, ReadParts, RemoteRequest, RemoteSecret,
};

pub const SERVICE: &str = "secretsmanager";
/// BatchGetSecretValue takes at most this many ids.
pub const BATCH_LIMIT: usize = 20;
const CURRENT_STAGE: &str = "AWSCURRENT";
/// The id a store check asks BatchGetSecretValue for, to learn whether it
/// may: a name no one gives a secret.
const PERMISSION_PROBE: &str = "secretsync/permission-check/no-such-secret";
/// `version: uuid/<id>` selects a VersionId instead of a stage.
const VERSION_ID_PREFIX: &str = "uuid/";
/// A ListSecrets filter takes at most this many values.
const FILTER_VALUES: usize = 10;

/// Values by the id (name or ARN) that asked for them, with their markers.
type Values = BTreeMap<String, Result<(SecretValue, String), ProviderError>>;

/// Whether an identity may call BatchGetSecretValue, as last found out. IAM
/// policies belong to an identity, not to a client: callers that make many
/// clients for one role (the CSI provider, a client per pod) share one.
#[derive(Debug, Default)]
pub struct BatchPermission {
    denied_at: Mutex<Option<Instant>>,
}

/// A refusal is believed this long; then one batch call asks again, so a
/// policy that gained the action is used within the hour.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60 * 60);

impl BatchPermission {
    fn is_denied(&self) -> bool {
        self.lock().is_some_and(|at| at.elapsed() < ASK_AGAIN_AFTER)
    }

    /// Remembers a refusal; true when it was not already known.
    fn deny(&self) -> bool {
        let known = self.is_denied();
        *self.lock() = Some(Instant::now());
        !known
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.denied_at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) struct SecretsManager {
    client: Client,
    calls: Arc<CallCounts>,
    batch: Arc<BatchPermission>,
    /// Names that the last [`read_pushed`](Self::read_pushed) of each found
    /// scheduled for deletion. A push hands back only what that read gave
    /// (`current`), and PutSecretValue is where AWS would refuse such a
    /// secret, so the push refuses it itself, with a clear error, first.
    scheduled_for_deletion: Mutex<BTreeSet<String>>,
}

impl SecretsManager {
    pub fn new(client: Client, calls: Arc<CallCounts>, batch: Arc<BatchPermission>) -> Self {
        Self {
            client,
            calls,
            batch,
            scheduled_for_deletion: Mutex::default(),
        }
    }

    /// One cheap call: the credentials work, and may list. A policy that
    /// does not allow listing (ESO's, ASCP's) still proves them: AWS knew the
    /// caller and refused the action. Such a policy seldom allows batches
    /// either: one more call finds out, and a refusal is remembered now,
    /// before the first refresh makes it. (A store that may list is not
    /// asked: its refreshes tell.)
    pub async fn check(&self) -> Result<Checked, ProviderError> {
        let listed = self.client.list_secrets().max_results(1).send().await;
        let Err(why) = refusable(&self.calls, SERVICE, "ListSecrets", listed)? else {
            return Ok(Checked::default());
        };
        let cannot_list = Some(format!(
            "ListSecrets is denied to this store's identity, so every refresh fetches every value: {why}"
        ));
        if self.batch.is_denied() {
            return Ok(Checked { cannot_list });
        }
        // A name no secret has: allowed, the answer is a per-secret "not
        // found"; denied, the call fails.
        let batch = self
            .client
            .batch_get_secret_value()
            .secret_id_list(PERMISSION_PROBE)
            .send()
            .await;
        // Any other failure says nothing about the policy; a refresh will tell.
        if let Ok(Err(_)) = refusable(&self.calls, SERVICE, "BatchGetSecretValue", batch) {
            self.batch_was_refused();
        }
        Ok(Checked { cannot_list })
    }

    /// AWS refused BatchGetSecretValue to this identity: remembered, said once.
    fn batch_was_refused(&self) {
        if self.batch.deny() {
            tracing::info!(
                "BatchGetSecretValue is denied to this identity: reading each secret with GetSecretValue"
            );
        }
    }

    /// Why each secret is read with its own call, while it is.
    pub fn batch_refused(&self) -> Option<String> {
        self.batch.is_denied().then(|| {
            "BatchGetSecretValue is denied to this store's identity: each secret is read with GetSecretValue (one call per secret instead of one per 20)".to_string()
        })
    }

    /// Every request answered, with a marker (ARN and version id) for each
    /// value, so a later refresh can ask [`still_current`](Self::still_current).
    pub async fn fetch(&self, requests: &BTreeSet<RemoteRequest>) -> (FetchResults, Markers) {
        let mut results = FetchResults::new();
        let mut markers = Markers::new();
        let mut current = Vec::new();
        let mut pinned = Vec::new();
        let mut tagged = Vec::new();
        for request in requests {
            match request {
                RemoteRequest::Value { key, version } => match version.as_deref() {
                    None | Some(CURRENT_STAGE) => current.push((request, key.clone())),
                    Some(version) => pinned.push((request, key.as_str(), version)),
                },
                RemoteRequest::Find(query) => {
                    results.insert(request.clone(), self.find(query).await.map(Fetched::Found));
                }
                RemoteRequest::Tags { key } => tagged.push((request, key.as_str())),
            }
        }
        if !tagged.is_empty() {
            let keys: Vec<&str> = tagged.iter().map(|(_, key)| *key).collect();
            let mut tags = self.tags(&keys).await;
            for (request, key) in tagged {
                let answer = tags
                    .remove(key)
                    .unwrap_or_else(|| Err(ProviderError::NotFound { key: key.into() }));
                results.insert(
                    request.clone(),
                    answer.map(|tags| Fetched::Value(super::tags_value(&tags))),
                );
            }
        }
        let mut calls = Vec::new();
        for (request, key, version) in pinned {
            calls.push(async move { (request, self.get_version(key, version).await) });
        }
        let pinned_values = at_most(CONCURRENT_CALLS, calls).await;
        for (request, answer) in pinned_values {
            if let Ok((_, marker)) = &answer {
                markers.insert(request.clone(), marker.clone());
            }
            results.insert(request.clone(), answer.map(|(v, _)| Fetched::Value(v)));
        }
        // No version and `AWSCURRENT` are the same value: ask for it once.
        let ids: BTreeSet<String> = current.iter().map(|(_, id)| id.clone()).collect();
        let values = self.batch_get(&ids.into_iter().collect::<Vec<_>>()).await;
        for (request, id) in current {
            let value = values
                .get(&id)
                .cloned()
                .unwrap_or(Err(ProviderError::NotFound { key: id }));
            if let Ok((_, marker)) = &value {
                markers.insert(request.clone(), marker.clone());
            }
            results.insert(request.clone(), value.map(|(v, _)| Fetched::Value(v)));
        }
        (results, markers)
    }

    /// Which earlier answers are still current, from ListSecrets (names and
    /// the version id of each stage, 100 secrets a page, filtered by up to ten
    /// name prefixes covering the names asked for). A value counts as current
    /// when its secret has the same ARN (not deleted and recreated) and the
    /// stage it reads still points at the same version. Values named by ARN
    /// and `find`s are not listed; they are fetched again.
    pub async fn still_current(
        &self,
        known: &Markers,
    ) -> Result<BTreeSet<RemoteRequest>, ProviderError> {
        let mut wanted: BTreeMap<&str, Vec<Known<'_>>> = BTreeMap::new();
        for (request, marker) in known {
            let RemoteRequest::Value { key, version } = request else {
                continue;
            };
            let Some((arn, version_id)) = marker.split_once('\n') else {
                continue;
            };
            if key.starts_with("arn:") {
                continue;
            }
            let stage = version.as_deref().unwrap_or(CURRENT_STAGE);
            wanted.entry(key.as_str()).or_default().push(Known {
                request,
                arn,
                version_id,
                stage: (!stage.starts_with(VERSION_ID_PREFIX)).then_some(stage),
            });
        }
        if wanted.is_empty() {
            return Ok(BTreeSet::new());
        }
        // What refetching everything would cost: batches of current values,
        // one call per pinned stage.
        let current_names = wanted
            .values()
            .filter(|uses| uses.iter().any(|k| is_current(k.request)))
            .count();
        let pinned_calls = known.keys().filter(|r| !is_current(r)).count();
        let fetch_cost = current_names.div_ceil(BATCH_LIMIT) + pinned_calls;

        let names: Vec<&str> = wanted.keys().copied().collect();
        let filters = name_prefixes(&names, FILTER_VALUES).map(|prefixes| {
            vec![
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .set_values(Some(prefixes))
                    .build(),
            ]
        });
        let mut pages = self
            .client
            .list_secrets()
            .set_filters(filters)
            .into_paginator()
            .page_size(100)
            .send();
        let (mut listed, mut seen, mut changed) = (0, 0, 0);
        let mut current = BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page = counted(&self.calls, SERVICE, "ListSecrets", page)?;
            listed += 1;
            for secret in page.secret_list() {
                let Some(uses) = secret.name().and_then(|name| wanted.get(name)) else {
                    continue;
                };
                for known in uses {
                    seen += 1;
                    // A pinned version id reads the same bytes while its
                    // secret lives; a stage must still point at the version.
                    let same_version = known.stage.is_none_or(|stage| {
                        secret
                            .secret_versions_to_stages()
                            .and_then(|stages| stages.get(known.version_id))
                            .is_some_and(|stages| stages.iter().any(|s| s == stage))
                    });
                    if secret.arn() == Some(known.arn) && same_version {
                        current.insert(known.request.clone());
                    } else {
                        changed += 1;
                    }
                }
            }
            if stop_listing(listed, fetch_cost, seen, changed) {
                break;
            }
        }
        Ok(current)
    }

    /// Current values of `ids` (names or ARNs), 20 to a call, a few calls at
    /// once; each with its marker. An identity that may not call
    /// BatchGetSecretValue (a role written for ASCP or ESO allows only
    /// GetSecretValue) reads each secret on its own instead, and that is
    /// remembered so the refused call is not made again on every fetch.
    async fn batch_get(&self, ids: &[String]) -> Values {
        if self.batch.is_denied() {
            return self.get_each(ids).await;
        }
        let calls: Vec<_> = ids
            .chunks(BATCH_LIMIT)
            .map(|chunk| async move { (chunk, self.batch_get_one(chunk).await) })
            .collect();
        let mut out = Values::new();
        let mut refused: Vec<String> = Vec::new();
        for (chunk, answer) in at_most(CONCURRENT_CALLS, calls).await {
            match answer {
                Ok(Some(values)) => out.extend(values),
                Ok(None) => refused.extend(chunk.iter().cloned()),
                Err(error) => out.extend(chunk.iter().map(|id| (id.clone(), Err(error.clone())))),
            }
        }
        if !refused.is_empty() {
            self.batch_was_refused();
            out.extend(self.get_each(&refused).await);
        }
        out
    }

    /// One BatchGetSecretValue; `None` when AWS refused the action to this
    /// identity, `Err` when the call failed otherwise (each secret's own
    /// failure is in the map).
    async fn batch_get_one(&self, chunk: &[String]) -> Result<Option<Values>, ProviderError> {
        let mut out = BTreeMap::new();
        let response = self
            .client
            .batch_get_secret_value()
            .set_secret_id_list(Some(chunk.to_vec()))
            .send()
            .await;
        let Ok(response) = refusable(&self.calls, SERVICE, "BatchGetSecretValue", response)? else {
            return Ok(None);
        };
        for entry in response.secret_values() {
            let value = entry_value(
                entry.secret_string(),
                entry.secret_binary().map(|b| b.as_ref()),
            );
            let Some(value) = value else { continue };
            let marker = marker(entry.arn(), entry.version_id());
            // The answer names the secret both ways; it answers every id
            // that asked for it, by name or by ARN.
            let asked = chunk
                .iter()
                .filter(|id| Some(id.as_str()) == entry.arn() || Some(id.as_str()) == entry.name());
            for id in asked {
                out.insert(id.clone(), Ok((value.clone(), marker.clone())));
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
                    service: SERVICE,
                    call: "BatchGetSecretValue",
                    message: format!(
                        "{}: {}",
                        code.unwrap_or("error"),
                        error.message().unwrap_or_default()
                    ),
                    // Per secret, AWS names the error but gives no status.
                    failure: answer_failure(code, 400),
                },
            };
            out.insert(id.to_string(), Err(result));
        }
        Ok(Some(out))
    }

    /// Current values of `ids`, one GetSecretValue each, a few at once.
    async fn get_each(&self, ids: &[String]) -> Values {
        let calls: Vec<_> = ids
            .iter()
            .map(|id| async move { (id.clone(), self.get_version(id, CURRENT_STAGE).await) })
            .collect();
        at_most(CONCURRENT_CALLS, calls).await.into_iter().collect()
    }

    /// A value at a stage (`AWSCURRENT`, `AWSPREVIOUS`, custom) or a
    /// VersionId (`uuid/<id>`).
    async fn get_version(
        &self,
        id: &str,
        version: &str,
    ) -> Result<(SecretValue, String), ProviderError> {
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
            .map(|value| (value, marker(output.arn(), output.version_id())))
            .ok_or_else(|| ProviderError::NotFound { key: id.into() }),
            // Every secret has an AWSCURRENT version: not found is the secret.
            Err(e) if e.code() == Some("ResourceNotFoundException") && version == CURRENT_STAGE => {
                Err(ProviderError::NotFound { key: id.into() })
            }
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

    /// The tags of each secret (`metadataPolicy: Fetch`): named ones from
    /// ListSecrets (a page holds 100, filtered by up to ten name prefixes),
    /// so a fleet's tags cost a call or two, not one per secret. An identity
    /// without ListSecrets (ESO's policy), ARNs, and names the prefixes
    /// cannot cover are asked with DescribeSecret, once per distinct secret.
    async fn tags(
        &self,
        keys: &[&str],
    ) -> BTreeMap<String, Result<BTreeMap<String, String>, ProviderError>> {
        let mut answers = BTreeMap::new();
        let (arns, names): (Vec<&str>, Vec<&str>) =
            keys.iter().partition(|k| k.starts_with("arn:"));
        let mut each: Vec<&str> = arns;
        match name_prefixes(&names, FILTER_VALUES) {
            Some(prefixes) if !names.is_empty() => {
                match self.list_tags(&names, prefixes).await {
                    Ok(Ok(listed)) => {
                        for name in &names {
                            answers.insert(
                                name.to_string(),
                                listed
                                    .get(*name)
                                    .cloned()
                                    .ok_or_else(|| ProviderError::NotFound {
                                        key: name.to_string(),
                                    }),
                            );
                        }
                    }
                    // ListSecrets refused: ask each secret instead.
                    Ok(Err(_)) => each.extend(&names),
                    Err(e) => {
                        for name in &names {
                            answers.insert(name.to_string(), Err(e.clone()));
                        }
                    }
                }
            }
            _ => each.extend(&names),
        }
        let calls = each.into_iter().map(|id| async move {
            let response = self.client.describe_secret().secret_id(id).send().await;
            let tags = match response {
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    self.calls.record(SERVICE, "DescribeSecret", "error");
                    Err(ProviderError::NotFound {
                        key: id.to_string(),
                    })
                }
                response => counted(&self.calls, SERVICE, "DescribeSecret", response)
                    .map(|secret| tag_map(secret.tags())),
            };
            (id.to_string(), tags)
        });
        answers.extend(at_most(CONCURRENT_CALLS, calls.collect()).await);
        answers
    }

    /// Tags of the secrets named, from ListSecrets; the inner `Err` when the
    /// identity may not list.
    async fn list_tags(
        &self,
        names: &[&str],
        prefixes: Vec<String>,
    ) -> Result<Result<BTreeMap<String, BTreeMap<String, String>>, String>, ProviderError> {
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .set_values(Some(prefixes))
            .build();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter)
            .into_paginator()
            .page_size(100)
            .send();
        let mut listed = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = match refusable(&self.calls, SERVICE, "ListSecrets", page)? {
                Ok(page) => page,
                Err(why) => return Ok(Err(why)),
            };
            for secret in page.secret_list() {
                if let Some(name) = secret.name().filter(|n| names.contains(n)) {
                    listed.insert(name.to_string(), tag_map(secret.tags()));
                }
            }
        }
        Ok(Ok(listed))
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
                Ok((value, _)) => {
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

/// PushSecret's reads and writes.
impl SecretsManager {
    /// DescribeSecret (version, tags, description), and GetSecretValue of
    /// that version when the value is asked for. A secret scheduled for
    /// deletion is answered as existing (a push to it then fails; see
    /// [`push`](Self::push)), without its value (AWS would refuse to read it).
    pub async fn read_pushed(
        &self,
        name: &str,
        parts: ReadParts,
    ) -> Result<Option<RemoteSecret>, ProviderError> {
        let response = self.client.describe_secret().secret_id(name).send().await;
        let secret = match response {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.calls.record(SERVICE, "DescribeSecret", "error");
                self.deletion_scheduled(name, false);
                return Ok(None);
            }
            response => counted(&self.calls, SERVICE, "DescribeSecret", response)?,
        };
        let deleted = secret.deleted_date().is_some();
        self.deletion_scheduled(name, deleted);
        let version = secret
            .version_ids_to_stages()
            .and_then(|versions| {
                versions
                    .iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == CURRENT_STAGE))
            })
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        let mut remote = RemoteSecret {
            version,
            tags: tag_map(secret.tags()),
            value: None,
            description: secret.description().map(str::to_string),
        };
        if parts.value && !remote.version.is_empty() && !deleted {
            let response = self
                .client
                .get_secret_value()
                .secret_id(name)
                .version_id(&remote.version)
                .send()
                .await;
            let output = counted(&self.calls, SERVICE, "GetSecretValue", response)?;
            remote.value = entry_value(
                output.secret_string(),
                output.secret_binary().map(|b| b.as_ref()),
            );
        }
        Ok(Some(remote))
    }

    /// Creates the secret (CreateSecret with value, description, KMS key and
    /// tags, then PutResourcePolicy) or, when it exists, writes a new version
    /// (PutSecretValue), then adds the wanted tags it lacks (TagResource;
    /// none is ever removed), sets the description if it differs
    /// (UpdateSecret) and puts the resource policy. Answers the new VersionId.
    pub async fn push(&self, write: &PushWrite<'_>) -> Result<String, ProviderError> {
        let name = write.key;
        let metadata = match write.metadata {
            PushMetadata::SecretsManager(metadata) => metadata,
            _ => &SecretsManagerPush::default(),
        };
        let as_string = metadata.secret_push_format == Some(SecretPushFormat::String);
        let (string, binary) = if as_string {
            let text = write.value.expose_str().ok_or_else(|| {
                ProviderError::Unsupported(format!(
                    "the value pushed to remote key {name:?} is not UTF-8 text, which secretPushFormat: string requires"
                ))
            })?;
            (Some(text.to_string()), None)
        } else {
            (None, Some(Blob::new(write.value.expose().to_vec())))
        };
        let description = metadata
            .description
            .clone()
            .unwrap_or_else(super::default_description);

        let Some(current) = write.current else {
            let response = self
                .client
                .create_secret()
                .name(name)
                .set_secret_string(string)
                .set_secret_binary(binary)
                .description(description)
                .set_kms_key_id(metadata.kms_key_id.clone())
                .set_tags((!write.tags.is_empty()).then(|| tags(write.tags.iter())))
                .send()
                .await;
            let created = counted(&self.calls, SERVICE, "CreateSecret", response)?;
            self.put_policy(name, write, metadata).await?;
            return Ok(created.version_id().unwrap_or_default().to_string());
        };

        if self.is_scheduled_for_deletion(name) {
            return Err(ProviderError::Api {
                service: SERVICE,
                call: "PutSecretValue",
                message: format!(
                    "remote secret {name:?} is scheduled for deletion: restore it (RestoreSecret) or wait until AWS deletes it"
                ),
                failure: ApiFailure::Rejected,
            });
        }
        let response = self
            .client
            .put_secret_value()
            .secret_id(name)
            .set_secret_string(string)
            .set_secret_binary(binary)
            .send()
            .await;
        let written = counted(&self.calls, SERVICE, "PutSecretValue", response)?;
        let missing = super::tags_to_add(write.tags, &current.tags);
        if !missing.is_empty() {
            let response = self
                .client
                .tag_resource()
                .secret_id(name)
                .set_tags(Some(tags(missing.into_iter())))
                .send()
                .await;
            counted(&self.calls, SERVICE, "TagResource", response)?;
        }
        if current.description.as_deref() != Some(description.as_str()) {
            let response = self
                .client
                .update_secret()
                .secret_id(name)
                .description(description)
                .send()
                .await;
            counted(&self.calls, SERVICE, "UpdateSecret", response)?;
        }
        self.put_policy(name, write, metadata).await?;
        Ok(written.version_id().unwrap_or_default().to_string())
    }

    /// PutResourcePolicy, when the push carries a policy.
    async fn put_policy(
        &self,
        name: &str,
        write: &PushWrite<'_>,
        metadata: &SecretsManagerPush,
    ) -> Result<(), ProviderError> {
        let Some(policy) = write.resource_policy else {
            return Ok(());
        };
        let block_public = metadata
            .resource_policy
            .as_ref()
            .and_then(|p| p.block_public_policy);
        let response = self
            .client
            .put_resource_policy()
            .secret_id(name)
            .resource_policy(policy)
            .set_block_public_policy(block_public)
            .send()
            .await;
        counted(&self.calls, SERVICE, "PutResourcePolicy", response).map(|_| ())
    }

    /// DeleteSecret with the store's recovery window (or none, when it
    /// forces deletion; AWS's 30 days when it says nothing). A secret
    /// already gone, or already scheduled for deletion, is no error: AWS
    /// refuses to schedule it twice, so a refusal is checked with
    /// DescribeSecret.
    pub async fn delete_pushed(
        &self,
        name: &str,
        settings: &SecretsManagerSettings,
    ) -> Result<(), ProviderError> {
        let response = self
            .client
            .delete_secret()
            .secret_id(name)
            .set_force_delete_without_recovery(
                settings.force_delete_without_recovery.then_some(true),
            )
            .set_recovery_window_in_days(
                (settings.recovery_window_in_days > 0).then_some(settings.recovery_window_in_days),
            )
            .send()
            .await;
        match response {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.calls.record(SERVICE, "DeleteSecret", "error");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_invalid_request_exception()) =>
            {
                self.calls.record(SERVICE, "DeleteSecret", "error");
                let error = api_error(SERVICE, "DeleteSecret", &e);
                let response = self.client.describe_secret().secret_id(name).send().await;
                match counted(&self.calls, SERVICE, "DescribeSecret", response) {
                    Ok(secret) if secret.deleted_date().is_some() => Ok(()),
                    _ => Err(error),
                }
            }
            response => counted(&self.calls, SERVICE, "DeleteSecret", response).map(|_| ()),
        }
    }

    fn deletion_scheduled(&self, name: &str, scheduled: bool) {
        let mut names = self
            .scheduled_for_deletion
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if scheduled {
            names.insert(name.to_string());
        } else {
            names.remove(name);
        }
    }

    fn is_scheduled_for_deletion(&self, name: &str) -> bool {
        self.scheduled_for_deletion
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }
}

/// Tags as Secrets Manager takes them.
fn tags<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Tag> {
    tags.map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn tag_map(tags: &[aws_sdk_secretsmanager::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// ARN and version id: a secret deleted and recreated under the same name has
/// a new ARN; a new value, a new version id.
fn marker(arn: Option<&str>, version_id: Option<&str>) -> String {
    format!(
        "{}\n{}",
        arn.unwrap_or_default(),
        version_id.unwrap_or_default()
    )
}

/// An earlier answer, as its marker describes it.
struct Known<'a> {
    request: &'a RemoteRequest,
    arn: &'a str,
    version_id: &'a str,
    /// The stage it reads; `None` for a pinned version id.
    stage: Option<&'a str>,
}

fn is_current(request: &RemoteRequest) -> bool {
    matches!(request, RemoteRequest::Value { version: None, .. })
        || matches!(request, RemoteRequest::Value { version: Some(v), .. } if v == CURRENT_STAGE)
}

/// At most `limit` name prefixes that together cover every name (AWS takes ten
/// values per filter), cut where sorted neighbours share the least; `None`
/// when the names share no prefix at all and the whole account must be listed.
fn name_prefixes(names: &[&str], limit: usize) -> Option<Vec<String>> {
    let mut names: Vec<&str> = names.to_vec();
    names.sort_unstable();
    names.dedup();
    if names.len() <= limit {
        return Some(names.iter().map(|n| n.to_string()).collect());
    }
    let common = |a: &str, b: &str| {
        a.chars()
            .zip(b.chars())
            .take_while(|(x, y)| x == y)
            .map(|(x, _)| x.len_utf8())
            .sum::<usize>()
    };
    // Cut between the neighbours sharing the shortest prefixes.
    let mut cuts: Vec<(usize, usize)> = names
        .windows(2)
        .enumerate()
        .map(|(i, pair)| (common(pair[0], pair[1]), i + 1))
        .collect();
    cuts.sort_unstable();
    let mut at: Vec<usize> = cuts.iter().take(limit - 1).map(|(_, i)| *i).collect();
    at.sort_unstable();
    let mut prefixes = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([names.len()]) {
        let group = &names[start..end];
        let (first, last) = (group.first()?, group.last()?);
        let prefix = &first[..common(first, last)];
        if prefix.is_empty() {
            return None;
        }
        prefixes.push(prefix.to_string());
        start = end;
    }
    Some(prefixes)
}

fn entry_value(string: Option<&str>, binary: Option<&[u8]>) -> Option<SecretValue> {
    string
        .map(SecretValue::from)
        .or_else(|| binary.map(SecretValue::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_is_believed_for_an_hour_then_asked_again() {
        let permission = BatchPermission::default();
        assert!(!permission.is_denied(), "allowed until refused");
        assert!(permission.deny(), "the first refusal is news");
        assert!(permission.is_denied());
        assert!(!permission.deny(), "the second is not");
        if let Some(long_ago) = Instant::now().checked_sub(ASK_AGAIN_AFTER + Duration::from_secs(1))
        {
            *permission.lock() = Some(long_ago);
            assert!(
                !permission.is_denied(),
                "an hour on, a batch is tried again"
            );
        }
    }

    #[test]
    fn prefixes_cover_every_name_within_the_limit() {
        let names: Vec<String> = (0..40)
            .map(|i| format!("team-{}/app-{i}/db", i % 4))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let prefixes = name_prefixes(&names, 10).unwrap();
        assert!(prefixes.len() <= 10, "{prefixes:?}");
        assert!(
            names
                .iter()
                .all(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        );
        assert!(
            prefixes.iter().all(|p| p.starts_with("team-")),
            "{prefixes:?}"
        );
        assert_eq!(name_prefixes(&["b", "a"], 10).unwrap(), ["a", "b"]);
        let spread: Vec<String> = (0..20)
            .map(|i| format!("{}x", (b'a' + i) as char))
            .collect();
        let spread: Vec<&str> = spread.iter().map(String::as_str).collect();
        assert_eq!(name_prefixes(&spread, 10), None, "nothing shared: list all");
    }
}
