//! Objects and their metadata semantics: `uid`, a monotonic `resourceVersion`
//! shared by every object (as etcd's revision), `generation` bumped on spec
//! change only, `creationTimestamp`, `managedFields`, the status subresource,
//! optimistic concurrency, and a bounded history of changes for watches.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::{Registry, ResourceType, status};
use super::{events, fields, schema, typed};

/// group, plural, namespace (`""` for cluster-scoped), name.
pub type Key = (String, String, String, String);

/// Every stored object: found by key through a hash map (reads and writes
/// of one object, the busiest paths: in a tree of 300,000 keys of four
/// strings, comparing them took 13% of the server's CPU), and kept in key
/// order in a set beside it for lists and watches' initial events (only a
/// create or a removal changes the order).
#[derive(Default)]
pub struct Objects {
    by_key: HashMap<Key, Arc<Value>>,
    order: BTreeSet<Key>,
}

impl Objects {
    pub fn get(&self, key: &Key) -> Option<&Arc<Value>> {
        self.by_key.get(key)
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        self.by_key.contains_key(key)
    }

    /// Stores `object` under `key`; the key is copied only for a new object.
    pub fn insert(&mut self, key: &Key, object: Arc<Value>) {
        match self.by_key.get_mut(key) {
            Some(slot) => *slot = object,
            None => {
                self.by_key.insert(key.clone(), object);
                self.order.insert(key.clone());
            }
        }
    }

    pub fn remove(&mut self, key: &Key) -> Option<Arc<Value>> {
        let object = self.by_key.remove(key)?;
        self.order.remove(key);
        Some(object)
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.order.iter()
    }

    /// Every object, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Arc<Value>)> + '_ {
        self.order.iter().map(|key| (key, &self.by_key[key]))
    }

    /// The objects from `from` on, in key order.
    pub fn range(
        &self,
        from: std::ops::Bound<Key>,
    ) -> impl Iterator<Item = (&Key, &Arc<Value>)> + '_ {
        self.order
            .range((from, std::ops::Bound::Unbounded))
            .map(|key| (key, &self.by_key[key]))
    }
}

impl std::ops::Index<&Key> for Objects {
    type Output = Arc<Value>;

    fn index(&self, key: &Key) -> &Arc<Value> {
        &self.by_key[key]
    }
}

/// One change, as watches see it.
#[derive(Debug)]
pub struct Change {
    pub resource_version: u64,
    pub resource: (String, String),
    pub namespace: String,
    pub type_: &'static str,
    pub object: Arc<Value>,
    /// The object before a modification, to tell selector transitions.
    pub previous: Option<Arc<Value>>,
}

/// A change as sent to the watches now: with the object's JSON as stored,
/// and its metadata as a `PartialObjectMetadata`, each encoded once for every
/// watch that sends it (every change goes to every watch of its kind: the
/// controller's and the bench's). Dropped, encodings and all, once every
/// watch has taken it; the history keeps only the change.
#[derive(Debug)]
pub struct Broadcast {
    pub change: Arc<Change>,
    pub encoded: std::sync::OnceLock<axum::body::Bytes>,
    pub encoded_metadata: std::sync::OnceLock<axum::body::Bytes>,
}

/// An error as the real server reports it: an HTTP status and a `Status` body.
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            body: status(code, reason, &message.into(), None),
        }
    }

    pub fn not_found(resource: &ResourceType, name: &str) -> Self {
        let mut error = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", plural_group(resource)),
        );
        error.body["details"] =
            json!({"name": name, "group": resource.group, "kind": resource.plural});
        error
    }

    pub fn invalid(resource: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut error = Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {message}", resource.kind),
        );
        error.body["details"] = json!({"name": name, "group": resource.group, "kind": resource.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message}]});
        error
    }
}

