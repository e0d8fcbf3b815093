//! Secrets sealed with age for Git: every value is its own age envelope, to any
//! number of recipients (the cluster key, team members, an offline backup), and
//! carries the scope it may be decrypted into, checked on decryption.

pub mod bitnami;
pub mod envelope;
pub mod keys;
pub mod manifest;

pub use envelope::{Binding, UnsealError, seal, unseal};
pub use keys::{KeyError, generate_identity, parse_identities, parse_recipient, parse_recipients};
