//! An emulated card for machines without one: the card's three primitives as files in a folder —
//! `registers` (the control window, mapped shared by the driver and by the device thread), `memory`
//! (card memory: the driver's DMA reads and writes it at the card address, the device maps it) — and
//! a device thread that speaks the kernel's `ap_ctrl_hs` handshake and computes with the HLS kernel
//! source compiled for this machine ([`super::kernel`]). The driver opens it as it opens an XDMA card.
//!
//! Faults to rehearse the driver's error paths: a done bit that never rises, a DMA channel that
//! refuses every transfer (`/dev/full`), and a card without its kernel (no device thread: registers
//! that never answer).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use super::card::{CardError, CardPaths, RegisterWindow};
use super::kernel;
use super::quant::INPUTS;
use super::regs;

/// Card memory the emulator offers (inputs at [`INPUT_ADDRESS`], outputs at [`OUTPUT_ADDRESS`]).
pub const MEMORY_BYTES: usize = 2 << 20;
pub const INPUT_ADDRESS: u64 = 0;
pub const OUTPUT_ADDRESS: u64 = 1 << 20;

/// What to break.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The kernel runs but its done bit never rises.
    pub stuck_done: bool,
    /// The host-to-card channel refuses every transfer.
    pub dma_refused: bool,
    /// No kernel is loaded: nothing answers the registers.
    pub not_loaded: bool,
}

pub struct EmulatedCard {
    paths: CardPaths,
    stop: Arc<AtomicBool>,
    /// Switchable while running: from the next call on, done never rises.
    stuck_done: Arc<AtomicBool>,
    /// Switchable while running: each call takes this many µs longer (a slow or busy card).
    slow_us: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    kernel_ns: Arc<AtomicU64>,
    device: Option<JoinHandle<()>>,
}

impl EmulatedCard {
    /// Creates the card's files in `dir` and starts its device thread.
    ///
    /// # Errors
    /// The files cannot be made or mapped.
    pub fn start(dir: &Path, faults: Faults) -> Result<EmulatedCard, CardError> {
        let make = |name: &str, bytes: usize| -> Result<PathBuf, CardError> {
            let path = dir.join(name);
            let err = |source| CardError::Open { path: path.clone(), source };
            std::fs::create_dir_all(dir).map_err(err)?;
            let file = std::fs::File::create(&path).map_err(err)?;
            file.set_len(bytes as u64).map_err(err)?;
            Ok(path)
        };
        let registers = make("registers", regs::WINDOW_BYTES)?;
        let memory = make("memory", MEMORY_BYTES)?;
        let to_card = if faults.dma_refused { PathBuf::from("/dev/full") } else { memory.clone() };
        let paths = CardPaths { registers: registers.clone(), to_card, from_card: memory.clone() };
        let (stop, calls, kernel_ns) = (Arc::default(), Arc::<AtomicU64>::default(), Arc::<AtomicU64>::default());
        let stuck_done = Arc::new(AtomicBool::new(faults.stuck_done));
        let slow_us = Arc::new(AtomicU64::new(0));
        let device = if faults.not_loaded {
            None
        } else {
            let window = RegisterWindow::open(&registers)?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&memory)
                .map_err(|source| CardError::Open { path: memory.clone(), source })?;
            // SAFETY: card memory is shared with the driver's DMA (reads and writes of the same file).
            // The handshake orders them: the driver writes inputs before it raises start and reads
            // outputs after it sees done; the device touches the mapping only in between.
            let map = unsafe { MmapMut::map_mut(&file) }.map_err(|source| CardError::Map { path: memory, source })?;
            window.write(regs::CTRL, regs::CTRL_IDLE);
            let shared = Shared {
                stop: Arc::clone(&stop),
                stuck_done: Arc::clone(&stuck_done),
                slow_us: Arc::clone(&slow_us),
                calls: Arc::clone(&calls),
                kernel_ns: Arc::clone(&kernel_ns),
            };
            let thread = std::thread::Builder::new()
                .name("hg-fpga-emulator".into())
                .spawn(move || device(&window, map, &shared))
                .map_err(|source| CardError::Open { path: dir.into(), source })?;
            Some(thread)
        };
        Ok(EmulatedCard { paths, stop, stuck_done, slow_us, calls, kernel_ns, device })
    }

    /// From the next call on, the card computes but never raises done (or does again).
    pub fn set_stuck_done(&self, stuck: bool) {
        self.stuck_done.store(stuck, Ordering::Relaxed);
    }

    /// From the next call on, each call takes `extra` longer before done rises.
    pub fn set_slow(&self, extra: Duration) {
        self.slow_us.store(extra.as_micros() as u64, Ordering::Relaxed);
    }

    /// Where the driver finds the card.
    pub fn paths(&self) -> &CardPaths {
        &self.paths
    }

    /// Kernel calls served, and the time the kernel itself computed (the rest of a call's latency is
    /// the driver's and the handshake's).
    pub fn calls(&self) -> (u64, Duration) {
        (self.calls.load(Ordering::Relaxed), Duration::from_nanos(self.kernel_ns.load(Ordering::Relaxed)))
    }
}

