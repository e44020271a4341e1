//! Bounded lock-free queues between pipeline stages.
//!
//! Contract: a [`Ring`] holds at most its capacity; `try_push` never blocks and hands the item back
//! when the ring is full; `try_pop` never blocks. Any number of producers and consumers may share a
//! ring. A producer that is done calls [`Ring::close`] once all its items are pushed; a consumer that
//! sees [`Ring::is_drained`] (closed and empty) knows no item will come any more. Depth is the
//! difference of two monotonic counters (pushed, popped), readable at any time without a lock.
//! The queue itself is crossbeam's `ArrayQueue`: this module adds the closing protocol, the counts
//! and waiting helpers for stages that may wait (replay of a file).

mod bounded;
#[cfg(test)]
mod tests;

pub use bounded::Ring;
