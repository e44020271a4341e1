//! The pool's own tests, kept apart so that its loom model (`tests/loom.rs`) can compile `pool.rs` alone.

use super::pool::*;

#[test]
fn slots_come_back_when_handles_drop() {
    let pool = FramePool::new(8192, 130, 2, 4).unwrap();
    let mut a = pool.try_acquire().unwrap();
    let b = pool.try_acquire().unwrap();
    assert!(pool.try_acquire().is_none());
    #[cfg(not(miri))]
    assert_eq!(a.data().as_ptr() as usize % 4096, 0, "page aligned");
    assert!(a.mark_packet(129));
    assert!(!a.mark_packet(129));
    a.data_mut()[0] = 9;
    a.meta_mut().frame_number = 5;
    drop(a);
    let again = pool.try_acquire().unwrap();
    assert_eq!(again.meta().frame_number, 0, "metadata cleared on reuse");
    assert!(!again.has_packet(129), "mask cleared on reuse");
    assert_eq!(again.meta().packets_expected, 130);
    drop((b, again));
    assert_eq!(pool.free_slots(), 2);
}

#[test]
fn a_pool_larger_than_memory_is_refused_before_mapping() {
    let Some(available) = available_memory_bytes() else { return };
    let frame_bytes = 64 << 20;
    let slots = (available / frame_bytes as u64) as usize + 1;
    let err = FramePool::new(frame_bytes, 1, slots, 0).err().expect("refused");
    assert!(matches!(err, PoolError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("lower assembler.pool_frames"), "{err}");
}

#[test]
fn handles_cross_threads() {
    let pool = FramePool::new(64, 1, 4, 0).unwrap();
    let handles: Vec<_> = (0..4).map(|_| pool.try_acquire().unwrap()).collect();
    std::thread::spawn(move || drop(handles)).join().unwrap();
    assert_eq!(pool.free_slots(), 4);
}
