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

/// The kept fields share one buffer: at 10,000 Secrets, seven small strings
/// each (and their allocator overhead) were megabytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedSecret {
    /// The fields, one after another, in the order of [`Field`].
    text: Box<str>,
    /// Where each field ends in `text`.
    ends: [u32; FIELDS],
    /// Which of the optional fields are there (bit per field).
    present: u8,
}

const FIELDS: usize = 7;

#[derive(Clone, Copy)]
enum Field {
    Namespace,
    Name,
    ResourceVersion,
    /// `secretsync.io/content-hash`: what was written, without the data.
    ContentHash,
    /// The ExternalSecret that writes it (its annotation), if any.
    ExternalSecret,
    /// The SealedSecret that writes it (its annotation), if any.
    SealedSecret,
    /// The uid of its controlling owner reference (at most one per object).
    ControllerUid,
}

impl ManagedSecret {
    fn new(fields: [Option<String>; FIELDS]) -> Self {
        let mut text = String::with_capacity(fields.iter().flatten().map(String::len).sum());
        let mut ends = [0u32; FIELDS];
        let mut present = 0u8;
        for (i, field) in fields.iter().enumerate() {
            if let Some(field) = field {
                text.push_str(field);
                present |= 1 << i;
            }
            // Metadata is bounded far below 4 GiB by the API server; saturate anyway.
            ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        Self {
            text: text.into_boxed_str(),
            ends,
            present,
        }
    }

    fn field(&self, field: Field) -> Option<&str> {
        let i = field as usize;
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize)
    }

    pub fn namespace(&self) -> &str {
        self.field(Field::Namespace).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.field(Field::Name).unwrap_or_default()
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.field(Field::ResourceVersion)
    }

    pub fn content_hash(&self) -> Option<&str> {
        self.field(Field::ContentHash)
    }

    pub fn external_secret(&self) -> Option<&str> {
        self.field(Field::ExternalSecret)
    }

    pub fn sealed_secret(&self) -> Option<&str> {
        self.field(Field::SealedSecret)
    }

    pub fn controller_uid(&self) -> Option<&str> {
        self.field(Field::ControllerUid)
    }

    pub fn of(secret: PartialObjectMeta<Secret>) -> Self {
        let metadata = secret.metadata;
        let mut annotations = metadata.annotations.unwrap_or_default();
        Self::new([
            Some(metadata.namespace.unwrap_or_default()),
            Some(metadata.name.unwrap_or_default()),
            metadata.resource_version,
            annotations.remove(CONTENT_HASH_ANNOTATION),
            annotations.remove(EXTERNAL_SECRET_ANNOTATION),
            annotations.remove(SEALED_SECRET_ANNOTATION),
            metadata
                .owner_references
                .into_iter()
                .flatten()
                .find(|owner| owner.controller == Some(true))
                .map(|owner| owner.uid),
        ])
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
        Some(ManagedSecret::name(self).into())
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(ManagedSecret::namespace(self).into())
    }

    /// Not copied into the cache's key, where nothing reads it (the record
    /// holds it): one string fewer per managed Secret.
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
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
        let kept = ManagedSecret::of(secret);
        assert_eq!(kept.namespace(), "team");
        assert_eq!(kept.name(), "db");
        assert_eq!(kept.resource_version(), Some("42"));
        assert_eq!(kept.content_hash(), Some("h1"));
        assert_eq!(kept.external_secret(), Some("db-es"));
        assert_eq!(kept.sealed_secret(), None);
        assert_eq!(kept.controller_uid(), Some("es-1"));
        assert_eq!(&*kept.text, "teamdb42h1db-eses-1");

        // Empty and absent are told apart; nothing at all reads as absent.
        let sparse = ManagedSecret::new([
            Some("ns".into()),
            Some("n".into()),
            None,
            Some(String::new()),
            None,
            Some("sealed".into()),
            None,
        ]);
        assert_eq!(sparse.resource_version(), None);
        assert_eq!(sparse.content_hash(), Some(""));
        assert_eq!(sparse.sealed_secret(), Some("sealed"));
        assert_eq!(sparse.controller_uid(), None);
        let empty = ManagedSecret::default();
        assert_eq!((empty.name(), empty.resource_version()), ("", None));
    }
}
