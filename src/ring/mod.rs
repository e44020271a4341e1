//! Bounded lock-free queues between pipeline stages.
//!
//! Contract: a [`Ring`] holds at most its capacity; `try_push` never blocks and hands the item back
//! when the ring is full; `try_pop` never blocks. Any number of producers and consumers may share a
//! ring. A producer that is done calls [`Ring::close`] once all its items are pushed; a consumer that
//! sees [`Ring::is_drained`] (closed and empty) knows no item will come any more. Depth is the
//! difference of two monotonic counters (pushed, popped), readable at any time without a lock.
//! The queue itself is crossbeam's `ArrayQueue`: this module adds the closing protocol, the counts
//! and waiting helpers for stages that may wait (replay of a file).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::Backoff;

pub struct Ring<T> {
    queue: ArrayQueue<T>,
    closed: AtomicBool,
    pushed: AtomicU64,
    popped: AtomicU64,
}

impl<T> Ring<T> {
    /// A ring of `capacity` items (at least one).
    pub fn new(capacity: usize) -> Ring<T> {
        Ring {
            queue: ArrayQueue::new(capacity.max(1)),
            closed: AtomicBool::new(false),
            pushed: AtomicU64::new(0),
            popped: AtomicU64::new(0),
        }
    }

    /// Pushes without waiting.
    ///
    /// # Errors
    /// The item, handed back, when the ring is full.
    pub fn try_push(&self, item: T) -> Result<(), T> {
        self.queue.push(item)?;
        self.pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn try_pop(&self) -> Option<T> {
        let item = self.queue.pop()?;
        self.popped.fetch_add(1, Ordering::Relaxed);
        Some(item)
    }

    /// Pushes, waiting (spinning, then yielding, then sleeping briefly) while the ring is full and
    /// `keep_waiting` says so.
    ///
    /// # Errors
    /// The item, handed back, when `keep_waiting` returned false first.
    pub fn push_waiting(&self, mut item: T, keep_waiting: impl Fn() -> bool) -> Result<(), T> {
        let backoff = Backoff::new();
        loop {
            match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(back) if keep_waiting() => {
                    item = back;
                    snooze(&backoff);
                }
                Err(back) => return Err(back),
            }
        }
    }

    /// Pops, waiting while the ring is empty but not closed; `None` once it is drained.
    pub fn pop_waiting(&self) -> Option<T> {
        let backoff = Backoff::new();
        loop {
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.closed.load(Ordering::Acquire) {
                // A push may have landed between the pop and the check.
                return self.try_pop();
            }
            snooze(&backoff);
        }
    }

    /// No more items will be pushed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_drained(&self) -> bool {
        self.closed.load(Ordering::Acquire) && self.queue.is_empty()
    }

    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    pub fn popped(&self) -> u64 {
        self.popped.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}

/// Spin briefly, then yield, then sleep: a waiting stage must not burn a core others need.
fn snooze(backoff: &Backoff) {
    if backoff.is_completed() {
        std::thread::sleep(std::time::Duration::from_micros(50));
    } else {
        backoff.snooze();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_ring_hands_the_item_back() {
        let r = Ring::new(2);
        r.try_push(1).unwrap();
        r.try_push(2).unwrap();
        assert_eq!(r.try_push(3), Err(3));
        assert_eq!(r.push_waiting(4, || false), Err(4));
        assert_eq!((r.try_pop(), r.pushed(), r.popped()), (Some(1), 2, 1));
    }

    #[test]
    fn every_item_crosses_exactly_once_with_many_producers_and_consumers() {
        let r = Arc::new(Ring::new(8));
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        r.push_waiting(p * 10_000 + i, || true).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || std::iter::from_fn(|| r.pop_waiting()).collect::<Vec<u64>>())
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        r.close();
        let mut all: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
        all.sort_unstable();
        let want: Vec<u64> = (0..3u64).flat_map(|p| (0..2000).map(move |i| p * 10_000 + i)).collect();
        assert_eq!(all, want);
        assert!(r.is_drained());
    }
}
