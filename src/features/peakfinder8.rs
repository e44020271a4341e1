//! The peakfinder8 method (as used at LCLS and in OnDA), on photon images, panel by panel:
//!
//! 1. Pixels are binned in rings of equal distance to the beam; a ring's background mean and sigma are
//!    found by iterative sigma clipping (pixels above mean + `clip_sigma`·sigma are left out of the next
//!    estimate), on every `background_sample_stride`-th row and every half-stride pixel of it — enough
//!    for the statistics at a fraction of the work.
//! 2. A pixel is a spot candidate above max(`min_photons`, mean + `min_snr`·sigma) of its ring.
//! 3. Candidates are grown into 8-connected components within the panel, kept with a pixel count in
//!    [`min_pixels`, `max_pixels`].
//! 4. Each component's local background is the mean and sigma of an annulus of pixels around its
//!    brightest pixel (Chebyshev distance in (`local_bg_inner_px`, `local_bg_outer_px`]) that are not
//!    candidates; its intensity is the sum over the component less that background, its SNR the
//!    intensity over sigma·√pixels (sigma no lower than `min_background_sigma`); kept from `min_snr` on.
//! 5. The centre is the background-subtracted centre of mass.
//!
//! Pixels outside the resolution limits (`min_radius_px`, `max_radius_px`) belong to no ring and are
//! never candidates; the same holds for masked pixels.

use super::Spot;
use crate::section::{Problems, key};

/// A pixel that belongs to no ring (masked, outside the resolution limits).
pub const NO_RING: u16 = u16::MAX;

/// Pixels the candidate scan looks at together.
const SCAN_CHUNK: usize = 64;

/// Whether any pixel of `chunk` is at least `t`: no early exit, so it compiles to vector compares.
fn any_at_or_above(chunk: &[f32], t: f32) -> bool {
    chunk.iter().fold(false, |any, &v| any | (v >= t))
}

/// Lanes of the clipped sums: a float sum added one value after another waits for each addition
/// (the compiler may not reorder them), so each lane sums every `LANES`-th sample and the lanes are
/// added at the end, a sum the compiler keeps in one vector register.
const LANES: usize = 8;

/// The sum, the sum of squares and the count of `samples` under `cut` (NaN never is).
fn clipped_sums(samples: &[f32], cut: f32) -> (f32, f32, u32) {
    let (mut sums, mut squares, mut counts) = ([0f32; LANES], [0f32; LANES], [0u32; LANES]);
    let mut add = |lane: usize, v: f32| {
        let inside = v < cut;
        sums[lane] += if inside { v } else { 0.0 };
        squares[lane] += if inside { v * v } else { 0.0 };
        counts[lane] += u32::from(inside);
    };
    let whole = samples.chunks_exact(LANES);
    let rest = whole.remainder();
    for chunk in whole {
        for (lane, &v) in chunk.iter().enumerate() {
            add(lane, v);
        }
    }
    for (lane, &v) in rest.iter().enumerate() {
        add(lane, v);
    }
    (sums.iter().sum(), squares.iter().sum(), counts.iter().sum())
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Peakfinder8Params {
    /// Width of a background ring, pixels.
    pub ring_width_px: f64,
    /// Absolute floor of the candidate threshold, photons.
    pub min_photons: f32,
    pub min_snr: f32,
    pub clip_sigma: f32,
    pub clip_iterations: usize,
    pub background_sample_stride: usize,
    pub min_pixels: u32,
    pub max_pixels: u32,
    pub local_bg_inner_px: usize,
    pub local_bg_outer_px: usize,
    /// Floor of the local background's sigma, photons: an empty annulus has next to no noise.
    pub min_background_sigma: f32,
    /// Resolution limits as distances from the beam, pixels.
    pub min_radius_px: f64,
    pub max_radius_px: f64,
}

impl Default for Peakfinder8Params {
    fn default() -> Self {
        Peakfinder8Params {
            ring_width_px: 4.0,
            min_photons: 2.5,
            min_snr: 7.0,
            clip_sigma: 2.5,
            clip_iterations: 3,
            background_sample_stride: 8,
            min_pixels: 2,
            max_pixels: 200,
            local_bg_inner_px: 2,
            local_bg_outer_px: 4,
            min_background_sigma: 0.7,
            min_radius_px: 0.0,
            max_radius_px: 1e9,
        }
    }
}

impl Peakfinder8Params {
    /// Every problem of `[features.peakfinder8]`, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if self.ring_width_px.is_nan() || self.ring_width_px <= 0.0 {
            problems.bad(k("ring_width_px"), format!("{} must be above 0", self.ring_width_px));
        }
        if self.min_photons.is_nan() || self.min_photons <= 0.0 {
            problems.bad(k("min_photons"), format!("{} must be above 0", self.min_photons));
        }
        if self.min_pixels == 0 || self.max_pixels < self.min_pixels {
            problems.bad(
                k("max_pixels"),
                format!(
                    "pixels must satisfy 1 <= min_pixels ({}) <= max_pixels ({})",
                    self.min_pixels, self.max_pixels
                ),
            );
        }
        problems.outside(k("clip_iterations"), self.clip_iterations, (1, 20));
        if self.background_sample_stride == 0 {
            problems.bad(k("background_sample_stride"), "must be at least 1");
        }
        if self.local_bg_outer_px <= self.local_bg_inner_px || self.local_bg_outer_px > 32 {
            problems.bad(
                k("local_bg_outer_px"),
                format!(
                    "{} must exceed local_bg_inner_px ({}) and be at most 32",
                    self.local_bg_outer_px, self.local_bg_inner_px
                ),
            );
        }
        if self.max_radius_px.is_nan() || self.min_radius_px.is_nan() || self.max_radius_px <= self.min_radius_px {
            problems.bad(
                k("max_radius_px"),
                format!("{} must exceed min_radius_px ({})", self.max_radius_px, self.min_radius_px),
            );
        }
    }
}

