//! The input hash: SHA-256 over the data of every object a workload counts,
//! in (kind, name) order. Each object is first reduced to a digest of its data
//! (keys in order, every key and value length-prefixed, so no two different
//! contents share bytes); only that digest is kept, never the data. Same data,
//! same hash, whatever the order of keys or objects, and whatever else about
//! the objects changes (labels, annotations, resourceVersion).

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::ObjKey;
use crate::SecretValue;

/// The digest of one object's data.
pub type Digest = [u8; 32];

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// One object's data, given as named maps (`data`, and `binaryData` for a
/// ConfigMap), each value as the API server sent it.
pub fn data_digest(sections: &[(&str, &BTreeMap<String, SecretValue>)]) -> Digest {
    let mut hasher = Sha256::new();
    for (section, map) in sections {
        field(&mut hasher, section.as_bytes());
        field(&mut hasher, &(map.len() as u64).to_be_bytes());
        for (key, value) in *map {
            field(&mut hasher, key.as_bytes());
            field(&mut hasher, value.expose());
        }
    }
    hasher.finalize().into()
}

/// The value of `secretsync.io/secret-hash` for these objects (hex).
pub fn input_hash(objects: &BTreeMap<ObjKey, Digest>) -> String {
    let mut hasher = Sha256::new();
    field(&mut hasher, b"secretsync.io/secret-hash v1");
    for (key, digest) in objects {
        field(&mut hasher, key.kind.as_str().as_bytes());
        field(&mut hasher, key.name.as_bytes());
        field(&mut hasher, digest);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::reload::ObjKind;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
            .collect()
    }

    fn secret(pairs: &[(&str, &str)]) -> Digest {
        data_digest(&[("data", &values(pairs))])
    }

    #[test]
    fn same_data_same_digest_in_any_key_order() {
        let a = secret(&[("user", "app"), ("password", "pw")]);
        let b = secret(&[("password", "pw"), ("user", "app")]);
        assert_eq!(a, b);
        assert_ne!(a, secret(&[("user", "app"), ("password", "pw2")]));
        assert_ne!(a, secret(&[("user", "app")]));
    }

    #[test]
    fn keys_and_values_cannot_trade_bytes() {
        assert_ne!(secret(&[("ab", "c")]), secret(&[("a", "bc")]));
        assert_ne!(secret(&[]), secret(&[("", "")]));
        let empty = BTreeMap::new();
        let one = values(&[("k", "v")]);
        assert_ne!(
            data_digest(&[("data", &one), ("binaryData", &empty)]),
            data_digest(&[("data", &empty), ("binaryData", &one)])
        );
    }

    #[test]
    fn the_input_hash_covers_kind_name_and_data_and_nothing_else() {
        let key = |kind, name: &str| ObjKey::new("ns", kind, name);
        let d1 = secret(&[("k", "1")]);
        let d2 = secret(&[("k", "2")]);
        let set = |entries: &[(ObjKey, Digest)]| entries.iter().cloned().collect();
        let base = input_hash(&set(&[
            (key(ObjKind::Secret, "a"), d1),
            (key(ObjKind::ConfigMap, "b"), d2),
        ]));
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            input_hash(&set(&[
                (key(ObjKind::ConfigMap, "b"), d2),
                (key(ObjKind::Secret, "a"), d1),
            ]))
        );
        for other in [
            set(&[
                (key(ObjKind::Secret, "a"), d2),
                (key(ObjKind::ConfigMap, "b"), d2),
            ]),
            set(&[
                (key(ObjKind::ConfigMap, "a"), d1),
                (key(ObjKind::ConfigMap, "b"), d2),
            ]),
            set(&[(key(ObjKind::Secret, "a"), d1)]),
        ] {
            assert_ne!(base, input_hash(&other));
        }
        assert_ne!(input_hash(&BTreeMap::new()), base);
    }
}
