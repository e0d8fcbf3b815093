//! AWS change events: what EventBridge puts on an SQS queue when a secret or
//! a parameter changes, read as "this key of this service, in this region,
//! changed". The controller long-polls the queue (`controller::change_events`)
//! and refreshes only the ExternalSecrets that read a changed key, so a
//! rotated value reaches its Secret in seconds with no polling.
//!
//! Two shapes are read, as EventBridge delivers them to an SQS target (the
//! event itself as the message body, no input transformer):
//! - Secrets Manager, through CloudTrail: `detail-type` "AWS API Call via
//!   CloudTrail" (or "AWS Service Event via CloudTrail" for
//!   `RotationSucceeded`), the secret named by the call's parameters or
//!   answer, or by `additionalEventData.SecretId`;
//! - Parameter Store's own "Parameter Store Change" events (`detail.name`).
//!
//! Anything else on the queue is unrelated, and a body that is not such an
//! event is malformed: both are counted and dropped, never fatal.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde_json::Value;

use super::{counted, explain};
use crate::api::AwsService;
use crate::provider::{CallCounts, FindQuery, ProviderError, RemoteRequest};

pub const SERVICE: &str = "sqs";

/// Secrets Manager calls (and service events) after which a secret's value,
/// versions, tags or existence may differ.
const SECRETS_MANAGER_CHANGES: &[&str] = &[
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "RotationSucceeded",
    "DeleteSecret",
    "RestoreSecret",
    "CreateSecret",
    "TagResource",
    "UntagResource",
];

/// One key that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    /// EventBridge's id of the event: a message delivered twice has the same.
    pub id: String,
    pub service: AwsService,
    pub region: String,
    /// The secret's or parameter's name (a secret's without the six random
    /// characters its ARN adds).
    pub name: String,
    /// What the event said, for the log: `PutSecretValue`, `Update`, ...
    pub action: String,
}

/// What a message turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Change(ChangeEvent),
    /// An event, but of nothing this controller reads (another service, a
    /// read-only call).
    Unrelated,
}

/// A message that is no event at all: why, never its body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// Reads one message body.
pub fn parse(body: &str) -> Result<Parsed, Malformed> {
    let event: Value = serde_json::from_str(body)
        .map_err(|e| Malformed(format!("not a JSON event: line {}", e.line())))?;
    if !event.is_object() {
        return Err(Malformed("not a JSON object".into()));
    }
    let source = text(&event, "source").ok_or_else(|| Malformed("no `source`".into()))?;
    let detail_type =
        text(&event, "detail-type").ok_or_else(|| Malformed("no `detail-type`".into()))?;
    let detail = event
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| Malformed("no `detail` object".into()))?;
    let id = text(&event, "id").unwrap_or_default().to_string();
    let region = text(&event, "region")
        .or_else(|| text(detail, "awsRegion"))
        .ok_or_else(|| Malformed("no `region`".into()))?
        .to_string();
    match (source, detail_type) {
        (
            "aws.secretsmanager",
            "AWS API Call via CloudTrail" | "AWS Service Event via CloudTrail",
        ) => {
            let action = text(detail, "eventName")
                .ok_or_else(|| Malformed("no `detail.eventName`".into()))?;
            if !SECRETS_MANAGER_CHANGES.contains(&action) {
                return Ok(Parsed::Unrelated);
            }
            if detail.get("errorCode").is_some_and(|e| !e.is_null()) {
                // A call that failed changed nothing.
                return Ok(Parsed::Unrelated);
            }
            let named = [
                ("responseElements", "arn"),
                ("responseElements", "aRN"),
                ("additionalEventData", "SecretId"),
                ("requestParameters", "secretId"),
                ("responseElements", "name"),
                ("requestParameters", "name"),
            ]
            .iter()
            .find_map(|(part, field)| detail.get(part).and_then(|p| text(p, field)))
            .filter(|name| !name.is_empty())
            .ok_or_else(|| Malformed(format!("{action}: no secret named in `detail`")))?;
            Ok(Parsed::Change(ChangeEvent {
                id,
                service: AwsService::SecretsManager,
                region,
                name: secret_name(named).to_string(),
                action: action.to_string(),
            }))
        }
        ("aws.ssm", "Parameter Store Change") => {
            let name = text(detail, "name")
                .filter(|name| !name.is_empty())
                .ok_or_else(|| Malformed("no `detail.name`".into()))?;
            let action = text(detail, "operation").unwrap_or("Change");
            Ok(Parsed::Change(ChangeEvent {
                id,
                service: AwsService::ParameterStore,
                region,
                name: parameter_name(name).to_string(),
                action: action.to_string(),
            }))
        }
        _ => Ok(Parsed::Unrelated),
    }
}

