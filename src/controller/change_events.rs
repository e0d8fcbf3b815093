//! AWS change events (`--change-events-queue`): the controller long-polls
//! SQS queues that EventBridge feeds with Secrets Manager and Parameter
//! Store changes, and refreshes just the ExternalSecrets that read a changed
//! key: one batched fetch per store for all the changes a receive brought,
//! then a reconcile of each reader, which writes its Secret from what was
//! fetched. A message is deleted once every Secret it concerns is written;
//! until then (a passing AWS error, a slow reconcile) it stays on the queue,
//! which delivers it again. The refresh interval stays the safety net: a
//! queue that cannot be read costs freshness, never correctness, and the
//! stores of its region say so in their `ChangeEvents` condition.
//!
//! Queues are the controller's, not a store's: one queue (per account and
//! region) serves every store that reads there, and ESO's store manifests
//! need no new field. Events are matched to stores by service, region and
//! key name; a secret of the same name in another account refreshes too,
//! which costs a fetch and changes nothing.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use tokio::time::Instant;

use super::Context;
use crate::provider::aws::change_events::{self, ChangeEvent, LONG_POLL, Message, Parsed, Queue};
use crate::provider::{AwsStore, RemoteRequest};

/// The longest the Secrets of one receive may take to be written before
/// their messages are left for the queue to deliver again (less than the
/// queue's visibility timeout).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(60);
/// Event ids remembered to tell a message delivered twice.
const REMEMBERED: usize = 4096;
/// A queue that cannot be read is tried again after this, doubling...
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// ...up to this.
const LAST_RETRY: Duration = Duration::from_secs(300);

/// The queues, and what the stores show of them.
pub struct ChangeEvents {
    queues: Vec<QueueOf>,
    state: Mutex<State>,
    /// Bumped whenever a queue becomes readable or unreadable, so the
    /// stores' conditions follow.
    changed: tokio::sync::watch::Sender<u64>,
}

struct QueueOf {
    url: String,
    /// The region its events come from: the URL's, else the controller's.
    region: Option<String>,
}

#[derive(Default)]
struct State {
    /// Why a queue cannot be read now, by URL.
    problems: HashMap<String, String>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

/// What a store shows of the queues of its region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Events arrive: from these queues.
    Receiving(String),
    /// A queue cannot be read: why.
    Unreadable(String),
}

