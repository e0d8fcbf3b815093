//! ESO's UUID generator: one random (version 4) UUID, key `uuid`.

use crate::SecretValue;

/// A new random UUID in its hyphenated lower-case form.
pub fn generate_uuid() -> SecretValue {
    SecretValue::new(uuid::Uuid::new_v4().hyphenated().to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let a = generate_uuid();
        let b = generate_uuid();
        let text = a.expose_str().unwrap();
        let parsed = uuid::Uuid::parse_str(text).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(text.len(), 36);
        assert_ne!(a.expose_str(), b.expose_str());
    }
}