/// A text field of a JSON object.
fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

/// A secret's name from its ARN (`arn:aws:secretsmanager:REGION:ACCOUNT:
/// secret:NAME-AbCdEf`, the six characters AWS adds dropped), or the name
/// itself.
pub fn secret_name(id: &str) -> &str {
    let Some(rest) = arn_resource(id, "secretsmanager") else {
        return id;
    };
    let name = rest.strip_prefix("secret:").unwrap_or(rest);
    match name.rsplit_once('-') {
        Some((base, suffix))
            if !base.is_empty()
                && suffix.len() == 6
                && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            base
        }
        _ => name,
    }
}

/// A parameter's name from its ARN (`arn:aws:ssm:REGION:ACCOUNT:parameter/
/// a/b`), or the name itself; compared without a leading `/`, which its ARN
/// drops.
pub fn parameter_name(id: &str) -> &str {
    let name = match arn_resource(id, "ssm") {
        Some(rest) => rest.strip_prefix("parameter").unwrap_or(rest),
        None => id,
    };
    name.trim_start_matches('/')
}

/// What follows the account in an ARN of `service`.
fn arn_resource<'a>(id: &'a str, service: &str) -> Option<&'a str> {
    let mut parts = id.splitn(6, ':');
    let (arn, _partition, of, _region, _account, rest) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (arn == "arn" && of == service).then_some(rest)
}

/// Whether a store's request (its key after the store's `prefix`) reads
/// what `event` says changed. A `find` reads it when its path holds the name
/// and its regexp matches it (tags cannot be told from the event: any).
pub fn reads(request: &RemoteRequest, prefix: &str, event: &ChangeEvent) -> bool {
    let same = |key: &str| {
        let key = format!("{prefix}{key}");
        match event.service {
            AwsService::SecretsManager => secret_name(&key) == event.name,
            AwsService::ParameterStore => parameter_name(&key) == event.name,
        }
    };
    match request {
        RemoteRequest::Value { key, .. } | RemoteRequest::Tags { key } => same(key),
        RemoteRequest::Find(FindQuery {
            path, name_regexp, ..
        }) => {
            let path = format!("{prefix}{}", path.as_deref().unwrap_or_default());
            let (path, name) = match event.service {
                AwsService::SecretsManager => (path.as_str(), event.name.clone()),
                // Paths start with `/`; the event's name is kept without.
                AwsService::ParameterStore => (path.as_str(), format!("/{}", event.name)),
            };
            let under = name.starts_with(path)
                || event.service == AwsService::ParameterStore && event.name.starts_with(path);
            let matched = match name_regexp {
                Some(pattern) => regex::Regex::new(pattern).is_ok_and(|r| r.is_match(&name)),
                None => true,
            };
            under && matched
        }
    }
}

/// The region of a queue, from its URL (`https://sqs.REGION.amazonaws.com/
/// ACCOUNT/NAME`, or the older `REGION.queue.amazonaws.com`); `None` for any
/// other URL (an endpoint of the environment's).
pub fn queue_region(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    let mut labels = host.split('.');
    let first = labels.next()?;
    let second = labels.next()?;
    let region = match (first, second) {
        ("sqs", region) => region,
        (region, "queue") => region,
        _ => return None,
    };
    (!region.is_empty() && region.contains('-')).then(|| region.to_string())
}

/// One message taken from the queue.
#[derive(Clone, Debug)]
pub struct Message {
    pub body: String,
    /// What deletes it.
    pub receipt: String,
}

/// A queue, read with long polls.
pub struct Queue {
    client: Client,
    pub url: String,
    calls: std::sync::Arc<CallCounts>,
}

