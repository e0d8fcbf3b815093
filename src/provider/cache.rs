//! One store's answers, kept between refreshes: a refresh asks the backend
//! which of the answers it already holds are still current (a few listing
//! calls) and fetches only the rest, so an unchanged fleet costs a handful of
//! calls per cycle rather than a fetch per secret. The same answers serve drift
//! repair (a Secret edited by hand is rebuilt without calling the provider).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{FetchResults, Fetched, Markers, Provider, ProviderError, RemoteRequest};

/// Answers nobody asked for in this long are dropped (longer than a day, the
/// longest refresh interval in common use), so deleted ExternalSecrets do not
/// keep their values in memory.
pub const RETAIN_UNUSED: Duration = Duration::from_secs(25 * 3600);

/// After the backend could not list (say, no `secretsmanager:ListSecrets`),
/// refreshes fetch everything for this long before listing is tried again.
/// Only a failure that stays (denied, refused as written) pauses: a passing
/// one (throttling, a 5xx, a timeout) costs that one refresh a fetch of
/// everything, and the next lists again.
pub const DETECTION_PAUSE: Duration = Duration::from_secs(3600);

/// Told when a store's change detection pauses, so its status can say so at
/// once (the store's own reconcile runs hourly).
pub type PauseNotice = Arc<dyn Fn() + Send + Sync>;

struct Entry {
    result: Result<Fetched, ProviderError>,
    /// What the backend said identifies this answer's version.
    marker: Option<String>,
    /// When the answer was last fetched or confirmed current.
    confirmed: Instant,
    used: Instant,
}

/// Why change detection is not in use, and until when.
struct Paused {
    reason: String,
    until: Instant,
}

/// A store's backend with its answers kept: what `Providers::for_store` hands out.
pub struct Cached {
    /// Unique in this process: tells one version of a store's provider from
    /// the next (built when the store's spec changed).
    id: u64,
    backend: Arc<dyn Provider>,
    answers: Mutex<HashMap<RemoteRequest, Entry>>,
    paused: Mutex<Option<Paused>>,
    /// When the backend last answered anything: proof its credentials work.
    answered: Mutex<Option<Instant>>,
    /// Called when change detection pauses (not while it stays paused).
    on_pause: Option<PauseNotice>,
    /// Held while a refresh fetches: a second cycle of the store that starts
    /// meanwhile (a burst of forced syncs, a first sync whose list streams
    /// in) asks what changed after the first's answers are kept, instead of
    /// fetching everything again beside it.
    fetching: tokio::sync::Mutex<()>,
}

impl Cached {
    /// See [`Cached`]'s `id`.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn new(backend: Arc<dyn Provider>) -> Self {
        static BUILT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            backend,
            answers: Mutex::default(),
            paused: Mutex::default(),
            answered: Mutex::default(),
            on_pause: None,
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The same, calling `notice` whenever change detection pauses.
    pub fn with_pause_notice(mut self, notice: PauseNotice) -> Self {
        self.on_pause = Some(notice);
        self
    }

    /// The backend itself, for what is never cached: PushSecret's reads
    /// and writes.
    pub fn backend(&self) -> &dyn Provider {
        self.backend.as_ref()
    }

