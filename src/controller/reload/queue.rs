//! Debounce and rate. A workload waits until it is due (scheduling it again
//! while it waits keeps the earlier time: a burst of changes makes one entry),
//! then joins one of two ordered lanes, and leaves them one at a time, at most
//! `rate` a second across the cluster (one every `1 / rate` seconds, no burst):
//! restarts first, in the order they became due, then writes that only record
//! a hash. A fleet-wide rotation becomes a steady stream, never a stampede.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Restart,
    Record,
}

pub struct Queue<K> {
    interval: Duration,
    /// Waiting until due, in (due, arrival) order.
    waiting: BTreeMap<(Instant, u64), K>,
    due: HashMap<K, (Instant, u64)>,
    restarts: VecDeque<K>,
    records: VecDeque<K>,
    ready: HashSet<K>,
    /// The earliest the next one may leave.
    next_slot: Option<Instant>,
    arrivals: u64,
}

impl<K: Clone + Eq + Hash> Queue<K> {
    /// `rate` patches per second (at least one an hour).
    pub fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() {
            rate.max(1.0 / 3600.0)
        } else {
            1.0
        };
        Self {
            interval: Duration::from_secs_f64(1.0 / rate),
            waiting: BTreeMap::new(),
            due: HashMap::new(),
            restarts: VecDeque::new(),
            records: VecDeque::new(),
            ready: HashSet::new(),
            next_slot: None,
            arrivals: 0,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Due at `at`, or earlier if it waits already; nothing if it is in a lane.
    pub fn schedule(&mut self, key: K, at: Instant) {
        if self.ready.contains(&key) {
            return;
        }
        if let Some(&(due, arrival)) = self.due.get(&key) {
            if due <= at {
                return;
            }
            self.waiting.remove(&(due, arrival));
        }
        self.arrivals += 1;
        let slot = (at, self.arrivals);
        self.waiting.insert(slot, key.clone());
        self.due.insert(key, slot);
    }

    /// The next waiting one that is due by `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (&slot, _) = self.waiting.first_key_value()?;
        if slot.0 > now {
            return None;
        }
        let key = self.waiting.remove(&slot)?;
        self.due.remove(&key);
        Some(key)
    }

    pub fn push_ready(&mut self, key: K, lane: Lane) {
        if !self.ready.insert(key.clone()) {
            return;
        }
        match lane {
            Lane::Restart => self.restarts.push_back(key),
            Lane::Record => self.records.push_back(key),
        }
    }

    /// The next one in a lane (restarts first), if the rate allows one now.
    /// Call [`Queue::spend`] when it is actually sent.
    pub fn take_ready(&mut self, now: Instant) -> Option<K> {
        if self.next_slot.is_some_and(|slot| slot > now) {
            return None;
        }
        let key = self
            .restarts
            .pop_front()
            .or_else(|| self.records.pop_front())?;
        self.ready.remove(&key);
        Some(key)
    }

    /// One patch was sent at `now`: the next may leave `1 / rate` later.
    pub fn spend(&mut self, now: Instant) {
        self.next_slot = Some(now + self.interval);
    }

    /// When something next becomes possible: a waiting one falls due, or (if
    /// `lanes` and one is ready) the rate allows the next.
    pub fn next_wakeup(&self, now: Instant, lanes: bool) -> Option<Instant> {
        let due = self.waiting.first_key_value().map(|(slot, _)| slot.0);
        let slot = (lanes && !self.ready.is_empty()).then(|| self.next_slot.unwrap_or(now));
        match (due, slot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(slot) = self.due.remove(key) {
            self.waiting.remove(&slot);
        }
        if self.ready.remove(key) {
            self.restarts.retain(|k| k != key);
            self.records.retain(|k| k != key);
        }
    }

    pub fn is_queued(&self, key: &K) -> bool {
        self.due.contains_key(key) || self.ready.contains(key)
    }

    pub fn len(&self) -> usize {
        self.due.len() + self.ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn the_earliest_schedule_wins_and_a_burst_makes_one_entry() {
        let mut queue = Queue::new(10.0);
        let start = Instant::now();
        queue.schedule("a", start + 5 * SECOND);
        queue.schedule("a", start + 7 * SECOND);
        queue.schedule("a", start + 6 * SECOND);
        assert_eq!(queue.len(), 1);
        assert_eq!(
            queue.next_wakeup(Instant::now(), true),
            Some(start + 5 * SECOND)
        );
        tokio::time::advance(4 * SECOND).await;
        assert_eq!(queue.pop_due(Instant::now()), None);
        tokio::time::advance(SECOND).await;
        assert_eq!(queue.pop_due(Instant::now()), Some("a"));
        assert_eq!(queue.pop_due(Instant::now()), None);
        // An earlier time moves a waiting entry forward.
        queue.schedule("b", start + 9 * SECOND);
        queue.schedule("b", start + 6 * SECOND);
        tokio::time::advance(SECOND).await;
        assert_eq!(queue.pop_due(Instant::now()), Some("b"));
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn they_fall_due_in_order_of_due_time_then_arrival() {
        let mut queue = Queue::new(10.0);
        let start = Instant::now();
        for (key, offset) in [("c", 3), ("a", 1), ("b", 1), ("d", 2)] {
            queue.schedule(key, start + offset * SECOND);
        }
        tokio::time::advance(5 * SECOND).await;
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_due(Instant::now())).collect();
        assert_eq!(order, ["a", "b", "d", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_lanes_drain_at_the_rate_restarts_first_in_order() {
        let mut queue = Queue::new(4.0);
        assert_eq!(queue.interval(), Duration::from_millis(250));
        for key in ["r1", "r2", "r3"] {
            queue.push_ready(key, Lane::Restart);
        }
        queue.push_ready("m1", Lane::Record);
        queue.push_ready("r1", Lane::Record); // already in a lane: no second entry
        let start = Instant::now();
        let mut sent = Vec::new();
        while sent.len() < 4 {
            let now = Instant::now();
            if let Some(key) = queue.take_ready(now) {
                queue.spend(now);
                sent.push((key, now - start));
            }
            match queue.next_wakeup(Instant::now(), true) {
                Some(at) => tokio::time::sleep_until(at).await,
                None => break,
            }
        }
        let ms = |m| Duration::from_millis(m);
        assert_eq!(
            sent,
            [
                ("r1", ms(0)),
                ("r2", ms(250)),
                ("r3", ms(500)),
                ("m1", ms(750))
            ]
        );
        assert!(queue.is_empty());
        // After a quiet spell, the next one leaves at once, and only one.
        tokio::time::advance(10 * SECOND).await;
        queue.push_ready("x", Lane::Restart);
        queue.push_ready("y", Lane::Restart);
        let now = Instant::now();
        assert_eq!(queue.take_ready(now), Some("x"));
        queue.spend(now);
        assert_eq!(queue.take_ready(now), None);
        assert_eq!(queue.next_wakeup(Instant::now(), true), Some(now + ms(250)));
        assert_eq!(queue.next_wakeup(Instant::now(), false), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_entry_is_not_scheduled_again_and_can_be_removed() {
        let mut queue = Queue::new(1.0);
        let now = Instant::now();
        queue.push_ready("a", Lane::Restart);
        queue.schedule("a", now);
        assert_eq!(queue.pop_due(now), None, "in a lane already");
        queue.schedule("b", now + SECOND);
        assert!(queue.is_queued(&"a") && queue.is_queued(&"b"));
        queue.remove(&"a");
        queue.remove(&"b");
        assert!(queue.is_empty() && queue.take_ready(now).is_none());
        assert_eq!(queue.next_wakeup(Instant::now(), true), None);
    }
}