/// How long one receive waits for a message (SQS's longest).
pub const LONG_POLL: Duration = Duration::from_secs(20);
/// How long a received message stays hidden from other receives: longer
/// than it takes to refresh what it concerns, after which it comes back.
pub const VISIBILITY: Duration = Duration::from_secs(120);
/// SQS's most messages a receive or a batch delete takes.
const BATCH: usize = 10;

impl Queue {
    pub fn new(client: Client, url: String, calls: std::sync::Arc<CallCounts>) -> Self {
        Self { client, url, calls }
    }

    /// Waits up to `wait` (at most [`LONG_POLL`]) for messages; answers at
    /// most ten.
    pub async fn receive(&self, wait: Duration) -> Result<Vec<Message>, ProviderError> {
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(wait.min(LONG_POLL).as_secs() as i32)
            .visibility_timeout(VISIBILITY.as_secs() as i32)
            .send()
            .await;
        let answer = counted(&self.calls, SERVICE, "ReceiveMessage", answer)?;
        Ok(answer
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(Message {
                    body: m.body.unwrap_or_default(),
                    receipt: m.receipt_handle?,
                })
            })
            .collect())
    }

    /// Deletes messages received, ten a call.
    pub async fn delete(&self, receipts: &[String]) -> Result<(), ProviderError> {
        for chunk in receipts.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| ProviderError::Api {
                            service: SERVICE,
                            call: "DeleteMessageBatch",
                            message: explain(&e),
                            failure: crate::provider::ApiFailure::Rejected,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let answer = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            let answer = counted(&self.calls, SERVICE, "DeleteMessageBatch", answer)?;
            if let Some(failed) = answer.failed.first() {
                return Err(ProviderError::Api {
                    service: SERVICE,
                    call: "DeleteMessageBatch",
                    message: format!(
                        "{} of {} messages not deleted: {}",
                        answer.failed.len(),
                        chunk.len(),
                        failed.code
                    ),
                    failure: crate::provider::ApiFailure::Transient,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cloudtrail(event_name: &str, detail: Value) -> String {
        let mut detail = detail;
        detail["eventSource"] = json!("secretsmanager.amazonaws.com");
        detail["eventName"] = json!(event_name);
        json!({
            "version": "0", "id": "e-1", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.secretsmanager", "account": "123456789012",
            "time": "2026-12-06T10:00:00Z", "region": "eu-west-1", "resources": [],
            "detail": detail,
        })
        .to_string()
    }

    fn change(parsed: Parsed) -> ChangeEvent {
        match parsed {
            Parsed::Change(event) => event,
            Parsed::Unrelated => panic!("unrelated"),
        }
    }

    #[test]
    fn secrets_manager_changes_name_the_secret_however_the_call_named_it() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbC123";
        let put = cloudtrail(
            "PutSecretValue",
            json!({"requestParameters": {"secretId": "prod/db"}, "responseElements": {"arn": arn}}),
        );
        let event = change(parse(&put).unwrap());
        assert_eq!(
            (
                event.id.as_str(),
                event.region.as_str(),
                event.name.as_str()
            ),
            ("e-1", "eu-west-1", "prod/db")
        );
        assert_eq!(event.service, AwsService::SecretsManager);
        // Before 2024 some answers spelt it `aRN`; a request may name it only.
        let old = cloudtrail("UpdateSecret", json!({"responseElements": {"aRN": arn}}));
        assert_eq!(change(parse(&old).unwrap()).name, "prod/db");
        let stage = cloudtrail(
            "UpdateSecretVersionStage",
            json!({"requestParameters": {"secretId": "prod/db"}}),
        );
        assert_eq!(change(parse(&stage).unwrap()).name, "prod/db");
        let rotated = json!({
            "version": "0", "id": "e-2", "detail-type": "AWS Service Event via CloudTrail",
            "source": "aws.secretsmanager", "region": "eu-west-1",
            "detail": {"eventName": "RotationSucceeded", "additionalEventData": {"SecretId": arn}},
        })
        .to_string();
        assert_eq!(change(parse(&rotated).unwrap()).action, "RotationSucceeded");
    }

    #[test]
    fn reads_and_failed_calls_are_unrelated_and_garbage_is_malformed() {
        let read = cloudtrail(
            "GetSecretValue",
            json!({"requestParameters": {"secretId": "a"}}),
        );
        assert_eq!(parse(&read), Ok(Parsed::Unrelated));
        let failed = cloudtrail(
            "PutSecretValue",
            json!({"errorCode": "AccessDenied", "requestParameters": {"secretId": "a"}}),
        );
        assert_eq!(parse(&failed), Ok(Parsed::Unrelated));
        let other = json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "region": "us-east-1", "detail": {}}).to_string();
        assert_eq!(parse(&other), Ok(Parsed::Unrelated));
        for garbage in [
            "",
            "not json",
            "[1]",
            "{}",
            r#"{"source": "aws.ssm", "detail-type": "Parameter Store Change", "region": "us-east-1", "detail": {}}"#,
        ] {
            assert!(parse(garbage).is_err(), "{garbage:?}");
        }
        let nameless = cloudtrail("PutSecretValue", json!({}));
        let error = parse(&nameless).unwrap_err().to_string();
        assert!(error.contains("PutSecretValue"), "{error}");
    }

    #[test]
    fn a_parameter_change_names_the_parameter() {
        let body = json!({
            "version": "0", "id": "p-1", "detail-type": "Parameter Store Change",
            "source": "aws.ssm", "region": "us-east-1",
            "resources": ["arn:aws:ssm:us-east-1:123456789012:parameter/app/db"],
            "detail": {"operation": "Update", "name": "/app/db", "type": "SecureString"},
        })
        .to_string();
        let event = change(parse(&body).unwrap());
        assert_eq!(event.service, AwsService::ParameterStore);
        assert_eq!(
            (event.name.as_str(), event.action.as_str()),
            ("app/db", "Update")
        );
    }

    fn value(key: &str) -> RemoteRequest {
        RemoteRequest::Value {
            key: key.into(),
            version: None,
        }
    }

    #[test]
    fn a_request_reads_a_changed_key_by_name_arn_or_prefix_and_a_find_by_path() {
        let secret = ChangeEvent {
            id: String::new(),
            service: AwsService::SecretsManager,
            region: "eu-west-1".into(),
            name: "prod/db".into(),
            action: "PutSecretValue".into(),
        };
        assert!(reads(&value("prod/db"), "", &secret));
        assert!(reads(&value("db"), "prod/", &secret));
        assert!(reads(
            &value("arn:aws:secretsmanager:eu-west-1:1:secret:prod/db-xYz987"),
            "",
            &secret
        ));
        assert!(!reads(&value("prod/db2"), "", &secret));
        assert!(!reads(&value("db"), "", &secret));
        let tags = RemoteRequest::Tags {
            key: "prod/db".into(),
        };
        assert!(reads(&tags, "", &secret));
        let find = |path: Option<&str>, regexp: Option<&str>| {
            RemoteRequest::Find(FindQuery {
                path: path.map(Into::into),
                name_regexp: regexp.map(Into::into),
                tags: Default::default(),
            })
        };
        assert!(reads(&find(Some("prod/"), None), "", &secret));
        assert!(reads(&find(None, Some("d.$")), "", &secret));
        assert!(!reads(&find(Some("dev/"), None), "", &secret));
        assert!(!reads(&find(None, Some("^dev")), "", &secret));

        let parameter = ChangeEvent {
            service: AwsService::ParameterStore,
            name: "app/db".into(),
            ..secret
        };
        assert!(reads(&value("/app/db"), "", &parameter));
        assert!(reads(&value("db"), "/app/", &parameter));
        assert!(reads(
            &value("arn:aws:ssm:us-east-1:1:parameter/app/db"),
            "",
            &parameter
        ));
        assert!(!reads(&value("/app/dbx"), "", &parameter));
        assert!(reads(&find(Some("/app"), None), "", &parameter));
        assert!(!reads(&find(Some("/other"), None), "", &parameter));
    }

    #[test]
    fn a_queue_url_names_its_region_when_it_is_an_aws_one() {
        assert_eq!(
            queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/changes").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            queue_region("https://us-east-2.queue.amazonaws.com/1/q").as_deref(),
            Some("us-east-2")
        );
        assert_eq!(queue_region("http://127.0.0.1:4566/1/q"), None);
        assert_eq!(queue_region("not a url"), None);
    }
}
