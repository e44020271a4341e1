//! Raw detector values to photons. JUNGFRAU pixels carry a gain stage (bits 15–14) and an ADC value
//! (bits 13–0); with per-pixel, per-stage pedestal and gain maps they become energy, then photons.
//! EIGER counts photons in the detector, so its values pass through.

pub mod maps;

pub use maps::{CalibrationError, CalibrationMaps, GAIN_STAGES};

/// Gain-stage code in bits 15–14 → stage index; code 2 is invalid and maps to stage 3, whose
/// pedestal and gain are zero so such pixels read as 0 photons without a branch.
const STAGE_OF_CODE: [usize; 4] = [0, 1, 3, 2];

/// Converts raw frames to photons with a prepared calibration.
pub struct PhotonConverter {
    /// Per stage (G0, G1, G2, invalid) then per pixel.
    pedestal_adu: Vec<f32>,
    photons_per_adu: Vec<f32>,
    pixels: usize,
}

impl PhotonConverter {
    /// Prepares the conversion at one photon energy.
    pub fn new(maps: &CalibrationMaps, photon_energy_kev: f32) -> PhotonConverter {
        let pixels = maps.pixels();
        let mut pedestal_adu = vec![0.0; 4 * pixels];
        let mut photons_per_adu = vec![0.0; 4 * pixels];
        for stage in 0..GAIN_STAGES {
            let range = stage * pixels..(stage + 1) * pixels;
            pedestal_adu[range.clone()].copy_from_slice(maps.pedestal(stage));
            for (out, gain) in photons_per_adu[range].iter_mut().zip(maps.gain(stage)) {
                *out = 1.0 / (gain * photon_energy_kev);
            }
        }
        PhotonConverter { pedestal_adu, photons_per_adu, pixels }
    }

    pub fn pixels(&self) -> usize {
        self.pixels
    }

    /// Photons of every pixel of `raw` (JUNGFRAU encoding) into `out`; both as long as the maps.
    ///
    /// Almost every pixel sits in G0, so each chunk is first converted as if it were all G0 — a straight
    /// loop the compiler vectorises — and only a chunk that holds switched pixels is fixed up with the
    /// per-stage lookup.
    pub fn jungfrau_photons(&self, raw: &[u16], out: &mut [f32]) {
        const CHUNK: usize = 64;
        let n = self.pixels.min(raw.len()).min(out.len());
        let (ped0, inv0) = (&self.pedestal_adu[..n], &self.photons_per_adu[..n]);
        let chunks =
            out[..n].chunks_mut(CHUNK).zip(raw[..n].chunks(CHUNK)).zip(ped0.chunks(CHUNK)).zip(inv0.chunks(CHUNK));
        for (c, (((o, r), p), g)) in chunks.enumerate() {
            let mut switched = 0u16;
            for (((o, &r), &p), &g) in o.iter_mut().zip(r).zip(p).zip(g) {
                switched |= r;
                *o = (f32::from(r & 0x3fff) - p) * g;
            }
            if switched & 0xc000 != 0 {
                let base = c * CHUNK;
                for (k, (o, &r)) in o.iter_mut().zip(r).enumerate().filter(|(_, (_, r))| **r >> 14 != 0) {
                    let at = STAGE_OF_CODE[usize::from(r >> 14)] * self.pixels + base + k;
                    *o = (f32::from(r & 0x3fff) - self.pedestal_adu[at]) * self.photons_per_adu[at];
                }
            }
        }
    }
}

/// Photon-counting detectors: values are counts already.
pub fn counts_as_photons(raw: &[u16], out: &mut [f32]) {
    for (o, &r) in out.iter_mut().zip(raw) {
        *o = f32::from(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_stages_convert_with_their_own_maps_and_code_2_reads_zero() {
        let maps = CalibrationMaps::uniform(1, 1, 4, [3000.0, 14500.0, 14000.0], [40.0, -1.45, -0.11]);
        let conv = PhotonConverter::new(&maps, 10.0);
        let raw = [3400u16, (1 << 14) | 14210, (3 << 14) | 13989, (2 << 14) | 5000];
        let mut out = [f32::NAN; 4];
        conv.jungfrau_photons(&raw, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6, "G0: 400 ADU at 40 ADU/keV = 10 keV = 1 photon");
        assert!((out[1] - 20.0).abs() < 1e-3, "G1: -290 ADU at -1.45 ADU/keV = 200 keV");
        assert!((out[2] - 10.0).abs() < 1e-3, "G2: -11 ADU at -0.11 ADU/keV = 100 keV");
        assert_eq!(out[3], 0.0, "invalid gain code");
    }
}
