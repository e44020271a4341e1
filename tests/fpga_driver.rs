//! The FPGA driver against the emulated card (the HLS kernel compiled for this machine behind the
//! card's register window and DMA channels): results bit for bit as the Rust model of the kernel's
//! arithmetic computes them, and every error path a real card can take — no kernel loaded, another
//! model's weights, a done bit that never rises, a DMA channel that refuses transfers, a batch too
//! large — ends in a clear error within its deadline.

use std::time::Duration;

use hitgate::trigger::fpga::driver::{CardLayout, FpgaCard, FpgaError};
use hitgate::trigger::fpga::emulator::{EmulatedCard, Faults, INPUT_ADDRESS, OUTPUT_ADDRESS};
use hitgate::trigger::fpga::manifest::fnv1a64;
use hitgate::trigger::fpga::quant::{INPUTS, QuantClassifier};
use hitgate::trigger::tract::BUILTIN_INT8_MODEL;

const LAYOUT: CardLayout = CardLayout { input_address: INPUT_ADDRESS, output_address: OUTPUT_ADDRESS };
const TIMEOUT: Duration = Duration::from_millis(300);

fn model_hash() -> u64 {
    fnv1a64(BUILTIN_INT8_MODEL)
}

fn inputs(n: usize, seed: i32) -> Vec<[i8; INPUTS]> {
    (0..n as i32).map(|k| std::array::from_fn(|i| ((i as i32 * 53 + k * 97 + seed) % 256 - 128) as i8)).collect()
}

#[test]
fn batches_through_the_emulated_card_match_the_rust_model_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let emulated = EmulatedCard::start(dir.path(), Faults::default()).unwrap();
    let mut card = FpgaCard::open(emulated.paths(), LAYOUT, model_hash(), TIMEOUT).unwrap();
    let q = QuantClassifier::from_onnx(BUILTIN_INT8_MODEL).unwrap();
    for (n, seed) in [(1, 0), (17, 5), (4096, 11), (3, 99)] {
        let batch = inputs(n, seed);
        let mut logits = vec![0i64; n];
        card.judge(&batch, &mut logits).unwrap();
        for (x, got) in batch.iter().zip(&logits) {
            assert_eq!(*got, q.logit_accumulator(x), "batch of {n}");
        }
    }
    let (calls, _) = emulated.calls();
    assert_eq!(calls, 5, "a probe and four batches");
    let err = card.judge(&inputs(4097, 0), &mut vec![0; 4097]).unwrap_err();
    assert!(matches!(err, FpgaError::BatchTooLarge(4097)), "{err}");
}

#[test]
fn a_card_without_the_kernel_is_refused_once_its_deadline_passed() {
    let dir = tempfile::tempdir().unwrap();
    let emulated = EmulatedCard::start(dir.path(), Faults { not_loaded: true, ..Faults::default() }).unwrap();
    let err = FpgaCard::open(emulated.paths(), LAYOUT, model_hash(), TIMEOUT).err().unwrap();
    // Refused, not hung: the probe gave up after waiting out the deadline, and says why.
    assert!(matches!(err, FpgaError::NoAnswer { waited, .. } if waited > TIMEOUT), "{err}");
    assert!(err.to_string().contains("is the bitstream loaded?"), "{err}");
    assert_eq!(emulated.calls().0, 0, "the kernel never ran");
}

#[test]
fn a_kernel_built_from_other_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let emulated = EmulatedCard::start(dir.path(), Faults::default()).unwrap();
    let err = FpgaCard::open(emulated.paths(), LAYOUT, model_hash() ^ 1, TIMEOUT).err().unwrap();
    assert!(matches!(err, FpgaError::ModelMismatch { .. }), "{err}");
    assert!(err.to_string().contains("built from model"), "{err}");
}

#[test]
fn a_done_bit_that_never_rises_times_out_and_the_card_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let emulated = EmulatedCard::start(dir.path(), Faults::default()).unwrap();
    let mut card = FpgaCard::open(emulated.paths(), LAYOUT, model_hash(), TIMEOUT).unwrap();
    emulated.set_stuck_done(true);
    let err = card.judge(&inputs(8, 1), &mut [0; 8]).unwrap_err();
    // The call waited its whole deadline before it gave up.
    assert!(matches!(err, FpgaError::NoAnswer { waited, .. } if waited > TIMEOUT), "{err}");
    emulated.set_stuck_done(false);
    let mut logits = [0i64; 8];
    card.judge(&inputs(8, 1), &mut logits).unwrap();
    let q = QuantClassifier::from_onnx(BUILTIN_INT8_MODEL).unwrap();
    assert_eq!(logits[3], q.logit_accumulator(&inputs(8, 1)[3]));
}

#[test]
fn a_call_given_up_on_is_never_taken_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let emulated = EmulatedCard::start(dir.path(), Faults::default()).unwrap();
    let mut card = FpgaCard::open(emulated.paths(), LAYOUT, model_hash(), TIMEOUT).unwrap();
    let q = QuantClassifier::from_onnx(BUILTIN_INT8_MODEL).unwrap();
    // A slow card: the first call is given up on while the card still computes it.
    emulated.set_slow(TIMEOUT * 3 / 2);
    let (first, second) = (inputs(4, 1), inputs(4, 7));
    assert!(matches!(card.judge(&first, &mut [0; 4]).unwrap_err(), FpgaError::NoAnswer { .. }));
    emulated.set_slow(Duration::ZERO);
    // The next call waits for the card to be idle, and its results are its own, not the late
    // call's (which finished with done raised after the driver had stopped waiting).
    let mut logits = [0i64; 4];
    card.judge(&second, &mut logits).unwrap();
    let expected: Vec<i64> = second.iter().map(|x| q.logit_accumulator(x)).collect();
    assert_eq!(logits.to_vec(), expected);
    assert_ne!(expected, first.iter().map(|x| q.logit_accumulator(x)).collect::<Vec<_>>());
}

#[test]
fn a_dma_channel_that_refuses_transfers_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let emulated = EmulatedCard::start(dir.path(), Faults { dma_refused: true, ..Faults::default() }).unwrap();
    let mut card = FpgaCard::open(emulated.paths(), LAYOUT, model_hash(), TIMEOUT).unwrap();
    let err = card.judge(&inputs(4, 2), &mut [0; 4]).unwrap_err();
    assert!(matches!(err, FpgaError::Card(_)), "{err}");
    let bytes = 4 * hitgate::trigger::fpga::quant::INPUTS;
    let want = format!("DMA host to card of {bytes} bytes at card address 0x0 failed");
    assert!(err.to_string().contains(&want), "{err}");
}

#[test]
fn addresses_outside_card_memory_are_reported_by_the_kernel_not_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let emulated = EmulatedCard::start(dir.path(), Faults::default()).unwrap();
    let beyond = CardLayout { input_address: INPUT_ADDRESS, output_address: 64 << 20 };
    let mut card = FpgaCard::open(emulated.paths(), beyond, model_hash(), TIMEOUT).unwrap();
    let err = card.judge(&inputs(4, 2), &mut [0; 4]).unwrap_err();
    assert!(matches!(err, FpgaError::Kernel { judged: 0, frames: 4, .. }), "{err}");
}
