//! The provider's other half: writing a Kubernetes Secret's values to a
//! store (PushSecret). A push reads what is there first (its version, tags
//! and, when it must compare or merge, its value), and writes only when the
//! value or the tags differ, never over a remote secret it does not own.

use std::collections::BTreeMap;

use crate::SecretValue;
use crate::api::PushMetadata;

/// What one remote secret holds now, as far as a push needs to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteSecret {
    /// Changes whenever the value does (Secrets Manager: the AWSCURRENT
    /// version id; Parameter Store: the version number).
    pub version: String,
    pub tags: BTreeMap<String, String>,
    /// The current value, when it was asked for.
    pub value: Option<SecretValue>,
    pub description: Option<String>,
}

/// Which parts of a remote secret a read fetches besides its version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadParts {
    pub value: bool,
    pub tags: bool,
}

/// One value to write under one remote key (before the store's prefix).
#[derive(Clone, Debug)]
pub struct PushWrite<'a> {
    pub key: &'a str,
    pub value: &'a SecretValue,
    pub metadata: &'a PushMetadata,
    /// Every tag the remote secret must carry: the entry's own and the
    /// ownership tags (`managed-by`, `secretsync.io/owner`).
    pub tags: &'a BTreeMap<String, String>,
    /// The resource policy to put (Secrets Manager), already read from its
    /// ConfigMap or Secret.
    pub resource_policy: Option<&'a str>,
    /// What the key holds now, as read with tags; `None`: it does not exist.
    pub current: Option<&'a RemoteSecret>,
}
