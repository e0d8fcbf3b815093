//! Which Secrets and ConfigMaps a pod template uses: what its containers and
//! init containers read by `env[].valueFrom` and `envFrom`, and what its volumes
//! mount, projected sources included. `imagePullSecrets` are left out: they
//! decide where images come from, not what the pods see.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::ObjKind;

/// Every object used, by kind and name, and whether the pods need it to start
/// (at least one reference to it is not `optional: true`).
pub type Uses = BTreeMap<(ObjKind, String), bool>;

pub fn uses(spec: &PodSpec) -> Uses {
    let mut found = Uses::new();
    let mut add = |kind: ObjKind, name: &str, optional: Option<bool>| {
        if name.is_empty() {
            return;
        }
        let required = found.entry((kind, name.to_string())).or_insert(false);
        *required |= !optional.unwrap_or(false);
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        container_uses(container, &mut add);
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(secret) = &volume.secret {
            add(
                ObjKind::Secret,
                secret.secret_name.as_deref().unwrap_or_default(),
                secret.optional,
            );
        }
        if let Some(config_map) = &volume.config_map {
            add(ObjKind::ConfigMap, &config_map.name, config_map.optional);
        }
        let sources = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for source in sources {
            if let Some(secret) = &source.secret {
                add(ObjKind::Secret, &secret.name, secret.optional);
            }
            if let Some(config_map) = &source.config_map {
                add(ObjKind::ConfigMap, &config_map.name, config_map.optional);
            }
        }
    }
    found
}

fn container_uses(container: &Container, add: &mut impl FnMut(ObjKind, &str, Option<bool>)) {
    for env in container.env.iter().flatten() {
        let Some(from) = &env.value_from else {
            continue;
        };
        if let Some(secret) = &from.secret_key_ref {
            add(ObjKind::Secret, &secret.name, secret.optional);
        }
        if let Some(config_map) = &from.config_map_key_ref {
            add(ObjKind::ConfigMap, &config_map.name, config_map.optional);
        }
    }
    for from in container.env_from.iter().flatten() {
        if let Some(secret) = &from.secret_ref {
            add(ObjKind::Secret, &secret.name, secret.optional);
        }
        if let Some(config_map) = &from.config_map_ref {
            add(ObjKind::ConfigMap, &config_map.name, config_map.optional);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    fn names(uses: &Uses) -> Vec<(ObjKind, &str, bool)> {
        uses.iter()
            .map(|((kind, name), required)| (*kind, name.as_str(), *required))
            .collect()
    }

    #[test]
    fn env_env_from_volumes_projections_and_init_containers_count() {
        let uses = uses(&spec(json!({
            "initContainers": [{"name": "init", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-secret", "key": "k"}}}]}],
            "containers": [{"name": "app",
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "FIELD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k", "optional": true}}}],
                "envFrom": [{"secretRef": {"name": "from-secret"}}, {"configMapRef": {"name": "from-cm"}, "prefix": "P_"}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": "vol-secret", "optional": true}},
                {"name": "c", "configMap": {"name": "vol-cm"}},
                {"name": "p", "projected": {"sources": [
                    {"secret": {"name": "proj-secret"}},
                    {"configMap": {"name": "proj-cm", "optional": false}},
                    {"serviceAccountToken": {"path": "token"}}]}},
                {"name": "e", "emptyDir": {}}],
        })));
        assert_eq!(
            names(&uses),
            [
                (ObjKind::Secret, "env-secret", true),
                (ObjKind::Secret, "from-secret", true),
                (ObjKind::Secret, "init-secret", true),
                (ObjKind::Secret, "proj-secret", true),
                (ObjKind::Secret, "vol-secret", false),
                (ObjKind::ConfigMap, "env-cm", false),
                (ObjKind::ConfigMap, "from-cm", true),
                (ObjKind::ConfigMap, "proj-cm", true),
                (ObjKind::ConfigMap, "vol-cm", true),
            ]
        );
    }

    #[test]
    fn image_pull_secrets_are_not_inputs() {
        let uses = uses(&spec(json!({
            "imagePullSecrets": [{"name": "registry"}],
            "containers": [{"name": "app"}],
        })));
        assert!(uses.is_empty(), "{uses:?}");
    }

    #[test]
    fn one_required_reference_makes_the_object_required() {
        let uses = uses(&spec(json!({
            "containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "db", "optional": true}}]}],
            "volumes": [{"name": "db", "secret": {"secretName": "db"}}, {"name": "x", "secret": {}}],
        })));
        assert_eq!(names(&uses), [(ObjKind::Secret, "db", true)]);
    }
}
