//! The status condition shared by every secretsync object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes-style condition. Its message names what failed, never a value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason, e.g. `SecretSynced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl Condition {
    /// A condition of `type_` that follows `previous` (the same type's, if
    /// any): its transition time is kept while its status stays, and is now
    /// when the status changes.
    pub fn following(
        previous: Option<&Condition>,
        type_: &str,
        status: &str,
        reason: &str,
        message: Option<String>,
    ) -> Condition {
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(Time(jiff::Timestamp::now())),
        };
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message,
            last_transition_time,
        }
    }

    /// The `Ready` condition following the one among `previous`: `True`
    /// when `holds`; an empty message is left out.
    pub fn ready(previous: &[Condition], holds: bool, reason: &str, message: String) -> Condition {
        Condition::following(
            previous.iter().find(|c| c.type_ == "Ready"),
            "Ready",
            if holds { "True" } else { "False" },
            reason,
            (!message.is_empty()).then_some(message),
        )
    }
}
