//! One Event, two APIs, as on the real server: `events.k8s.io/v1` (what kube's
//! event recorder writes) and core `v1` (what `kubectl get events` and
//! `kubectl describe` read) are two views of the same stored objects. They are
//! stored in the core shape and converted on the way in and out, field by
//! field as the real server's conversion does.

use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// Whether `resource` is the `events.k8s.io` view.
pub fn is_events_api(resource: &ResourceType) -> bool {
    resource.group == "events.k8s.io" && resource.plural == "events"
}

/// (events.k8s.io/v1 field, core/v1 field) that carry the same value.
const SAME_VALUE: &[(&str, &str)] = &[
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("type", "type"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(object: &Value, from_events_api: bool) -> Value {
    let mut out = Map::new();
    for (events_api, core) in SAME_VALUE {
        let (from, to) = if from_events_api {
            (events_api, core)
        } else {
            (core, events_api)
        };
        if let Some(value) = object.get(*from).filter(|v| !v.is_null()) {
            out.insert((*to).to_string(), value.clone());
        }
    }
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in the stored (core) shape.
pub fn to_core(event: &Value) -> Value {
    let mut core = rename(event, true);
    core["apiVersion"] = json!("v1");
    core["kind"] = json!("Event");
    core
}

/// A stored (core) Event as `events.k8s.io/v1` shows it.
pub fn to_events_api(core: &Value) -> Value {
    let mut event = rename(core, false);
    event["apiVersion"] = json!("events.k8s.io/v1");
    event["kind"] = json!("Event");
    event
}