/// Ring of every pixel of the detector, in frame order, and each panel's background samples,
/// prepared once.
pub struct RadialMap {
    pub ring_of_pixel: Vec<u16>,
    pub rings: usize,
    panel_pixels: usize,
    cols: usize,
    samples: Vec<RingSamples>,
    stride: usize,
}

/// A panel's background samples — every `stride`-th row (whole rows keep the cache lines fetched
/// few), every `stride / 2`-th pixel of it, pixels in no ring left out — ordered by ring, so that
/// each clipping iteration reads a ring's samples in one run. The order depends on the geometry
/// alone, so it is found once here and a frame only reads its pixels in it.
pub struct RingSamples {
    /// Pixels of the panel, ring after ring, in pixel order within a ring.
    pixels: Vec<u32>,
    /// Where each ring's pixels begin in `pixels`, and the end.
    ring_starts: Vec<u32>,
}

/// One panel's rings and background samples, as [`Peakfinder8::find_in_panel`] takes them.
#[derive(Clone, Copy)]
pub struct PanelRings<'a> {
    pub ring_of_pixel: &'a [u16],
    pub samples: &'a RingSamples,
}

impl RadialMap {
    /// Rings of `ring_width_px` around the beam for panels whose first pixels sit at `origins`.
    pub fn new(
        origins: &[(usize, usize)],
        rows: usize,
        cols: usize,
        beam: (f64, f64),
        p: &Peakfinder8Params,
    ) -> RadialMap {
        let mut ring_of_pixel = Vec::with_capacity(origins.len() * rows * cols);
        let mut rings = 0;
        for &(r0, c0) in origins {
            for r in 0..rows {
                for c in 0..cols {
                    let radius = ((r0 + r) as f64 - beam.0).hypot((c0 + c) as f64 - beam.1);
                    let ring = if radius < p.min_radius_px || radius > p.max_radius_px {
                        NO_RING
                    } else {
                        ((radius / p.ring_width_px) as usize).min(NO_RING as usize - 1) as u16
                    };
                    if ring != NO_RING {
                        rings = rings.max(usize::from(ring) + 1);
                    }
                    ring_of_pixel.push(ring);
                }
            }
        }
        let mut map = RadialMap {
            ring_of_pixel,
            rings,
            panel_pixels: rows * cols,
            cols,
            samples: Vec::new(),
            stride: p.background_sample_stride.max(1),
        };
        map.sample();
        map
    }

    /// Takes masked pixels (non-zero flags, frame order) out of every ring.
    pub fn exclude(&mut self, mask: &[u8]) {
        for (ring, &flag) in self.ring_of_pixel.iter_mut().zip(mask) {
            if flag != 0 {
                *ring = NO_RING;
            }
        }
        self.sample();
    }