    /// Whether the backend answered a request (a value, a listing) within
    /// `window`: the store's credentials are then known to work.
    pub fn answered_within(&self, window: Duration) -> bool {
        self.answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() <= window)
    }

    fn note_answer(&self) {
        *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Current answers to every request: those the backend confirms unchanged
    /// come from memory, the others are fetched (batched by the backend).
    pub async fn fetch_batch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults {
        let _one_at_a_time = self.fetching.lock().await;
        let known: Markers = {
            let answers = self.lock_answers();
            requests
                .iter()
                .filter_map(|request| {
                    let entry = answers.get(request)?;
                    let marker = entry.marker.clone()?;
                    entry.result.is_ok().then(|| (request.clone(), marker))
                })
                .collect()
        };
        let current = self.still_current(&known).await;
        let to_fetch: BTreeSet<RemoteRequest> = requests.difference(&current).cloned().collect();
        let (fetched, markers) = if to_fetch.is_empty() {
            (FetchResults::new(), Markers::new())
        } else {
            self.backend.fetch_marked(&to_fetch).await
        };
        if !current.is_empty() || fetched.values().any(Result::is_ok) {
            self.note_answer();
        }

        let now = Instant::now();
        let mut answers = self.lock_answers();
        let mut results = FetchResults::new();
        for request in requests {
            if let Some(result) = fetched.get(request) {
                answers.insert(
                    request.clone(),
                    Entry {
                        result: result.clone(),
                        marker: markers.get(request).cloned(),
                        confirmed: now,
                        used: now,
                    },
                );
                results.insert(request.clone(), result.clone());
            } else if let Some(entry) = answers.get_mut(request) {
                entry.confirmed = now;
                entry.used = now;
                results.insert(request.clone(), entry.result.clone());
            } else {
                results.insert(
                    request.clone(),
                    Err(ProviderError::Unsupported(
                        "the provider gave no answer for this reference".into(),
                    )),
                );
            }
        }
        answers.retain(|_, entry| now.duration_since(entry.used) < RETAIN_UNUSED);
        results
    }

    /// The answers held, if every request has one fetched or confirmed within
    /// `max_age`: no provider call at all.
    pub fn cached(
        &self,
        requests: &BTreeSet<RemoteRequest>,
        max_age: Duration,
    ) -> Option<FetchResults> {
        let now = Instant::now();
        let mut answers = self.lock_answers();
        requests
            .iter()
            .map(|request| {
                let entry = answers.get_mut(request)?;
                if now.duration_since(entry.confirmed) > max_age {
                    return None;
                }
                entry.used = now;
                Some((request.clone(), entry.result.clone()))
            })
            .collect()
    }

    /// Fetches `requests` again without asking what changed (an AWS change
    /// event said they did), batched by the backend, and keeps the answers.
    /// An answer that failed in passing (throttling, a timeout) leaves the
    /// one held in place; the requests it concerns are returned, to be asked
    /// again later.
    pub async fn fetch_changed(&self, requests: &BTreeSet<RemoteRequest>) -> Vec<RemoteRequest> {
        let (fetched, markers) = self.backend.fetch_marked(requests).await;
        if fetched.values().any(Result::is_ok) {
            self.note_answer();
        }
        let now = Instant::now();
        let mut answers = self.lock_answers();
        let mut retry = Vec::new();
        for (request, result) in fetched {
            if result.as_ref().is_err_and(ProviderError::is_transient) {
                retry.push(request);
                continue;
            }
            let marker = markers.get(&request).cloned();
            answers.insert(
                request,
                Entry {
                    result,
                    marker,
                    confirmed: now,
                    used: now,
                },
            );
        }
        retry
    }

    /// Proves the store's credentials work and learns what the identity may
    /// not do: one that may not list has change detection paused at once,
    /// before a refresh tries it.
    pub async fn check(&self) -> Result<(), ProviderError> {
        let checked = self.backend.check().await?;
        self.note_answer();
        if let Some(reason) = checked.cannot_list {
            self.pause_detection(reason);
        }
        Ok(())
    }

    /// Why values are read one call each instead of in batches, if they are.
    pub fn batch_refused(&self) -> Option<String> {
        self.backend.batch_refused()
    }

    /// Why refreshes currently fetch everything instead of asking what
    /// changed, if they do (for the store's status).
    pub fn change_detection_problem(&self) -> Option<String> {
        let paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        paused
            .as_ref()
            .filter(|p| p.until > Instant::now())
            .map(|p| p.reason.clone())
    }

    async fn still_current(&self, known: &Markers) -> BTreeSet<RemoteRequest> {
        if known.is_empty() || self.change_detection_problem().is_some() {
            return BTreeSet::new();
        }
        match self.backend.still_current(known).await {
            Ok(current) => current,
            // Throttled, a 5xx, a timeout: this refresh fetches what it
            // holds; the next one lists again.
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "could not ask what changed: fetching every value this once");
                BTreeSet::new()
            }
            Err(e) => {
                self.pause_detection(format!(
                    "cannot ask what changed, so every refresh fetches every value: {e}"
                ));
                BTreeSet::new()
            }
        }
    }

    fn pause_detection(&self, reason: String) {
        let now = Instant::now();
        let was_paused = {
            let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
            let was = paused.as_ref().is_some_and(|p| p.until > now);
            *paused = Some(Paused {
                reason: reason.clone(),
                until: now + DETECTION_PAUSE,
            });
            was
        };
        tracing::warn!(%reason, "change detection paused");
        if !was_paused && let Some(notice) = &self.on_pause {
            notice();
        }
    }

    fn lock_answers(&self) -> std::sync::MutexGuard<'_, HashMap<RemoteRequest, Entry>> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretValue;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend whose values carry versions; `listing_fails` makes
    /// `still_current` fail as a listing without permission would.
    #[derive(Default)]
    struct Versioned {
        values: Mutex<HashMap<String, (String, u32)>>,
        fetches: AtomicUsize,
        listings: AtomicUsize,
        listing_fails: bool,
        /// `still_current` answers as AWS does when throttling.
        throttled: std::sync::atomic::AtomicBool,
    }

    impl Versioned {
        fn set(&self, key: &str, value: &str, version: u32) {
            self.values
                .lock()
                .unwrap()
                .insert(key.into(), (value.into(), version));
        }
    }

    #[async_trait]
    impl Provider for Versioned {
        async fn fetch_batch(&self, requests: &BTreeSet<RemoteRequest>) -> FetchResults {
            self.fetch_marked(requests).await.0
        }

        async fn fetch_marked(
            &self,
            requests: &BTreeSet<RemoteRequest>,
        ) -> (FetchResults, Markers) {
            let values = self.values.lock().unwrap();
            let mut results = FetchResults::new();
            let mut markers = Markers::new();
            for request in requests {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                let RemoteRequest::Value { key, .. } = request else {
                    continue;
                };
                match values.get(key) {
                    Some((value, version)) => {
                        results.insert(
                            request.clone(),
                            Ok(Fetched::Value(SecretValue::from(value.as_str()))),
                        );
                        markers.insert(request.clone(), version.to_string());
                    }
                    None => {
                        results.insert(
                            request.clone(),
                            Err(ProviderError::NotFound { key: key.clone() }),
                        );
                    }
                }
            }
            (results, markers)
        }

        async fn still_current(
            &self,
            known: &Markers,
        ) -> Result<BTreeSet<RemoteRequest>, ProviderError> {
            self.listings.fetch_add(1, Ordering::SeqCst);
            if self.throttled.load(Ordering::SeqCst) {
                return Err(ProviderError::Api {
                    service: "test",
                    call: "List",
                    message: "ThrottlingException: Rate exceeded".into(),
                    failure: crate::provider::ApiFailure::Transient,
                });
            }
            if self.listing_fails {
                return Err(ProviderError::Api {
                    service: "test",
                    call: "List",
                    message: "AccessDeniedException".into(),
                    failure: crate::provider::ApiFailure::Denied,
                });
            }
            let values = self.values.lock().unwrap();
            Ok(known
                .iter()
                .filter(|(request, marker)| match request {
                    RemoteRequest::Value { key, .. } => values
                        .get(key)
                        .is_some_and(|(_, v)| &v.to_string() == *marker),
                    RemoteRequest::Find(_) | RemoteRequest::Tags { .. } => false,
                })
                .map(|(request, _)| request.clone())
                .collect())
        }
    }

    fn request(key: &str) -> RemoteRequest {
        RemoteRequest::Value {
            key: key.into(),
            version: None,
        }
    }

    fn text(results: &FetchResults, key: &str) -> String {
        match &results[&request(key)] {
            Ok(Fetched::Value(v)) => String::from_utf8_lossy(v.expose()).into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn only_what_changed_is_fetched_again() {
        let backend = Arc::new(Versioned::default());
        backend.set("a", "a1", 1);
        backend.set("b", "b1", 1);
        let cached = Cached::new(backend.clone());
        let both: BTreeSet<_> = [request("a"), request("b")].into();
        cached.fetch_batch(&both).await;
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 2);

        cached.fetch_batch(&both).await;
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 2, "nothing changed");

        backend.set("b", "b2", 2);
        let results = cached.fetch_batch(&both).await;
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 3, "only b again");
        assert_eq!(text(&results, "a"), "a1");
        assert_eq!(text(&results, "b"), "b2");
        assert_eq!(
            text(&cached.cached(&both, Duration::from_secs(60)).unwrap(), "b"),
            "b2"
        );
        assert!(
            cached
                .cached(&[request("c")].into(), Duration::MAX)
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_backend_that_cannot_list_is_fetched_from_and_the_store_is_told() {
        let backend = Arc::new(Versioned {
            listing_fails: true,
            ..Default::default()
        });
        backend.set("a", "a1", 1);
        let cached = Cached::new(backend.clone());
        let one: BTreeSet<_> = [request("a")].into();
        cached.fetch_batch(&one).await;
        assert!(
            cached.change_detection_problem().is_none(),
            "nothing to list yet"
        );
        cached.fetch_batch(&one).await;
        let problem = cached.change_detection_problem().expect("said");
        assert!(problem.contains("AccessDeniedException"), "{problem}");
        backend.set("a", "a2", 2);
        assert_eq!(text(&cached.fetch_batch(&one).await, "a"), "a2");
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 3);
    }

    fn counting_notice() -> (PauseNotice, Arc<AtomicUsize>) {
        let told = Arc::new(AtomicUsize::new(0));
        let counter = told.clone();
        let notice: PauseNotice = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        (notice, told)
    }

    #[tokio::test]
    async fn a_throttled_listing_fetches_everything_once_and_pauses_nothing() {
        let backend = Arc::new(Versioned::default());
        backend.set("a", "a1", 1);
        backend.set("b", "b1", 1);
        let (notice, told) = counting_notice();
        let cached = Cached::new(backend.clone()).with_pause_notice(notice);
        let both: BTreeSet<_> = [request("a"), request("b")].into();
        cached.fetch_batch(&both).await;
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 2);

        backend.throttled.store(true, Ordering::SeqCst);
        backend.set("b", "b2", 2);
        let results = cached.fetch_batch(&both).await;
        assert_eq!(text(&results, "b"), "b2");
        assert_eq!(
            backend.fetches.load(Ordering::SeqCst),
            4,
            "this refresh could not tell: both fetched"
        );
        assert_eq!(cached.change_detection_problem(), None);
        assert_eq!(told.load(Ordering::SeqCst), 0);

        // Throttling over: the next refresh lists again and fetches nothing.
        backend.throttled.store(false, Ordering::SeqCst);
        let listings = backend.listings.load(Ordering::SeqCst);
        cached.fetch_batch(&both).await;
        assert_eq!(backend.listings.load(Ordering::SeqCst), listings + 1);
        assert_eq!(backend.fetches.load(Ordering::SeqCst), 4, "nothing changed");
    }

    #[tokio::test]
    async fn a_denied_listing_pauses_detection_and_tells_the_store_once() {
        let backend = Arc::new(Versioned {
            listing_fails: true,
            ..Default::default()
        });
        backend.set("a", "a1", 1);
        let (notice, told) = counting_notice();
        let cached = Cached::new(backend.clone()).with_pause_notice(notice);
        let one: BTreeSet<_> = [request("a")].into();
        cached.fetch_batch(&one).await;
        assert_eq!(told.load(Ordering::SeqCst), 0, "nothing listed yet");
        cached.fetch_batch(&one).await;
        assert!(cached.change_detection_problem().is_some());
        assert_eq!(told.load(Ordering::SeqCst), 1, "told as it paused");
        let listings = backend.listings.load(Ordering::SeqCst);
        cached.fetch_batch(&one).await;
        assert_eq!(backend.listings.load(Ordering::SeqCst), listings, "paused");
        assert_eq!(told.load(Ordering::SeqCst), 1, "told once");
    }
}
