//! What the real server does with a custom resource's schema on write: unknown
//! fields are pruned (or, with `fieldValidation=Strict`, rejected) and
//! `default`s are filled in. Types and formats are not checked here.

use serde_json::Value;

/// Walks `value` against `schema`; unknown fields are removed, their paths
/// pushed to `unknown`.
pub fn prune_and_default(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
    let mut path = path.to_string();
    walk(value, schema, &mut path, unknown);
}

/// [`prune_and_default`] with the path in one buffer, extended and cut back
/// as the walk goes: every write of a custom resource walks it whole, and a
/// path string made for each field cost more than the walk.
fn walk(value: &mut Value, schema: &Value, path: &mut String, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            let additional = schema.get("additionalProperties");
            if let Some(properties) = properties {
                for (key, property) in properties {
                    if let (None, Some(default)) = (map.get(key), property.get("default")) {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
            let top = path.is_empty();
            let mut removed = Vec::new();
            for (key, child) in map.iter_mut() {
                if top && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let length = path.len();
                path.push('.');
                path.push_str(key);
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(property), _) => walk(child, property, path, unknown),
                    (None, Some(schema @ Value::Object(_))) => walk(child, schema, path, unknown),
                    (None, Some(Value::Bool(true))) => {}
                    _ if preserve => {}
                    _ => {
                        removed.push(key.clone());
                        unknown.push(path.clone());
                    }
                }
                path.truncate(length);
            }
            for key in removed {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            if let Some(schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    let length = path.len();
                    use std::fmt::Write;
                    let _ = write!(path, "[{i}]");
                    walk(item, schema, path, unknown);
                    path.truncate(length);
                }
            }
        }
        _ => {}
    }
}
