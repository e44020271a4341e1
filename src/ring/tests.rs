//! The ring's own tests (threads and counts); its loom model is `tests/loom.rs`.

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
