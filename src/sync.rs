//! The synchronisation primitives the rings and the frame pool are built on, named in one place so
//! that their concurrency models (`tests/loom.rs`) compile the very same sources against loom's.

pub use crossbeam::queue::ArrayQueue as BoundedQueue;
pub use crossbeam::utils::Backoff;
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Spin briefly, then yield, then sleep: a waiting stage must not burn a core others need.
pub fn snooze(backoff: &Backoff) {
    if backoff.is_completed() {
        std::thread::sleep(std::time::Duration::from_micros(50));
    } else {
        backoff.snooze();
    }
}
