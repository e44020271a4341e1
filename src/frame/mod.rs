//! Frame memory and frame assembly. [`FramePool`] owns every frame buffer, preallocated once;
//! the sans-IO [`Assembler`] places packets into them and hands out whole (or given-up partial) frames.

pub mod assembler;
pub mod pool;
#[cfg(test)]
mod pool_tests;

pub use assembler::{Assembler, AssemblerConfig, AssemblyCounters, PacketDrop, PartialPolicy};
pub use pool::{FrameHandle, FrameMeta, FramePool, PoolError};
