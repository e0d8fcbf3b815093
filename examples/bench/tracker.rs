//! Follows the cluster as the controller changes it: every managed Secret's
//! data, checked value by value against what it must hold, and every
//! ExternalSecret's `status.refreshTime`, the controller's word that it
//! fetched (ESO's meaning). Two watches of the bench's own, so "all right" is
//! seen when it happens without listing 10,000 Secrets over and over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};

const MANAGED: &str = "secretsync.io/managed=true";

/// namespace, name.
pub type Id = (String, String);
pub type Data = BTreeMap<String, Vec<u8>>;

#[derive(Default)]
struct State {
    expected: HashMap<Id, Data>,
    live: HashMap<Id, Data>,
    right: HashSet<Id>,
    /// Distinct `refreshTime` values seen per ExternalSecret, in the order seen.
    refreshes: HashMap<Id, Vec<jiff::Timestamp>>,
    /// How many `refreshTime` values `refreshes` holds in all.
    refreshes_seen: u64,
    /// Times a `refreshTime` was replaced by an earlier one.
    regressions: u64,
    /// Objects seen since a watch (re)started its initial list.
    relisting_secrets: Option<HashSet<Id>>,
    resyncs: Resyncs,
}

/// Lists the bench made to check its watches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resyncs {
    pub lists: u64,
    /// ...that showed more right Secrets or refreshes than the watches had.
    pub found_more: u64,
}

impl State {
    fn recheck(&mut self, id: &Id) {
        let right = match (self.expected.get(id), self.live.get(id)) {
            (Some(expected), Some(live)) => expected == live,
            _ => false,
        };
        if right {
            self.right.insert(id.clone());
        } else {
            self.right.remove(id);
        }
    }
}

/// How the fleet's refreshes fell in a window.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Refreshes {
    /// ExternalSecrets refreshed at least once in the window.
    pub refreshed: usize,
    /// ...of which more than once.
    pub refreshed_more_than_once: usize,
    /// Refreshes in all.
    pub total: usize,
    /// The longest time between two refreshes of one ExternalSecret, counting
    /// from its last refresh before the window to the end of the window for
    /// one not refreshed in it (whole seconds, as refreshTime has).
    pub longest_gap_seconds: i64,
}

pub struct Tracker {
    state: Arc<Mutex<State>>,
    /// Watch errors (each followed by a retry).
    pub watch_errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn refresh_time(object: &DynamicObject) -> Option<jiff::Timestamp> {
    object.data["status"]["refreshTime"].as_str()?.parse().ok()
}

/// Every object, page by page.
pub async fn list_all<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>, String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(500);
    let mut all = Vec::new();
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| format!("listing: {e}"))?;
        all.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(all),
        }
    }
}

/// The data of every managed Secret, from a fresh list.
pub async fn list_secrets(client: &kube::Client) -> Result<HashMap<Id, Data>, String> {
    let api: Api<Secret> = Api::all(client.clone());
    let secrets = list_all(&api, ListParams::default().labels(MANAGED)).await?;
    Ok(secrets
        .into_iter()
        .map(|secret| {
            let id = id_of(&secret.metadata);
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            (id, data)
        })
        .collect())
}

fn whole_second(at: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
}

