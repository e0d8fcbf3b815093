//! ExternalSecrets waiting for a reconcile, handed to the `runner` as slots
//! free up.
//!
//! kube-runtime's scheduler keeps every request it is given in hash tables
//! and a delay queue that never shrink, so one burst (the first sync of
//! 10,000 ExternalSecrets, or a store-wide cycle that takes them all along)
//! leaves megabytes of empty table behind for the life of the process. The
//! line waits here instead: deduplicated, in arrival order, and handing its
//! memory back once it is empty. Its slots are the reconciles that run at
//! once (`--api-concurrency`, twice over).

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::sync::Notify;

/// A first-in, first-out line of distinct items, of which at most `slots`
/// are out (handed over and not yet finished) at once.
pub struct Queue<T> {
    state: Mutex<State<T>>,
    /// Something was pushed or finished: the taker may go on.
    changed: Notify,
    slots: usize,
}

struct State<T> {
    waiting: VecDeque<T>,
    /// What `waiting` holds, to turn away a second request for it.
    queued: HashSet<T>,
    /// Handed over, not finished.
    out: HashSet<T>,
    /// Asked for again while out: goes back in line when it finishes, so a
    /// change seen during a reconcile gets a reconcile of its own.
    again: HashSet<T>,
}

impl<T: Clone + Eq + Hash> Queue<T> {
    pub fn new(slots: usize) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                queued: HashSet::new(),
                out: HashSet::new(),
                again: HashSet::new(),
            }),
            changed: Notify::new(),
            slots: slots.max(1),
        }
    }

    /// Asks for one (more) reconcile of `item`.
    pub fn push(&self, item: T) {
        let mut state = self.lock();
        if state.out.contains(&item) {
            state.again.insert(item);
            return;
        }
        if state.queued.insert(item.clone()) {
            state.waiting.push_back(item);
            drop(state);
            self.changed.notify_one();
        }
    }

    /// `item`'s reconcile is over (whatever came of it): its slot is free.
    pub fn finished<Q>(&self, item: &Q)
    where
        T: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let mut state = self.lock();
        if !state.out.remove(item) {
            // Not handed out (finished twice, or never taken).
            return;
        }
        if let Some(again) = state.again.take(item)
            && state.queued.insert(again.clone())
        {
            state.waiting.push_back(again);
        }
        if state.out.is_empty() {
            state.out.shrink_to_fit();
            state.again.shrink_to_fit();
        }
        drop(state);
        self.changed.notify_one();
    }

    /// The next item, once a slot is free.
    fn take(&self) -> Option<T> {
        let mut state = self.lock();
        if state.out.len() >= self.slots {
            return None;
        }
        let item = state.waiting.pop_front()?;
        state.queued.remove(&item);
        state.out.insert(item.clone());
        if state.waiting.is_empty() {
            // After a burst the line held thousands: give that back.
            state.waiting.shrink_to_fit();
            state.queued.shrink_to_fit();
        }
        Some(item)
    }

    /// Items as slots free up, for as long as the queue lives.
    pub fn stream(self: Arc<Self>) -> impl Stream<Item = T> + Send + 'static
    where
        T: Send + 'static,
    {
        futures::stream::unfold(self, |queue| async move {
            loop {
                if let Some(item) = queue.take() {
                    return Some((item, queue));
                }
                // A push or finish in between left a permit: not missed.
                queue.changed.notified().await;
            }
        })
    }

    /// How many wait, and how many are out.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let state = self.lock();
        (state.waiting.len(), state.out.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    async fn next(stream: &mut (impl Stream<Item = u32> + Unpin)) -> Option<u32> {
        tokio::time::timeout(Duration::from_millis(50), stream.next())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn hands_out_at_most_its_slots_in_order_and_each_once() {
        let queue = Arc::new(Queue::new(2));
        for item in [1, 2, 3, 2, 1, 4] {
            queue.push(item);
        }
        let mut stream = Box::pin(queue.clone().stream());
        assert_eq!(next(&mut stream).await, Some(1));
        assert_eq!(next(&mut stream).await, Some(2));
        // Both slots are out: nothing more until one finishes.
        assert_eq!(next(&mut stream).await, None);
        assert_eq!(queue.len(), (2, 2));
        queue.finished(&1);
        assert_eq!(next(&mut stream).await, Some(3));
        queue.finished(&2);
        queue.finished(&3);
        assert_eq!(next(&mut stream).await, Some(4));
        assert_eq!(next(&mut stream).await, None);
        queue.finished(&4);
        assert_eq!(queue.len(), (0, 0));
    }

    #[tokio::test]
    async fn asked_again_while_out_goes_back_in_line_once_finished() {
        let queue = Arc::new(Queue::new(4));
        let mut stream = Box::pin(queue.clone().stream());
        queue.push(7);
        assert_eq!(next(&mut stream).await, Some(7));
        queue.push(7);
        queue.push(7);
        // Not handed out twice at once.
        assert_eq!(next(&mut stream).await, None);
        queue.finished(&7);
        assert_eq!(next(&mut stream).await, Some(7));
        queue.finished(&7);
        assert_eq!(next(&mut stream).await, None);
    }

    #[tokio::test]
    async fn a_finish_it_did_not_hand_out_frees_nothing() {
        let queue = Arc::new(Queue::new(1));
        let mut stream = Box::pin(queue.clone().stream());
        queue.push(1);
        queue.push(2);
        assert_eq!(next(&mut stream).await, Some(1));
        queue.finished(&2);
        assert_eq!(next(&mut stream).await, None);
        queue.finished(&1);
        assert_eq!(next(&mut stream).await, Some(2));
    }

    #[tokio::test]
    async fn after_a_burst_it_holds_no_memory() {
        let queue = Arc::new(Queue::new(8));
        let mut stream = Box::pin(queue.clone().stream());
        for item in 0..10_000 {
            queue.push(item);
        }
        for _ in 0..10_000 {
            let item = next(&mut stream).await.unwrap();
            queue.finished(&item);
        }
        let state = queue.lock();
        assert_eq!(
            (
                state.waiting.capacity(),
                state.queued.capacity(),
                state.out.capacity()
            ),
            (0, 0, 0)
        );
    }

    #[tokio::test]
    async fn a_waiting_taker_wakes_on_a_push() {
        let queue = Arc::new(Queue::new(1));
        let mut stream = Box::pin(queue.clone().stream());
        let taker = tokio::spawn(async move { stream.next().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        queue.push(5);
        let taken = tokio::time::timeout(Duration::from_secs(1), taker)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(taken, Some(5));
    }
}
