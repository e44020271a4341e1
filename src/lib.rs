//! hitgate: reads PSI detector packets (JUNGFRAU, EIGER), assembles frames, decides frame by frame
//! whether a frame is worth keeping, and forwards only what passes to storage.

pub mod calib;
pub mod config;
pub mod detector;
pub mod frame;
pub mod ingest;
pub mod sim;
