//! Built-in kinds are decoded as the real server decodes them into its Go
//! types, here into k8s-openapi's: a body that does not fit the type is a 400
//! naming the field; a field the type does not have is dropped, or with
//! `fieldValidation=Strict` (what kubectl sends) rejected as
//! `strict decoding error: unknown field "spec.foo"`.
//!
//! Simplified against the real server: required fields and value formats are
//! not validated (a body that lacks a field k8s-openapi requires is taken as it
//! is, unchecked).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::resources::ResourceType;

/// The body as its type knows it (`None`: no type here, or a required field
/// missing), or why it does not fit.
fn through<T: DeserializeOwned + Serialize>(object: &Value) -> Result<Option<Value>, String> {
    // The field path is tracked only for a body that does not fit: tracking
    // it cost as much as the decoding, on every write of a built-in kind.
    let decoded =
        T::deserialize(object).or_else(|_| serde_path_to_error::deserialize::<_, T>(object));
    match decoded {
        Ok(typed) => Ok(Some(
            serde_json::to_value(typed).map_err(|e| e.to_string())?,
        )),
        Err(e) if e.inner().to_string().starts_with("missing field") => Ok(None),
        Err(e) => Err(format!("{}: {}", e.path(), e.inner())),
    }
}

fn known(resource: &ResourceType, object: &Value) -> Result<Option<Value>, String> {
    use k8s_openapi::api::{apps, batch, coordination, core, events, policy, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    match (
        resource.group.as_str(),
        resource.version.as_str(),
        resource.kind.as_str(),
    ) {
        ("", "v1", "Namespace") => through::<core::v1::Namespace>(object),
        ("", "v1", "Secret") => through::<core::v1::Secret>(object),
        ("", "v1", "ConfigMap") => through::<core::v1::ConfigMap>(object),
        ("", "v1", "ServiceAccount") => through::<core::v1::ServiceAccount>(object),
        ("", "v1", "Service") => through::<core::v1::Service>(object),
        ("", "v1", "Event") => through::<core::v1::Event>(object),
        ("", "v1", "Pod") => through::<core::v1::Pod>(object),
        ("events.k8s.io", "v1", "Event") => through::<events::v1::Event>(object),
        ("apps", "v1", "Deployment") => through::<apps::v1::Deployment>(object),
        ("apps", "v1", "StatefulSet") => through::<apps::v1::StatefulSet>(object),
        ("apps", "v1", "DaemonSet") => through::<apps::v1::DaemonSet>(object),
        ("batch", "v1", "Job") => through::<batch::v1::Job>(object),
        ("batch", "v1", "CronJob") => through::<batch::v1::CronJob>(object),
        ("coordination.k8s.io", "v1", "Lease") => through::<coordination::v1::Lease>(object),
        ("policy", "v1", "PodDisruptionBudget") => {
            through::<policy::v1::PodDisruptionBudget>(object)
        }
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => {
            through::<rbac::v1::ClusterRole>(object)
        }
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            through::<rbac::v1::ClusterRoleBinding>(object)
        }
        ("rbac.authorization.k8s.io", "v1", "Role") => through::<rbac::v1::Role>(object),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => {
            through::<rbac::v1::RoleBinding>(object)
        }
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            through::<apiextensions::CustomResourceDefinition>(object)
        }
        _ => Ok(None),
    }
}

/// One step of a path into a body.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// `spec.template.spec.containers[0].foo`, as the real server names a field.
fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) if out.is_empty() => out.push_str(key),
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Paths in `object` that `known` lacks.
fn unknown_fields(object: &Value, known: &Value, path: &[Step], out: &mut Vec<Vec<Step>>) {
    let extend = |step: Step| {
        let mut next = path.to_vec();
        next.push(step);
        next
    };
    match (object, known) {
        (Value::Object(fields), Value::Object(known)) => {
            for (key, value) in fields {
                match known.get(key) {
                    Some(k) => unknown_fields(value, k, &extend(Step::Key(key.clone())), out),
                    None if !value.is_null() => out.push(extend(Step::Key(key.clone()))),
                    None => {}
                }
            }
        }
        (Value::Array(items), Value::Array(known)) if items.len() == known.len() => {
            for (i, (item, k)) in items.iter().zip(known).enumerate() {
                unknown_fields(item, k, &extend(Step::Index(i)), out);
            }
        }
        _ => {}
    }
}

fn remove(object: &mut Value, path: &[Step]) {
    let Some((Step::Key(last), parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for step in parents {
        let next = match step {
            Step::Key(key) => node.get_mut(key),
            Step::Index(i) => node.get_mut(*i),
        };
        let Some(next) = next else {
            return;
        };
        node = next;
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Checks a built-in object against its type: unknown fields are removed, or
/// with `strict` an error, as is a body that does not fit.
pub fn check(resource: &ResourceType, object: &mut Value, strict: bool) -> Result<(), String> {
    let Some(known) = known(resource, object)? else {
        return Ok(());
    };
    let mut unknown = Vec::new();
    unknown_fields(object, &known, &[], &mut unknown);
    if unknown.is_empty() {
        return Ok(());
    }
    if strict {
        let listed: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{}\"", dotted(f)))
            .collect();
        return Err(format!("strict decoding error: {}", listed.join(", ")));
    }
    for path in &unknown {
        remove(object, path);
    }
    Ok(())
}
