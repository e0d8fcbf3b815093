//! What a ClusterExternalSecret writes, given what was read: which
//! namespaces it picks, and the ExternalSecret it writes into each. The
//! controller does the reading and writing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::core::{Selector, SelectorExt};
use serde_json::{Value, json};

use super::{ESO_FORCE_SYNC_ANNOTATION, FORCE_SYNC_ANNOTATION};
use crate::api::ClusterExternalSecretSpec;

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace as a ClusterExternalSecret sees it.
pub struct NamespaceView<'a> {
    pub name: &'a str,
    /// Its labels, [`NAMESPACE_NAME_LABEL`] included.
    pub labels: &'a BTreeMap<String, String>,
    /// Being deleted: nothing new can be written into it.
    pub terminating: bool,
}

/// Which namespaces a cluster-scoped writer (ClusterExternalSecret,
/// ClusterPushSecret) picks: by name, or by any selector (ORed, as ESO).
pub struct Picking<'a> {
    pub names: &'a [String],
    pub selectors: Vec<&'a LabelSelector>,
}

impl<'a> Picking<'a> {
    pub fn of(spec: &'a ClusterExternalSecretSpec) -> Self {
        Picking {
            names: &spec.namespaces,
            selectors: spec.selectors().collect(),
        }
    }

    /// Whether this namespace is picked. Neither names nor selectors pick none.
    pub fn picks(&self, namespace: &NamespaceView) -> bool {
        self.names.iter().any(|n| n == namespace.name)
            || self.selectors.iter().any(|selector| {
                Selector::try_from((*selector).clone())
                    .is_ok_and(|selector| selector.matches(namespace.labels))
            })
    }
}

/// The namespaces to hold a child: picked and not terminating.
pub fn picked_namespaces<'a>(
    picking: &Picking,
    namespaces: impl IntoIterator<Item = NamespaceView<'a>>,
) -> BTreeSet<String> {
    namespaces
        .into_iter()
        .filter(|namespace| !namespace.terminating && picking.picks(namespace))
        .map(|namespace| namespace.name.to_string())
        .collect()
}

/// The ClusterExternalSecret that writes ExternalSecrets.
pub struct Writer<'a> {
    /// `secretsync.io/v1` or `external-secrets.io/v1`: its children share it.
    pub api_version: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// Its own annotations: a force-sync set on it is passed on.
    pub annotations: &'a BTreeMap<String, String>,
}

/// Whether `owners` name the ClusterExternalSecret `name` of `group` as
/// controller (as ESO checks: by group, kind and name, so an ExternalSecret
/// written by ESO before the switch is still recognised).
pub fn is_written_by(owners: &[OwnerReference], group: &str, kind: &str, name: &str) -> bool {
    owners.iter().any(|owner| {
        owner.controller == Some(true)
            && owner.kind == kind
            && owner.name == name
            && owner.api_version.split('/').next() == Some(group)
    })
}

/// The ExternalSecret written into `namespace`: the spec as given, the
/// labels and annotations of `externalSecretMetadata`, the writer's
/// force-sync annotations, and the writer as controlling owner (so the
/// garbage collector removes it with the writer).
pub fn child_external_secret(
    spec: &ClusterExternalSecretSpec,
    writer: &Writer,
    namespace: &str,
) -> Value {
    let child = Child {
        kind: "ExternalSecret",
        writer_kind: "ClusterExternalSecret",
        name: spec.external_secret_name(writer.name),
        labels: &spec.external_secret_metadata.labels,
        annotations: &spec.external_secret_metadata.annotations,
    };
    child.object(writer, namespace, json!(spec.external_secret_spec))
}

/// One object a cluster-scoped writer stamps into a namespace.
pub struct Child<'a> {
    pub kind: &'a str,
    pub writer_kind: &'a str,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
}

