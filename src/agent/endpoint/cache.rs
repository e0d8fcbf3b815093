//! The endpoint's cache: at most `capacity` answers, each fresh for a TTL
//! from when it was last stored; past it, an answer is handed out as
//! expired (to be checked or served stale), never dropped. When full, the
//! entry stored longest ago goes first, as in the AWS agent's cache (a
//! checked or re-served entry counts as stored anew).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the cache holds for a key.
#[derive(Debug)]
pub enum Lookup<V> {
    Fresh(Arc<V>),
    Expired(Arc<V>),
    Missing,
}

#[derive(Debug)]
struct Entry<V> {
    value: Arc<V>,
    stored: Instant,
    order: u64,
}

#[derive(Debug)]
pub struct Cache<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Keys by when they were stored, oldest first.
    by_age: BTreeMap<u64, K>,
    next: u64,
    capacity: usize,
}

impl<K: Clone + Eq + Hash, V> Cache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    /// The entry for `key`: fresh while at most `ttl` old at `now`.
    pub fn get(&self, key: &K, ttl: Duration, now: Instant) -> Lookup<V> {
        match self.entries.get(key) {
            Some(entry) if now.saturating_duration_since(entry.stored) > ttl => {
                Lookup::Expired(entry.value.clone())
            }
            Some(entry) => Lookup::Fresh(entry.value.clone()),
            None => Lookup::Missing,
        }
    }

    /// Stores `value` for `key` as of `now`, evicting the oldest entry when full.
    pub fn put(&mut self, key: K, value: Arc<V>, now: Instant) {
        let order = self.next;
        self.next = self.next.wrapping_add(1);
        if let Some(old) = self.entries.insert(
            key.clone(),
            Entry {
                value,
                stored: now,
                order,
            },
        ) {
            self.by_age.remove(&old.order);
        }
        self.by_age.insert(order, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(lookup: Lookup<u32>) -> (&'static str, Option<u32>) {
        match lookup {
            Lookup::Fresh(v) => ("fresh", Some(*v)),
            Lookup::Expired(v) => ("expired", Some(*v)),
            Lookup::Missing => ("missing", None),
        }
    }

    #[test]
    fn an_entry_is_fresh_for_its_ttl_then_expired_but_kept() {
        let mut cache = Cache::new(10);
        let start = Instant::now();
        let ttl = Duration::from_secs(300);
        assert_eq!(value(cache.get(&"a", ttl, start)), ("missing", None));
        cache.put("a", Arc::new(1), start);
        assert_eq!(value(cache.get(&"a", ttl, start + ttl)), ("fresh", Some(1)));
        let later = start + ttl + Duration::from_millis(1);
        assert_eq!(value(cache.get(&"a", ttl, later)), ("expired", Some(1)));
        // Stored again (checked, or served stale): fresh for another TTL.
        cache.put("a", Arc::new(1), later);
        assert_eq!(value(cache.get(&"a", ttl, later + ttl)), ("fresh", Some(1)));
        // A TTL of zero: every later look finds it expired.
        assert_eq!(
            value(cache.get(&"a", Duration::ZERO, later + Duration::from_nanos(1))),
            ("expired", Some(1))
        );
    }

    #[test]
    fn a_full_cache_drops_what_was_stored_longest_ago() {
        let mut cache = Cache::new(3);
        let now = Instant::now();
        let ttl = Duration::from_secs(1);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            cache.put(key, Arc::new(i as u32), now);
        }
        // "a" stored again: now "b" is the oldest.
        cache.put("a", Arc::new(9), now);
        cache.put("d", Arc::new(3), now);
        assert_eq!(cache.len(), 3);
        assert_eq!(value(cache.get(&"b", ttl, now)), ("missing", None));
        assert_eq!(value(cache.get(&"a", ttl, now)), ("fresh", Some(9)));
        assert_eq!(value(cache.get(&"c", ttl, now)), ("fresh", Some(2)));
        assert_eq!(value(cache.get(&"d", ttl, now)), ("fresh", Some(3)));
        let mut one = Cache::new(0);
        one.put("x", Arc::new(1), now);
        one.put("y", Arc::new(2), now);
        assert_eq!(one.len(), 1, "a capacity below one is one");
    }
}
