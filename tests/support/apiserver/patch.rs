//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902) through
//! the `json-patch` crate, and strategic merge patch.
//!
//! Strategic merge is simplified against the real server: maps merge as in a
//! merge patch; a list whose items all carry `name` merges item by item by
//! `name` (containers, env, volumes); any other list is replaced; `$`-directives
//! other than `$patch: delete` on a named item are dropped.

use serde_json::Value;

pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

pub fn json_patch(target: &mut Value, patch: Value) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &patch).map_err(|e| e.to_string())
}

pub fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if key.starts_with('$') {
                    continue;
                }
                match (target.get_mut(key), value) {
                    (_, Value::Null) => {
                        target.remove(key);
                    }
                    (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                        strategic_merge(existing, value)
                    }
                    (Some(Value::Array(existing)), Value::Array(items))
                        if named(existing) && named(items) =>
                    {
                        merge_named(existing, items)
                    }
                    _ => {
                        let mut value = value.clone();
                        strip_directives(&mut value);
                        target.insert(key.clone(), value);
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn named(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|item| item.get("name").is_some_and(Value::is_string))
}

fn merge_named(existing: &mut Vec<Value>, items: &[Value]) {
    for item in items {
        let name = &item["name"];
        let position = existing.iter().position(|e| &e["name"] == name);
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(position) = position {
                existing.remove(position);
            }
            continue;
        }
        match position {
            Some(position) => strategic_merge(&mut existing[position], item),
            None => {
                let mut item = item.clone();
                strip_directives(&mut item);
                existing.push(item);
            }
        }
    }
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}
