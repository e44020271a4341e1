//! Loom models of the rings' closing protocol and of the frame pool: every interleaving (up to a
//! preemption bound) of a few threads is run, and each must hand every item on exactly once.
//!
//! The ring and pool sources are compiled here against loom's atomics and a loom-scheduled bounded
//! queue (`sync` below) instead of std's atomics and crossbeam's `ArrayQueue`. The queue stands in for
//! `ArrayQueue` by its contract (bounded, linearisable push and pop); `ArrayQueue`'s own lock-free
//! algorithm is crossbeam's to check, and runs under Miri here (`scripts/miri`). What these models
//! check is hitgate's part: the closed flag, the re-check after it, the counts, the last reducer
//! closing the ring behind it, and slots coming back to the pool from any thread.

/// Loom's primitives under the names `crate::sync` gives the library.
mod sync {
    use std::collections::VecDeque;

    pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A bounded queue with `ArrayQueue`'s interface; each operation is one loom scheduling point.
    pub struct BoundedQueue<T> {
        items: loom::sync::Mutex<VecDeque<T>>,
        capacity: usize,
    }

    impl<T> BoundedQueue<T> {
        pub fn new(capacity: usize) -> BoundedQueue<T> {
            assert!(capacity > 0, "ArrayQueue refuses a zero capacity");
            BoundedQueue { items: loom::sync::Mutex::new(VecDeque::with_capacity(capacity)), capacity }
        }

        pub fn push(&self, item: T) -> Result<(), T> {
            let mut items = self.items.lock().unwrap();
            if items.len() == self.capacity {
                return Err(item);
            }
            items.push_back(item);
            Ok(())
        }

        pub fn pop(&self) -> Option<T> {
            self.items.lock().unwrap().pop_front()
        }

        pub fn is_empty(&self) -> bool {
            self.items.lock().unwrap().is_empty()
        }

        pub fn len(&self) -> usize {
            self.items.lock().unwrap().len()
        }

        pub fn capacity(&self) -> usize {
            self.capacity
        }
    }

    pub struct Backoff;

    impl Backoff {
        pub fn new() -> Backoff {
            Backoff
        }
    }

    /// A waiting thread yields, so loom runs the others.
    pub fn snooze(_: &Backoff) {
        loom::thread::yield_now();
    }
}

mod features {
    pub use hitgate::features::FrameFeatures;
}

// The very sources the library builds; what the models do not call is unused here.
#[allow(dead_code)]
#[path = "../src/ring/bounded.rs"]
mod ring;

#[allow(dead_code)]
#[path = "../src/frame/pool.rs"]
mod pool;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use ring::Ring;

const PREEMPTIONS: usize = 3;

/// Runs `f` under every interleaving loom finds with at most `preemptions` forced thread switches
/// (bugs in protocols this small show within a few; unbounded, the spin-waits make the search
/// endless), and says how many it ran: a model that explores one interleaving checks nothing.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) -> usize {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    let mut builder = loom::model::Builder::new();
    // LOOM_MAX_PREEMPTIONS, when set, wins (a deeper search by hand).
    builder.preemption_bound = builder.preemption_bound.or(Some(preemptions));
    builder.max_branches = 100_000;
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{runs} interleavings");
    assert!(runs > 1, "the model ran one interleaving only");
    runs
}

#[test]
fn a_consumer_waiting_on_a_closing_ring_gets_every_item() {
    model(PREEMPTIONS, || {
        let ring = Arc::new(Ring::new(1));
        let producer = {
            let ring = Arc::clone(&ring);
            loom::thread::spawn(move || {
                for i in 0..2u32 {
                    ring.push_waiting(i, || true).unwrap();
                }
                ring.close();
            })
        };
        let got: Vec<u32> = std::iter::from_fn(|| ring.pop_waiting()).collect();
        producer.join().unwrap();
        assert_eq!(got, [0, 1]);
        assert!(ring.is_drained());
        assert_eq!((ring.pushed(), ring.popped()), (2, 2));
    });
}

