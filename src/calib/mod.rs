//! Raw detector values to photons. JUNGFRAU pixels carry a gain stage (bits 15–14) and an ADC value
//! (bits 13–0); with per-pixel, per-stage pedestal and gain maps they become energy, then photons.
//! EIGER counts photons in the detector, so its values pass through. `[calibration]` is
//! [`CalibrationSection`]; the state a run shares while converting is [`Photons`].

pub mod converter;
pub mod dark;
pub mod maps;
pub mod mask;
pub mod pedestal;
pub mod photons;
pub mod psi;
pub mod section;
mod switched_simd;

pub use converter::{FLAGGED, PhotonConverter, SWITCHED_RELATIVE_ERROR, counts_as_photons};
pub use maps::{CalibrationError, CalibrationMaps, GAIN_STAGES};
pub use mask::{MaskError, PixelMask};
pub use pedestal::PedestalTracker;
pub use photons::{Photons, SharedConverter, flag_lost};
pub use section::CalibrationSection;