fn id_of(meta: &kube::core::ObjectMeta) -> Id {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Tracker {
    pub fn start(client: kube::Client) -> Tracker {
        let state = Arc::new(Mutex::new(State::default()));
        let watch_errors = Arc::new(AtomicU64::new(0));
        let secrets = {
            let state = state.clone();
            let errors = watch_errors.clone();
            let api: Api<Secret> = Api::all(client.clone());
            let config = watcher::Config::default().labels(MANAGED);
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
                while let Some(event) = stream.next().await {
                    let Ok(event) = event else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let mut state = state.lock().unwrap();
                    match event {
                        watcher::Event::Init => state.relisting_secrets = Some(HashSet::new()),
                        watcher::Event::InitApply(secret) | watcher::Event::Apply(secret) => {
                            let id = id_of(&secret.metadata);
                            let data: Data = secret
                                .data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.0))
                                .collect();
                            state.live.insert(id.clone(), data);
                            if let Some(seen) = state.relisting_secrets.as_mut() {
                                seen.insert(id.clone());
                            }
                            state.recheck(&id);
                        }
                        watcher::Event::Delete(secret) => {
                            let id = id_of(&secret.metadata);
                            state.live.remove(&id);
                            state.recheck(&id);
                        }
                        watcher::Event::InitDone => {
                            if let Some(seen) = state.relisting_secrets.take() {
                                let gone: Vec<Id> = state
                                    .live
                                    .keys()
                                    .filter(|id| !seen.contains(*id))
                                    .cloned()
                                    .collect();
                                for id in gone {
                                    state.live.remove(&id);
                                    state.recheck(&id);
                                }
                            }
                        }
                    }
                }
            })
        };
        let external_secrets = {
            let state = state.clone();
            let errors = watch_errors.clone();
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("secretsync.io", "v1", "ExternalSecret"),
                "externalsecrets",
            );
            let api: Api<DynamicObject> = Api::all_with(client, &resource);
            tokio::spawn(async move {
                let mut stream =
                    std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
                while let Some(event) = stream.next().await {
                    let object = match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                        Ok(_) => continue,
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let Some(at) = refresh_time(&object) else {
                        continue;
                    };
                    let id = id_of(&object.metadata);
                    let mut state = state.lock().unwrap();
                    let seen = state.refreshes.entry(id).or_default();
                    let went_back = seen.last().is_some_and(|last| at < *last);
                    if seen.last() != Some(&at) {
                        seen.push(at);
                        state.refreshes_seen += 1;
                    }
                    if went_back {
                        state.regressions += 1;
                    }
                }
            })
        };
        Tracker {
            state,
            watch_errors,
            tasks: vec![secrets, external_secrets],
        }
    }

    /// Brings the watched view up to date from a list of every managed Secret
    /// and ExternalSecret: the safety net for a watch that stopped delivering.
    pub async fn resync(&self, client: &kube::Client) -> Result<(), String> {
        let secrets = list_secrets(client).await?;
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("secretsync.io", "v1", "ExternalSecret"),
            "externalsecrets",
        );
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let external_secrets = list_all(&api, ListParams::default()).await?;
        let mut state = self.state.lock().unwrap();
        let before = (
            state.right.len(),
            state.refreshes.values().map(Vec::len).sum::<usize>(),
        );
        state.live = secrets;
        let ids: Vec<Id> = state.expected.keys().cloned().collect();
        for id in ids {
            state.recheck(&id);
        }
        for object in external_secrets {
            let Some(at) = refresh_time(&object) else {
                continue;
            };
            let seen = state.refreshes.entry(id_of(&object.metadata)).or_default();
            if !seen.contains(&at) {
                seen.push(at);
                state.refreshes_seen += 1;
            }
        }
        let after = (
            state.right.len(),
            state.refreshes.values().map(Vec::len).sum::<usize>(),
        );
        state.resyncs.lists += 1;
        if after.0 > before.0 || after.1 > before.1 {
            state.resyncs.found_more += 1;
        }
        Ok(())
    }

    pub fn resyncs(&self) -> Resyncs {
        self.state.lock().unwrap().resyncs
    }

    /// From now on, Secrets are right when they hold `expected`.
    pub fn expect(&self, expected: HashMap<Id, Data>) {
        let mut state = self.state.lock().unwrap();
        state.expected = expected;
        let ids: Vec<Id> = state.expected.keys().cloned().collect();
        state.right.clear();
        for id in ids {
            state.recheck(&id);
        }
    }

    /// Secrets right and `refreshTime` values seen so far: cheap to ask
    /// often, and grows whenever either view moves.
    pub fn progress(&self) -> (usize, u64) {
        let state = self.state.lock().unwrap();
        (state.right.len(), state.refreshes_seen)
    }

    /// Whether the Secret `id`, as last seen, holds `value` under `key`.
    pub fn holds(&self, id: &Id, key: &str, value: &[u8]) -> bool {
        let state = self.state.lock().unwrap();
        state
            .live
            .get(id)
            .and_then(|data| data.get(key))
            .is_some_and(|held| held.as_slice() == value)
    }

    /// Secrets right / Secrets expected.
    pub fn right(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.right.len(), state.expected.len())
    }

    /// The first few Secrets that are not right yet, for an error message.
    pub fn some_wrong(&self, at_most: usize) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut wrong: Vec<String> = state
            .expected
            .keys()
            .filter(|id| !state.right.contains(*id))
            .map(|(namespace, name)| {
                let why = match state.live.get(&(namespace.clone(), name.clone())) {
                    None => "missing",
                    Some(_) => "wrong data",
                };
                format!("{namespace}/{name} ({why})")
            })
            .collect();
        wrong.sort();
        wrong.truncate(at_most);
        wrong
    }

    /// ExternalSecrets seen with a `refreshTime` at or after `since`'s second
    /// (refreshTime has whole seconds: the bench starts phases on one), even
    /// if an earlier time was written back afterwards.
    pub fn refreshed_since(&self, since: jiff::Timestamp) -> usize {
        let since = whole_second(since);
        let state = self.state.lock().unwrap();
        state
            .expected
            .keys()
            .filter(|id| {
                state
                    .refreshes
                    .get(*id)
                    .is_some_and(|r| r.iter().any(|at| *at >= since))
            })
            .count()
    }

    /// How often so far a `refreshTime` was replaced by an earlier one.
    pub fn regressions(&self) -> u64 {
        self.state.lock().unwrap().regressions
    }

    /// Refreshes with `from <= refreshTime < to`.
    pub fn refreshes_between(&self, from: jiff::Timestamp, to: jiff::Timestamp) -> Refreshes {
        let (from, to) = (whole_second(from), whole_second(to));
        let state = self.state.lock().unwrap();
        let mut report = Refreshes::default();
        for id in state.expected.keys() {
            let mut times: Vec<jiff::Timestamp> =
                state.refreshes.get(id).cloned().unwrap_or_default();
            times.sort_unstable();
            times.dedup();
            let inside: Vec<&jiff::Timestamp> =
                times.iter().filter(|t| **t >= from && **t < to).collect();
            report.total += inside.len();
            if !inside.is_empty() {
                report.refreshed += 1;
            }
            if inside.len() > 1 {
                report.refreshed_more_than_once += 1;
            }
            // Gaps: from the last refresh before the window through each one in
            // it, and from the last to the window's end.
            let mut previous = times.iter().rev().find(|t| **t < from).copied();
            for at in &inside {
                if let Some(p) = previous {
                    report.longest_gap_seconds = report
                        .longest_gap_seconds
                        .max(at.as_second() - p.as_second());
                }
                previous = Some(**at);
            }
            if let Some(p) = previous {
                report.longest_gap_seconds = report
                    .longest_gap_seconds
                    .max(to.as_second() - p.as_second());
            }
        }
        report
    }

    /// Every refresh time (seconds since `start`) in `[start, end)`, sorted.
    pub fn refresh_times(&self, start: jiff::Timestamp, end: jiff::Timestamp) -> Vec<i64> {
        let (start, end) = (whole_second(start), whole_second(end));
        let state = self.state.lock().unwrap();
        let mut times: Vec<i64> = state
            .refreshes
            .values()
            .flat_map(|seen| {
                let mut seen = seen.clone();
                seen.sort_unstable();
                seen.dedup();
                seen
            })
            .filter(|t| *t >= start && *t < end)
            .map(|t| t.as_second() - start.as_second())
            .collect();
        times.sort_unstable();
        times
    }
}
