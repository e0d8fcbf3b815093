//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Simplified against the real server: a field is a leaf path through maps;
//! lists are atomic (owned whole), as for `x-kubernetes-list-type: atomic`;
//! entries are kept per (manager, operation), not per subresource.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata the server owns, never a manager.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Every leaf path of `object` a manager can own.
pub fn leaf_paths(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(map) = object.as_object() {
        for (key, value) in map {
            if key == "apiVersion" || key == "kind" {
                continue;
            }
            if key == "metadata" {
                for (mkey, mvalue) in value.as_object().into_iter().flatten() {
                    if !SERVER_METADATA.contains(&mkey.as_str()) {
                        walk(mvalue, vec![key.clone(), mkey.clone()], &mut out);
                    }
                }
                continue;
            }
            walk(value, vec![key.clone()], &mut out);
        }
    }
    out
}

fn walk(value: &Value, path: Path, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let mut next = path.clone();
                next.push(key.clone());
                walk(child, next, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, key| node.get(key))
}

/// Removes a leaf, and the maps it leaves empty (below the top level).
pub fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = &mut *object;
    for key in parents {
        match node.get_mut(key) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
    if parents.len() > 1
        && value_at(object, parents)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        remove_at(object, parents);
    }
}

/// `field` in the real server's notation: `.data.password`.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for key in path {
            node = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are maps");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(value: &Value, prefix: Path, out: &mut FieldSet) {
    // Read where it lies: a copy of the map at every level copied the
    // whole field set once per level, on every write.
    let children: Vec<_> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("f:"))
        .collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix);
        }
        return;
    }
    for (key, child) in children {
        let mut next = prefix.clone();
        next.push(key[2..].to_string());
        from_fields_v1(child, next, out);
    }
}

#[derive(Clone, Debug)]
pub struct Manager {
    pub name: String,
    pub operation: String,
    pub fields: FieldSet,
}

/// How many manager entries an object records (as [`managers`] counts them,
/// without decoding their field sets).
pub fn manager_count(object: &Value) -> usize {
    object["metadata"]["managedFields"]
        .as_array()
        .map_or(0, Vec::len)
}

/// The managers recorded on an object.
pub fn managers(object: &Value) -> Vec<Manager> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let mut fields = FieldSet::new();
            from_fields_v1(&entry["fieldsV1"], Vec::new(), &mut fields);
            Manager {
                name: entry["manager"].as_str().unwrap_or_default().into(),
                operation: entry["operation"].as_str().unwrap_or("Update").into(),
                fields,
            }
        })
        .collect()
}

pub fn set_managers(object: &mut Value, managers: &[Manager], api_version: &str, now: &str) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            json!({
                "manager": m.name,
                "operation": m.operation,
                "apiVersion": api_version,
                "time": now,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            })
        })
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("managedFields".into(), Value::Array(entries));
    }
}

/// After a non-apply write: `manager` owns what it changed; nobody owns what
/// it removed.
pub fn record_update(
    before: Option<&Value>,
    after: &Value,
    manager: &str,
    managers: &mut Vec<Manager>,
) {
    let after_fields = leaf_paths(after);
    let before_fields = before.map(leaf_paths).unwrap_or_default();
    let changed: FieldSet = after_fields
        .iter()
        .filter(|p| before.and_then(|b| value_at(b, p)) != value_at(after, p))
        .cloned()
        .collect();
    let removed: FieldSet = before_fields.difference(&after_fields).cloned().collect();
    for m in managers.iter_mut() {
        m.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if changed.is_empty() {
        return;
    }
    match managers
        .iter_mut()
        .find(|m| m.name == manager && m.operation == "Update")
    {
        Some(m) => m.fields.extend(changed),
        None => managers.push(Manager {
            name: manager.into(),
            operation: "Update".into(),
            fields: changed,
        }),
    }
}

/// A field another manager owns and the applied config sets differently.
pub struct Conflict {
    pub manager: String,
    pub field: Path,
}

/// Server-side apply of `applied` by `manager` onto `live`: the merged object,
/// or the conflicts (unless `force`, which takes the fields over).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    managers: &mut Vec<Manager>,
) -> Result<Value, Vec<Conflict>> {
    let applied_fields = leaf_paths(applied);
    let empty = json!({});
    let live = live.unwrap_or(&empty);
    let mut conflicts = Vec::new();
    for other in managers.iter().filter(|m| m.name != manager) {
        for path in other.fields.intersection(&applied_fields) {
            if value_at(live, path) != value_at(applied, path) {
                conflicts.push(Conflict {
                    manager: other.name.clone(),
                    field: path.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut merged = live.clone();
    // What this manager applied before and no longer does, and nobody else
    // owns, goes away.
    let previously: FieldSet = managers
        .iter()
        .find(|m| m.name == manager && m.operation == "Apply")
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    for path in previously.difference(&applied_fields) {
        let owned_elsewhere = managers
            .iter()
            .any(|m| m.name != manager && m.fields.contains(path));
        if !owned_elsewhere {
            remove_at(&mut merged, path);
        }
    }
    deep_merge(&mut merged, applied);
    for m in managers.iter_mut().filter(|m| m.name != manager) {
        m.fields
            .retain(|p| !applied_fields.contains(p) || value_at(live, p) == value_at(applied, p));
    }
    managers.retain(|m| !(m.name == manager && m.operation == "Apply"));
    managers.push(Manager {
        name: manager.into(),
        operation: "Apply".into(),
        fields: applied_fields,
    });
    Ok(merged)
}

/// Maps merge key by key; anything else is replaced.
pub fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}
