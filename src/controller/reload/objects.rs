//! What is kept of every Secret, ConfigMap and SecretProviderClass in the
//! watched namespaces, most of which no workload uses: a compact record, its
//! name once (namespaces interned), a 64-bit digest of its resourceVersion and
//! Reloader's two flags. Nothing else (no labels, no annotations, no owned
//! strings per field): with 40,000 unrelated objects this is what `--reload`
//! costs (README, "Workload restarts", Cost).
//!
//! The resourceVersion is only ever compared for equality ("is what was read
//! still current?"), so a digest of it does; two versions of one object
//! sharing a 64-bit digest would only delay a read until its next change.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use super::{ObjKey, ObjKind};

/// The record of one object: 16 bytes beside its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// [`version`] of its resourceVersion.
    pub version: u64,
    /// The relist it was last seen in (see [`Objects::begin_relist`]).
    epoch: u32,
    /// `reloader.stakater.com/ignore: "true"`
    pub ignore: bool,
    /// `reloader.stakater.com/match: "true"`
    pub match_: bool,
}

impl Record {
    pub fn new(resource_version: &str, ignore: bool, match_: bool) -> Self {
        Self {
            version: version(resource_version),
            epoch: 0,
            ignore,
            match_,
        }
    }
}

/// A resourceVersion reduced to 64 bits (SipHash with fixed keys: the same in
/// every process, which nothing relies on).
pub fn version(resource_version: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    resource_version.hash(&mut hasher);
    hasher.finish()
}

#[derive(Default)]
pub struct Objects {
    namespace_ids: HashMap<Box<str>, u32>,
    namespaces: Vec<Box<str>>,
    /// Per (namespace, kind), by name: one kind of one namespace is a map of
    /// its own, so a name pattern looks only there.
    by_slot: HashMap<(u32, ObjKind), BTreeMap<Box<str>, Record>>,
    epochs: HashMap<ObjKind, u32>,
    len: usize,
}

impl Objects {
    fn namespace_id(&self, namespace: &str) -> Option<u32> {
        self.namespace_ids.get(namespace).copied()
    }

    fn intern(&mut self, namespace: &str) -> u32 {
        if let Some(id) = self.namespace_id(namespace) {
            return id;
        }
        let id = u32::try_from(self.namespaces.len()).unwrap_or(u32::MAX);
        self.namespaces.push(namespace.into());
        self.namespace_ids.insert(namespace.into(), id);
        id
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &ObjKey) -> Option<Record> {
        let id = self.namespace_id(&key.namespace)?;
        self.by_slot
            .get(&(id, key.kind))?
            .get(key.name.as_str())
            .copied()
    }

    pub fn contains(&self, key: &ObjKey) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns what was there. The record is marked seen
    /// in the current relist of its kind.
    pub fn insert(&mut self, key: &ObjKey, mut record: Record) -> Option<Record> {
        record.epoch = self.epochs.get(&key.kind).copied().unwrap_or(0);
        let id = self.intern(&key.namespace);
        let slot = self.by_slot.entry((id, key.kind)).or_default();
        if let Some(existing) = slot.get_mut(key.name.as_str()) {
            return Some(std::mem::replace(existing, record));
        }
        slot.insert(key.name.as_str().into(), record);
        self.len += 1;
        None
    }

    pub fn remove(&mut self, key: &ObjKey) -> Option<Record> {
        let id = self.namespace_id(&key.namespace)?;
        let slot = self.by_slot.get_mut(&(id, key.kind))?;
        let removed = slot.remove(key.name.as_str())?;
        if slot.is_empty() {
            self.by_slot.remove(&(id, key.kind));
        }
        self.len -= 1;
        Some(removed)
    }

    /// The names of one kind in one namespace, with their records.
    pub fn names<'a>(
        &'a self,
        namespace: &str,
        kind: ObjKind,
    ) -> impl Iterator<Item = (&'a str, Record)> + 'a {
        self.namespace_id(namespace)
            .and_then(|id| self.by_slot.get(&(id, kind)))
            .into_iter()
            .flat_map(|slot| slot.iter().map(|(name, record)| (&**name, *record)))
    }

    /// A relist of `kind` starts: what it does not list again is gone.
    pub fn begin_relist(&mut self, kind: ObjKind) {
        let epoch = self.epochs.entry(kind).or_insert(0);
        *epoch = epoch.wrapping_add(1);
    }

    /// The relist of `kind` is over: the objects it did not list.
    pub fn unseen(&self, kind: ObjKind) -> Vec<ObjKey> {
        let epoch = self.epochs.get(&kind).copied().unwrap_or(0);
        let mut gone = Vec::new();
        for (&(id, slot_kind), slot) in &self.by_slot {
            if slot_kind != kind {
                continue;
            }
            let namespace = self.namespaces.get(id as usize).map_or("", |n| &**n);
            for (name, record) in slot {
                if record.epoch != epoch {
                    gone.push(ObjKey::new(namespace, kind, name));
                }
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_by_namespace_kind_and_name() {
        let mut objects = Objects::default();
        let a = ObjKey::new("team", ObjKind::Secret, "a");
        let b = ObjKey::new("team", ObjKind::Secret, "b");
        let c = ObjKey::new("team", ObjKind::ConfigMap, "a");
        let d = ObjKey::new("other", ObjKind::Secret, "a");
        for key in [&a, &b, &c, &d] {
            assert_eq!(objects.insert(key, Record::new("1", false, false)), None);
        }
        assert_eq!(objects.len(), 4);
        let old = objects.insert(&a, Record::new("2", true, false)).unwrap();
        assert_eq!(old.version, version("1"));
        let now = objects.get(&a).unwrap();
        assert!(now.ignore && now.version == version("2") && now.version != old.version);
        let names: Vec<&str> = objects
            .names("team", ObjKind::Secret)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(objects.names("nowhere", ObjKind::Secret).count(), 0);
        assert!(objects.remove(&b).is_some() && objects.remove(&b).is_none());
        assert!(!objects.contains(&b) && objects.contains(&c));
        assert_eq!(objects.len(), 3);
    }

    #[test]
    fn a_relist_finds_what_it_did_not_list_again() {
        let mut objects = Objects::default();
        let keys: Vec<ObjKey> = ["a", "b", "c"]
            .iter()
            .map(|n| ObjKey::new("ns", ObjKind::Secret, n))
            .collect();
        for key in &keys {
            objects.insert(key, Record::new("1", false, false));
        }
        objects.insert(
            &ObjKey::new("ns", ObjKind::ConfigMap, "x"),
            Record::new("1", false, false),
        );
        objects.begin_relist(ObjKind::Secret);
        objects.insert(&keys[1], Record::new("1", false, false));
        let mut gone = objects.unseen(ObjKind::Secret);
        gone.sort();
        assert_eq!(gone, [keys[0].clone(), keys[2].clone()]);
        assert!(objects.unseen(ObjKind::ConfigMap).is_empty());
    }
}
