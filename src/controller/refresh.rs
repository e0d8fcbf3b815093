//! When ExternalSecrets refresh. Each keeps its own interval, but refreshes go
//! store by store in cycles: the ExternalSecret that falls due first starts
//! its store's cycle, which gathers for a moment (others falling due join;
//! no longer once every reconcile the controller runs at a time waits in a
//! cycle, as nobody else could join), then also takes along every
//! ExternalSecret of the store due within a tenth of its interval. So a
//! fleet on one interval converges to one batch set per store per interval,
//! and none refreshes later than its interval (plus the gathering moment).
//! Membership comes from the watch, not from reconciles, so a cycle sees the
//! whole store even while reconciles are bounded.
//!
//! The refresher also keeps the time ([`Refresher::run_clock`]): it wakes each
//! ExternalSecret when its refresh falls due. So a refreshed ExternalSecret
//! waits for no requeue of its own in kube-runtime's scheduler, whose entry
//! per object costs more memory than the member here.
//!
//! Members are known by their keys (`Arc<str>`), and whoever is woken is sent
//! as the same key: a fleet-wide cycle wakes thousands at once, and a shared
//! key costs no allocation where an object reference costs three.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::provider::{Cached, FetchResults, RemoteRequest, StoreIdentity};

/// A cycle starts once no ExternalSecret has joined it (or asked for a
/// sync, as the watch shows) for this long...
pub const GATHER_QUIET: Duration = Duration::from_millis(100);
/// ...or once it has gathered this long, whichever is first...
pub const GATHER_MAX: Duration = Duration::from_secs(2);
/// ...or, when the store's previous cycle was cut short by that while syncs
/// were still being asked for (a fleet-wide `force-sync` arriving over many
/// seconds), this long: so such a burst costs two cycles, the first two
/// seconds' worth and the rest, rather than one every two seconds.
pub const BURST_MAX: Duration = Duration::from_secs(60);
/// A cycle starting this soon after one was cut short continues its burst.
const BURST_FOLLOWS: Duration = Duration::from_secs(10);
/// How early (as a share of its interval) an ExternalSecret may join a cycle.
pub const PULL_FORWARD: u32 = 10;

/// A hash of what a user changes to ask for a sync (spec, labels,
/// annotations): 16 bytes, kept as a number (every member holds two), shown
/// in `status.specHash` as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpecHash(pub u128);

impl SpecHash {
    /// From its 32 hex digits, as a status shows it (`None` for anything else).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(SpecHash)
    }
}

impl std::fmt::Display for SpecHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What the watch tells about one ExternalSecret.
#[derive(Clone, Debug)]
pub struct Observed {
    pub store: StoreIdentity,
    pub requests: BTreeSet<RemoteRequest>,
    /// `None`: not refreshed on a schedule (OnChange, CreatedOnce, `0`).
    pub interval: Option<Duration>,
    /// From `status.refreshTime`, for a process that has not refreshed it yet.
    pub refreshed_at: Option<Instant>,
    pub refreshed_at_wall: Option<jiff::Timestamp>,
    /// From `status.specHash`.
    pub refreshed_spec: Option<SpecHash>,
    /// The hash of the spec as it is now.
    pub spec_hash: SpecHash,
    /// What `spec_hash` was computed from, fingerprinted (see
    /// [`Refresher::known_spec_hash`]).
    pub spec_source: u64,
    /// Its periodic refreshes follow `syncWindows`.
    pub windowed: bool,
}

/// Kept for each of thousands of ExternalSecrets, so only what cycles need,
/// held compactly (a set of three requests would take a whole B-tree node;
/// the store and each request are shared with every other member that has
/// them: a fleet reads far fewer remote values than it has members).
struct Member {
    store: Arc<StoreIdentity>,
    requests: Box<[Arc<RemoteRequest>]>,
    interval: Option<Duration>,
    spec_hash: SpecHash,
    spec_source: u64,
    last_refresh: Option<Instant>,
    /// The same moment on the wall clock, whole seconds (as a status holds it).
    last_refresh_wall: Option<jiff::Timestamp>,
    refreshed_spec: Option<SpecHash>,
    /// The provider (`Cached::id`) its last refresh in this process went
    /// through: a store whose spec changed since has a new one.
    refreshed_through: Option<u64>,
    /// The last refresh failed: retried on its own backoff, never pulled in.
    failed: bool,
    /// The clock has woken it for its refresh due now; not again until it
    /// has refreshed.
    woken: bool,
    /// Its periodic refreshes follow `syncWindows`: the reconcile woken
    /// decides, and a cycle never takes it along unasked.
    windowed: bool,
    /// Its sync windows hold its refresh back until then.
    deferred: Option<Instant>,
}

impl Member {
    /// When the clock wakes it: its last refresh plus its interval.
    fn due(&self) -> Option<Instant> {
        if self.failed || self.woken {
            return None;
        }
        let due = self.last_refresh?.checked_add(self.interval?)?;
        Some(self.deferred.map_or(due, |deferred| deferred.max(due)))
    }

    /// Whether a sync was asked for (new, or its spec, labels or
    /// annotations changed) that no refresh has served yet.
    fn asked(&self) -> bool {
        self.last_refresh.is_none() || self.refreshed_spec != Some(self.spec_hash)
    }

    /// Whether a cycle starting `now` takes this one along: one whose sync
    /// was asked for (its reconcile, queued, would start a cycle of its
    /// own), or one due soon.
    fn pulled_in(&self, now: Instant) -> bool {
        if self.failed {
            return false;
        }
        if self.asked() {
            return true;
        }
        if self.windowed {
            return false;
        }
        match (self.last_refresh, self.interval) {
            (None, _) => true,
            (Some(at), Some(interval)) => match (
                now.checked_add(interval / PULL_FORWARD),
                at.checked_add(interval),
            ) {
                (Some(soon), Some(due)) => soon >= due,
                // Beyond the clock's range: not due in any cycle to come.
                _ => false,
            },
            (Some(_), None) => false,
        }
    }
}

