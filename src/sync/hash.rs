//! The content hash of a Secret: same content, same hash; any change in type,
//! immutability, labels, annotations or data, a new one. It lets the controller
//! skip writes and workloads roll only on real change.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::SecretValue;

pub(crate) fn content_hash(
    type_: &str,
    immutable: bool,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    data: &BTreeMap<String, SecretValue>,
) -> String {
    let mut hasher = Sha256::new();
    // Every field is length-prefixed, so no two different contents share bytes.
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(type_.as_bytes());
    field(&[immutable as u8]);
    for map in [labels, annotations] {
        field(&(map.len() as u64).to_be_bytes());
        for (k, v) in map {
            field(k.as_bytes());
            field(v.as_bytes());
        }
    }
    field(&(data.len() as u64).to_be_bytes());
    for (k, v) in data {
        field(k.as_bytes());
        field(v.expose());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(
        data: &[(&str, &str)],
        labels: &[(&str, &str)],
        type_: &str,
        immutable: bool,
    ) -> String {
        let data = data
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
            .collect();
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        content_hash(type_, immutable, &labels, &BTreeMap::new(), &data)
    }

    #[test]
    fn same_input_same_hash_any_change_new_hash() {
        let base = hash_of(&[("a", "1"), ("b", "2")], &[("l", "x")], "Opaque", false);
        assert_eq!(
            base,
            hash_of(&[("b", "2"), ("a", "1")], &[("l", "x")], "Opaque", false)
        );
        let changed = [
            hash_of(&[("a", "1"), ("b", "3")], &[("l", "x")], "Opaque", false),
            hash_of(&[("a", "1"), ("c", "2")], &[("l", "x")], "Opaque", false),
            hash_of(&[("a", "1")], &[("l", "x")], "Opaque", false),
            hash_of(&[("a", "1"), ("b", "2")], &[("l", "y")], "Opaque", false),
            hash_of(
                &[("a", "1"), ("b", "2")],
                &[("l", "x")],
                "kubernetes.io/tls",
                false,
            ),
            hash_of(&[("a", "1"), ("b", "2")], &[("l", "x")], "Opaque", true),
            // Moving bytes between key and value changes the hash too.
            hash_of(&[("a1", ""), ("b", "2")], &[("l", "x")], "Opaque", false),
        ];
        for other in changed {
            assert_ne!(base, other);
        }
        assert_eq!(base.len(), 64);
    }
}
