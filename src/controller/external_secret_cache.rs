//! The ExternalSecrets of one flavor and scope, as the controller keeps them
//! between watch events.
//!
//! kube-runtime's reflector store keeps each object whole, `ObjectMeta`
//! inline (half a kilobyte even when nearly empty), under a key that copies
//! its name, namespace, resourceVersion and uid once more. At 100,000
//! ExternalSecrets that was a third of the controller's memory. Here an
//! object is kept in its cache form ([`Cached`]) under the same shared
//! `Arc<str>` key the refresher and the status records use, and turned back
//! into a [`WatchedExternalSecret`] only when a reconcile needs one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::objects::{self, Cached, Flavor, WatchedExternalSecret};
use crate::api::{ExternalSecretSpec, ExternalSecretStatus};

pub type CachedExternalSecret = Cached<ExternalSecretSpec, ExternalSecretStatus>;

#[derive(Default)]
pub struct ExternalSecretCache {
    objects: RwLock<HashMap<Arc<str>, Arc<CachedExternalSecret>>>,
    /// While the watch (re)lists: the keys listed so far. Whatever the list
    /// did not show was deleted while the watch was away.
    listing: Mutex<Option<HashSet<Arc<str>>>>,
    /// Whether the first list is in.
    listed: tokio::sync::watch::Sender<bool>,
}

impl ExternalSecretCache {
    /// The key the cache keeps for `key`, to share rather than copy; a new
    /// one for an object not cached.
    pub fn key(&self, key: &str) -> Arc<str> {
        self.read()
            .get_key_value(key)
            .map(|(key, _)| key.clone())
            .unwrap_or_else(|| Arc::from(key))
    }

    /// The object of this [`objects::flavored_key`], as cached now.
    pub fn get(&self, key: &str) -> Option<Arc<CachedExternalSecret>> {
        self.read().get(key).cloned()
    }

    /// The object of this key as watched (for a reconcile).
    pub fn watched(&self, key: &str) -> Option<WatchedExternalSecret> {
        let (_, namespace, name) = objects::parts_of_key(key)?;
        Some(self.get(key)?.watched(namespace, name))
    }

