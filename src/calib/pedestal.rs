//! Pedestals measured on the data itself: the mean G0 value of every pixel over dark frames at the
//! start of a run, then followed during the run on frames without signal, pixel by pixel, leaving
//! out pixels that hold a photon (more than half a photon from the current pedestal) and pixels
//! that switched gain.

/// Follows the G0 pedestal of every pixel.
pub struct PedestalTracker {
    sum: Vec<f64>,
    count: Vec<u32>,
    pedestal: Vec<f32>,
    /// Half a photon, in ADU, per pixel: a pixel further from its pedestal holds signal.
    half_photon_adu: Vec<f32>,
    /// Weight of a new frame in the running mean (1 / window).
    weight: f32,
    dark_frames_wanted: usize,
    dark_frames_seen: usize,
}

impl PedestalTracker {
    /// A tracker for pixels whose G0 gain is `gain_adu_per_kev`, at `photon_energy_kev`, taking
    /// `dark_frames` dark frames first and then following with a window of `window_frames`.
    pub fn new(
        gain_adu_per_kev: &[f32],
        photon_energy_kev: f32,
        dark_frames: usize,
        window_frames: usize,
    ) -> PedestalTracker {
        let n = gain_adu_per_kev.len();
        PedestalTracker {
            sum: vec![0.0; n],
            count: vec![0; n],
            pedestal: vec![0.0; n],
            half_photon_adu: gain_adu_per_kev.iter().map(|g| 0.5 * (g * photon_energy_kev).abs()).collect(),
            weight: 1.0 / window_frames.max(1) as f32,
            dark_frames_wanted: dark_frames,
            dark_frames_seen: 0,
        }
    }

    pub fn dark_frames_wanted(&self) -> usize {
        self.dark_frames_wanted
    }

    /// True once every dark frame has been taken.
    pub fn has_pedestal(&self) -> bool {
        self.dark_frames_seen >= self.dark_frames_wanted && self.dark_frames_wanted > 0
    }

    /// Takes a dark frame (raw JUNGFRAU words); after the last one the pedestal is their mean.
    pub fn add_dark(&mut self, raw: &[u16]) {
        for ((s, c), &r) in self.sum.iter_mut().zip(self.count.iter_mut()).zip(raw) {
            // Only G0 values count: a pixel that switched in the dark is faulty, not a pedestal.
            if r >> 14 == 0 {
                *s += f64::from(r);
                *c += 1;
            }
        }
        self.dark_frames_seen += 1;
        if self.dark_frames_seen == self.dark_frames_wanted {
            for ((p, s), c) in self.pedestal.iter_mut().zip(&self.sum).zip(&self.count) {
                *p = if *c > 0 { (*s / f64::from(*c)) as f32 } else { 0.0 };
            }
        }
    }

    /// Follows the pedestal on a frame without signal; pixels holding a photon or not in G0 are left
    /// as they are.
    pub fn track(&mut self, raw: &[u16]) {
        let w = self.weight;
        for ((p, &half), &r) in self.pedestal.iter_mut().zip(&self.half_photon_adu).zip(raw) {
            let adc = f32::from(r & 0x3fff);
            if r >> 14 == 0 && (adc - *p).abs() < half {
                *p += w * (adc - *p);
            }
        }
    }

    /// The G0 pedestal of every pixel, ADU.
    pub fn pedestal(&self) -> &[f32] {
        &self.pedestal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dark_frames_give_the_mean_and_tracking_follows_drift_but_not_photons() {
        let gains = vec![40.0f32; 4];
        let mut t = PedestalTracker::new(&gains, 12.4, 4, 50);
        assert!(!t.has_pedestal());
        for k in 0..4u16 {
            t.add_dark(&[3000 + k, 2000, (1 << 14) | 500, 4000 - k]);
        }
        assert!(t.has_pedestal());
        assert_eq!(&t.pedestal()[..2], &[3001.5, 2000.0]);
        assert_eq!(t.pedestal()[2], 0.0, "never seen in G0");
        // The pedestal of pixel 0 drifts by +100 ADU; pixel 1 holds a photon (496 ADU) every frame.
        for _ in 0..400 {
            t.track(&[3101, 2000 + 496, 0, 3998]);
        }
        assert!((t.pedestal()[0] - 3101.0).abs() < 1.0, "{}", t.pedestal()[0]);
        assert_eq!(t.pedestal()[1], 2000.0, "photons are not pedestal");
    }
}
