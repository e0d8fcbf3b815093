//! What the endpoint keeps and how it answers: GetSecretValue's output as the
//! AWS Secrets Manager Agent renders it (`ARN`, `Name`, `VersionId`,
//! `SecretString` or `SecretBinary` in base64, `VersionStages`, `CreatedDate`
//! as a string of seconds with their fraction), GetParameter's as the Lambda
//! extension does (`{"Parameter": {...}, "ResultMetadata": {}}`), and AWS's
//! errors as the AWS agent passes them on (AWS's status and
//! `{"__type":CODE, "message":MESSAGE}`; 504 and 502 when AWS never answered).
//! Values stay in [`SecretValue`]s until a body is written.

use std::collections::HashMap;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::DateTime;
use base64::Engine;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::SecretValue;

/// A response body that may hold a value: wiped when dropped.
pub type Body = Zeroizing<Vec<u8>>;

/// One GetSecretValue answer.
#[derive(Clone, Debug)]
pub struct CachedSecret {
    pub arn: Option<String>,
    pub name: Option<String>,
    pub version_id: Option<String>,
    pub secret_string: Option<SecretValue>,
    pub secret_binary: Option<SecretValue>,
    pub version_stages: Option<Vec<String>>,
    pub created_date: Option<DateTime>,
}

impl CachedSecret {
    pub fn from_output(
        output: aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput,
    ) -> Self {
        Self {
            arn: output.arn,
            name: output.name,
            version_id: output.version_id,
            secret_string: output.secret_string.map(SecretValue::from),
            secret_binary: output
                .secret_binary
                .map(|blob| SecretValue::new(blob.into_inner())),
            version_stages: output.version_stages,
            created_date: output.created_date,
        }
    }

    /// The JSON body, field for field as the AWS agent writes it.
    pub fn render(&self) -> Body {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Json<'a> {
            #[serde(rename = "ARN")]
            arn: Option<&'a str>,
            name: Option<&'a str>,
            version_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            secret_string: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            secret_binary: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            version_stages: Option<&'a [String]>,
            created_date: Option<String>,
        }
        let binary = self.secret_binary.as_ref().map(|value| {
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(value.expose()))
        });
        let json = Json {
            arn: self.arn.as_deref(),
            name: self.name.as_deref(),
            version_id: self.version_id.as_deref(),
            secret_string: self
                .secret_string
                .as_ref()
                .and_then(SecretValue::expose_str),
            secret_binary: binary.as_ref().map(|b| b.as_str()),
            version_stages: self.version_stages.as_deref(),
            created_date: self.created_date.as_ref().map(seconds_with_fraction),
        };
        let room = self.secret_string.as_ref().map_or(0, SecretValue::len)
            + binary.as_ref().map_or(0, |b| b.len());
        write_json(&json, room)
    }
}

/// One GetParameter answer.
#[derive(Clone, Debug)]
pub struct CachedParameter {
    pub arn: Option<String>,
    pub data_type: Option<String>,
    pub last_modified_date: Option<DateTime>,
    pub name: Option<String>,
    pub selector: Option<String>,
    pub source_result: Option<String>,
    pub kind: Option<String>,
    pub value: Option<SecretValue>,
    pub version: i64,
}

impl CachedParameter {
    pub fn from_parameter(parameter: aws_sdk_ssm::types::Parameter) -> Self {
        Self {
            arn: parameter.arn,
            data_type: parameter.data_type,
            last_modified_date: parameter.last_modified_date,
            name: parameter.name,
            selector: parameter.selector,
            source_result: parameter.source_result,
            kind: parameter.r#type.map(|kind| kind.as_str().to_string()),
            value: parameter.value.map(SecretValue::from),
            version: parameter.version,
        }
    }

    /// The JSON body as the Lambda extension writes it.
    pub fn render(&self) -> Body {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Parameter<'a> {
            #[serde(rename = "ARN")]
            arn: Option<&'a str>,
            data_type: Option<&'a str>,
            last_modified_date: Option<String>,
            name: Option<&'a str>,
            selector: Option<&'a str>,
            source_result: Option<&'a str>,
            r#type: &'a str,
            value: Option<&'a str>,
            version: i64,
        }
        #[derive(Serialize)]
        struct Empty {}
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Json<'a> {
            parameter: Parameter<'a>,
            result_metadata: Empty,
        }
        let json = Json {
            parameter: Parameter {
                arn: self.arn.as_deref(),
                data_type: self.data_type.as_deref(),
                last_modified_date: self.last_modified_date.as_ref().map(rfc3339),
                name: self.name.as_deref(),
                selector: self.selector.as_deref(),
                source_result: self.source_result.as_deref(),
                r#type: self.kind.as_deref().unwrap_or_default(),
                value: self.value.as_ref().and_then(SecretValue::expose_str),
                version: self.version,
            },
            result_metadata: Empty {},
        };
        write_json(&json, self.value.as_ref().map_or(0, SecretValue::len))
    }
}