    /// The objects of `flavor` whose owner references `owned` picks:
    /// namespace, name and uid of each. (Only objects with owner references
    /// or other rare metadata have any to unpack.)
    pub fn owned(
        &self,
        flavor: Flavor,
        owned: impl Fn(&[OwnerReference]) -> bool,
    ) -> Vec<ObjectReference> {
        self.read()
            .iter()
            .filter(|(_, cached)| cached.flavor == flavor && cached.has_rest_of_metadata())
            .filter(|(_, cached)| owned(&cached.owner_references()))
            .filter_map(|(key, cached)| {
                let (_, namespace, name) = objects::parts_of_key(key)?;
                Some(ObjectReference {
                    namespace: Some(namespace.to_string()),
                    name: Some(name.to_string()),
                    uid: cached.uid().map(str::to_string),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// A (re)list starts: what it does not show by its end is gone.
    pub fn listing_starts(&self) {
        *self.listing.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashSet::new());
    }

    /// Keeps `object` under `key` (see [`ExternalSecretCache::key`]).
    pub fn keep(&self, key: Arc<str>, object: Arc<CachedExternalSecret>) {
        if let Some(listed) = self
            .listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            listed.insert(key.clone());
        }
        self.write().insert(key, object);
    }

    /// Forgets the object of `key`; what it was, if it was cached.
    pub fn remove(&self, key: &str) -> Option<Arc<CachedExternalSecret>> {
        let mut objects = self.write();
        let removed = objects.remove(key);
        if objects.is_empty() {
            objects.shrink_to_fit();
        }
        removed
    }

    /// The (re)list is complete: forgets, and returns, every object it did
    /// not show (deleted while the watch was away).
    pub fn listing_done(&self) -> Vec<(Arc<str>, Arc<CachedExternalSecret>)> {
        let listed = self
            .listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let mut gone = Vec::new();
        self.write().retain(|key, object| {
            let keep = listed.contains(key);
            if !keep {
                gone.push((key.clone(), object.clone()));
            }
            keep
        });
        self.listed.send_replace(true);
        gone
    }

    /// Waits until the first list is in.
    pub async fn listed(&self) {
        let mut listed = self.listed.subscribe();
        let _ = listed.wait_for(|listed| *listed).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<CachedExternalSecret>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<CachedExternalSecret>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn external_secret(name: &str, extra: serde_json::Value) -> WatchedExternalSecret {
        let mut object = json!({
            "apiVersion": "secretsync.io/v1",
            "kind": "ExternalSecret",
            "metadata": {
                "name": name, "namespace": "team", "uid": format!("uid-{name}"),
                "generation": 3, "resourceVersion": "17",
                "creationTimestamp": "2026-12-07T04:00:00Z",
                "labels": {"app": "web"}, "annotations": {"note": "kept"},
            },
            "spec": {
                "secretStoreRef": {"name": "aws", "kind": "ClusterSecretStore"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}],
            },
            "status": {"refreshTime": "2026-12-07T04:01:00Z"},
        });
        if let (Some(metadata), Some(extra)) =
            (object["metadata"].as_object_mut(), extra.as_object())
        {
            metadata.extend(extra.clone());
        }
        serde_json::from_value(object).expect("an ExternalSecret")
    }

    fn keep(cache: &ExternalSecretCache, object: WatchedExternalSecret) -> Arc<str> {
        let key = cache.key(&objects::flavored_key(objects::SECRETSYNC, &object));
        cache.keep(key.clone(), Arc::new(object.into_cached()));
        key
    }

    #[test]
    fn an_object_comes_back_as_it_was_watched_but_for_its_resource_version() {
        let cache = ExternalSecretCache::default();
        let owners = json!({"ownerReferences": [{"apiVersion": "secretsync.io/v1",
            "kind": "ClusterExternalSecret", "name": "all", "uid": "u", "controller": true}],
            "finalizers": ["keep"]});
        for extra in [json!({}), owners] {
            let watched = external_secret("db", extra);
            let key = keep(&cache, watched.clone());
            let back = cache.watched(&key).expect("cached");
            let mut expected = watched.full_metadata();
            expected.resource_version = None;
            assert_eq!(back.full_metadata(), expected);
            assert_eq!(
                serde_json::to_value(back.spec().expect("decodes")).ok(),
                serde_json::to_value(watched.spec().expect("decodes")).ok()
            );
            assert_eq!(back.status(), watched.status());
            assert_eq!(back.spec_source(), watched.spec_source());
        }
    }

    #[test]
    fn the_same_key_is_shared_not_copied() {
        let cache = ExternalSecretCache::default();
        let first = keep(&cache, external_secret("db", json!({})));
        let again = keep(&cache, external_secret("db", json!({})));
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn a_relist_forgets_what_it_did_not_show_and_says_so() {
        let cache = ExternalSecretCache::default();
        cache.listing_starts();
        keep(&cache, external_secret("a", json!({})));
        keep(&cache, external_secret("b", json!({})));
        assert!(cache.listing_done().is_empty());
        // The watch was away while "a" was deleted.
        cache.listing_starts();
        keep(&cache, external_secret("b", json!({})));
        let gone: Vec<String> = cache
            .listing_done()
            .into_iter()
            .map(|(key, _)| key.to_string())
            .collect();
        assert_eq!(gone, ["secretsync.io/team/a"]);
        assert!(cache.get("secretsync.io/team/a").is_none());
        assert!(cache.get("secretsync.io/team/b").is_some());
    }

    #[test]
    fn only_owned_objects_are_unpacked_and_picked() {
        let cache = ExternalSecretCache::default();
        keep(&cache, external_secret("plain", json!({})));
        keep(
            &cache,
            external_secret(
                "child",
                json!({"ownerReferences": [{"apiVersion": "secretsync.io/v1",
                    "kind": "ClusterExternalSecret", "name": "all", "uid": "u", "controller": true}]}),
            ),
        );
        let owned = cache.owned(objects::SECRETSYNC, |owners| {
            owners.iter().any(|o| o.name == "all")
        });
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].name.as_deref(), Some("child"));
        assert_eq!(owned[0].uid.as_deref(), Some("uid-child"));
        assert!(cache.owned(objects::ESO, |_| true).is_empty());
    }
}
