//! Runs the reconciles of one ExternalSecret line (`queue`), in place of
//! kube-runtime's `Controller`, which reconciles only objects held in its own
//! reflector store (see `external_secret_cache` for why ours is smaller).
//!
//! What it keeps of the `Controller`'s promises: at most the line's slots
//! run at once, never two for the same object (the line hands out each key
//! once until it is finished); a reconcile that asks to come back after a
//! while, or fails, comes back then (the earliest of several asks wins);
//! each runs as a task of its own, so one that panics fails alone; and at
//! shutdown nothing new starts while what runs finishes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue;

use super::external_secret::{self, Next};
use super::external_secret_cache::ExternalSecretCache;
use super::queue::Queue;
use super::{Context, Error};

/// A running reconcile: its key, and what came of it.
type Running = BoxFuture<'static, (Arc<str>, Result<Next, Error>)>;

/// Reconciles the keys `line` hands out, each with its object from `cache`,
/// until `stopped`; then waits for the running ones.
pub async fn run(
    line: Arc<Queue<Arc<str>>>,
    cache: Arc<ExternalSecretCache>,
    ctx: Arc<Context>,
    stopped: impl Future<Output = ()> + Send,
) {
    let mut stopped = std::pin::pin!(stopped);
    // A key woken before its object is listed would find nothing: the line
    // holds it until the first list is in.
    tokio::select! {
        _ = cache.listed() => {}
        _ = &mut stopped => return,
    }
    let mut taken = std::pin::pin!(line.clone().stream());
    let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut later = Later::default();
    let mut reconcile = super::in_own_task(external_secret::reconcile);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some((key, outcome)) = running.next(), if !running.is_empty() => {
                let after = match outcome {
                    Ok(Next::Change) => None,
                    Ok(Next::After(after)) => Some(after),
                    Err(error) => {
                        tracing::warn!(external_secret = %key, %error, "reconcile failed");
                        Some(ctx.next_backoff(&key))
                    }
                };
                if let Some(after) = after {
                    later.ask(key.clone(), after);
                }
                line.finished(&*key);
            }
            Some(key) = later.next(), if !later.is_empty() => line.push(key),
            Some(key) = taken.next() => match cache.watched(&key) {
                Some(object) => {
                    let task = reconcile(Arc::new(object), ctx.clone());
                    running.push(Box::pin(async move { (key, task.await) }));
                }
                // Deleted since it was woken.
                None => line.finished(&*key),
            },
        }
    }
    while running.next().await.is_some() {}
}

/// Keys asked back after a while: one timer per key, the earliest ask.
#[derive(Default)]
struct Later {
    timers: DelayQueue<Arc<str>>,
    asked: HashMap<Arc<str>, (delay_queue::Key, Instant)>,
}

impl Later {
    fn ask(&mut self, key: Arc<str>, after: Duration) {
        // DelayQueue panics on a time more than about two years away.
        let when = Instant::now() + after.min(external_secret::MAX_REQUEUE);
        match self.asked.get_mut(&key) {
            Some((_, earlier)) if *earlier <= when => {}
            Some((timer, earlier)) => {
                self.timers.reset_at(timer, when);
                *earlier = when;
            }
            None => {
                let timer = self.timers.insert_at(key.clone(), when);
                self.asked.insert(key, (timer, when));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// The next key whose time came.
    async fn next(&mut self) -> Option<Arc<str>> {
        let expired = std::future::poll_fn(|cx| self.timers.poll_expired(cx)).await?;
        let key = expired.into_inner();
        self.asked.remove(&key);
        if self.asked.is_empty() {
            // After a burst of failures the tables held thousands.
            self.asked.shrink_to_fit();
            self.timers.shrink_to_fit();
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_earliest_ask_wins_and_each_key_comes_back_once() {
        let mut later = Later::default();
        later.ask("a".into(), Duration::from_secs(10));
        later.ask("a".into(), Duration::from_secs(5));
        later.ask("a".into(), Duration::from_secs(20));
        later.ask("b".into(), Duration::from_secs(7));
        let started = Instant::now();
        assert_eq!(later.next().await.as_deref(), Some("a"));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(later.next().await.as_deref(), Some("b"));
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert!(later.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_beyond_the_clock_is_capped() {
        let mut later = Later::default();
        later.ask("far".into(), Duration::MAX);
        assert!(!later.is_empty());
        let started = Instant::now();
        assert_eq!(later.next().await.as_deref(), Some("far"));
        assert_eq!(started.elapsed(), external_secret::MAX_REQUEUE);
    }
}
