//! The trigger on an FPGA co-processor: the same int8 hit classifier as an HLS C++ kernel (`hls/`).
//!
//! - [`quant`]: the kernel's arithmetic in Rust, bit for bit, with the host's preprocessing;
//! - [`weights`]: writes the kernel's weight header and test data from the ONNX model;
//! - [`regs`]: the register map (the host ↔ card ABI), mirrored from the C header;
//! - [`card`]: the hardware primitives (register BAR, DMA channels), as the XDMA driver offers them;
//! - [`driver`]: batches of frames through the card, with the kernel's handshake and checks;
//! - [`kernel`] and [`emulator`]: the kernel compiled for this machine, behind an emulated card;
//! - [`backend`]: the trigger backend, with its software fallback;
//! - [`manifest`]: what a bitstream was built from, checked before a card is used.

pub mod backend;
pub mod card;
pub mod driver;
pub mod emulator;
pub mod kernel;
pub mod manifest;
pub mod quant;
pub mod regs;
pub mod weights;
