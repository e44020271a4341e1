//! A physics-based synthetic JUNGFRAU run with ground truth, for tests, demos, benchmarks and training.
//!
//! Hit frames carry Bragg spots of a randomly oriented crystal lattice cut by the Ewald sphere and
//! projected onto the detector, with intensities from Wilson statistics, partiality and a B-factor
//! fall-off, scaled by a per-hit crystal strength drawn log-uniformly (so there are weak hits). Every
//! frame carries a solvent ring, air scatter and a few hot pixels; a run's scene (`scene`) can add a
//! shadow, ice (uniform or spotty rings), crystals of any cell and mosaicity, a second lattice and
//! pseudo-Voigt spots streaked across their ring, and `randomize` draws whole beamlines for training. Photons are Poisson; each pixel has
//! its own pedestal, gain and noise in three gain stages and is encoded as the detector does. The run is
//! written as the modules would send it (a capture of UDP packets, optionally damaged by loss,
//! reordering and duplication), with a truth file and the calibration maps. A seed fixes everything.

pub mod capture_writer;
pub mod config;
pub mod crystal;
pub mod dataset;
pub mod error;
pub mod npy;
mod packets;
pub mod randomize;
pub mod response;
pub mod run;
pub mod scene;
pub mod score;

pub use capture_writer::{CaptureFileFormat, CaptureWriter, LinkFraming, write_frames_capture};
pub use run::{FrameTruth, PacketFaults, RunTruth, SimConfig, SimError, SimOutputs, SimulatedDetector, simulate};
pub use score::{SpotScore, TriggerScore};