    /// Panel `p`'s rings and samples; an empty panel past the map's end.
    pub fn panel(&self, p: usize) -> PanelRings<'_> {
        static NONE: RingSamples = RingSamples { pixels: Vec::new(), ring_starts: Vec::new() };
        let rings = self.ring_of_pixel.get(p * self.panel_pixels..(p + 1) * self.panel_pixels).unwrap_or(&[]);
        PanelRings { ring_of_pixel: rings, samples: self.samples.get(p).unwrap_or(&NONE) }
    }

    /// Every panel's background samples, sorted by ring.
    fn sample(&mut self) {
        let (cols, stride, column_step) = (self.cols, self.stride, (self.stride / 2).max(1));
        let panels = self.ring_of_pixel.len().checked_div(self.panel_pixels).unwrap_or(0);
        self.samples = (0..panels)
            .map(|p| {
                let rings = &self.ring_of_pixel[p * self.panel_pixels..(p + 1) * self.panel_pixels];
                let ring = |at: u32| usize::from(rings[at as usize]);
                let mut pixels: Vec<u32> = (0..rings.len() / cols.max(1))
                    .step_by(stride)
                    .flat_map(|row| (row * cols..(row + 1) * cols).step_by(column_step))
                    .map(|at| at as u32)
                    .filter(|&at| ring(at) < self.rings)
                    .collect();
                // Stable: pixel order is kept within a ring.
                pixels.sort_by_key(|&at| ring(at));
                let ring_starts = (0..=self.rings).map(|r| pixels.partition_point(|&at| ring(at) < r) as u32).collect();
                RingSamples { pixels, ring_starts }
            })
            .collect();
    }
}

/// One worker's peakfinder8 with its scratch.
pub struct Peakfinder8 {
    p: Peakfinder8Params,
    sums: Vec<f64>,
    squares: Vec<f64>,
    counts: Vec<u32>,
    cut: Vec<f32>,
    threshold: Vec<f32>,
    stack: Vec<u32>,
    component: Vec<(u32, f32)>,
    /// The background samples of the panel in hand, ring after ring (as its [`RingSamples`]).
    samples: Vec<f32>,
}

impl Peakfinder8 {
    pub fn new(p: Peakfinder8Params, rings: usize) -> Peakfinder8 {
        Peakfinder8 {
            p,
            sums: vec![0.0; rings],
            squares: vec![0.0; rings],
            counts: vec![0; rings],
            cut: vec![f32::INFINITY; rings],
            threshold: vec![f32::INFINITY; rings],
            stack: Vec::with_capacity(4096),
            component: Vec::with_capacity(4096),
            samples: Vec::new(),
        }
    }

    /// Finds the peaks of one panel (`image` is consumed: candidates are cleared as they are
    /// visited); appends up to `out.capacity()` in total and returns how many there were.
    pub fn find_in_panel(
        &mut self,
        image: &mut [f32],
        panel_rings: PanelRings<'_>,
        rows: usize,
        cols: usize,
        panel: u16,
        out: &mut Vec<Spot>,
    ) -> u32 {
        let n = (rows * cols).min(image.len()).min(panel_rings.ring_of_pixel.len());
        let (image, rings) = (&mut image[..n], &panel_rings.ring_of_pixel[..n]);
        let lowest = self.ring_thresholds(image, panel_rings.samples);
        if !lowest.is_finite() {
            return 0;
        }
        let limit = out.capacity();
        let mut found = 0;
        // Only pixels over the lowest threshold are held against their own ring's threshold, here
        // rather than in a call a pixel (most over the lowest threshold are not over their ring's).
        for chunk in (0..n).step_by(SCAN_CHUNK) {
            let end = (chunk + SCAN_CHUNK).min(n);
            if !any_at_or_above(&image[chunk..end], lowest) {
                continue;
            }
            for start in chunk..end {
                if !self.is_candidate(image[start], rings[start]) {
                    continue;
                }
                if let Some(spot) = self.grow_and_measure(image, rings, rows, cols, start) {
                    found += 1;
                    if out.len() < limit {
                        out.push(Spot { panel, ..spot });
                    }
                }
            }
        }
        found
    }

