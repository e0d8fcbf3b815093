//! Deletion: finalizers and `deletionTimestamp`, and ownerReferences with
//! background, foreground and orphan propagation.
//!
//! Simplified against the real server: the garbage collector runs inside the
//! delete request (or the write that removed the last finalizer), so
//! dependents are gone when the call returns rather than moments later.

use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::ResourceType;
use super::storage::{ApiError, Key, State, now};

const FOREGROUND: &str = "foregroundDeletion";

impl State {
    fn resource_of(&self, key: &Key) -> Option<ResourceType> {
        self.registry
            .types
            .iter()
            .find(|t| t.group == key.0 && t.plural == key.1)
            .cloned()
    }

    /// DELETE of one object with a propagation policy (`Background` by default).
    pub fn delete(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        policy: Option<&str>,
    ) -> Result<Arc<Value>, ApiError> {
        let key = State::key(resource, namespace, name);
        let existing = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let policy = policy.unwrap_or("Background");
        let uid = existing["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();

        if policy == "Orphan" {
            self.orphan_dependents(&uid)?;
        }
        let mut finalizers: Vec<Value> = existing["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if policy == "Foreground" && !finalizers.contains(&json!(FOREGROUND)) {
            finalizers.push(json!(FOREGROUND));
        }
        if finalizers.is_empty() {
            return self.remove(&key);
        }
        // Deletion waits on finalizers: mark it, keep the object.
        let mut marked = (*existing).clone();
        if marked["metadata"].get("deletionTimestamp").is_none() {
            marked["metadata"]["deletionTimestamp"] = json!(now());
        }
        marked["metadata"]["finalizers"] = Value::Array(finalizers);
        let mut stored = self.store_marked(resource, &key, marked, existing)?;
        if policy == "Foreground" {
            self.delete_dependents(&uid, "Foreground")?;
            // Dependents gone: the foreground finalizer is done.
            let mut done = self
                .objects
                .get(&key)
                .map_or_else(|| (*stored).clone(), |o| (**o).clone());
            let rest: Vec<Value> = done["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| *f != FOREGROUND)
                .cloned()
                .collect();
            done["metadata"]["finalizers"] = Value::Array(rest.clone());
            let previous = self.objects.get(&key).cloned().unwrap_or_default();
            stored = self.store_marked(resource, &key, done, previous)?;
            if rest.is_empty() {
                return self.remove(&key);
            }
        }
        Ok(stored)
    }

    fn store_marked(
        &mut self,
        resource: &ResourceType,
        key: &Key,
        object: Value,
        previous: Arc<Value>,
    ) -> Result<Arc<Value>, ApiError> {
        let object = self.store(resource, key, object, Some(previous));
        Ok(State::present(resource, &object))
    }

    /// Takes an object out of storage for good, then collects its dependents
    /// (and, for a Namespace, everything in it).
    pub fn remove(&mut self, key: &Key) -> Result<Arc<Value>, ApiError> {
        let Some(object) = self.objects.remove(key) else {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("{} not found", key.3),
            ));
        };
        let resource = self
            .resource_of(key)
            .expect("a stored object has a resource");
        self.resource_version += 1;
        let mut gone = (*object).clone();
        gone["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let gone = Arc::new(gone);
        self.record_change(&resource, &key.2, "DELETED", gone.clone(), None);
        if resource.kind == "CustomResourceDefinition" {
            let (group, plural) = (
                object["spec"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                object["spec"]["names"]["plural"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            let instances: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.0 == group && k.1 == plural)
                .cloned()
                .collect();
            // Its objects go as if deleted one by one (watchers see them go,
            // and the garbage collector takes what they own); simplified:
            // their finalizers are not waited for.
            for instance in instances {
                if self.objects.contains_key(&instance) {
                    self.remove(&instance)?;
                }
            }
            self.registry.set_crd(&object, false);
        }
        if resource.kind == "Namespace" && resource.group.is_empty() {
            let contents: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.2 == key.3)
                .cloned()
                .collect();
            for content in contents {
                if self.objects.contains_key(&content) {
                    self.remove(&content)?;
                }
            }
        }
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.delete_dependents(&uid, "Background")?;
        Ok(State::present(&resource, &gone))
    }

    fn dependents(&self, owner_uid: &str) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn delete_dependents(&mut self, owner_uid: &str, policy: &str) -> Result<(), ApiError> {
        for key in self.dependents(owner_uid) {
            let Some(resource) = self.resource_of(&key) else {
                continue;
            };
            let namespace = (!key.2.is_empty()).then_some(key.2.as_str());
            if self.objects.contains_key(&key) {
                self.delete(&resource, namespace, &key.3.clone(), Some(policy))?;
            }
        }
        Ok(())
    }

    fn orphan_dependents(&mut self, owner_uid: &str) -> Result<(), ApiError> {
        for key in self.dependents(owner_uid) {
            let Some(resource) = self.resource_of(&key) else {
                continue;
            };
            let previous = self.objects[&key].clone();
            let mut orphan = (*previous).clone();
            let refs: Vec<Value> = orphan["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["uid"] != owner_uid)
                .cloned()
                .collect();
            orphan["metadata"]["ownerReferences"] = Value::Array(refs);
            self.store_marked(&resource, &key, orphan, previous)?;
        }
        Ok(())
    }
}