impl Child<'_> {
    /// The child in `namespace` with `spec`, its writer as controlling owner
    /// (so the garbage collector removes it with the writer), and the
    /// writer's force-sync annotations passed on.
    pub fn object(&self, writer: &Writer, namespace: &str, spec: Value) -> Value {
        let mut annotations = self.annotations.clone();
        for key in [FORCE_SYNC_ANNOTATION, ESO_FORCE_SYNC_ANNOTATION] {
            if let Some(value) = writer.annotations.get(key) {
                annotations.insert(key.to_string(), value.clone());
            }
        }
        json!({
            "apiVersion": writer.api_version,
            "kind": self.kind,
            "metadata": {
                "name": self.name,
                "namespace": namespace,
                "labels": self.labels,
                "annotations": annotations,
                "ownerReferences": [{
                    "apiVersion": writer.api_version,
                    "kind": self.writer_kind,
                    "name": writer.name,
                    "uid": writer.uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": spec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: Value) -> ClusterExternalSecretSpec {
        let mut value = json!({
            "externalSecretSpec": {
                "secretStoreRef": {"name": "aws", "kind": "ClusterSecretStore"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}],
            },
        });
        if let (Some(target), Value::Object(extra)) = (value.as_object_mut(), extra) {
            target.extend(extra);
        }
        serde_json::from_value(value).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_selectors_are_ored_and_terminating_namespaces_left_out() {
        let spec = spec(json!({
            "namespaces": ["billing"],
            "namespaceSelector": {"matchLabels": {"tier": "web"}},
            "namespaceSelectors": [
                {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
            ],
        }));
        let web = labels(&[("tier", "web")]);
        let team = labels(&[("team", "b")]);
        let other = labels(&[("team", "c")]);
        let none = labels(&[]);
        let picked = picked_namespaces(
            &Picking::of(&spec),
            [
                NamespaceView {
                    name: "billing",
                    labels: &none,
                    terminating: false,
                },
                NamespaceView {
                    name: "front",
                    labels: &web,
                    terminating: false,
                },
                NamespaceView {
                    name: "b",
                    labels: &team,
                    terminating: false,
                },
                NamespaceView {
                    name: "c",
                    labels: &other,
                    terminating: false,
                },
                NamespaceView {
                    name: "going",
                    labels: &web,
                    terminating: true,
                },
            ],
        );
        assert_eq!(
            picked.into_iter().collect::<Vec<_>>(),
            ["b", "billing", "front"]
        );
    }

    #[test]
    fn a_spec_without_names_or_selectors_picks_nothing() {
        let spec = spec(json!({}));
        let any = labels(&[("team", "a")]);
        let view = NamespaceView {
            name: "a",
            labels: &any,
            terminating: false,
        };
        assert!(!Picking::of(&spec).picks(&view));
    }

    #[test]
    fn the_child_carries_metadata_force_sync_and_its_controlling_owner() {
        let spec = spec(json!({
            "externalSecretName": "db-credentials",
            "externalSecretMetadata": {"labels": {"app": "db"}, "annotations": {"note": "x"}},
        }));
        let own = labels(&[(ESO_FORCE_SYNC_ANNOTATION, "2"), ("unrelated", "y")]);
        let writer = Writer {
            api_version: "external-secrets.io/v1",
            name: "db",
            uid: "u-1",
            annotations: &own,
        };
        let child = child_external_secret(&spec, &writer, "team-a");
        assert_eq!(child["apiVersion"], "external-secrets.io/v1");
        assert_eq!(child["metadata"]["name"], "db-credentials");
        assert_eq!(child["metadata"]["namespace"], "team-a");
        assert_eq!(child["metadata"]["labels"], json!({"app": "db"}));
        assert_eq!(
            child["metadata"]["annotations"],
            json!({"note": "x", ESO_FORCE_SYNC_ANNOTATION: "2"})
        );
        assert_eq!(child["spec"]["data"][0]["remoteRef"]["key"], "db");
        let owners: Vec<OwnerReference> =
            serde_json::from_value(child["metadata"]["ownerReferences"].clone()).unwrap();
        assert!(is_written_by(
            &owners,
            "external-secrets.io",
            "ClusterExternalSecret",
            "db"
        ));
        assert!(!is_written_by(
            &owners,
            "secretsync.io",
            "ClusterExternalSecret",
            "db"
        ));
        assert!(!is_written_by(
            &owners,
            "external-secrets.io",
            "ClusterExternalSecret",
            "other"
        ));
    }
}
