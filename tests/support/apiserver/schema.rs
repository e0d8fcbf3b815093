//! What the real server does with a custom resource's schema on write: unknown
//! fields are pruned (or, with `fieldValidation=Strict`, rejected) and
//! `default`s are filled in. Types and formats are not checked here.

use serde_json::Value;

/// Walks `value` against `schema`; unknown fields are removed, their paths
/// pushed to `unknown`.
pub fn prune_and_default(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
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
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child = format!("{path}.{key}");
                let top_level =
                    path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                if top_level {
                    continue;
                }
                match (properties.and_then(|p| p.get(&key)), additional) {
                    (Some(property), _) => {
                        prune_and_default(map.get_mut(&key).unwrap(), property, &child, unknown)
                    }
                    (None, Some(schema @ Value::Object(_))) => {
                        prune_and_default(map.get_mut(&key).unwrap(), schema, &child, unknown)
                    }
                    (None, Some(Value::Bool(true))) => {}
                    _ if preserve => {}
                    _ => {
                        map.remove(&key);
                        unknown.push(child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_and_default(item, schema, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}