type Waiter = (
    String,
    BTreeSet<RemoteRequest>,
    oneshot::Sender<FetchResults>,
);

/// A cycle: of a store, through one provider (one version of the store's
/// spec). A reconcile that resolved the store after its spec changed never
/// joins a cycle that fetches through the provider built before: the cycle
/// would bring it the old store's values, and nothing would wake it again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Cycle {
    store: StoreIdentity,
    /// The provider's address (the cycle holds the provider while it runs).
    provider: usize,
}

impl Cycle {
    fn of(store: &StoreIdentity, provider: &Arc<Cached>) -> Self {
        Self {
            store: store.clone(),
            provider: Arc::as_ptr(provider) as usize,
        }
    }
}

/// A store's cycle while it gathers.
#[derive(Default)]
struct Gathering {
    waiters: Vec<Waiter>,
    /// Reconciles that joined, and syncs the watch showed asked for.
    joins: usize,
    /// Every reconcile waited in a cycle at some point: start now (unless
    /// syncs are still being asked for: those are taken along unjoined).
    go: bool,
}

/// When this process last refreshed an ExternalSecret, and with which spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub at: Option<Instant>,
    /// `at` on the wall clock, in whole seconds.
    pub at_wall: Option<jiff::Timestamp>,
    /// The spec hash of the last refresh that went through.
    pub spec: Option<SpecHash>,
    /// The provider the last refresh that took values went through.
    pub through: Option<u64>,
    pub failed: bool,
    /// The spec hash as the watch shows it now.
    pub current_spec: Option<SpecHash>,
}

/// One table of members, by key, each pointing at its store: a cycle walks
/// the table for its store's members (thousands of entries, once per
/// cycle), which costs less than a second table per store and a key-to-store
/// map, both as large as the fleet.
struct Inner {
    /// Boxed: the table itself stays small however large a member is.
    members: HashMap<Arc<str>, Box<Member>>,
    /// Cycles gathering now.
    gathering: HashMap<Cycle, Gathering>,
    /// Stores whose last cycle stopped gathering at its limit while syncs
    /// were still asked for, and when: the next may gather for longer.
    cut_short: HashMap<StoreIdentity, Instant>,
    /// When the watch last showed a sync asked for, by store (recent ones).
    last_ask: HashMap<StoreIdentity, Instant>,
    /// One shared identity per store that has members.
    stores: HashSet<Arc<StoreIdentity>>,
    /// One shared copy of each request some member makes.
    requests: HashSet<Arc<RemoteRequest>>,
    /// When the clock looks next (`None`: nobody is due at all).
    clock_at: Option<Instant>,
    /// Members whose next reconcile someone waits for (an AWS change
    /// event, to delete its message once their Secrets are written): how
    /// many wait, and how many reconciles of it have ended since.
    awaiting: HashMap<Arc<str>, Awaited>,
}

#[derive(Default)]
struct Awaited {
    waiters: u32,
    settled: u64,
}

impl Inner {
    /// How many reconciles wait in gathering cycles.
    fn waiting(&self) -> usize {
        self.gathering.values().map(|g| g.waiters.len()).sum()
    }

    /// The shared identity of `store`.
    fn store(&mut self, store: StoreIdentity) -> Arc<StoreIdentity> {
        if let Some(shared) = self.stores.get(&store) {
            return shared.clone();
        }
        let shared = Arc::new(store);
        self.stores.insert(shared.clone());
        shared
    }

    /// The shared copies of `requests`.
    fn requests(&mut self, requests: BTreeSet<RemoteRequest>) -> Box<[Arc<RemoteRequest>]> {
        requests
            .into_iter()
            .map(|request| match self.requests.get(&request) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = Arc::new(request);
                    self.requests.insert(shared.clone());
                    shared
                }
            })
            .collect()
    }

    /// Lets go of what a member that is gone shared with others, where no
    /// other member shares it any more.
    fn release_member(&mut self, member: Member) {
        let Member {
            store, requests, ..
        } = member;
        self.release(store);
        for request in requests {
            // This one, and the set's.
            if Arc::strong_count(&request) <= 2 {
                self.requests.remove(&request);
            }
        }
    }

    /// Lets go of a store identity no member points at any more.
    fn release(&mut self, store: Arc<StoreIdentity>) {
        // This one, and the set's.
        if Arc::strong_count(&store) <= 2 {
            self.stores.remove(&store);
        }
    }

    /// Makes the clock look at `due` if that is sooner than it would; whether
    /// it must be told.
    fn clock_looks_at(&mut self, due: Option<Instant>) -> bool {
        match due {
            Some(due) if self.clock_at.is_none_or(|at| due < at) => {
                self.clock_at = Some(due);
                true
            }
            _ => false,
        }
    }
}

/// Every ExternalSecret's place in its store's cycles. A member's key is sent
/// when the clock or a cycle wakes it.
pub struct Refresher {
    inner: Mutex<Inner>,
    wake: mpsc::UnboundedSender<Arc<str>>,
    /// How many reconciles run at once: once that many wait in cycles,
    /// gathering longer gains nobody.
    reconciles: usize,
    /// Tells gathering cycles to go: every reconcile waits.
    all_waiting: tokio::sync::Notify,
    /// Tells the clock that someone falls due before it would look.
    clock: tokio::sync::Notify,
    /// Tells whoever waits for members' reconciles that one ended.
    settled: tokio::sync::Notify,
}

