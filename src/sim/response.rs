//! How a JUNGFRAU pixel turns deposited energy into the 16-bit word it sends: per-pixel pedestal and
//! gain for each of the three gain stages (these maps are the truth the simulator also writes as a
//! calibration file), electronic noise, automatic gain switching, and the encoding (gain code in bits
//! 15–14: G0 → 0, G1 → 1, G2 → 3; ADC in bits 13–0).

use crate::calib::CalibrationMaps;
use crate::rng::Rng;

/// A module's analogue response, one map value per pixel.
pub struct JungfrauResponse {
    pub maps: CalibrationMaps,
    /// Equivalent noise charge of G0, as energy.
    pub noise_kev: f32,
    /// Gaussian deviates reused by random index: the noise is per pixel per frame, the table only
    /// saves computing a logarithm for each of them.
    noise_table: Vec<f32>,
}

/// Highest ADC value a stage is used up to before the pixel switches to the next.
const G0_CEILING_ADU: f32 = 15_500.0;
const G1_FLOOR_ADU: f32 = 1_000.0;

impl JungfrauResponse {
    /// Draws pedestal and gain maps around typical JUNGFRAU values.
    pub fn new(modules: usize, rows: usize, cols: usize, noise_kev: f32, rng: &mut Rng) -> JungfrauResponse {
        let n = modules * rows * cols;
        let mut ped = Vec::with_capacity(3 * n);
        let mut gain = Vec::with_capacity(3 * n);
        let typical = [(3000.0, 150.0, 40.0, 1.0), (14500.0, 300.0, -1.45, 0.04), (14000.0, 300.0, -0.11, 0.004)];
        for (p0, p_sigma, g0, g_sigma) in typical {
            ped.extend((0..n).map(|_| (p0 + p_sigma * rng.normal()) as f32));
            gain.extend((0..n).map(|_| (g0 + g_sigma * rng.normal()) as f32));
        }
        let noise_table = (0..4096).map(|_| rng.normal() as f32).collect();
        JungfrauResponse { maps: CalibrationMaps::from_arrays(modules, rows, cols, ped, gain), noise_kev, noise_table }
    }

    /// A detector whose pedestals and gains are `maps` (a real module's), with the same noise.
    pub fn with_maps(maps: CalibrationMaps, noise_kev: f32, rng: &mut Rng) -> JungfrauResponse {
        let noise_table = (0..4096).map(|_| rng.normal() as f32).collect();
        JungfrauResponse { maps, noise_kev, noise_table }
    }

    /// The word pixel `i` sends for `energy_kev` deposited, its G0 pedestal moved by `drift_adu`
    /// (temperature drifts the pedestal over a run; the calibration maps keep the starting value).
    pub fn encode(&self, i: usize, energy_kev: f32, drift_adu: f32, rng: &mut Rng) -> u16 {
        let noise = self.noise_table[rng.below(self.noise_table.len())] * self.noise_kev;
        let e = energy_kev + noise;
        let adc0 = self.maps.pedestal(0)[i] + drift_adu + self.maps.gain(0)[i] * e;
        if adc0 <= G0_CEILING_ADU {
            return adc0.round().clamp(0.0, 16383.0) as u16;
        }
        let adc1 = self.maps.pedestal(1)[i] + self.maps.gain(1)[i] * e;
        if adc1 >= G1_FLOOR_ADU {
            return (1 << 14) | adc1.round().clamp(0.0, 16383.0) as u16;
        }
        let adc2 = self.maps.pedestal(2)[i] + self.maps.gain(2)[i] * e;
        (3 << 14) | adc2.round().clamp(0.0, 16383.0) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::PhotonConverter;

    #[test]
    fn encoding_then_calibrating_gives_the_photons_back_in_every_stage() {
        let mut rng = Rng::new(5, 5);
        let resp = JungfrauResponse::new(1, 4, 4, 0.58, &mut rng);
        let conv = PhotonConverter::new(&resp.maps, 12.4);
        for (photons, tolerance, code) in [(1.0f32, 0.25, 0), (10.0, 0.25, 0), (200.0, 1.0, 1), (5000.0, 40.0, 3)] {
            let raw: Vec<u16> = (0..16).map(|i| resp.encode(i, photons * 12.4, 0.0, &mut rng)).collect();
            let mut out = vec![0.0; 16];
            conv.jungfrau_photons(&raw, 0, &mut out);
            for (r, o) in raw.iter().zip(&out) {
                assert_eq!(r >> 14, code, "{photons} photons");
                assert!((o - photons).abs() < tolerance, "{photons} photons read back as {o}");
            }
        }
    }
}