/// Serializes into a buffer large enough for the value escaped, so the value
/// is not left behind in a smaller buffer that grew.
fn write_json(json: &impl Serialize, value_len: usize) -> Body {
    let mut body = Zeroizing::new(Vec::with_capacity(
        value_len.saturating_mul(6).saturating_add(1024),
    ));
    // Serializing strings and numbers into memory cannot fail.
    if serde_json::to_writer(&mut *body, json).is_err() {
        body.clear();
    }
    body
}

/// `1569534789.046`: seconds since the epoch with their fraction, the text
/// the AWS agent gives `CreatedDate`.
pub fn seconds_with_fraction(date: &DateTime) -> String {
    let seconds = date.secs() as f64 + f64::from(date.subsec_nanos()) / 1e9;
    seconds.to_string()
}

/// `2024-06-19T15:22:45.123Z`: RFC 3339 in UTC, fraction only when there is one.
fn rfc3339(date: &DateTime) -> String {
    let nanos = i32::try_from(date.subsec_nanos()).unwrap_or_default();
    match jiff::Timestamp::new(date.secs(), nanos) {
        Ok(timestamp) => timestamp.to_string(),
        Err(_) => String::new(),
    }
}

/// Whether a cached answer is still the one AWS would give, from
/// DescribeSecret's `VersionIdsToStages`, as the AWS agent decides: a
/// version id asked for alone must still exist; otherwise the version (asked
/// for, else the one cached) must still carry the stage (asked for, else
/// `AWSCURRENT`).
pub fn still_current(
    versions: Option<&HashMap<String, Vec<String>>>,
    asked_version_id: Option<&str>,
    asked_stage: Option<&str>,
    cached_version_id: Option<&str>,
) -> bool {
    let Some(versions) = versions else {
        return false;
    };
    if let (Some(id), None) = (asked_version_id, asked_stage) {
        return versions.contains_key(id);
    }
    let Some(id) = asked_version_id.or(cached_version_id) else {
        return false;
    };
    let stage = asked_stage.unwrap_or("AWSCURRENT");
    versions
        .get(id)
        .is_some_and(|stages| stages.iter().any(|s| s == stage))
}

const INTERNAL_FAILURE: &str = "{\"__type\":\"InternalFailure\"}";

/// An answer that is not a value: a status and a text body.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
}

