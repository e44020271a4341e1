//! The trigger on an FPGA co-processor: the same int8 hit classifier as an HLS C++ kernel (`hls/`).
//!
//! - [`quant`]: the kernel's arithmetic in Rust, bit for bit, with the host's preprocessing;
//! - [`regs`]: the register map (the host ↔ card ABI), mirrored from the C header;
//! - [`card`]: the hardware primitives (register BAR, DMA channels), as the XDMA driver offers them;
//! - [`driver`]: batches of frames through the card, with the kernel's handshake and checks;
//! - [`kernel`] and [`emulator`]: the kernel compiled for this machine, behind an emulated card;
//! - [`backend`]: the trigger backend, with its software fallback;
//! - [`manifest`]: what a bitstream was built from, checked before a card is used.
//!
//! The offline exporter that writes the kernel's weight header, its test data and the emulated
//! card's manifest is tooling, not part of the trigger: `crate::fpga_export`.

pub mod backend;
pub mod card;
pub mod driver;
pub mod emulator;
pub mod kernel;
pub mod manifest;
pub mod quant;
pub mod regs;