impl Drop for EmulatedCard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(device) = self.device.take() {
            let _ = device.join();
        }
    }
}

/// Spinning this long after the last call keeps a busy card's latency low; an idle card sleeps, so
/// that on a machine with few cores the emulator does not take one from the reducers.
const SPIN_AFTER_CALL: Duration = Duration::from_micros(200);
const IDLE_SLEEP: Duration = Duration::from_micros(20);

/// What the device thread shares with its card.
struct Shared {
    stop: Arc<AtomicBool>,
    stuck_done: Arc<AtomicBool>,
    slow_us: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    kernel_ns: Arc<AtomicU64>,
}

fn device(window: &RegisterWindow, mut memory: MmapMut, shared: &Shared) {
    let mut last_call = Instant::now();
    let mut scratch = Scratch::default();
    while !shared.stop.load(Ordering::Relaxed) {
        if window.read(regs::CTRL) & regs::CTRL_START == 0 {
            if last_call.elapsed() < SPIN_AFTER_CALL {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(IDLE_SLEEP);
            }
            continue;
        }
        // Busy: start taken, not idle.
        window.write(regs::CTRL, 0);
        let address = |lo: usize, hi: usize| u64::from(window.read(lo)) | (u64::from(window.read(hi)) << 32);
        let (input_at, output_at) =
            (address(regs::INPUT_ADDR_LO, regs::INPUT_ADDR_HI), address(regs::OUTPUT_ADDR_LO, regs::OUTPUT_ADDR_HI));
        let frames = window.read(regs::FRAMES);
        let t0 = Instant::now();
        let report = run_in_memory(&mut memory, input_at, output_at, frames, &mut scratch);
        shared.kernel_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        shared.calls.fetch_add(1, Ordering::Relaxed);
        window.write(regs::STATUS, report.status);
        window.write(regs::STATUS_CTRL, 1);
        window.write(regs::JUDGED, report.judged);
        window.write(regs::JUDGED_CTRL, 1);
        window.write(regs::KERNEL_ID, report.kernel_id);
        window.write(regs::ABI_VERSION, report.abi_version);
        window.write(regs::MODEL_HASH_LO, report.model_hash as u32);
        window.write(regs::MODEL_HASH_HI, (report.model_hash >> 32) as u32);
        let slow = shared.slow_us.load(Ordering::Relaxed);
        if slow > 0 {
            std::thread::sleep(Duration::from_micros(slow));
        }
        let finished = regs::CTRL_IDLE | regs::CTRL_READY;
        let stuck = shared.stuck_done.load(Ordering::Relaxed);
        window.write(regs::CTRL, if stuck { finished } else { finished | regs::CTRL_DONE });
        last_call = Instant::now();
    }
}

/// The device thread's buffers between card memory and the kernel, grown once and reused.
#[derive(Default)]
struct Scratch {
    input: Vec<i8>,
    output: Vec<i64>,
}

/// Runs the kernel on card memory; addresses outside it make a call with no frames (as an AXI
/// master reading beyond its memory would fault, the kernel reports it judged none).
fn run_in_memory(
    memory: &mut [u8],
    input_at: u64,
    output_at: u64,
    frames: u32,
    scratch: &mut Scratch,
) -> kernel::KernelReport {
    let n = frames as usize;
    let input_range = input_at as usize..(input_at as usize).saturating_add(n * INPUTS);
    let output_range = output_at as usize..(output_at as usize).saturating_add(n * 8);
    let fits = input_range.end <= memory.len() && output_range.end <= memory.len();
    let overlap = input_range.start < output_range.end && output_range.start < input_range.end;
    if !fits || overlap || n == 0 {
        return kernel::run(&[], &mut [], 0);
    }
    scratch.input.clear();
    scratch.input.extend(memory[input_range].iter().map(|&b| b as i8));
    scratch.output.clear();
    scratch.output.resize(n, 0);
    let report = kernel::run(&scratch.input, &mut scratch.output, frames);
    for (slot, v) in memory[output_range].chunks_exact_mut(8).zip(&scratch.output) {
        slot.copy_from_slice(&v.to_le_bytes());
    }
    report
}