impl ChangeEvents {
    /// `default_region`: where a queue whose URL names no region is.
    pub fn new(urls: &[String], default_region: Option<&str>) -> Self {
        let queues = urls
            .iter()
            .map(|url| QueueOf {
                url: url.clone(),
                region: change_events::queue_region(url)
                    .or_else(|| default_region.map(str::to_string)),
            })
            .collect();
        Self {
            queues,
            state: Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Tells when a queue's readability changed.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What a store of `region` shows, if any queue serves that region.
    pub fn for_region(&self, region: &str) -> Option<Subscription> {
        let serving: Vec<&QueueOf> = self
            .queues
            .iter()
            .filter(|q| q.region.as_deref() == Some(region))
            .collect();
        if serving.is_empty() {
            return None;
        }
        let state = self.lock();
        let problems: Vec<String> = serving
            .iter()
            .filter_map(|q| Some(format!("{}: {}", q.url, state.problems.get(&q.url)?)))
            .collect();
        Some(if problems.is_empty() {
            let urls: Vec<&str> = serving.iter().map(|q| q.url.as_str()).collect();
            Subscription::Receiving(format!(
                "changes arrive from {}; the refresh interval is the safety net",
                urls.join(", ")
            ))
        } else {
            Subscription::Unreadable(format!(
                "cannot read change events, so refreshes wait for the interval: {}",
                problems.join("; ")
            ))
        })
    }

    fn readable(&self, url: &str) {
        if self.lock().problems.remove(url).is_some() {
            tracing::info!(queue = url, "change events: the queue can be read again");
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn unreadable(&self, url: &str, why: String) {
        let previous = self.lock().problems.insert(url.to_string(), why.clone());
        if previous.as_ref() != Some(&why) {
            tracing::warn!(queue = url, %why, "change events: cannot read the queue; refreshes wait for the interval");
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn seen_before(&self, id: &str) -> bool {
        !id.is_empty() && self.lock().seen.contains(id)
    }

    fn remember(&self, ids: impl IntoIterator<Item = String>) {
        let mut state = self.lock();
        for id in ids.into_iter().filter(|id| !id.is_empty()) {
            if state.seen.insert(id.clone()) {
                state.seen_order.push_back(id);
            }
        }
        while state.seen_order.len() > REMEMBERED {
            if let Some(old) = state.seen_order.pop_front() {
                state.seen.remove(&old);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads every queue for as long as the process runs.
pub async fn run(ctx: Arc<Context>, events: Arc<ChangeEvents>, base: Option<SdkConfig>) {
    let readers = events.queues.iter().map(|queue| {
        read_queue(
            ctx.clone(),
            events.clone(),
            base.clone(),
            queue.url.clone(),
            queue.region.clone(),
        )
    });
    futures::future::join_all(readers).await;
}

async fn read_queue(
    ctx: Arc<Context>,
    events: Arc<ChangeEvents>,
    base: Option<SdkConfig>,
    url: String,
    region: Option<String>,
) {
    let base = match base {
        Some(base) => base,
        None => {
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await
        }
    };
    let mut config = base.to_builder();
    if let Some(region) = &region {
        config = config.region(aws_config::Region::new(region.clone()));
    }
    let client = aws_sdk_sqs::Client::new(&config.build());
    let queue = Queue::new(client, url.clone(), ctx.providers.call_counts());
    tracing::info!(queue = %url, region = region.as_deref().unwrap_or("?"), "reading AWS change events");
    let mut retry = FIRST_RETRY;
    let mut failing = false;
    loop {
        // After a failure, one short poll: it answers at once, so the store
        // says the queue is read again as soon as it is, not a long poll later.
        let wait = if failing { Duration::ZERO } else { LONG_POLL };
        match queue.receive(wait).await {
            Err(e) => {
                events.unreadable(&url, e.to_string());
                failing = true;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LAST_RETRY);
            }
            Ok(messages) => {
                events.readable(&url);
                failing = false;
                retry = FIRST_RETRY;
                if !messages.is_empty() {
                    apply(&ctx, &events, &queue, messages).await;
                }
            }
        }
    }
}

/// Refreshes what a receive's messages say changed, then deletes those
/// messages whose Secrets were written.
async fn apply(ctx: &Context, events: &ChangeEvents, queue: &Queue, messages: Vec<Message>) {
    let started = Instant::now();
    // Deleted whatever happens: nothing to do for them, now or later.
    let mut settled = Vec::new();
    let mut changes: Vec<(ChangeEvent, String)> = Vec::new();
    for message in messages {
        match change_events::parse(&message.body) {
            Err(why) => {
                tracing::debug!(queue = %queue.url, %why, "change events: a message that is no event, dropped");
                ctx.metrics.change_event("malformed");
                settled.push(message.receipt);
            }
            Ok(Parsed::Unrelated) => {
                ctx.metrics.change_event("unrelated");
                settled.push(message.receipt);
            }
            Ok(Parsed::Change(event)) if events.seen_before(&event.id) => {
                ctx.metrics.change_event("duplicate");
                settled.push(message.receipt);
            }
            Ok(Parsed::Change(event)) => changes.push((event, message.receipt)),
        }
    }

    let mut matched = vec![false; changes.len()];
    let mut work: Vec<(AwsStore, BTreeSet<RemoteRequest>)> = Vec::new();
    let mut readers: BTreeSet<Arc<str>> = BTreeSet::new();
    for store in ctx.providers.aws_stores() {
        let here: Vec<usize> = (0..changes.len())
            .filter(|&i| {
                changes[i].0.service == store.service && changes[i].0.region == store.region
            })
            .collect();
        if here.is_empty() {
            continue;
        }
        let (requests, keys) = ctx.refresher.readers(&store.identity, |request| {
            here.iter()
                .any(|&i| change_events::reads(request, &store.prefix, &changes[i].0))
        });
        if requests.is_empty() {
            continue;
        }
        for &i in &here {
            if requests
                .iter()
                .any(|request| change_events::reads(request, &store.prefix, &changes[i].0))
            {
                matched[i] = true;
            }
        }
        readers.extend(keys);
        work.push((store, requests));
    }

    let fetches = work
        .iter()
        .map(|(store, requests)| store.provider.fetch_changed(requests));
    let passing_failures: usize = futures::future::join_all(fetches)
        .await
        .iter()
        .map(Vec::len)
        .sum();
    let readers: Vec<Arc<str>> = readers.into_iter().collect();
    let written = ctx.refresher.wake_and_wait(&readers, WRITE_DEADLINE).await;

    let mut applied_ids = Vec::new();
    for ((event, receipt), matched) in changes.into_iter().zip(matched) {
        if !matched {
            ctx.metrics.change_event("unmatched");
            applied_ids.push(event.id);
            settled.push(receipt);
            continue;
        }
        ctx.metrics.change_event("applied");
        tracing::debug!(service = ?event.service, region = %event.region, key = %event.name, action = %event.action, "change event");
        if written && passing_failures == 0 {
            applied_ids.push(event.id);
            settled.push(receipt);
        }
    }
    if passing_failures > 0 || !written {
        tracing::info!(
            queue = %queue.url,
            passing_failures,
            written,
            "change events: not every Secret is written yet; the queue delivers the rest again"
        );
    }
    ctx.metrics.observe_change_events(started.elapsed());
    match queue.delete(&settled).await {
        Ok(()) => events.remember(applied_ids),
        // Delivered again later: then a duplicate's fetch, nothing worse.
        Err(e) => {
            tracing::warn!(queue = %queue.url, error = %e, "change events: could not delete messages")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_shows_the_queues_of_its_region_and_why_one_cannot_be_read() {
        let events = ChangeEvents::new(
            &[
                "https://sqs.eu-west-1.amazonaws.com/1/changes".into(),
                "http://127.0.0.1:5000/1/local".into(),
            ],
            Some("us-east-1"),
        );
        assert_eq!(events.for_region("ap-south-1"), None);
        assert_eq!(
            events.for_region("us-east-1"),
            Some(Subscription::Receiving(
                "changes arrive from http://127.0.0.1:5000/1/local; the refresh interval is the safety net".into()
            ))
        );
        let mut changes = events.changes();
        events.unreadable(
            "https://sqs.eu-west-1.amazonaws.com/1/changes",
            "denied".into(),
        );
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        // The same problem again is no news.
        events.unreadable(
            "https://sqs.eu-west-1.amazonaws.com/1/changes",
            "denied".into(),
        );
        assert!(!changes.has_changed().unwrap());
        let Some(Subscription::Unreadable(why)) = events.for_region("eu-west-1") else {
            panic!("unreadable");
        };
        assert!(why.contains("changes: denied"), "{why}");
        events.readable("https://sqs.eu-west-1.amazonaws.com/1/changes");
        assert!(changes.has_changed().unwrap());
        assert!(matches!(
            events.for_region("eu-west-1"),
            Some(Subscription::Receiving(_))
        ));
    }

    #[test]
    fn a_delivered_event_is_remembered_within_bounds() {
        let events = ChangeEvents::new(&[], None);
        assert!(!events.seen_before("a"));
        events.remember(["a".to_string(), String::new()]);
        assert!(events.seen_before("a"));
        assert!(
            !events.seen_before(""),
            "an event without an id is never a duplicate"
        );
        events.remember((0..REMEMBERED).map(|i| i.to_string()));
        assert!(!events.seen_before("a"), "the oldest is forgotten");
        assert_eq!(events.lock().seen.len(), REMEMBERED);
    }
}
