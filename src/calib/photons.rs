//! The calibration state a run shares: how raw values become photons for its detector. An integrating
//! detector (JUNGFRAU) converts with a [`SharedConverter`], replaced while running when the pedestal is
//! measured on dark frames or has moved; a counting detector (EIGER) counts photons already and only
//! masks. Every reducer worker reads it, and so does the ordering thread for the frames it compresses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::converter::{FLAGGED, PhotonConverter, counts_as_photons};

/// The current converter, replaced while running when the pedestal is measured or has moved.
/// Workers read an epoch counter per frame and take the lock only when it changed.
pub struct SharedConverter {
    epoch: AtomicU64,
    current: Mutex<Arc<PhotonConverter>>,
    /// The converter as prepared, from which tracked ones derive.
    pub base: Arc<PhotonConverter>,
}

impl SharedConverter {
    pub fn new(base: PhotonConverter) -> SharedConverter {
        let base = Arc::new(base);
        SharedConverter { epoch: AtomicU64::new(0), current: Mutex::new(Arc::clone(&base)), base }
    }

    /// Installs a converter for every frame reduced from now on.
    pub fn publish(&self, converter: PhotonConverter) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(converter);
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Times a converter has been published.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The converter frames are calibrated with now.
    pub fn current(&self) -> Arc<PhotonConverter> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How raw values become photons for this detector.
pub enum Photons {
    /// JUNGFRAU: gain stages, pedestals, gains (masked pixels have factors of 0 in the converter).
    Integrating(SharedConverter),
    /// EIGER: values are counts; `mask` holds a flag per pixel (empty when nothing is masked), and
    /// flagged pixels read 0.
    Counting { mask: Vec<u8> },
}

impl Photons {
    /// Photons of the pixels `raw`, whose first is pixel `first_pixel` of the detector, into `out`:
    /// with `converter` (the prepared one when `None`) for an integrating detector, as counts with the
    /// mask applied for a counting one. Returns how many pixels read `FLAGGED` (saturated, invalid).
    pub fn convert(
        &self,
        converter: Option<&PhotonConverter>,
        raw: &[u16],
        first_pixel: usize,
        out: &mut [f32],
    ) -> usize {
        match self {
            Photons::Integrating(shared) => converter.unwrap_or(&shared.base).jungfrau_photons(raw, first_pixel, out),
            Photons::Counting { mask } => {
                let mask = mask.get(first_pixel..first_pixel + raw.len()).unwrap_or(&[]);
                counts_as_photons(raw, mask, out);
                0
            }
        }
    }

    /// The shared converter, for pedestal tracking (integrating detectors only).
    pub fn converter(&self) -> Option<&SharedConverter> {
        match self {
            Photons::Integrating(c) => Some(c),
            Photons::Counting { .. } => None,
        }
    }

    /// The converter frames are calibrated with now (integrating detectors only).
    pub fn current_converter(&self) -> Option<Arc<PhotonConverter>> {
        self.converter().map(SharedConverter::current)
    }
}

/// Flags the pixels of `photons` (detector pixels from `first` on) that lie in packets absent from
/// `present` (a frame's packet mask, one bit a packet; `packet_pixels[i]` the pixels of packet `i`):
/// they hold the blank a lost packet leaves, not a measurement. Returns how many.
pub fn flag_lost(
    packet_pixels: &[std::ops::Range<usize>],
    present: &[u64],
    first: usize,
    photons: &mut [f32],
) -> usize {
    let span = first..first + photons.len();
    let mut flagged = 0;
    for (i, pixels) in packet_pixels.iter().enumerate() {
        if present.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0) {
            continue;
        }
        let (start, end) = (pixels.start.max(span.start), pixels.end.min(span.end));
        if start < end {
            photons[start - first..end - first].fill(FLAGGED);
            flagged += end - start;
        }
    }
    flagged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::CalibrationMaps;

    #[test]
    fn a_published_converter_is_used_from_its_epoch_on_and_the_base_stays() {
        let maps = CalibrationMaps::uniform(1, 1, 2, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
        let photons = Photons::Integrating(SharedConverter::new(PhotonConverter::new(&maps, 10.0)));
        let shared = photons.converter().unwrap();
        assert_eq!(shared.epoch(), 0);
        shared.publish(shared.base.with_g0_pedestal(&[3400.0, 3400.0]));
        assert_eq!(shared.epoch(), 1);
        let (mut now, mut base) = ([f32::NAN; 2], [f32::NAN; 2]);
        photons.convert(photons.current_converter().as_deref(), &[3400, 3800], 0, &mut now);
        photons.convert(None, &[3400, 3800], 0, &mut base);
        assert_eq!(now, [0.0, 1.0], "the published pedestal");
        assert_eq!(base, [1.0, 2.0], "the prepared pedestal");
    }

    #[test]
    fn counted_photons_are_masked_from_the_pixel_asked_for() {
        let photons = Photons::Counting { mask: vec![0, 1, 0, 1] };
        let mut out = [f32::NAN; 2];
        photons.convert(None, &[5, 7], 2, &mut out);
        assert_eq!(out, [5.0, 0.0]);
        assert!(photons.converter().is_none() && photons.current_converter().is_none());
    }
}