/// Decides, outside the lock, whether an ExternalSecret may be refreshed with
/// a store's credentials (a ClusterSecretStore's conditions).
pub type Admit = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Refresher {
    /// The refresher, and where it sends the keys of those it wakes.
    /// `reconciles`: how many reconciles run at once.
    pub fn new(reconciles: usize) -> (Arc<Self>, mpsc::UnboundedReceiver<Arc<str>>) {
        let (wake, woken) = mpsc::unbounded_channel();
        let refresher = Arc::new(Self {
            inner: Mutex::new(Inner {
                members: HashMap::new(),
                gathering: HashMap::new(),
                cut_short: HashMap::new(),
                last_ask: HashMap::new(),
                stores: HashSet::new(),
                requests: HashSet::new(),
                clock_at: None,
                awaiting: HashMap::new(),
            }),
            wake,
            reconciles: reconciles.max(1),
            all_waiting: tokio::sync::Notify::new(),
            clock: tokio::sync::Notify::new(),
            settled: tokio::sync::Notify::new(),
        });
        (refresher, woken)
    }

    /// An ExternalSecret as the watch shows it now. Whether it is new here,
    /// or asks for a sync: its spec, labels or annotations changed (not its
    /// status, which this controller writes itself).
    pub fn observe(&self, key: &Arc<str>, observed: Observed) -> bool {
        let mut inner = self.lock();
        // Shared first, so letting go of the previous member keeps what the
        // new one shares with it.
        let store = inner.store(observed.store);
        let requests = inner.requests(observed.requests);
        let previous = inner.members.remove(&**key);
        let previous_deferred = previous.as_ref().and_then(|m| m.deferred);
        let previous_through = previous.as_ref().and_then(|m| m.refreshed_through);
        let asks = previous
            .as_ref()
            .is_none_or(|member| member.spec_hash != observed.spec_hash);
        let (last_refresh, last_refresh_wall, refreshed_spec, failed, woken) = match &previous {
            // This process's own record wins over a status that may lag.
            Some(member) if member.last_refresh >= observed.refreshed_at => (
                member.last_refresh,
                member.last_refresh_wall,
                member.refreshed_spec.or(observed.refreshed_spec),
                member.failed,
                member.woken && member.interval == observed.interval,
            ),
            Some(member) => (
                observed.refreshed_at,
                observed.refreshed_at_wall,
                member.refreshed_spec.or(observed.refreshed_spec),
                member.failed,
                false,
            ),
            None => (
                observed.refreshed_at,
                observed.refreshed_at_wall,
                observed.refreshed_spec,
                false,
                false,
            ),
        };
        if let Some(previous) = previous {
            inner.release_member(*previous);
        }
        let member = Box::new(Member {
            store,
            requests,
            interval: observed.interval,
            spec_hash: observed.spec_hash,
            spec_source: observed.spec_source,
            last_refresh,
            last_refresh_wall,
            refreshed_spec,
            refreshed_through: previous_through,
            failed,
            woken,
            windowed: observed.windowed,
            deferred: previous_deferred.filter(|_| observed.windowed),
        });
        let sooner = inner.clock_looks_at(member.due());
        if member.asked() && !member.failed {
            // A cycle of the store takes it along: one gathering gathers on.
            let now = Instant::now();
            for (_, gathering) in inner
                .gathering
                .iter_mut()
                .filter(|(cycle, _)| cycle.store == *member.store)
            {
                gathering.joins += 1;
            }
            match inner.last_ask.get_mut(&*member.store) {
                Some(at) => *at = now,
                None => {
                    inner
                        .last_ask
                        .retain(|_, at| now.duration_since(*at) < BURST_FOLLOWS);
                    inner.last_ask.insert((*member.store).clone(), now);
                }
            }
        }
        inner.members.insert(key.clone(), member);
        drop(inner);
        if sooner {
            self.clock.notify_one();
        }
        asks
    }

    /// Wakes every ExternalSecret when its refresh falls due, for as long as
    /// the process runs.
    pub async fn run_clock(self: Arc<Self>) {
        loop {
            let (due, next) = self.due_now(Instant::now());
            for wake in due {
                let _ = self.wake.send(wake);
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.clock.notified() => {}
                    }
                }
                None => self.clock.notified().await,
            }
        }
    }

    /// Who is due at `now` (marked woken), and when the next one falls due.
    fn due_now(&self, now: Instant) -> (Vec<Arc<str>>, Option<Instant>) {
        let mut inner = self.lock();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (key, member) in inner.members.iter_mut() {
            match member.due() {
                Some(at) if at <= now => {
                    member.woken = true;
                    due.push(key.clone());
                }
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        inner.clock_at = next;
        (due, next)
    }

    /// An ExternalSecret deleted (or no longer valid).
    /// The key this refresher keeps for a member, to share rather than copy.
    pub fn shared_key(&self, key: &str) -> Option<Arc<str>> {
        self.lock()
            .members
            .get_key_value(key)
            .map(|(key, _)| key.clone())
    }

    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(member) = inner.members.remove(key) {
            inner.release_member(*member);
        }
        self.settle(&mut inner, key);
    }

    /// Who in `store` (this very identity) reads what `reads` picks: those
    /// requests, and the members' keys.
    pub fn readers(
        &self,
        store: &StoreIdentity,
        reads: impl Fn(&RemoteRequest) -> bool,
    ) -> (BTreeSet<RemoteRequest>, Vec<Arc<str>>) {
        let inner = self.lock();
        let Some(shared) = inner.stores.get(store) else {
            return Default::default();
        };
        // Each shared request is judged once, however many members share it.
        let picked: HashSet<*const RemoteRequest> = inner
            .requests
            .iter()
            .filter(|request| reads(request))
            .map(Arc::as_ptr)
            .collect();
        let mut requests = BTreeSet::new();
        let mut keys = Vec::new();
        if picked.is_empty() {
            return (requests, keys);
        }
        for (key, member) in &inner.members {
            if !Arc::ptr_eq(shared, &member.store) {
                continue;
            }
            let mut reader = false;
            for request in member.requests.iter() {
                if picked.contains(&Arc::as_ptr(request)) {
                    reader = true;
                    if !requests.contains(&**request) {
                        requests.insert((**request).clone());
                    }
                }
            }
            if reader {
                keys.push(key.clone());
            }
        }
        (requests, keys)
    }

    /// Wakes these members (their reconciles then take what the provider
    /// holds now), and waits until each has been reconciled once since, or
    /// is gone, for at most `deadline`: whether all were.
    pub async fn wake_and_wait(&self, keys: &[Arc<str>], deadline: Duration) -> bool {
        let since: Vec<u64> = {
            let mut inner = self.lock();
            keys.iter()
                .map(|key| {
                    let awaited = inner.awaiting.entry(key.clone()).or_default();
                    awaited.waiters += 1;
                    awaited.settled
                })
                .collect()
        };
        for key in keys {
            let _ = self.wake.send(key.clone());
        }
        let all_settled = tokio::time::timeout(deadline, async {
            loop {
                let settled = self.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                let done = {
                    let inner = self.lock();
                    keys.iter().zip(&since).all(|(key, since)| {
                        !inner.members.contains_key(key)
                            || inner.awaiting.get(key).is_some_and(|a| a.settled > *since)
                    })
                };
                if done {
                    break;
                }
                settled.await;
            }
        })
        .await
        .is_ok();
        let mut inner = self.lock();
        for key in keys {
            if let Some(awaited) = inner.awaiting.get_mut(key) {
                awaited.waiters = awaited.waiters.saturating_sub(1);
                if awaited.waiters == 0 {
                    inner.awaiting.remove(key);
                }
            }
        }
        all_settled
    }

    /// A reconcile of `key` ended (or it is gone): whoever waits for it hears.
    fn settle(&self, inner: &mut Inner, key: &str) {
        if let Some(awaited) = inner.awaiting.get_mut(key) {
            awaited.settled += 1;
            self.settled.notify_waiters();
        }
    }

    /// Who reads from a store (to wake them when it changes).
    pub fn members_of(&self, store: &StoreIdentity) -> Vec<Arc<str>> {
        self.lock()
            .members
            .iter()
            // A store serving namespaces apart (tenants) wakes them all.
            .filter(|(_, m)| {
                m.store.kind == store.kind
                    && m.store.namespace == store.namespace
                    && m.store.name == store.name
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The spec hash already computed for an ExternalSecret, if it was
    /// computed from the same `spec_source`: most watch events of an
    /// ExternalSecret are its own status writes, which leave the spec alone,
    /// and hashing a spec means encoding it whole.
    pub fn known_spec_hash(&self, key: &str, spec_source: u64) -> Option<SpecHash> {
        self.lock()
            .members
            .get(key)
            .filter(|m| m.spec_source == spec_source)
            .map(|m| m.spec_hash)
    }

    /// What this process knows of the ExternalSecret's last refresh.
    pub fn refreshed(&self, key: &str) -> Refreshed {
        self.lock()
            .members
            .get(key)
            .map(|m| Refreshed {
                at: m.last_refresh,
                at_wall: m.last_refresh_wall,
                spec: m.refreshed_spec,
                through: m.refreshed_through,
                failed: m.failed,
                current_spec: Some(m.spec_hash),
            })
            .unwrap_or_default()
    }

    /// A refresh went through with this spec (and, when it took values,
    /// through this provider).
    pub fn succeeded(&self, key: &str, spec: SpecHash, through: Option<u64>) {
        self.update(key, |m| {
            m.refreshed_spec = Some(spec);
            m.refreshed_through = through.or(m.refreshed_through);
            m.failed = false;
        });
        self.settle(&mut self.lock(), key);
    }

    /// Its sync windows hold its periodic refresh back: the clock wakes it
    /// again at `until`.
    pub fn defer(&self, key: &str, until: Instant) {
        self.update(key, |m| {
            m.deferred = Some(until);
            m.woken = false;
        });
    }

    /// A refresh failed: the next reconcile refreshes again.
    pub fn failed(&self, key: &str) {
        self.update(key, |m| {
            m.failed = true;
            m.woken = false;
            m.last_refresh = None;
            m.last_refresh_wall = None;
        });
        self.settle(&mut self.lock(), key);
    }

    /// Fetches what `requests` need as part of the store's next cycle, and
    /// returns their answers once it has run.
    pub async fn refresh(
        self: &Arc<Self>,
        store: &StoreIdentity,
        key: &str,
        requests: BTreeSet<RemoteRequest>,
        provider: Arc<Cached>,
        admit: Admit,
    ) -> FetchResults {
        let (tx, rx) = oneshot::channel();
        let cycle = Cycle::of(store, &provider);
        let (start, all_waiting) = {
            let mut inner = self.lock();
            let start = !inner.gathering.contains_key(&cycle);
            let gathering = inner.gathering.entry(cycle.clone()).or_default();
            gathering.waiters.push((key.to_string(), requests, tx));
            gathering.joins += 1;
            let all_waiting = inner.waiting() >= self.reconciles;
            if all_waiting {
                inner.gathering.values_mut().for_each(|g| g.go = true);
            }
            (start, all_waiting)
        };
        if all_waiting {
            self.all_waiting.notify_waiters();
        }
        if start {
            let refresher = self.clone();
            tokio::spawn(async move { refresher.run_cycle(cycle, provider, admit).await });
        }
        rx.await.unwrap_or_default()
    }

    async fn run_cycle(self: Arc<Self>, cycle: Cycle, provider: Arc<Cached>, admit: Admit) {
        let store = &cycle.store;
        let started = Instant::now();
        let limit = match self.lock().cut_short.remove(store) {
            Some(at) if at.elapsed() < BURST_FOLLOWS => BURST_MAX,
            _ => GATHER_MAX,
        };
        let mut seen = 0;
        let mut cut_short = false;
        loop {
            let all_waiting = self.all_waiting.notified();
            tokio::pin!(all_waiting);
            all_waiting.as_mut().enable();
            let (go, asking) = {
                let inner = self.lock();
                (
                    inner.gathering.get(&cycle).is_some_and(|g| g.go),
                    inner
                        .last_ask
                        .get(store)
                        .is_some_and(|at| at.elapsed() < GATHER_QUIET),
                )
            };
            if go && !asking {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(GATHER_QUIET) => {}
                // Every reconcile waits: go, unless syncs are still asked for.
                _ = all_waiting => continue,
            }
            let joins = self.lock().gathering.get(&cycle).map_or(0, |g| g.joins);
            if joins == seen {
                break;
            }
            if started.elapsed() >= limit {
                cut_short = true;
                break;
            }
            seen = joins;
        }
        let (waiters, candidates) = {
            let mut inner = self.lock();
            let waiters = inner
                .gathering
                .remove(&cycle)
                .map(|g| g.waiters)
                .unwrap_or_default();
            if cut_short {
                inner.cut_short.insert(store.clone(), Instant::now());
            }
            let joined: HashSet<&str> = waiters.iter().map(|(k, _, _)| k.as_str()).collect();
            let now = Instant::now();
            // The cheap tests first: every cycle walks the whole table.
            let shared = inner.stores.get(store).cloned();
            let candidates: Vec<_> = inner
                .members
                .iter()
                .filter(|&(key, member)| {
                    shared
                        .as_ref()
                        .is_some_and(|s| Arc::ptr_eq(s, &member.store))
                        && member.pulled_in(now)
                        && !joined.contains(&**key)
                })
                .map(|(key, member)| (key.clone(), member.requests.clone(), member.spec_hash))
                .collect();
            (waiters, candidates)
        };
        let pulled: Vec<_> = candidates
            .into_iter()
            .filter(|(key, _, _)| admit(key))
            .collect();
        // One at a time: collecting would first copy every member's requests
        // (tens of thousands in a fleet-wide cycle) to sort them.
        let mut requests = BTreeSet::new();
        let wanted = waiters
            .iter()
            .flat_map(|(_, requests, _)| requests.iter())
            .chain(pulled.iter().flat_map(|(_, r, _)| r.iter().map(|r| &**r)));
        for request in wanted {
            if !requests.contains(request) {
                requests.insert(request.clone());
            }
        }
        tracing::debug!(%store, joined = waiters.len(), pulled = pulled.len(), requests = requests.len(), "refresh cycle");
        let results = provider.fetch_batch(&requests).await;
        {
            let now = Instant::now();
            let wall = whole_seconds(jiff::Timestamp::now());
            let mut inner = self.lock();
            let mut next: Option<Instant> = None;
            {
                // The spec each was refreshed with: a pulled one's as it was
                // when the cycle took it (a spec changed since asks again).
                let keys = waiters
                    .iter()
                    .map(|(k, _, _)| (k.as_str(), None))
                    .chain(pulled.iter().map(|(k, _, spec)| (&**k, Some(*spec))));
                for (key, spec) in keys {
                    if let Some(member) = inner.members.get_mut(key) {
                        member.last_refresh = Some(now);
                        member.last_refresh_wall = Some(wall);
                        member.woken = false;
                        member.deferred = None;
                        member.refreshed_spec = Some(spec.unwrap_or(member.spec_hash));
                        if let Some(due) = member.due() {
                            next = Some(next.map_or(due, |n| n.min(due)));
                        }
                    }
                }
            }
            if inner.clock_looks_at(next) {
                self.clock.notify_one();
            }
        }
        for (_, requests, tx) in waiters {
            let answers = requests
                .iter()
                .filter_map(|r| Some((r.clone(), results.get(r)?.clone())))
                .collect();
            let _ = tx.send(answers);
        }
        for (key, _, _) in pulled {
            let _ = self.wake.send(key);
        }
    }

    fn update(&self, key: &str, change: impl FnOnce(&mut Member)) {
        let mut inner = self.lock();
        let due = inner.members.get_mut(key).and_then(|member| {
            change(member);
            member.due()
        });
        if inner.clock_looks_at(due) {
            drop(inner);
            self.clock.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A time with its fraction of a second dropped, as Kubernetes stores it.
fn whole_seconds(time: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// A wall-clock time in the past as an `Instant`, for status times read back
/// after a restart; `None` when it lies in the future or beyond this clock.
pub fn instant_of(time: jiff::Timestamp) -> Option<Instant> {
    let ago = jiff::Timestamp::now().duration_since(time);
    let ago = Duration::try_from(ago).ok()?;
    Instant::now().checked_sub(ago)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StoreKind;
    use crate::provider::fake::FakeProvider;

    fn store() -> StoreIdentity {
        StoreIdentity {
            kind: StoreKind::SecretStore,
            namespace: Some("team".into()),
            name: "fake".into(),
            tenant: None,
        }
    }

    fn provider() -> Arc<Cached> {
        let spec: crate::api::FakeProvider = serde_json::from_value(serde_json::json!({
            "data": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}, {"key": "c", "value": "3"}]
        }))
        .unwrap();
        Arc::new(Cached::new(Arc::new(FakeProvider::new(
            &spec,
            Arc::default(),
        ))))
    }

    fn observed(key: &str, interval: Option<u64>) -> Observed {
        Observed {
            store: store(),
            requests: [RemoteRequest::Value {
                key: key.into(),
                version: None,
            }]
            .into(),
            interval: interval.map(Duration::from_secs),
            refreshed_at: None,
            refreshed_at_wall: None,
            refreshed_spec: None,
            spec_hash: SpecHash(1),
            spec_source: 1,
            windowed: false,
        }
    }

    #[test]
    fn a_spec_hash_reads_back_what_a_status_shows_and_nothing_else() {
        let text = "00112233445566778899aabbccddeeff";
        let hash = SpecHash::parse(text).unwrap();
        assert_eq!(hash.to_string(), text);
        assert_eq!(SpecHash(1).to_string(), format!("{:0>32}", "1"));
        for bad in [
            "",
            "abc",
            "+0112233445566778899aabbccddeeff",
            "0112233445566778899aabbccddeeffg",
        ] {
            assert_eq!(SpecHash::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_observation_asks_for_a_sync_when_new_or_its_spec_changed() {
        let (refresher, _woken) = Refresher::new(100);
        assert!(refresher.observe(&key("a"), observed("a", Some(60))));
        // A status write: same spec hash.
        assert!(!refresher.observe(&key("a"), observed("a", Some(60))));
        let mut changed = observed("a", Some(60));
        changed.spec_hash = SpecHash(2);
        assert!(refresher.observe(&key("a"), changed));
        // Moved to another store: the first store's identity is let go.
        let mut moved = observed("a", Some(60));
        moved.spec_hash = SpecHash(2);
        moved.store.name = "other".into();
        assert!(!refresher.observe(&key("a"), moved));
        assert!(refresher.members_of(&store()).is_empty());
        assert_eq!(refresher.lock().stores.len(), 1);
        assert_eq!(refresher.lock().requests.len(), 1);
        // b shares a's request; c has its own.
        let mut b = observed("a", Some(60));
        b.spec_hash = SpecHash(2);
        refresher.observe(&key("b"), b);
        refresher.observe(&key("c"), observed("c", Some(60)));
        assert_eq!(refresher.lock().requests.len(), 2);
        refresher.forget("a");
        assert_eq!(refresher.lock().requests.len(), 2, "b still reads it");
        refresher.forget("b");
        refresher.forget("c");
        assert!(refresher.lock().stores.is_empty());
        assert!(refresher.lock().requests.is_empty());
        assert!(refresher.observe(&key("a"), observed("a", Some(60))));
    }

    #[test]
    fn a_spec_hash_is_reused_only_for_the_same_source() {
        let (refresher, _woken) = Refresher::new(100);
        assert_eq!(refresher.known_spec_hash("a", 1), None, "not seen yet");
        let mut seen = observed("a", Some(60));
        (seen.spec_hash, seen.spec_source) = (SpecHash(7), 70);
        refresher.observe(&key("a"), seen);
        assert_eq!(refresher.known_spec_hash("a", 70), Some(SpecHash(7)));
        assert_eq!(refresher.known_spec_hash("a", 71), None, "spec changed");
        assert_eq!(refresher.known_spec_hash("b", 70), None, "another one");
        refresher.forget("a");
        assert_eq!(refresher.known_spec_hash("a", 70), None, "forgotten");
    }

    /// A member's key.
    fn key(name: &str) -> Arc<str> {
        name.into()
    }

    fn admit_all() -> Admit {
        Arc::new(|_| true)
    }

    #[tokio::test(start_paused = true)]
    async fn a_cycle_takes_along_every_member_due_soon_and_wakes_it() {
        let (refresher, mut woken) = Refresher::new(100);
        refresher.observe(&key("a"), observed("a", Some(3600)));
        refresher.observe(&key("b"), observed("b", Some(3600)));
        refresher.observe(&key("c"), observed("c", None));
        let provider = provider();
        // First sync: everyone unrefreshed goes in one cycle.
        let results = refresher
            .refresh(
                &store(),
                "a",
                observed("a", None).requests,
                provider.clone(),
                admit_all(),
            )
            .await;
        assert_eq!(results.len(), 1, "a gets only its own answers");
        let mut woke = vec![next(&mut woken).await, next(&mut woken).await];
        woke.sort();
        assert_eq!(woke, ["b", "c"]);
        assert!(refresher.refreshed("b").at.is_some());

        // An hour less four minutes later, a is due in four minutes: a cycle
        // started by b (due now) takes it along.
        tokio::time::advance(Duration::from_secs(3600 - 240)).await;
        refresher.observe(
            &key("b"),
            Observed {
                interval: Some(Duration::from_secs(3000)),
                ..observed("b", None)
            },
        );
        refresher
            .refresh(
                &store(),
                "b",
                observed("b", None).requests,
                provider.clone(),
                admit_all(),
            )
            .await;
        assert_eq!(next(&mut woken).await, "a");
        assert!(woken.try_recv().is_err(), "c is not periodic");

        // A member that failed is not taken along; one not admitted neither.
        refresher.failed("a");
        let deny_c: Admit = Arc::new(|key| key != "c");
        refresher.forget("b");
        refresher.observe(&key("c"), observed("c", Some(60)));
        refresher.failed("c");
        refresher.succeeded("c", SpecHash(3), None);
        refresher
            .refresh(&store(), "x", BTreeSet::new(), provider, deny_c)
            .await;
        assert!(woken.try_recv().is_err());
        assert_eq!(refresher.refreshed("b"), Refreshed::default(), "forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_held_back_by_its_sync_windows_waits_and_is_never_taken_along() {
        let (refresher, mut woken) = Refresher::new(100);
        tokio::spawn(refresher.clone().run_clock());
        refresher.observe(&key("a"), observed("a", Some(60)));
        refresher.observe(&key("b"), observed("b", Some(60)));
        let windowed = |name| Observed {
            windowed: true,
            ..observed(name, Some(60))
        };
        refresher.observe(&key("w"), windowed("w"));
        refresher
            .refresh(
                &store(),
                "a",
                observed("a", None).requests,
                provider(),
                admit_all(),
            )
            .await;
        let mut first = vec![next(&mut woken).await, next(&mut woken).await];
        first.sort();
        assert_eq!(first, ["b", "w"], "a first sync takes everyone along");

        // 55 s on, a refreshes early: b, due in 5 s, comes along; w not.
        tokio::time::advance(Duration::from_secs(55)).await;
        refresher
            .refresh(
                &store(),
                "a",
                observed("a", None).requests,
                provider(),
                admit_all(),
            )
            .await;
        assert_eq!(next(&mut woken).await, "b");
        assert!(woken.try_recv().is_err());
        // w falls due on its own; held back for ten minutes, it is woken
        // then and not before (a, on its minute, meanwhile).
        assert_eq!(next(&mut woken).await, "w");
        let held_at = Instant::now();
        refresher.defer("w", held_at + Duration::from_secs(600));
        loop {
            let who = next(&mut woken).await;
            if who == "w" {
                break;
            }
            refresher
                .refresh(&store(), &who, BTreeSet::new(), provider(), admit_all())
                .await;
        }
        assert!(held_at.elapsed() >= Duration::from_secs(600));
    }

    /// The next one woken, failing (not hanging) when nobody is.
    async fn next(woken: &mut mpsc::UnboundedReceiver<Arc<str>>) -> String {
        tokio::time::timeout(Duration::from_secs(7200), woken.recv())
            .await
            .expect("someone woken within two hours")
            .expect("the refresher is alive")
            .to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_wakes_each_member_when_its_refresh_falls_due_and_once() {
        let (refresher, mut woken) = Refresher::new(100);
        tokio::spawn(refresher.clone().run_clock());
        refresher.observe(&key("a"), observed("a", Some(600)));
        refresher.observe(&key("b"), observed("b", Some(60)));
        refresher.observe(&key("c"), observed("c", None));
        // Nobody has refreshed yet: the clock wakes nobody (the watch does).
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(woken.try_recv().is_err());

        // One cycle refreshes a, b and c.
        refresher
            .refresh(
                &store(),
                "a",
                observed("a", None).requests,
                provider(),
                admit_all(),
            )
            .await;
        let mut pulled = vec![next(&mut woken).await, next(&mut woken).await];
        pulled.sort();
        assert_eq!(pulled, ["b", "c"], "taken along by the cycle");
        let refreshed = tokio::time::Instant::now();

        // b falls due after its minute, not before, and is woken once,
        // however long its reconcile takes to refresh.
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(woken.try_recv().is_err());
        assert_eq!(next(&mut woken).await, "b");
        assert!(refreshed.elapsed() >= Duration::from_secs(60));
        assert!(refreshed.elapsed() < Duration::from_secs(61));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(woken.try_recv().is_err(), "b is not woken twice");

        // An interval made shorter is kept by a clock that was asleep for longer.
        refresher.observe(
            &key("a"),
            Observed {
                interval: Some(Duration::from_secs(120)),
                ..observed("a", None)
            },
        );
        assert_eq!(next(&mut woken).await, "a");
        assert!(refreshed.elapsed() >= Duration::from_secs(120));
        assert!(refreshed.elapsed() < Duration::from_secs(121));

        // c has no schedule: never woken by the clock. A failed member is
        // retried on its own backoff, not woken.
        refresher.failed("a");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(woken.try_recv().is_err());
    }

    fn provider_with(value: &str) -> Arc<Cached> {
        let spec: crate::api::FakeProvider = serde_json::from_value(serde_json::json!({
            "data": [{"key": "a", "value": value}]
        }))
        .unwrap();
        Arc::new(Cached::new(Arc::new(FakeProvider::new(
            &spec,
            Arc::default(),
        ))))
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_with_the_stores_new_spec_never_joins_a_cycle_of_the_old() {
        // The store's spec changed between two reconciles' reads of it:
        // each gets the values of the spec it read, the second not the old.
        let (refresher, _woken) = Refresher::new(10);
        let join = |key: &'static str, provider: Arc<Cached>| {
            let refresher = refresher.clone();
            async move {
                let requests = observed("a", None).requests;
                refresher
                    .refresh(&store(), key, requests, provider, admit_all())
                    .await
            }
        };
        let value = |answers: FetchResults| match answers.into_values().next() {
            Some(Ok(crate::provider::Fetched::Value(value))) => {
                String::from_utf8_lossy(value.expose()).into_owned()
            }
            other => panic!("{other:?}"),
        };
        let (before, after) = futures::join!(
            join("read-before", provider_with("old")),
            join("read-after", provider_with("new"))
        );
        assert_eq!((value(before), value(after)), ("old".into(), "new".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cycle_starts_without_gathering_once_every_reconcile_waits_in_one() {
        // Two reconciles at a time: one alone gathers for the quiet moment...
        let (refresher, _woken) = Refresher::new(2);
        let provider = provider();
        let join = |key: &'static str| {
            let refresher = refresher.clone();
            let provider = provider.clone();
            async move {
                let store = StoreIdentity {
                    name: format!("store-of-{key}"),
                    ..store()
                };
                let requests = observed(key, None).requests;
                refresher
                    .refresh(&store, key, requests, provider, admit_all())
                    .await
            }
        };
        let started = Instant::now();
        assert_eq!(join("a").await.len(), 1);
        assert!(started.elapsed() >= GATHER_QUIET);
        // ...two, in cycles of two stores, leave nobody to wait for.
        let started = Instant::now();
        let (a, b) = futures::join!(join("a"), join("b"));
        assert_eq!((a.len(), b.len()), (1, 1));
        assert!(started.elapsed() < GATHER_QUIET, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_asked_syncs_costs_two_cycles_whatever_its_length() {
        // One reconcile at a time: it waits in every cycle it joins.
        let (refresher, mut woken) = Refresher::new(1);
        let spec: crate::api::FakeProvider = serde_json::from_value(serde_json::json!({
            "data": [{"key": "a", "value": "1"}]
        }))
        .unwrap();
        let fake = Arc::new(FakeProvider::new(&spec, Arc::default()));
        let provider = Arc::new(Cached::new(fake.clone()));
        let fetches = || fake.calls().total("fake", "FetchBatch");
        for i in 0..100 {
            refresher.observe(&key(&format!("es{i}")), observed("a", Some(3600)));
        }
        refresher
            .refresh(
                &store(),
                "es0",
                observed("a", None).requests,
                provider.clone(),
                admit_all(),
            )
            .await;
        while woken.try_recv().is_ok() {}
        assert_eq!(fetches(), 1, "everyone refreshed once");

        // A force-sync reaches the watch one ExternalSecret every 50 ms for
        // five seconds; each asks for a reconcile.
        let (asked_tx, mut asked) = mpsc::unbounded_channel::<Arc<str>>();
        let asking = {
            let refresher = refresher.clone();
            tokio::spawn(async move {
                for i in 0..100u128 {
                    let mut changed = observed("a", Some(3600));
                    changed.spec_hash = SpecHash(1000 + i);
                    let who = key(&format!("es{i}"));
                    if refresher.observe(&who, changed) {
                        let _ = asked_tx.send(who);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        // The one reconcile slot: an asked ExternalSecret not yet served
        // joins a cycle; one a cycle took along has nothing to fetch.
        loop {
            let who = tokio::select! {
                Some(who) = asked.recv() => who,
                Some(who) = woken.recv() => who,
                // Nobody left to reconcile.
                _ = tokio::time::sleep(Duration::from_secs(30)) => break,
            };
            let refreshed = refresher.refreshed(&who);
            if refreshed.spec != refreshed.current_spec {
                refresher
                    .refresh(
                        &store(),
                        &who,
                        observed("a", None).requests,
                        provider.clone(),
                        admit_all(),
                    )
                    .await;
            }
        }
        assert!(asking.is_finished());
        for i in 0..100 {
            let refreshed = refresher.refreshed(&format!("es{i}"));
            assert_eq!(refreshed.spec, refreshed.current_spec, "es{i} served");
        }
        // The first two seconds' worth, then the rest.
        assert_eq!(fetches() - 1, 2, "cycles for one burst");
    }

    #[tokio::test(start_paused = true)]
    async fn readers_of_a_changed_key_are_woken_and_waited_for() {
        let (refresher, mut woken) = Refresher::new(100);
        refresher.observe(&key("a1"), observed("a", Some(3600)));
        refresher.observe(&key("a2"), observed("a", Some(3600)));
        refresher.observe(&key("b"), observed("b", Some(3600)));
        let mut elsewhere = observed("a", Some(3600));
        elsewhere.store.name = "other".into();
        refresher.observe(&key("x"), elsewhere);
        let is_a = |r: &RemoteRequest| matches!(r, RemoteRequest::Value { key, .. } if key == "a");
        let (requests, mut keys) = refresher.readers(&store(), is_a);
        keys.sort();
        assert_eq!(keys, [key("a1"), key("a2")]);
        assert_eq!(requests, observed("a", None).requests);
        let nobody = refresher.readers(&store(), |_| false);
        assert!(nobody.0.is_empty() && nobody.1.is_empty());

        // Woken; done once each has been reconciled (or is gone).
        let waiting = {
            let refresher = refresher.clone();
            let keys = keys.clone();
            tokio::spawn(async move {
                refresher
                    .wake_and_wait(&keys, Duration::from_secs(60))
                    .await
            })
        };
        let mut first = vec![next(&mut woken).await, next(&mut woken).await];
        first.sort();
        assert_eq!(first, ["a1", "a2"]);
        refresher.succeeded("a1", SpecHash(1), None);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "a2 is not reconciled yet");
        refresher.forget("a2");
        assert!(waiting.await.unwrap());
        assert!(refresher.lock().awaiting.is_empty());

        // A reconcile that never ends: not done within the deadline.
        let (_, keys) = refresher.readers(&store(), is_a);
        assert!(!refresher.wake_and_wait(&keys, Duration::from_secs(5)).await);
        assert!(refresher.lock().awaiting.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn those_due_together_share_one_fetch() {
        let (refresher, _woken) = Refresher::new(100);
        let spec: crate::api::FakeProvider = serde_json::from_value(serde_json::json!({
            "data": [{"key": "a", "value": "1"}]
        }))
        .unwrap();
        let fake = Arc::new(FakeProvider::new(&spec, Arc::default()));
        let provider = Arc::new(Cached::new(fake.clone()));
        let joins = (0..20).map(|i| {
            let refresher = refresher.clone();
            let provider = provider.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(i * 20)).await;
                refresher
                    .refresh(
                        &store(),
                        &format!("es{i}"),
                        observed("a", None).requests,
                        provider,
                        admit_all(),
                    )
                    .await
            }
        });
        let answers = futures::future::join_all(joins).await;
        assert!(answers.iter().all(|a| a.len() == 1));
        assert_eq!(fake.calls().total("fake", "FetchBatch"), 1);
    }
}
