//! hitgate: reads PSI detector packets (JUNGFRAU, EIGER), assembles frames, decides frame by frame
//! whether a frame is worth keeping, and forwards only what passes to storage.

pub mod calib;
pub mod cluster;
pub mod config;
pub mod control;
pub mod detector;
pub mod features;
pub mod forward;
pub mod frame;
pub mod fuzz;
pub mod ingest;
pub mod nats;
pub mod onnx_model;
pub mod pipeline;
pub mod reduce;
pub mod ring;
pub mod send;
pub mod sim;
pub mod sink;
pub mod sync;
pub mod telemetry;
pub mod trigger;
pub mod tune;

#[cfg(not(target_endian = "little"))]
compile_error!("hitgate reads detector data in place and needs a little-endian host");
