//! Which Secrets, ConfigMaps and SecretProviderClasses a pod template uses:
//! what its containers and init containers read by `env[].valueFrom` and
//! `envFrom`, and what the volumes they mount hold, projected sources and CSI
//! volumes (`volumeAttributes.secretProviderClass`) included. As in Reloader,
//! a volume no container or init container mounts does not count (its object
//! is still needed for pods to start). `imagePullSecrets` are left out: they
//! decide where images come from, not what the pods see.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::ObjKind;

/// How a pod template uses one object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Use {
    /// Read by a container: a change of it may restart the workload.
    pub counts: bool,
    /// The pods need it to start (one reference to it is not `optional: true`).
    pub required: bool,
}

/// Every object referenced, by kind and name.
pub type Uses = BTreeMap<(ObjKind, String), Use>;

pub fn uses(spec: &PodSpec) -> Uses {
    let mut found = Uses::new();
    let mut add = |kind: ObjKind, name: &str, optional: Option<bool>, counts: bool| {
        if name.is_empty() {
            return;
        }
        let entry = found.entry((kind, name.to_string())).or_default();
        entry.required |= !optional.unwrap_or(false);
        entry.counts |= counts;
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut mounted = BTreeSet::new();
    for container in containers {
        container_uses(container, &mut |kind, name, optional| {
            add(kind, name, optional, true)
        });
        for mount in container.volume_mounts.iter().flatten() {
            mounted.insert(mount.name.as_str());
        }
    }
    for volume in spec.volumes.iter().flatten() {
        let counts = mounted.contains(volume.name.as_str());
        if let Some(secret) = &volume.secret {
            add(
                ObjKind::Secret,
                secret.secret_name.as_deref().unwrap_or_default(),
                secret.optional,
                counts,
            );
        }
        if let Some(config_map) = &volume.config_map {
            add(
                ObjKind::ConfigMap,
                &config_map.name,
                config_map.optional,
                counts,
            );
        }
        let class = volume
            .csi
            .as_ref()
            .and_then(|csi| csi.volume_attributes.as_ref())
            .and_then(|attributes| attributes.get("secretProviderClass"));
        if let Some(class) = class {
            // Not `required`: without the CSI CRDs there is nothing to wait for.
            add(ObjKind::SecretProviderClass, class, Some(true), counts);
        }
        let sources = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for source in sources {
            if let Some(secret) = &source.secret {
                add(ObjKind::Secret, &secret.name, secret.optional, counts);
            }
            if let Some(config_map) = &source.config_map {
                add(
                    ObjKind::ConfigMap,
                    &config_map.name,
                    config_map.optional,
                    counts,
                );
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

    /// (kind, name, required) of what counts.
    fn names(uses: &Uses) -> Vec<(ObjKind, &str, bool)> {
        uses.iter()
            .filter(|(_, u)| u.counts)
            .map(|((kind, name), u)| (*kind, name.as_str(), u.required))
            .collect()
    }

    #[test]
    fn env_env_from_volumes_projections_and_init_containers_count() {
        let uses = uses(&spec(json!({
            "initContainers": [{"name": "init", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-secret", "key": "k"}}}],
                "volumeMounts": [{"name": "c", "mountPath": "/c"}]}],
            "containers": [{"name": "app",
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "FIELD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k", "optional": true}}}],
                "envFrom": [{"secretRef": {"name": "from-secret"}}, {"configMapRef": {"name": "from-cm"}, "prefix": "P_"}],
                "volumeMounts": [{"name": "s", "mountPath": "/s"}, {"name": "p", "mountPath": "/p"}]}],
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

    #[test]
    fn a_volume_nobody_mounts_does_not_count_but_is_still_needed() {
        let uses = uses(&spec(json!({
            "containers": [{"name": "app", "volumeMounts": [{"name": "csi", "mountPath": "/mnt"}]}],
            "volumes": [
                {"name": "idle", "secret": {"secretName": "idle"}},
                {"name": "idle-cm", "configMap": {"name": "idle-cm", "optional": true}},
                {"name": "csi", "csi": {"driver": "secrets-store.csi.k8s.io",
                    "volumeAttributes": {"secretProviderClass": "aws-spc"}}},
                {"name": "csi-idle", "csi": {"driver": "secrets-store.csi.k8s.io",
                    "volumeAttributes": {"secretProviderClass": "idle-spc"}}}],
        })));
        assert_eq!(
            names(&uses),
            [(ObjKind::SecretProviderClass, "aws-spc", false)]
        );
        let idle = uses[&(ObjKind::Secret, "idle".to_string())];
        assert_eq!(
            idle,
            Use {
                counts: false,
                required: true
            }
        );
        assert!(!uses[&(ObjKind::ConfigMap, "idle-cm".to_string())].counts);
        assert!(!uses[&(ObjKind::SecretProviderClass, "idle-spc".to_string())].counts);
    }
}
