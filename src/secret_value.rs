//! The one type that carries a secret's bytes through secretsync.
//!
//! Values never reach logs, events, status or error text. That holds by
//! construction: a [`SecretValue`] prints as a redaction, cannot be serialized, and
//! wipes its buffer when dropped. Only code that writes a Secret or a file (or
//! transforms a value on the way there) calls [`SecretValue::expose`].

use std::fmt;

use zeroize::Zeroizing;

/// A secret's bytes, redacted in `Debug`/`Display` and zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    /// The raw bytes. Call only where the value is written or transformed.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8 text, if it is text.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::new(value.into_bytes())
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::new(value.as_bytes())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let value = SecretValue::from("hunter2-very-secret");
        assert!(!format!("{value:?}").contains("hunter2"));
        assert!(!format!("{value}").contains("hunter2"));
        assert_eq!(value.expose(), b"hunter2-very-secret");
    }
}