impl Refusal {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }

    fn aws(status: u16, code: &str, message: &str) -> Self {
        if message.is_empty() || code == "InternalFailure" {
            return Self::new(status, INTERNAL_FAILURE);
        }
        let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
        Self::new(
            status,
            format!(
                "{{\"__type\":{}, \"message\":{}}}",
                quote(code),
                quote(message)
            ),
        )
    }

    pub fn internal() -> Self {
        Self::new(500, INTERNAL_FAILURE)
    }

    /// A failed AWS call as the AWS agent answers it: AWS's own status,
    /// code and message; 504 for a timeout, 502 for a broken connection or
    /// an unreadable answer; 500 otherwise. AWS's error texts hold no value.
    pub fn from_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
        error: &SdkError<E, HttpResponse>,
    ) -> Self {
        match error {
            SdkError::ServiceError(service) => {
                match (service.err().code(), service.err().message()) {
                    (Some(code), Some(message)) => {
                        Self::aws(service.raw().status().as_u16(), code, message)
                    }
                    _ => Self::internal(),
                }
            }
            SdkError::TimeoutError(_) => Self::aws(504, "TimeoutError", "Timeout"),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => {
                Self::aws(504, "TimeoutError", "Timeout")
            }
            SdkError::DispatchFailure(failure) if failure.is_io() => {
                Self::aws(502, "ConnectionError", "Read Error")
            }
            SdkError::ResponseError(_) => Self::aws(502, "ConnectionError", "Response Error"),
            _ => Self::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> CachedSecret {
        CachedSecret {
            arn: Some("arn:aws:secretsmanager:eu-west-1:1:secret:db-AbCdEf".into()),
            name: Some("db".into()),
            version_id: Some("v-1".into()),
            secret_string: Some(SecretValue::from("pa\"ss")),
            secret_binary: None,
            version_stages: Some(vec!["AWSCURRENT".into()]),
            created_date: Some(DateTime::from_secs_and_nanos(1569534789, 46_000_000)),
        }
    }

    #[test]
    fn a_secret_renders_as_the_agent_renders_it() {
        let body = secret().render();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"ARN":"arn:aws:secretsmanager:eu-west-1:1:secret:db-AbCdEf","Name":"db","VersionId":"v-1","SecretString":"pa\"ss","VersionStages":["AWSCURRENT"],"CreatedDate":"1569534789.046"}"#
        );
        let binary = CachedSecret {
            secret_string: None,
            secret_binary: Some(SecretValue::new(vec![0u8, 159, 146, 150])),
            version_stages: None,
            created_date: None,
            ..secret()
        };
        assert_eq!(
            std::str::from_utf8(&binary.render()).unwrap(),
            r#"{"ARN":"arn:aws:secretsmanager:eu-west-1:1:secret:db-AbCdEf","Name":"db","VersionId":"v-1","SecretBinary":"AJ+Slg==","CreatedDate":null}"#
        );
        assert_eq!(
            seconds_with_fraction(&DateTime::from_secs(1700000000)),
            "1700000000"
        );
        assert!(!format!("{:?}", secret()).contains("pa\\\"ss"));
    }

    #[test]
    fn a_parameter_renders_as_the_lambda_extension_renders_it() {
        let parameter = CachedParameter {
            arn: Some("arn:aws:ssm:eu-west-1:1:parameter/app/key".into()),
            data_type: Some("text".into()),
            last_modified_date: Some(DateTime::from_secs_and_nanos(1666149452, 363_000_000)),
            name: Some("/app/key".into()),
            selector: Some(":2".into()),
            source_result: None,
            kind: Some("SecureString".into()),
            value: Some(SecretValue::from("k-2")),
            version: 2,
        };
        assert_eq!(
            std::str::from_utf8(&parameter.render()).unwrap(),
            r#"{"Parameter":{"ARN":"arn:aws:ssm:eu-west-1:1:parameter/app/key","DataType":"text","LastModifiedDate":"2022-10-19T03:17:32.363Z","Name":"/app/key","Selector":":2","SourceResult":null,"Type":"SecureString","Value":"k-2","Version":2},"ResultMetadata":{}}"#
        );
        assert_eq!(
            rfc3339(&DateTime::from_secs(1666149452)),
            "2022-10-19T03:17:32Z"
        );
    }

    #[test]
    fn the_version_check_follows_the_agent() {
        let versions: HashMap<String, Vec<String>> = [
            ("v2".to_string(), vec!["AWSCURRENT".to_string()]),
            ("v1".to_string(), vec!["AWSPREVIOUS".to_string()]),
        ]
        .into();
        let v = Some(&versions);
        // Current value, cached as v1: v1 is no longer AWSCURRENT.
        assert!(!still_current(v, None, None, Some("v1")));
        assert!(still_current(v, None, None, Some("v2")));
        // A stage asked for.
        assert!(still_current(v, None, Some("AWSPREVIOUS"), Some("v1")));
        assert!(!still_current(v, None, Some("AWSPREVIOUS"), Some("v2")));
        // A version id alone: it still exists.
        assert!(still_current(v, Some("v1"), None, Some("v1")));
        assert!(!still_current(v, Some("v0"), None, Some("v0")));
        // Both: that version with that stage.
        assert!(still_current(v, Some("v2"), Some("AWSCURRENT"), None));
        assert!(!still_current(v, Some("v1"), Some("AWSCURRENT"), None));
        // Nothing to go by: fetch.
        assert!(!still_current(None, None, None, Some("v2")));
        assert!(!still_current(v, None, None, None));
    }

    #[test]
    fn aws_errors_keep_their_status_code_and_message() {
        assert_eq!(
            Refusal::aws(
                400,
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret."
            ),
            Refusal::new(
                400,
                r#"{"__type":"ResourceNotFoundException", "message":"Secrets Manager can't find the specified secret."}"#
            )
        );
        assert_eq!(
            Refusal::aws(500, "InternalFailure", "boom"),
            Refusal::new(500, r#"{"__type":"InternalFailure"}"#)
        );
        assert_eq!(
            Refusal::aws(400, "X", ""),
            Refusal::new(400, r#"{"__type":"InternalFailure"}"#)
        );
    }
}
