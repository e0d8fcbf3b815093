//! Fetching for many ExternalSecrets at once: requests for one store that
//! arrive within a short window go to the provider as one de-duplicated batch,
//! and every answer is kept, so a Secret edited or deleted by hand is rebuilt
//! from values still fresh, without calling the provider.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::provider::{
    FetchResults, Fetched, Provider, ProviderError, RemoteRequest, StoreIdentity,
};

/// How long the first request of a batch waits for others to join it.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);

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
    /// for it within [`BATCH_WINDOW`].
    pub async fn fetch(
        self: &Arc<Self>,
        store: &StoreIdentity,
        provider: Arc<dyn Provider>,
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
                tokio::time::sleep(BATCH_WINDOW).await;
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
