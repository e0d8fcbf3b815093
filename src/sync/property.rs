//! `property`: one field of a JSON value, by dotted path (`db.host`,
//! `replicas.0.port`, `a\.b` for a key with a dot), as ESO reads it.

use serde_json::Value;

use crate::SecretValue;

#[derive(Debug, PartialEq, Eq)]
pub enum PropertyError {
    NotJson,
    NotFound,
}

/// The field's value: a JSON string as its text, anything else as compact JSON.
pub fn json_property(value: &SecretValue, path: &str) -> Result<SecretValue, PropertyError> {
    let json: Value = serde_json::from_slice(value.expose()).map_err(|_| PropertyError::NotJson)?;
    // A top-level key that contains dots wins over the path it also spells, as in ESO.
    let found = match json.get(path) {
        Some(field) => Some(field),
        None => walk(&json, &split_path(path)),
    };
    found.map(field_value).ok_or(PropertyError::NotFound)
}

/// A JSON field as Secret bytes: strings unquoted, the rest as JSON text.
pub(crate) fn field_value(field: &Value) -> SecretValue {
    match field {
        Value::String(s) => SecretValue::from(s.as_str()),
        other => SecretValue::from(other.to_string()),
    }
}

fn split_path(path: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut segment = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => segment.extend(chars.next()),
            '.' => segments.push(std::mem::take(&mut segment)),
            c => segment.push(c),
        }
    }
    segments.push(segment);
    segments
}

fn walk<'a>(root: &'a Value, segments: &[String]) -> Option<&'a Value> {
    segments.iter().try_fold(root, |node, segment| match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(json: &str, path: &str) -> Result<String, PropertyError> {
        json_property(&SecretValue::from(json), path)
            .map(|v| String::from_utf8(v.expose().to_vec()).unwrap())
    }

    #[test]
    fn reads_nested_fields_and_array_indexes() {
        let json = r#"{"db":{"host":"h","port":5432,"replicas":[{"host":"r0"},{"host":"r1"}]},"a.b":"dotted","flag":true}"#;
        assert_eq!(get(json, "db.host").unwrap(), "h");
        assert_eq!(get(json, "db.port").unwrap(), "5432");
        assert_eq!(get(json, "db.replicas.1.host").unwrap(), "r1");
        assert_eq!(get(json, "db.replicas.0").unwrap(), r#"{"host":"r0"}"#);
        assert_eq!(get(json, "a.b").unwrap(), "dotted");
        assert_eq!(get(json, "flag").unwrap(), "true");
        assert_eq!(get(r#"{"a":{"b.c":"x"}}"#, r"a.b\.c").unwrap(), "x");
    }

    #[test]
    fn missing_field_and_non_json_are_told_apart() {
        assert_eq!(get(r#"{"a":1}"#, "b"), Err(PropertyError::NotFound));
        assert_eq!(get(r#"{"a":[1]}"#, "a.5"), Err(PropertyError::NotFound));
        assert_eq!(get(r#"{"a":1}"#, "a.b"), Err(PropertyError::NotFound));
        assert_eq!(get("plain text", "a"), Err(PropertyError::NotJson));
    }
}
