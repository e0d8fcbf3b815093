//! What the controller keeps of each Secret it manages (`secretsync.io/managed=true`):
//! the few metadata fields its decisions read, and nothing else. A fleet has
//! as many managed Secrets as ExternalSecrets, so whole metadata (labels,
//! annotations and owner references in maps and lists of their own) would be
//! most of the controller's memory.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::runtime::watcher;

use super::external_secret::EXTERNAL_SECRET_ANNOTATION;
use super::sealed_secret::SEALED_SECRET_ANNOTATION;
use crate::sync::CONTENT_HASH_ANNOTATION;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedSecret {
    pub namespace: String,
    pub name: String,
    pub resource_version: Option<String>,
    /// `secretsync.io/content-hash`: what was written, without the data.
    pub content_hash: Option<String>,
    /// The ExternalSecret that writes it (its annotation), if any.
    pub external_secret: Option<String>,
    /// The SealedSecret that writes it (its annotation), if any.
    pub sealed_secret: Option<String>,
    /// The uid of its controlling owner reference (at most one per object).
    pub controller_uid: Option<String>,
}

impl ManagedSecret {
    pub fn of(secret: PartialObjectMeta<Secret>) -> Self {
        let metadata = secret.metadata;
        let mut annotations = metadata.annotations.unwrap_or_default();
        ManagedSecret {
            namespace: metadata.namespace.unwrap_or_default(),
            name: metadata.name.unwrap_or_default(),
            resource_version: metadata.resource_version,
            content_hash: annotations.remove(CONTENT_HASH_ANNOTATION),
            external_secret: annotations.remove(EXTERNAL_SECRET_ANNOTATION),
            sealed_secret: annotations.remove(SEALED_SECRET_ANNOTATION),
            controller_uid: metadata
                .owner_references
                .into_iter()
                .flatten()
                .find(|owner| owner.controller == Some(true))
                .map(|owner| owner.uid),
        }
    }

    /// The watch's event with its Secret reduced to what is kept.
    pub fn event_of(event: watcher::Event<PartialObjectMeta<Secret>>) -> watcher::Event<Self> {
        match event {
            watcher::Event::Apply(secret) => watcher::Event::Apply(Self::of(secret)),
            watcher::Event::Delete(secret) => watcher::Event::Delete(Self::of(secret)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(secret) => watcher::Event::InitApply(Self::of(secret)),
            watcher::Event::InitDone => watcher::Event::InitDone,
        }
    }

    /// A managed Secret from any of the caches (one per watched scope).
    pub fn find(
        stores: &[Store<ManagedSecret>],
        namespace: &str,
        name: &str,
    ) -> Option<std::sync::Arc<ManagedSecret>> {
        let key = ObjectRef::new(name).within(namespace);
        stores.iter().find_map(|store| store.get(&key))
    }
}

impl Lookup for ManagedSecret {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Secret".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "secrets".into()
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(self.name.as_str().into())
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(self.namespace.as_str().into())
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        self.resource_version.as_deref().map(Cow::from)
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_decisions_read() {
        let secret: PartialObjectMeta<Secret> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "db", "namespace": "team", "resourceVersion": "42", "uid": "s-1",
                "labels": {"secretsync.io/managed": "true", "app": "x"},
                "annotations": {CONTENT_HASH_ANNOTATION: "h1", EXTERNAL_SECRET_ANNOTATION: "db-es", "other": "y"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "not-controller"},
                    {"apiVersion": "secretsync.io/v1", "kind": "ExternalSecret", "name": "db-es", "uid": "es-1", "controller": true}
                ]
            }
        }))
        .unwrap();
        assert_eq!(
            ManagedSecret::of(secret),
            ManagedSecret {
                namespace: "team".into(),
                name: "db".into(),
                resource_version: Some("42".into()),
                content_hash: Some("h1".into()),
                external_secret: Some("db-es".into()),
                sealed_secret: None,
                controller_uid: Some("es-1".into()),
            }
        );
    }
}
