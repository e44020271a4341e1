//! The trigger on an FPGA co-processor: the same int8 hit classifier as an HLS C++ kernel (`hls/`).
//! [`quant`] is the kernel's arithmetic in Rust, bit for bit, with the host's preprocessing;
//! [`weights`] writes the kernel's weight header from the ONNX model.

pub mod quant;
pub mod regs;
pub mod weights;