    /// Background per ring by iterative sigma clipping; returns the lowest candidate threshold.
    fn ring_thresholds(&mut self, image: &[f32], samples: &RingSamples) -> f32 {
        let p = self.p;
        // A pixel past the image (a map for larger panels) reads as flagged: no background.
        self.samples.clear();
        self.samples.extend(samples.pixels.iter().map(|&at| image.get(at as usize).copied().unwrap_or(f32::NAN)));
        let ring_start = |r: usize| samples.ring_starts.get(r).map_or(0, |&s| s as usize);
        self.cut.fill(f32::INFINITY);
        for _ in 0..p.clip_iterations.max(1) {
            for r in 0..self.cut.len() {
                let (start, end) = (ring_start(r), ring_start(r + 1).max(ring_start(r)));
                let (sum, squares, count) = clipped_sums(&self.samples[start..end], self.cut[r]);
                (self.sums[r], self.squares[r], self.counts[r]) = (f64::from(sum), f64::from(squares), count);
            }
            for r in 0..self.cut.len() {
                if self.counts[r] > 0 {
                    let (mean, sigma) = self.ring_stats(r);
                    self.cut[r] = mean + p.clip_sigma * sigma;
                }
            }
        }
        let mut lowest = f32::INFINITY;
        for r in 0..self.threshold.len() {
            self.threshold[r] = if self.counts[r] > 0 {
                let (mean, sigma) = self.ring_stats(r);
                (mean + p.min_snr * sigma).max(p.min_photons)
            } else {
                f32::INFINITY
            };
            lowest = lowest.min(self.threshold[r]);
        }
        lowest
    }

    fn ring_stats(&self, r: usize) -> (f32, f32) {
        let n = f64::from(self.counts[r]);
        let mean = self.sums[r] / n;
        let variance = (self.squares[r] / n - mean * mean).max(0.0);
        (mean as f32, variance.sqrt() as f32)
    }

    fn is_candidate(&self, v: f32, ring: u16) -> bool {
        ring != NO_RING && v >= self.threshold[usize::from(ring)]
    }

