//! The driver: judges batches of frames on the card through its primitives ([`super::card`]) —
//! inputs to card memory by DMA, the kernel's arguments into its registers, `ap_start`, polling for
//! `ap_done` within a deadline, status and results back — and refuses, at open, a card whose kernel
//! is not this one (identity, ABI version) or was built from other weights than the configured model.
//!
//! Opening probes the card with a call of zero frames: the kernel answers it with its identity and a
//! "bad frame count" status without touching memory. A card with no kernel never answers: the probe
//! times out and says the bitstream is not loaded.

use std::time::{Duration, Instant};

use super::card::{Card, CardError, CardPaths};
use super::quant::INPUTS;
use super::regs;

#[derive(Debug, thiserror::Error)]
pub enum FpgaError {
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("the card did not finish within {waited:?} (done never rose{hint})")]
    NoAnswer { waited: Duration, hint: &'static str },
    #[error("the card's kernel is {found:#010x}, not hitgate's trigger ({:#010x})", regs::KERNEL_ID_VALUE)]
    NotOurKernel { found: u32 },
    #[error("the card's kernel speaks register ABI {found}, this hitgate speaks {}", regs::ABI_VERSION_VALUE)]
    Abi { found: u32 },
    #[error("the card's kernel was built from model {card:016x}, the configured model is {expected:016x}")]
    ModelMismatch { card: u64, expected: u64 },
    #[error("the kernel reported status {status} and judged {judged} of {frames} frames")]
    Kernel { status: u32, judged: u32, frames: u32 },
    #[error("a batch of {0} frames is more than the kernel takes ({max})", max = regs::MAX_FRAMES)]
    BatchTooLarge(usize),
}

/// Where the driver puts a batch in card memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardLayout {
    pub input_address: u64,
    pub output_address: u64,
}

/// An open card running hitgate's trigger kernel.
pub struct FpgaCard {
    card: Card,
    layout: CardLayout,
    timeout: Duration,
    /// Reused DMA buffers.
    input: Vec<u8>,
    output: Vec<u8>,
}

impl FpgaCard {
    /// Opens the card at `paths`, probes its kernel and checks it was built from `model_hash`.
    ///
    /// # Errors
    /// The card cannot be opened, does not answer within `timeout`, or runs another kernel or model.
    pub fn open(
        paths: &CardPaths,
        layout: CardLayout,
        model_hash: u64,
        timeout: Duration,
    ) -> Result<FpgaCard, FpgaError> {
        let mut card = FpgaCard {
            card: Card::open(paths)?,
            layout,
            timeout,
            input: Vec::with_capacity(regs::MAX_FRAMES as usize * INPUTS),
            output: Vec::with_capacity(regs::MAX_FRAMES as usize * 8),
        };
        let (status, _) = card.call(0).map_err(|e| match e {
            FpgaError::NoAnswer { waited, .. } => FpgaError::NoAnswer { waited, hint: ": is the bitstream loaded?" },
            other => other,
        })?;
        let r = &card.card.registers;
        let id = r.read(regs::KERNEL_ID);
        if id != regs::KERNEL_ID_VALUE {
            return Err(FpgaError::NotOurKernel { found: id });
        }
        let abi = r.read(regs::ABI_VERSION);
        if abi != regs::ABI_VERSION_VALUE {
            return Err(FpgaError::Abi { found: abi });
        }
        let hash = u64::from(r.read(regs::MODEL_HASH_LO)) | (u64::from(r.read(regs::MODEL_HASH_HI)) << 32);
        if hash != model_hash {
            return Err(FpgaError::ModelMismatch { card: hash, expected: model_hash });
        }
        if status != regs::STATUS_BAD_FRAME_COUNT {
            return Err(FpgaError::Kernel { status, judged: 0, frames: 0 });
        }
        card.layout = layout;
        Ok(card)
    }

    /// Waits (within the timeout) until the card is idle, then clears a done bit left over. A call
    /// given up on may still be running, or have finished since: its inputs must not be overwritten
    /// under it, and its late done must not be taken for the next call's (which would read the
    /// earlier call's results).
    fn wait_idle(&mut self) -> Result<(), FpgaError> {
        let r = &self.card.registers;
        let started = Instant::now();
        loop {
            let ctrl = r.read(regs::CTRL);
            if ctrl & regs::CTRL_IDLE != 0 && ctrl & regs::CTRL_START == 0 {
                r.read_and_clear(regs::CTRL, regs::CTRL_DONE);
                return Ok(());
            }
            let waited = started.elapsed();
            if waited > self.timeout {
                return Err(FpgaError::NoAnswer { waited, hint: ", the card is still busy with an earlier call" });
            }
            std::thread::sleep(Duration::from_micros(10));
        }
    }

    /// One kernel call on what is in card memory: arguments, start, wait for done; status and count.
    fn call(&mut self, frames: u32) -> Result<(u32, u32), FpgaError> {
        let r = &self.card.registers;
        let CardLayout { input_address, output_address } = self.layout;
        r.write(regs::INPUT_ADDR_LO, input_address as u32);
        r.write(regs::INPUT_ADDR_HI, (input_address >> 32) as u32);
        r.write(regs::OUTPUT_ADDR_LO, output_address as u32);
        r.write(regs::OUTPUT_ADDR_HI, (output_address >> 32) as u32);
        r.write(regs::FRAMES, frames);
        r.write(regs::CTRL, regs::CTRL_START);
        let started = Instant::now();
        loop {
            if r.read(regs::CTRL) & regs::CTRL_DONE != 0 {
                // Done is clear-on-read.
                r.read_and_clear(regs::CTRL, regs::CTRL_DONE);
                break;
            }
            let waited = started.elapsed();
            if waited > self.timeout {
                return Err(FpgaError::NoAnswer { waited, hint: "" });
            }
            // A card answers within microseconds; past that, sleeping lets an emulated card's
            // device thread have the core.
            if waited < Duration::from_micros(50) {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(10));
            }
        }
        Ok((r.read(regs::STATUS), r.read(regs::JUDGED)))
    }

    /// Judges `inputs` (quantized summaries) on the card, writing each one's logit accumulator to
    /// `logits`.
    ///
    /// # Errors
    /// A DMA transfer fails, the card does not finish in time, or the kernel reports a failure.
    pub fn judge(&mut self, inputs: &[[i8; INPUTS]], logits: &mut [i64]) -> Result<(), FpgaError> {
        let n = inputs.len();
        if n > regs::MAX_FRAMES as usize {
            return Err(FpgaError::BatchTooLarge(n));
        }
        if n == 0 {
            return Ok(());
        }
        self.wait_idle()?;
        self.input.clear();
        self.input.extend(inputs.iter().flatten().map(|&v| v as u8));
        self.card.dma_to_card(self.layout.input_address, &self.input)?;
        let (status, judged) = self.call(n as u32)?;
        if status != regs::STATUS_OK || judged as usize != n {
            return Err(FpgaError::Kernel { status, judged, frames: n as u32 });
        }
        self.output.resize(n * 8, 0);
        self.card.dma_from_card(self.layout.output_address, &mut self.output)?;
        for (logit, bytes) in logits.iter_mut().zip(self.output.chunks_exact(8)) {
            *logit = i64::from_le_bytes(bytes.try_into().unwrap_or_default());
        }
        Ok(())
    }
}