#[test]
fn a_drained_ring_has_handed_on_everything_pushed() {
    model(PREEMPTIONS, || {
        let ring = Arc::new(Ring::new(2));
        let producer = {
            let ring = Arc::clone(&ring);
            loom::thread::spawn(move || {
                ring.try_push(7u32).unwrap();
                ring.close();
            })
        };
        // The sink's loop when it also waits for verdicts: try, and only stop once drained.
        let mut got = Vec::new();
        loop {
            if let Some(item) = ring.try_pop() {
                got.push(item);
                continue;
            }
            if ring.is_drained() {
                got.extend(ring.try_pop());
                break;
            }
            loom::thread::yield_now();
        }
        producer.join().unwrap();
        assert_eq!(got, [7]);
    });
}

/// The pipeline's shape: a source closes the ring to the reducers; each reducer hands frames on to
/// the sink's ring, and the last reducer to stop closes that one. (The sink's ring has room for
/// every frame and so has the reducers' ring: with the source or the sink spinning as well the
/// search does not end.)
#[test]
fn frames_cross_two_reducers_to_the_sink_exactly_once() {
    // Two reducers spinning at once: two preemptions take longer than a test may.
    model(1, || {
        let to_reducers = Arc::new(Ring::new(2));
        let to_sink = Arc::new(Ring::new(2));
        let running = Arc::new(AtomicUsize::new(2));
        let reducers: Vec<_> = (0..2)
            .map(|_| {
                let (input, output, running) = (Arc::clone(&to_reducers), Arc::clone(&to_sink), Arc::clone(&running));
                loom::thread::spawn(move || {
                    while let Some(frame) = input.pop_waiting() {
                        output.try_push(frame).unwrap();
                    }
                    if running.fetch_sub(1, Ordering::AcqRel) == 1 {
                        output.close();
                    }
                })
            })
            .collect();
        for frame in 0..2u32 {
            to_reducers.try_push(frame).unwrap();
        }
        to_reducers.close();
        for r in reducers {
            r.join().unwrap();
        }
        assert!(to_sink.is_drained() || to_sink.pushed() == 2, "closed by the last reducer");
        let mut stored: Vec<u32> = std::iter::from_fn(|| to_sink.pop_waiting()).collect();
        stored.sort_unstable();
        assert_eq!(stored, [0, 1]);
        assert!(to_reducers.is_drained() && to_sink.is_drained());
    });
}

#[test]
fn pool_slots_are_never_shared_and_all_come_back() {
    model(PREEMPTIONS, || {
        let pool = pool::FramePool::new(64, 2, 2, 0).unwrap();
        let users: Vec<_> = (1..=2u8)
            .map(|id| {
                let pool = std::sync::Arc::clone(&pool);
                loom::thread::spawn(move || {
                    // A handle can be dropped on another thread than the one that took it.
                    let mut frame = loop {
                        match pool.try_acquire() {
                            Some(frame) => break frame,
                            None => loom::thread::yield_now(),
                        }
                    };
                    assert_eq!(frame.meta().packets_expected, 2, "reset on acquire");
                    assert!(frame.mark_packet(1), "mask cleared on acquire");
                    frame.data_mut()[0] = id;
                    frame.meta_mut().frame_number = u64::from(id);
                    loom::thread::yield_now();
                    assert_eq!(frame.data()[0], id, "nobody else writes this slot");
                    frame
                })
            })
            .collect();
        // Taken and given back while the others race for the same slots.
        if let Some(mut mine) = pool.try_acquire() {
            mine.data_mut()[0] = 0;
            loom::thread::yield_now();
            assert_eq!(mine.data()[0], 0, "nobody else writes this slot");
        }
        let handed: Vec<_> = users.into_iter().map(|u| u.join().unwrap()).collect();
        let numbers: Vec<u64> = handed.iter().map(|f| f.meta().frame_number).collect();
        assert_eq!(numbers, [1, 2]);
        assert_eq!(pool.free_slots(), 0);
        drop(handed);
        assert_eq!(pool.free_slots(), 2);
    });
}
