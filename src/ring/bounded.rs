//! The ring itself; its contract is the module's (see `ring`).

use crate::sync::{AtomicBool, AtomicU64, Backoff, BoundedQueue, Ordering, snooze};

pub struct Ring<T> {
    queue: BoundedQueue<T>,
    closed: AtomicBool,
    pushed: AtomicU64,
    popped: AtomicU64,
}

impl<T> Ring<T> {
    /// A ring of `capacity` items (at least one).
    pub fn new(capacity: usize) -> Ring<T> {
        Ring {
            queue: BoundedQueue::new(capacity.max(1)),
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