    /// Grows the component at `start` (clearing it) and measures it against its local background.
    fn grow_and_measure(
        &mut self,
        image: &mut [f32],
        rings: &[u16],
        rows: usize,
        cols: usize,
        start: usize,
    ) -> Option<Spot> {
        let p = self.p;
        self.component.clear();
        self.stack.clear();
        self.stack.push(start as u32);
        self.component.push((start as u32, image[start]));
        image[start] = f32::NEG_INFINITY;
        while let Some(at) = self.stack.pop() {
            let at = at as usize;
            let (r, c) = (at / cols, at % cols);
            for (dr, dc) in [(-1i64, -1i64), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)] {
                let (nr, nc) = (r as i64 + dr, c as i64 + dc);
                if nr < 0 || nc < 0 || nr >= rows as i64 || nc >= cols as i64 {
                    continue;
                }
                let nb = nr as usize * cols + nc as usize;
                if self.is_candidate(image[nb], rings[nb]) {
                    self.component.push((nb as u32, image[nb]));
                    image[nb] = f32::NEG_INFINITY;
                    self.stack.push(nb as u32);
                }
            }
        }
        let pixels = self.component.len() as u32;
        if pixels < p.min_pixels || pixels > p.max_pixels {
            return None;
        }
        let &(peak_at, peak) = self.component.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
        let (pr, pc) = (peak_at as usize / cols, peak_at as usize % cols);
        // Local background: the annulus around the brightest pixel, candidates and visited pixels left out.
        let (mut n, mut sum, mut squares) = (0u32, 0f64, 0f64);
        let outer = p.local_bg_outer_px as i64;
        for dr in -outer..=outer {
            for dc in -outer..=outer {
                if dr.abs().max(dc.abs()) <= p.local_bg_inner_px as i64 {
                    continue;
                }
                let (r, c) = (pr as i64 + dr, pc as i64 + dc);
                if r < 0 || c < 0 || r >= rows as i64 || c >= cols as i64 {
                    continue;
                }
                let at = r as usize * cols + c as usize;
                let v = image[at];
                // Visited (−∞) and flagged (NaN) pixels are no background.
                if v == f32::NEG_INFINITY || v.is_nan() || rings[at] == NO_RING || self.is_candidate(v, rings[at]) {
                    continue;
                }
                n += 1;
                sum += f64::from(v);
                squares += f64::from(v) * f64::from(v);
            }
        }
        let (bg, bg_sigma) = if n > 0 {
            let mean = sum / f64::from(n);
            (mean as f32, ((squares / f64::from(n) - mean * mean).max(0.0).sqrt() as f32).max(p.min_background_sigma))
        } else {
            (0.0, p.min_background_sigma)
        };
        let (mut intensity, mut sum_r, mut sum_c) = (0f64, 0f64, 0f64);
        for &(at, v) in &self.component {
            let w = f64::from((v - bg).max(0.0));
            intensity += f64::from(v - bg);
            sum_r += w * (at as usize / cols) as f64;
            sum_c += w * (at as usize % cols) as f64;
        }
        let snr = (intensity / (f64::from(bg_sigma) * f64::from(pixels).sqrt())) as f32;
        if snr < p.min_snr || intensity < f64::from(p.min_photons) {
            return None;
        }
        let weight: f64 = self.component.iter().map(|&(_, v)| f64::from((v - bg).max(0.0))).sum();
        let (row, col) =
            if weight > 0.0 { ((sum_r / weight) as f32, (sum_c / weight) as f32) } else { (pr as f32, pc as f32) };
        Some(Spot { panel: 0, row, col, photons: intensity as f32, pixels, peak, snr, ..Spot::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian_spot(image: &mut [f32], cols: usize, row: f64, col: f64, photons: f64) {
        for r in 0..image.len() / cols {
            for c in 0..cols {
                let d2 = (r as f64 - row).powi(2) + (c as f64 - col).powi(2);
                if d2 < 25.0 {
                    image[r * cols + c] +=
                        (photons * (-d2 / (2.0 * 0.6 * 0.6)).exp() / (2.0 * std::f64::consts::PI * 0.36)) as f32;
                }
            }
        }
    }

    #[test]
    fn finds_spots_on_a_ring_background_and_measures_them() {
        let (rows, cols) = (128, 256);
        let p = Peakfinder8Params { background_sample_stride: 1, ..Default::default() };
        let map = RadialMap::new(&[(0, 0)], rows, cols, (64.0, 128.0), &p);
        // A bright ring of background at radius ~40 that a flat threshold would call spots everywhere.
        let mut image = vec![0.0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                let radius = (r as f64 - 64.0).hypot(c as f64 - 128.0);
                let ring = 3.0 * (-((radius - 40.0) / 3.0).powi(2)).exp();
                // Deterministic texture standing in for noise.
                image[r * cols + c] = (ring + 0.3 * (((r * 7 + c * 13) % 10) as f64 / 10.0 - 0.45)) as f32;
            }
        }
        gaussian_spot(&mut image, cols, 20.3, 40.6, 120.0);
        gaussian_spot(&mut image, cols, 100.7, 200.2, 60.0);
        gaussian_spot(&mut image, cols, 64.0 + 40.0, 128.0, 150.0); // on the ring
        let mut finder = Peakfinder8::new(p, map.rings);
        let mut out = Vec::with_capacity(16);
        let n = finder.find_in_panel(&mut image, map.panel(0), rows, cols, 3, &mut out);
        assert_eq!(n, 3, "{out:?}");
        let near = |s: &Spot, r: f32, c: f32| (s.row - r).abs() < 0.2 && (s.col - c).abs() < 0.2;
        for (r, c) in [(20.3, 40.6), (100.7, 200.2), (104.0, 128.0)] {
            let s = out.iter().find(|s| near(s, r, c)).unwrap_or_else(|| panic!("no spot at ({r}, {c}): {out:?}"));
            assert_eq!(s.panel, 3);
            assert!(s.snr >= 5.0 && s.photons > 30.0, "{s:?}");
        }
        let bright = out.iter().find(|s| near(s, 20.3, 40.6)).unwrap();
        assert!((bright.photons - 120.0).abs() < 15.0, "background-subtracted intensity {bright:?}");
    }

    /// Each panel's samples are the strided pixels in a ring, ring after ring, in pixel order within
    /// a ring (so the clipping sums add in the order the rows are read), and masking takes pixels
    /// out of them.
    #[test]
    fn background_samples_are_the_strided_ring_pixels_grouped_by_ring() {
        let (rows, cols) = (40, 48);
        let p = Peakfinder8Params { background_sample_stride: 4, max_radius_px: 30.0, ..Default::default() };
        let mut map = RadialMap::new(&[(0, 0), (0, 60)], rows, cols, (20.0, 50.0), &p);
        let check = |map: &RadialMap| {
            for panel in 0..2 {
                let rings = map.panel(panel);
                let expected: Vec<u32> = (0..rows)
                    .step_by(4)
                    .flat_map(|r| (0..cols).step_by(2).map(move |c| (r * cols + c) as u32))
                    .filter(|&at| rings.ring_of_pixel[at as usize] != NO_RING)
                    .collect();
                let samples = rings.samples;
                assert_eq!(samples.pixels.len(), expected.len());
                assert_eq!(samples.ring_starts.len(), map.rings + 1);
                for ring in 0..map.rings {
                    let (a, b) = (samples.ring_starts[ring] as usize, samples.ring_starts[ring + 1] as usize);
                    let in_ring: Vec<u32> = expected
                        .iter()
                        .copied()
                        .filter(|&at| usize::from(rings.ring_of_pixel[at as usize]) == ring)
                        .collect();
                    assert_eq!(&samples.pixels[a..b], &in_ring[..], "panel {panel} ring {ring}");
                }
            }
        };
        check(&map);
        let mut mask = vec![0u8; 2 * rows * cols];
        mask.iter_mut().step_by(3).for_each(|m| *m = 1);
        map.exclude(&mask);
        check(&map);
        assert!(map.panel(0).samples.pixels.iter().all(|&at| mask[at as usize] == 0));
        assert!(map.panel(2).ring_of_pixel.is_empty() && map.panel(2).samples.pixels.is_empty());
    }

    /// The lanes' sums are the plain sums of the samples under the cut, whatever the length.
    #[test]
    fn clipped_sums_count_what_is_under_the_cut() {
        for n in [0, 1, 7, 8, 9, 100, 1003] {
            let samples: Vec<f32> =
                (0..n).map(|i| if i % 11 == 5 { f32::NAN } else { ((i * 37) % 19) as f32 * 0.25 }).collect();
            let under: Vec<f64> = samples.iter().filter(|v| **v < 3.0).map(|&v| f64::from(v)).collect();
            let (sum, squares, count) = clipped_sums(&samples, 3.0);
            assert_eq!(count as usize, under.len(), "{n}");
            assert!((f64::from(sum) - under.iter().sum::<f64>()).abs() < 1e-3, "{n}");
            assert!((f64::from(squares) - under.iter().map(|v| v * v).sum::<f64>()).abs() < 1e-3, "{n}");
        }
    }

    #[test]
    fn resolution_limits_and_size_limits_apply() {
        let (rows, cols) = (64, 64);
        let p = Peakfinder8Params { background_sample_stride: 1, max_radius_px: 20.0, ..Default::default() };
        let map = RadialMap::new(&[(0, 0)], rows, cols, (32.0, 32.0), &p);
        let mut image = vec![0.0f32; rows * cols];
        gaussian_spot(&mut image, cols, 32.0, 42.0, 100.0); // radius 10: inside
        gaussian_spot(&mut image, cols, 60.0, 60.0, 100.0); // radius 40: outside the limit
        for c in 0..cols {
            image[5 * cols + c] = 50.0; // a streak longer than max_pixels... outside anyway at row 5
        }
        let mut finder = Peakfinder8::new(p, map.rings);
        let mut out = Vec::with_capacity(8);
        assert_eq!(finder.find_in_panel(&mut image, map.panel(0), rows, cols, 0, &mut out), 1, "{out:?}");
        let p = Peakfinder8Params { background_sample_stride: 1, max_pixels: 3, ..Default::default() };
        let map = RadialMap::new(&[(0, 0)], rows, cols, (32.0, 32.0), &p);
        let mut image = vec![0.0f32; rows * cols];
        gaussian_spot(&mut image, cols, 32.0, 42.0, 1000.0);
        let mut finder = Peakfinder8::new(p, map.rings);
        assert_eq!(finder.find_in_panel(&mut image, map.panel(0), rows, cols, 0, &mut out), 0, "too big a spot");
    }
}
