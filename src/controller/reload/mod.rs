//! Workload restarts: when the data of a Secret or ConfigMap (or the objects
//! of a mounted SecretProviderClass) that an opted-in Deployment, StatefulSet,
//! DaemonSet, Argo Rollout, CronJob or Job uses changes, the workload
//! restarts, once, at a bounded pace across the cluster.
//!
//! The mechanism is one pod-template annotation, [`HASH_ANNOTATION`], a hash
//! over the data of the objects the workload uses; writing a new value is what
//! rolls the pods (for a Rollout, `spec.restartAt` does, and the template is left
//! alone). The hash is also kept on the workload's own metadata, which does not
//! roll anything: that is where a workload seen for the first time gets its
//! starting hash, and the memory a restarted controller compares against.
//!
//! One file per concept: [`uses`] (which objects a pod template uses),
//! [`annotations`] (what a workload asks for, secretsync's and Reloader's
//! annotations), [`hash`] (the input hash), [`queue`] (debounce and rate),
//! [`tracker`] (what is known, what is due), [`objects`] (the compact record
//! of every watched object), [`workload`] (the kinds and their patches),
//! [`read`] (reading one object's data into a digest), [`watch`] (the
//! watches), [`alert`] (Reloader's webhook alerts) and [`driver`] (the loop
//! tying them together).

pub mod alert;
pub mod annotations;
mod driver;
pub mod hash;
pub mod objects;
pub mod queue;
mod read;
pub mod tracker;
pub mod uses;
mod watch;
pub mod workload;

use std::fmt;
use std::time::Duration;

pub use driver::run;

/// On the pod template: the hash the pods were rolled with. On the workload's
/// metadata: the hash of what secretsync last saw.
pub const HASH_ANNOTATION: &str = "secretsync.io/secret-hash";
/// On the workload's metadata: when secretsync last restarted it (RFC 3339).
pub const RESTARTED_AT_ANNOTATION: &str = "secretsync.io/restarted-at";
/// Field manager of restarts: the template annotation (or `spec.restartAt`),
/// the restart time and the hash on the workload's metadata.
pub const RESTART_MANAGER: &str = "secretsync-reload";
/// Field manager of the writes that only record a hash on the workload's
/// metadata (first sight, a changed selection): it never owns anything that
/// rolls pods, so such a write cannot roll them either.
pub const RECORD_MANAGER: &str = "secretsync-reload-record";

/// `--reload-debounce` and `--reload-rate`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Changes to one workload's inputs within this window make one restart.
    pub debounce: Duration,
    /// Workload patches per second across the cluster.
    pub rate: f64,
    /// Reloader's webhook alert after each restart.
    pub alerts: Option<alert::Alerts>,
}

/// The default of `--reload-rate`: five workload patches a second.
pub const DEFAULT_RATE: f64 = 5.0;

/// The kinds of input. A SecretProviderClass's "data" is the versions its
/// pods' mounts hold (from `SecretProviderClassPodStatus`), not the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjKind {
    Secret,
    ConfigMap,
    SecretProviderClass,
}

impl ObjKind {
    pub const ALL: [ObjKind; 3] = [
        ObjKind::Secret,
        ObjKind::ConfigMap,
        ObjKind::SecretProviderClass,
    ];
    /// The kinds always watched: decisions wait until both are listed. The
    /// SecretProviderClass watch starts only once its CRD is served.
    pub const CORE: [ObjKind; 2] = [ObjKind::Secret, ObjKind::ConfigMap];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjKind::Secret => "Secret",
            ObjKind::ConfigMap => "ConfigMap",
            ObjKind::SecretProviderClass => "SecretProviderClass",
        }
    }
}

/// One Secret or ConfigMap. Ordered by namespace first, so the objects of one
/// namespace and kind are a range.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub namespace: String,
    pub kind: ObjKind,
    pub name: String,
}

impl ObjKey {
    pub fn new(namespace: &str, kind: ObjKind, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Parses a Go duration (`5s`, `1m30s`, `250ms`) by the CRDs' rules (no
/// negatives, nothing past Go's maximum).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<crate::api::GoDuration>()
        .map(Duration::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_syntax_and_refuse_what_would_panic() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "",
            "5",
            "-5s",
            "1e400s",
            "1s-5s",
            "5 s",
            "999999999h",
            "nans",
            "5d",
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    #[test]
    fn objects_print_as_kind_namespace_and_name() {
        let key = ObjKey::new("team", ObjKind::ConfigMap, "app");
        assert_eq!(key.to_string(), "ConfigMap team/app");
    }
}
