//! Fetching for many ExternalSecrets at once: requests for one store that
//! arrive within a short window go to the provider as one de-duplicated batch,
//! and every answer is kept, so a Secret edited or deleted by hand is rebuilt
//! from values still fresh, without calling the provider.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::provider::{FetchResults, Fetched, ProviderError, RemoteRequest, StoreIdentity};

/// A batch goes out once no request has joined it for this long...
pub const BATCH_QUIET: Duration = Duration::from_millis(100);
/// ...or once its first request has waited this long, whichever is first.
pub const BATCH_MAX_WAIT: Duration = Duration::from_secs(2);

/// An answer and when it was fetched.
type CachedAnswer = (Instant, Result<Fetched, ProviderError>);

type Waiter = (BTreeSet<RemoteRequest>, oneshot::Sender<FetchResults>);

#[derive(Default)]
pub struct Fetcher {
    pending: Mutex<HashMap<StoreIdentity, Vec<Waiter>>>,
    cache: Mutex<HashMap<(StoreIdentity, RemoteRequest), CachedAnswer>>,
}

impl Fetcher {
    /// Fetches `requests` from the store, batched with whatever else arrives
    /// for it while requests keep coming (see [`BATCH_QUIET`], [`BATCH_MAX_WAIT`]):
    /// a fleet falling due together makes one call, not one per ExternalSecret.
    pub async fn fetch(
        self: &Arc<Self>,
        store: &StoreIdentity,
        provider: Arc<crate::provider::Cached>,
        requests: BTreeSet<RemoteRequest>,
    ) -> FetchResults {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut pending = self.pending.lock().unwrap();
            let waiters = pending.entry(store.clone()).or_default();
            waiters.push((requests, tx));
            waiters.len() == 1
        };
        if first {
            let fetcher = self.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut joined = 0;
                loop {
                    tokio::time::sleep(BATCH_QUIET).await;
                    let now = fetcher
                        .pending
                        .lock()
                        .unwrap()
                        .get(&store)
                        .map_or(0, Vec::len);
                    if now == joined || started.elapsed() >= BATCH_MAX_WAIT {
                        break;
                    }
                    joined = now;
                }
                let waiters = fetcher
                    .pending
                    .lock()
                    .unwrap()
                    .remove(&store)
                    .unwrap_or_default();
                let all: BTreeSet<RemoteRequest> = waiters
                    .iter()
                    .flat_map(|(r, _)| r.iter().cloned())
                    .collect();
                let results = provider.fetch_batch(&all).await;
                {
                    let now = Instant::now();
                    let mut cache = fetcher.cache.lock().unwrap();
                    for (request, result) in &results {
                        cache.insert((store.clone(), request.clone()), (now, result.clone()));
                    }
                }
                for (requests, tx) in waiters {
                    let answer = requests
                        .iter()
                        .filter_map(|r| Some((r.clone(), results.get(r)?.clone())))
                        .collect();
                    let _ = tx.send(answer);
                }
            });
        }
        rx.await.unwrap_or_default()
    }

    /// Answers from the last fetch, if every request has one younger than `max_age`.
    pub fn cached(
        &self,
        store: &StoreIdentity,
        requests: &BTreeSet<RemoteRequest>,
        max_age: Duration,
    ) -> Option<FetchResults> {
        let cache = self.cache.lock().unwrap();
        requests
            .iter()
            .map(|request| {
                let (at, result) = cache.get(&(store.clone(), request.clone()))?;
                (at.elapsed() <= max_age).then(|| (request.clone(), result.clone()))
            })
            .collect()
    }
}
