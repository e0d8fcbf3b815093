//! Pods on one node that mount the same objects as the same AWS identity
//! share one fetch: a mount that finds the same fetch in flight waits for it,
//! and one that finds its result younger than the sharing window takes it.
//! A node starting 100 replicas of one Deployment then reads each object
//! once, not 100 times.
//!
//! The key is the identity the mount acts as ([`super::credentials::PodSession`]:
//! for IRSA the pod's namespace, ServiceAccount and role, for Pod Identity
//! its credentials, then any chained role) and everything that shapes the
//! files (regions, objects, path translation, default mode): a pod never gets
//! a value fetched by an identity other than its own, and every pod's token
//! has been proven before it may join. Failures are shared only by mounts
//! that waited for the same fetch; the next mount asks again. Values are kept
//! only for the window (in the zeroizing buffers the files hold).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::agent::files::FileSet;
use crate::agent::objects::FetchError;

/// At most this many shared results are kept; older ones are dropped first.
const LIMIT: usize = 1024;

type Outcome = (Instant, Result<Arc<FileSet>, FetchError>);

pub struct SharedFetches {
    /// How long a result may be given to later mounts; zero turns sharing
    /// off (every mount fetches for itself).
    window: Duration,
    fetches: Mutex<HashMap<[u8; 32], Arc<OnceCell<Outcome>>>>,
}

/// Whether a mount's files came from a fetch of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Fetched,
    Shared,
}

impl SharedFetches {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            fetches: Mutex::new(HashMap::new()),
        }
    }

    /// The key of a fetch: each part length-prefixed, so no two lists of
    /// parts make one key.
    pub fn key<'a>(parts: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
        let mut digest = Sha256::new();
        for part in parts {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        digest.finalize().into()
    }

    /// The files for `key`: a young result, the fetch in flight, or `fetch`.
    pub async fn files<F>(
        &self,
        key: [u8; 32],
        fetch: F,
    ) -> (Result<Arc<FileSet>, FetchError>, Source)
    where
        F: std::future::Future<Output = Result<FileSet, FetchError>>,
    {
        if self.window.is_zero() {
            return (fetch.await.map(Arc::new), Source::Fetched);
        }
        let cell = {
            let mut fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
            let window = self.window;
            let usable = |cell: &OnceCell<Outcome>| match cell.get() {
                None => true,
                Some((done, Ok(_))) => done.elapsed() < window,
                Some((_, Err(_))) => false,
            };
            fetches.retain(|_, cell| usable(cell));
            if fetches.len() >= LIMIT && !fetches.contains_key(&key) {
                fetches.clear();
            }
            fetches.entry(key).or_default().clone()
        };
        let mut ours = false;
        let (_, outcome) = cell
            .get_or_init(|| async {
                ours = true;
                (Instant::now(), fetch.await.map(Arc::new))
            })
            .await;
        let source = if ours {
            Source::Fetched
        } else {
            Source::Shared
        };
        (outcome.clone(), source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::objects::FailureKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_fetch_per_key_within_the_window() {
        let shared = SharedFetches::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(FileSet::new())
        };
        let a = SharedFetches::key(["identity a", "objects"]);
        let b = SharedFetches::key(["identity b", "objects"]);
        let (_, first) = shared.files(a, fetch()).await;
        let (_, second) = shared.files(a, fetch()).await;
        let (_, other) = shared.files(b, fetch()).await;
        assert_eq!(
            (first, second, other),
            (Source::Fetched, Source::Shared, Source::Fetched)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Parts cannot run into each other.
        assert_ne!(
            SharedFetches::key(["ab", "c"]),
            SharedFetches::key(["a", "bc"])
        );
    }

    #[tokio::test]
    async fn failures_are_not_kept_and_zero_shares_nothing() {
        let shared = SharedFetches::new(Duration::from_secs(60));
        let key = SharedFetches::key(["k"]);
        let failed = shared
            .files(key, async {
                Err(FetchError::new(vec!["down".into()], FailureKind::Transient))
            })
            .await;
        assert!(failed.0.is_err());
        let (again, source) = shared.files(key, async { Ok(FileSet::new()) }).await;
        assert!(again.is_ok());
        assert_eq!(source, Source::Fetched);
        let off = SharedFetches::new(Duration::ZERO);
        assert!(off.files(key, async { Ok(FileSet::new()) }).await.0.is_ok());
        assert_eq!(
            off.files(key, async { Ok(FileSet::new()) }).await.1,
            Source::Fetched
        );
    }
}