fn plural_group(resource: &ResourceType) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// The time in whole seconds, as the server writes it: formatted once a
/// second per thread (every write stamps one or two fields with it).
pub fn now() -> String {
    thread_local! {
        static FORMATTED: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let now = jiff::Timestamp::now();
    FORMATTED.with(|formatted| {
        let mut formatted = formatted.borrow_mut();
        if formatted.0 != now.as_second() {
            *formatted = (
                now.as_second(),
                now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
        }
        formatted.1.clone()
    })
}

pub struct State {
    pub registry: Registry,
    /// Shared with the history of changes, which keeps what was stored.
    pub objects: Objects,
    pub resource_version: u64,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Watches from a resourceVersion older than this get 410 Gone.
    pub compacted: u64,
    /// Per resource (`storage_key`), the watches' channel: a change wakes
    /// only the watches of its resource, not every watch of the server.
    changes: HashMap<(String, String), broadcast::Sender<Arc<Broadcast>>>,
    next_uid: u64,
}

/// Options of a write, from the query string.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub manager: String,
    /// `fieldValidation=Strict`: unknown fields are an error, not pruned.
    pub strict: bool,
    pub subresource: Option<String>,
    /// `dryRun=All`: every check runs, nothing is stored.
    pub dry_run: bool,
}

impl State {
    pub fn new(history_limit: usize) -> Self {
        let mut state = Self {
            registry: Registry::default(),
            objects: Objects::default(),
            resource_version: 0,
            history: VecDeque::new(),
            history_limit,
            compacted: 0,
            changes: HashMap::new(),
            next_uid: 0,
        };
        let namespaces = state.registry.find("", "v1", "namespaces").unwrap().clone();
        for name in ["default", "kube-system", "kube-public"] {
            let namespace = json!({"metadata": {"name": name}});
            let options = WriteOptions {
                manager: "kube-apiserver".into(),
                ..Default::default()
            };
            state
                .create(&namespaces, None, namespace, &options, None)
                .expect("bootstrap namespaces");
        }
        state
    }

    pub fn key(resource: &ResourceType, namespace: Option<&str>, name: &str) -> Key {
        let (group, plural) = resource.storage_key();
        (
            group,
            plural,
            namespace.unwrap_or_default().into(),
            name.into(),
        )
    }

    /// The object as served at `resource`'s version (no conversion but the
    /// Events': the stored fields are served under the asked apiVersion).
    /// Shared, not copied, when it is served as stored: every write answers
    /// with its object, so this is on the busiest path.
    pub fn present(resource: &ResourceType, object: &Arc<Value>) -> Arc<Value> {
        let as_stored = !events::is_events_api(resource)
            && object["apiVersion"]
                .as_str()
                .is_some_and(|v| resource.has_api_version(v))
            && object["kind"].as_str() == Some(resource.kind.as_str());
        if as_stored {
            return object.clone();
        }
        Arc::new(Self::converted(resource, object))
    }

    /// A copy of the object under `resource`'s apiVersion and kind.
    fn converted(resource: &ResourceType, object: &Value) -> Value {
        let mut object = if events::is_events_api(resource) {
            events::to_events_api(object)
        } else {
            object.clone()
        };
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        object
    }

    pub fn get(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(&Self::key(resource, namespace, name))
            .map(|o| Self::present(resource, o))
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// The objects of a resource, in key order, as served at `resource`'s
    /// version: shared, not copied, unless converted (see [`State::present`]).
    /// `after` (namespace, name) starts after that object, as a list's next
    /// page does.
    pub fn selectable<'a>(
        &'a self,
        resource: &'a ResourceType,
        namespace: Option<&'a str>,
        after: Option<(String, String)>,
    ) -> impl Iterator<Item = Arc<Value>> + 'a {
        self.stored(resource, namespace, after)
            .map(move |o| Self::present(resource, o))
    }

    /// The stored objects of a resource, in key order, uncopied: only the
    /// resource's own key range is walked, from `after` on (a list of 10,000
    /// objects in pages of 500 would otherwise walk them all for every page).
    pub fn stored<'a>(
        &'a self,
        resource: &ResourceType,
        namespace: Option<&'a str>,
        after: Option<(String, String)>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        use std::ops::Bound;
        let (group, plural) = resource.storage_key();
        let from = match after {
            Some((ns, name)) => Bound::Excluded((group.clone(), plural.clone(), ns, name)),
            None => Bound::Included((
                group.clone(),
                plural.clone(),
                namespace.unwrap_or_default().to_string(),
                String::new(),
            )),
        };
        self.objects
            .range(from)
            .take_while(move |((g, p, ns, _), _)| {
                *g == group && *p == plural && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, o)| o)
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("5ec2e75c-0000-4000-8000-{:012x}", self.next_uid)
    }

    /// The changes of `resource` from now on.
    pub fn subscribe(&mut self, resource: &ResourceType) -> broadcast::Receiver<Arc<Broadcast>> {
        self.changes
            .entry(resource.storage_key())
            .or_insert_with(|| broadcast::channel(16_384).0)
            .subscribe()
    }

    pub fn history_since(&self, resource_version: u64) -> Vec<Arc<Change>> {
        self.history
            .iter()
            .filter(|c| c.resource_version > resource_version)
            .cloned()
            .collect()
    }

    pub(super) fn record_change(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        type_: &'static str,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let change = Arc::new(Change {
            resource_version: self.resource_version,
            resource: resource.storage_key(),
            namespace: namespace.into(),
            type_,
            object,
            previous,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.resource_version;
            }
        }
        if let Some(changes) = self.changes.get(&change.resource) {
            let _ = changes.send(Arc::new(Broadcast {
                change,
                encoded: Default::default(),
                encoded_metadata: Default::default(),
            }));
        }
    }

    fn check_namespace(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
    ) -> Result<(), ApiError> {
        if let (true, Some(namespace)) = (resource.namespaced, namespace) {
            let key = (
                String::new(),
                "namespaces".to_string(),
                String::new(),
                namespace.to_string(),
            );
            match self.objects.get(&key) {
                None => {
                    let namespaces = self.registry.find("", "v1", "namespaces").unwrap();
                    return Err(ApiError::not_found(namespaces, namespace));
                }
                Some(ns) if ns["metadata"].get("deletionTimestamp").is_some() => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "unable to create new content in namespace {namespace} because it is being terminated"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Secret `stringData` is folded into `data`, as the real server does.
    fn normalize(resource: &ResourceType, object: &mut Value) {
        if resource.group.is_empty()
            && resource.plural == "secrets"
            && let Some(Value::Object(string_data)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            let data = object["data"].as_object().cloned().unwrap_or_default();
            let mut data = data;
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
            object["data"] = Value::Object(data);
        }
    }

    /// Custom resources: pruning or strict rejection of unknown fields,
    /// defaults; built-in kinds: their types' fields (see `typed`).
    fn apply_schema(
        resource: &ResourceType,
        object: &mut Value,
        strict: bool,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(schema) = &resource.schema else {
            return typed::check(resource, object, strict).map_err(|e| {
                ApiError::new(400, "BadRequest", format!("{} {name}: {e}", resource.kind))
            });
        };
        let mut unknown = Vec::new();
        schema::prune_and_default(object, schema, "", &mut unknown);
        if strict && !unknown.is_empty() {
            let fields: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{}\"", &f[1..]))
                .collect();
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!("{} in {} {name}", fields.join(", "), resource.kind),
            ));
        }
        Ok(())
    }

    pub fn create(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        mut object: Value,
        options: &WriteOptions,
        managers: Option<Vec<fields::Manager>>,
    ) -> Result<Arc<Value>, ApiError> {
        if !object.is_object() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the body must be an object",
            ));
        }
        let mut name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let Some(prefix) = object["metadata"]["generateName"].as_str() else {
                return Err(ApiError::invalid(
                    resource,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            };
            name = format!("{prefix}{:05x}", self.next_uid + 1);
        }
        self.check_namespace(resource, namespace)?;
        let key = Self::key(resource, namespace, &name);
        if self.objects.contains_key(&key) {
            let mut error = ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", plural_group(resource)),
            );
            error.body["details"] =
                json!({"name": name, "group": resource.group, "kind": resource.plural});
            return Err(error);
        }
        Self::apply_schema(resource, &mut object, options.strict, &name)?;
        Self::normalize(resource, &mut object);
        if events::is_events_api(resource) {
            object = events::to_core(&object);
        }
        if resource.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        let uid = self.uid();
        let metadata = object["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        metadata.insert("name".into(), json!(name));
        if let Some(namespace) = namespace {
            metadata.insert("namespace".into(), json!(namespace));
        }
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("creationTimestamp".into(), json!(now()));
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
        if resource.status {
            metadata.insert("generation".into(), json!(1));
        }
        if resource.kind == "Namespace" {
            metadata
                .entry("labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap()
                .insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        // The creator owns what it wrote; an applier, exactly what it applied.
        let managers = managers.unwrap_or_else(|| {
            let mut managers = Vec::new();
            fields::record_update(None, &object, &options.manager, &mut managers);
            managers
        });
        fields::set_managers(&mut object, &managers, &resource.api_version(), &now());
        self.commit(resource, key, object, None, options.dry_run)
    }

    /// Stores `object` under `key` with a new resourceVersion and tells
    /// watchers; a dry run only shows what would be stored.
    fn commit(
        &mut self,
        resource: &ResourceType,
        key: Key,
        mut object: Value,
        previous: Option<Arc<Value>>,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        if dry_run {
            match previous
                .as_ref()
                .map(|p| p["metadata"]["resourceVersion"].clone())
            {
                Some(version) => object["metadata"]["resourceVersion"] = version,
                None => {
                    if let Some(m) = object["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                }
            }
            return Ok(Self::present(resource, &Arc::new(object)));
        }
        if resource.kind == "CustomResourceDefinition" {
            // Simplified: names are accepted and the CRD established at once.
            let storage_version = object["spec"]["versions"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["storage"] == true))
                .map(|v| v["name"].clone())
                .unwrap_or(Value::Null);
            object["status"] = json!({
                "acceptedNames": object["spec"]["names"],
                "storedVersions": [storage_version],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()},
                ],
            });
        }
        let object = self.store(resource, &key, object, previous);
        if resource.kind == "CustomResourceDefinition" {
            self.registry.set_crd(&object, true);
        }
        Ok(Self::present(resource, &object))
    }

    /// The core of every write that is kept: a new resourceVersion, the
    /// object stored, and the change recorded for watches (ADDED, or MODIFIED
    /// when there was a `previous` version).
    pub(super) fn store(
        &mut self,
        resource: &ResourceType,
        key: &Key,
        mut object: Value,
        previous: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let type_ = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let object = Arc::new(object);
        self.objects.insert(key, object.clone());
        self.record_change(resource, &key.2, type_, object.clone(), previous);
        object
    }

    /// A full replacement (PUT), or the result of a patch: the write path every
    /// update takes. `expected_version` is the caller's resourceVersion, if any.
    pub fn update(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
        options: &WriteOptions,
        managers: Option<Vec<fields::Manager>>,
    ) -> Result<Arc<Value>, ApiError> {
        let key = Self::key(resource, namespace, name);
        let existing = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        if let Some(expected) = object["metadata"]["resourceVersion"].as_str()
            && !expected.is_empty()
            && Some(expected) != existing["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    plural_group(resource)
                ),
            ));
        }
        if object["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        Self::apply_schema(resource, &mut object, options.strict, name)?;
        Self::normalize(resource, &mut object);
        if events::is_events_api(resource) {
            object = events::to_core(&object);
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);

        // The status subresource changes status only; the object, all but status.
        let mut new = if options.subresource.as_deref() == Some("status") {
            let mut new = (*existing).clone();
            new["status"] = object
                .as_object_mut()
                .and_then(|fields| fields.remove("status"))
                .unwrap_or(Value::Null);
            if new["status"].is_null() {
                new.as_object_mut().unwrap().remove("status");
            }
            new
        } else {
            if resource.status {
                match existing.get("status") {
                    Some(status) => object["status"] = status.clone(),
                    None => {
                        object.as_object_mut().unwrap().remove("status");
                    }
                }
            }
            object
        };
        // Server-owned metadata stays as the server set it.
        let metadata = new["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata must be an object"))?;
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match existing["metadata"].get(field) {
                Some(value) => metadata.insert(field.into(), value.clone()),
                None => metadata.remove(field),
            };
        }
        if existing["immutable"] == json!(true) {
            for field in ["data", "binaryData", "immutable"] {
                if existing.get(field) != new.get(field) {
                    return Err(ApiError::invalid(
                        resource,
                        name,
                        format!("{field}: Forbidden: field is immutable when `immutable` is set"),
                    ));
                }
            }
        }
        let spec_changed = |a: &Value, b: &Value| {
            !equal_except(a, b, &["metadata", "status", "apiVersion", "kind"])
        };
        if resource.status && spec_changed(&existing, &new) {
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        let mut managers = managers.unwrap_or_else(|| {
            let mut managers = fields::managers(&existing);
            fields::record_update(Some(&existing), &new, &options.manager, &mut managers);
            managers
        });
        managers.retain(|m| !m.fields.is_empty());
        fields::set_managers(&mut new, &managers, &resource.api_version(), &now());

        let same = |a: &Value, b: &Value| {
            equal_except(a, b, &["metadata"])
                && equal_except(
                    &a["metadata"],
                    &b["metadata"],
                    &["resourceVersion", "managedFields"],
                )
                && fields::manager_count(a) == fields::manager_count(b)
        };
        if same(&existing, &new) {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(Self::present(resource, &existing));
        }
        let finished = new["metadata"].get("deletionTimestamp").is_some()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        let stored = self.commit(resource, key.clone(), new, Some(existing), options.dry_run)?;
        if finished && !options.dry_run {
            self.remove(&key)?;
        }
        Ok(stored)
    }
}

/// Whether two objects are equal but for the top-level fields `ignored`
/// (compared in place: copies of whole objects cost the bench more than the
/// writes it measures).
fn equal_except(a: &Value, b: &Value, ignored: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let kept = |map: &'_ serde_json::Map<String, Value>| {
                map.iter()
                    .filter(|(field, _)| !ignored.contains(&field.as_str()))
                    .count()
            };
            kept(a) == kept(b)
                && a.iter()
                    .filter(|(field, _)| !ignored.contains(&field.as_str()))
                    .all(|(field, value)| b.get(field) == Some(value))
        }
        _ => a == b,
    }
}
