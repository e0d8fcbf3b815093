//! What clients ask before anything else: `/version`, the legacy discovery
//! documents (`/api`, `/apis`, per group/version resource lists), the OpenAPI
//! v3 documents kubectl checks before trusting server-side field validation,
//! and Table rendering for `kubectl get`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resources::{Registry, ResourceType};

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-secretsync-fake",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"
    })
}

pub fn core_versions(address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]})
}

/// Group -> its versions, in registry order.
fn groups(registry: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in registry.types.iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(t.group.clone()).or_default();
        if !versions.contains(&t.version) {
            versions.push(t.version.clone());
        }
    }
    groups
}

fn group_document(name: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": versions, "preferredVersion": versions[0]})
}

pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = groups(registry)
        .iter()
        .map(|(name, versions)| group_document(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    groups(registry)
        .get(name)
        .map(|versions| group_document(name, versions))
}

fn in_group_version<'a>(
    registry: &'a Registry,
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'a ResourceType> {
    registry
        .types
        .iter()
        .filter(move |t| t.group == group && t.version == version)
}

pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in in_group_version(registry, group, version) {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        verbs.sort();
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": verbs, "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.status {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.kind == "ServiceAccount" {
            resources.push(json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// `/openapi/v3`: one document per group/version.
pub fn openapi_index(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", hash(registry))}),
    );
    for (group, versions) in groups(registry) {
        for version in versions {
            paths.insert(
                format!("apis/{group}/{version}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{group}/{version}?hash={}", hash(registry))}),
            );
        }
    }
    json!({"paths": paths})
}

/// Changes whenever the served resources do, so kubectl does not cache stale documents.
fn hash(registry: &Registry) -> String {
    let names: Vec<String> = registry
        .types
        .iter()
        .map(|t| format!("{}/{}/{}", t.group, t.version, t.plural))
        .collect();
    format!(
        "{:016X}",
        names
            .join(",")
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64)
                .wrapping_mul(0x100000001b3))
    )
}

/// A group/version's OpenAPI v3 document: each resource path has a `patch`
/// operation with its GVK and the `fieldValidation` parameter, which is what
/// kubectl looks for; schemas are permissive (the fake validates CRDs itself).
pub fn openapi_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in in_group_version(registry, group, version) {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let schema_name = format!(
            "{}.{}.{}",
            if t.group.is_empty() {
                "io.k8s.api.core"
            } else {
                &t.group
            },
            t.version,
            t.kind
        );
        let reference = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let operation = json!({
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": "patch",
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            ],
            "requestBody": {"content": {"application/json": {"schema": reference.clone()}}},
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        });
        let item = if t.namespaced {
            format!(
                "{}/namespaces/{{namespace}}/{}/{{name}}",
                t.prefix(),
                t.plural
            )
        } else {
            format!("{}/{}/{{name}}", t.prefix(), t.plural)
        };
        paths.insert(item, json!({"patch": operation}));
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-group-version-kind": [gvk]}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (secretsync fake)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `kubectl get` asks for a Table: Name, the CRD's printer columns, Age last.
pub fn table(
    resource: &ResourceType,
    items: &[std::sync::Arc<Value>],
    resource_version: &str,
) -> Value {
    let name_priority = if resource.name_and_age { 0 } else { 1 };
    let name_column = json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": name_priority});
    let mut columns = Vec::new();
    if resource.name_and_age {
        columns.push(name_column.clone());
    }
    let printer: Vec<_> = resource
        .printer_columns
        .iter()
        .filter(|c| c.json_path != ".metadata.creationTimestamp")
        .collect();
    for c in &printer {
        columns.push(json!({"name": c.name, "type": c.type_, "format": "", "description": "", "priority": 0}));
    }
    if resource.name_and_age {
        columns.push(
            json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}),
        );
    } else {
        columns.push(name_column);
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = Vec::new();
            if resource.name_and_age {
                cells.push(item["metadata"]["name"].clone());
            }
            for c in &printer {
                let cell = c
                    .json_path
                    .split('|')
                    .find_map(|path| json_path(item, path).filter(|v| !v.is_null()))
                    .cloned()
                    .unwrap_or(Value::Null);
                cells.push(match c.type_.as_str() {
                    "date" => age(&cell),
                    _ if c.reference => reference(&cell),
                    _ => cell,
                });
            }
            if resource.name_and_age {
                cells.push(age(&item["metadata"]["creationTimestamp"]));
            } else {
                cells.push(item["metadata"]["name"].clone());
            }
            let partial = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]});
            json!({"cells": cells, "object": partial})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns, "rows": rows})
}

/// An object reference as `kind/name` (`externalsecret/app`).
fn reference(object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default().to_lowercase();
    let name = object["name"].as_str().unwrap_or_default();
    Value::String(format!("{kind}/{name}"))
}

/// A timestamp as the server prints it in a Table: how long ago (`42s`, `5m`, `3h`, `2d`).
fn age(timestamp: &Value) -> Value {
    let Some(then) = timestamp
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return Value::Null;
    };
    let seconds = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    let text = match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    };
    Value::String(text)
}

/// The JSONPath printer columns use: `.a.b`, `.list[?(@.k=="v")].field` and
/// `.list[0].field`; anything else shows nothing.
fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = object;
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (key, tail) = rest.split_at(end);
        if !key.is_empty() {
            node = node.get(key)?;
        }
        rest = tail;
        if let Some(filter) = rest.strip_prefix("[?(@.") {
            let close = filter.find(")]")?;
            let (condition, after) = (&filter[..close], &filter[close + 2..]);
            let (field, value) = condition.split_once("==")?;
            let value = value.trim_matches('"').trim_matches('\'');
            node = node
                .as_array()?
                .iter()
                .find(|item| item.get(field).and_then(Value::as_str) == Some(value))?;
            rest = after;
        } else if let Some(index) = rest.strip_prefix('[') {
            let close = index.find(']')?;
            node = node
                .as_array()?
                .get(index[..close].parse::<usize>().ok()?)?;
            rest = &index[close + 1..];
        }
        rest = rest.trim_start_matches('.');
    }
    Some(node)
}
