//! hitgate: reads PSI detector packets (JUNGFRAU, EIGER), assembles frames, decides frame by frame
//! whether a frame is worth keeping, and forwards only what passes to storage.
//!
//! The modules are listed in their layers, the pipeline's order (docs/architecture.md): each may
//! import the layers above it, never one below; `scripts/layers` checks it.

// Base: wire formats and geometry, what config sections share, the sync facade, metric names, the
// shared runtimes.
pub mod detector;
pub mod onnx_model;
pub mod rng;
pub mod section;
pub mod sync;
pub mod telemetry;

// Frames: bounded queues, the frame pool and the sans-IO assembler.
pub mod frame;
pub mod ring;

// Sources: UDP, DMA and captures in; the sender out.
pub mod ingest;

// Per-frame science: photons and what is found in them.
pub mod calib;
pub mod features;

// Judging: trigger backends, rate control, choosing a cut.
pub mod trigger;

// Encoding shared by reducers and sinks.
pub mod codec;

// Per-frame work: one reducer worker, sans-IO.
pub mod reduce;

// Outputs.
pub mod sink;

// Several nodes, one detector; the durable forward.
pub mod scaleout;

// The control plane's interface.
pub mod control;

// The root config document.
pub mod config;

// Running it all.
pub mod pipeline;

// Offline tools: the simulator, the FPGA kernel's exporter, the fuzz targets' bodies.
pub mod fpga_export;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod sim;

#[cfg(not(target_endian = "little"))]
compile_error!("hitgate reads detector data in place and needs a little-endian host");
