//! Frame memory and frame assembly. [`FramePool`] owns every frame buffer, preallocated once;
//! the sans-IO [`Assembler`] places packets into them and hands out whole (or given-up partial) frames,
//! each slot carrying the reducer's findings with it ([`FrameFeatures`]). `[assembler]` is
//! [`AssemblerSection`].

pub mod assembler;
pub mod features;
pub mod pool;
#[cfg(test)]
mod pool_tests;
pub mod section;

pub use assembler::{Assembler, AssemblerConfig, AssemblyCounters, PacketDrop, PartialPolicy};
pub use features::{FrameFeatures, SUMMARY_ROOM, Spot};
pub use pool::{FrameHandle, FrameMeta, FramePool, PoolError};
pub use section::AssemblerSection;
