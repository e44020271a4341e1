//! The reducer's threshold finder, in units of the local background, so that its defaults hold on a
//! simulator's near-empty frames and on a real module's 1–3.5 photons a pixel alike:
//!
//! 1. Each panel is cut into square tiles of `tile_px`; a tile's background mean and noise are found
//!    by sigma clipping (pixels above mean + `clip_sigma`·sigma left out of the next estimate) on
//!    every sixteenth row (64 pixels of a 32-pixel tile: enough for a mean and a noise, at a sixteenth
//!    of the reads). Flagged pixels (NaN) take no part.
//! 2. A pixel is a candidate from its tile's mean + max(`min_photons_above`, `min_snr`·sigma) on.
//!    Rows are scanned whole, vectorised, against a row of their tiles' thresholds.
//! 3. Candidates are grown into 8-connected components within the panel, each pixel against its own
//!    tile's threshold.
//! 4. A component's intensity is its photons less its pixels' tile means, its SNR that intensity over
//!    sigma·√pixels (sigma no lower than `min_background_sigma`). It is a spot with
//!    [`min_pixels`, `max_pixels`] pixels, at least `min_spot_photons` and an SNR from `min_spot_snr`.
//! 5. The centre is the background-subtracted centre of mass.
//!
//! Unlike peakfinder8 it needs no beam centre: a tile is small enough for the background to be flat
//! across it, rings or not. The photon image is consumed (visited pixels are cleared).

use super::Spot;
use super::spots::{by_panel, neighbours};
use crate::section::{Problems, key};

/// `[features.threshold]`: the threshold finder's parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdParams {
    /// Side of a background tile, pixels.
    pub tile_px: usize,
    /// A candidate pixel stands this many of its tile's sigmas above the tile's mean ...
    pub min_snr: f32,
    /// ... and at least this many photons above it.
    pub min_photons_above: f32,
    /// Connected pixels a spot needs, at least and at most.
    pub min_pixels: u32,
    pub max_pixels: u32,
    /// A spot's background-subtracted photons must reach this ...
    pub min_spot_photons: f32,
    /// ... and its integrated SNR this.
    pub min_spot_snr: f32,
    pub clip_sigma: f32,
    pub clip_iterations: usize,
    /// Floor of a tile's sigma, photons: a near-empty tile has next to no noise.
    pub min_background_sigma: f32,
}

impl Default for ThresholdParams {
    fn default() -> Self {
        ThresholdParams {
            tile_px: 32,
            min_snr: 6.0,
            min_photons_above: 2.5,
            min_pixels: 2,
            max_pixels: 200,
            min_spot_photons: 8.0,
            min_spot_snr: 8.0,
            clip_sigma: 2.5,
            clip_iterations: 3,
            min_background_sigma: 0.5,
        }
    }
}

impl ThresholdParams {
    /// Every problem of `[features.threshold]`, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if !(4..=512).contains(&self.tile_px) {
            problems.bad(k("tile_px"), format!("{} is outside 4..=512", self.tile_px));
        }
        let positive = [
            ("min_photons_above", self.min_photons_above),
            ("clip_sigma", self.clip_sigma),
            ("min_background_sigma", self.min_background_sigma),
        ];
        for (name, value) in positive {
            if value.is_nan() || value <= 0.0 {
                problems.bad(k(name), format!("{value} must be above 0"));
            }
        }
        for (name, value) in [
            ("min_snr", self.min_snr),
            ("min_spot_snr", self.min_spot_snr),
            ("min_spot_photons", self.min_spot_photons),
        ] {
            if value.is_nan() || value < 0.0 {
                problems.bad(k(name), format!("{value} must be 0 or above"));
            }
        }
        if self.min_pixels == 0 {
            problems.bad(k("min_pixels"), "a spot has at least one pixel");
        }
        if self.max_pixels < self.min_pixels {
            problems.bad(k("max_pixels"), format!("{} is below min_pixels ({})", self.max_pixels, self.min_pixels));
        }
    }
}

/// Rows between the rows a tile's background is measured on (all of each such row's pixels).
const SAMPLE_ROW_STRIDE: usize = 16;

/// A tile's background.
#[derive(Clone, Copy, Debug, Default)]
struct Tile {
    mean: f32,
    sigma: f32,
    /// Where a candidate starts: mean + the larger margin, never below `min_photons_above`.
    threshold: f32,
}

/// A reusable local-threshold finder (one per worker), with its scratch sized for its panels.
pub struct LocalThresholdFinder {
    params: ThresholdParams,
    tiles: Vec<Tile>,
    /// Each column's threshold in the band of tiles being scanned.
    band: Vec<f32>,
    stack: Vec<u32>,
}

impl LocalThresholdFinder {
    /// A finder for panels of `rows × cols` pixels, its scratch allocated now.
    pub fn new(params: ThresholdParams, rows: usize, cols: usize) -> LocalThresholdFinder {
        let side = params.tile_px.max(1);
        let tiles = rows.div_ceil(side) * cols.div_ceil(side);
        LocalThresholdFinder {
            params,
            tiles: vec![Tile::default(); tiles],
            band: Vec::with_capacity(cols),
            stack: Vec::with_capacity(4096),
        }
    }

    /// Finds the spots of `panels` panels laid out one after the other in `photons`; records up to
    /// `out.capacity()` of them in `out` and returns how many there were.
    pub fn find(&mut self, photons: &mut [f32], panels: usize, rows: usize, cols: usize, out: &mut Vec<Spot>) -> u32 {
        by_panel(photons, (panels, rows, cols), out, |image, p, out| self.find_in_panel(image, rows, cols, p, out))
    }

    /// Finds the spots of one panel; appends up to `out.capacity()` in total and returns how many
    /// there were in this panel.
    pub fn find_in_panel(
        &mut self,
        image: &mut [f32],
        rows: usize,
        cols: usize,
        panel: u16,
        out: &mut Vec<Spot>,
    ) -> u32 {
        let len = (rows * cols).min(image.len());
        let rows = len.checked_div(cols).unwrap_or(0);
        let image = &mut image[..rows * cols];
        let side = self.params.tile_px.max(1);
        let across = cols.div_ceil(side);
        if self.tiles.len() < rows.div_ceil(side) * across {
            // Panels larger than the finder was made for: grown once, not per frame.
            self.tiles.resize(rows.div_ceil(side) * across, Tile::default());
        }
        self.measure_tiles(image, rows, cols);
        let limit = out.capacity();
        let mut found = 0u32;
        for r in 0..rows {
            if r % side == 0 {
                // Each column's threshold for this band of tiles, so that a row is scanned in one pass.
                let band = &self.tiles[(r / side) * across..(r / side + 1) * across];
                self.band.clear();
                self.band.extend((0..cols).map(|c| band[c / side].threshold));
            }
            let mut from = 0;
            while let Some(c) = next_reaching(&image[r * cols..(r + 1) * cols], &self.band, from) {
                from = c + 1;
                if let Some(spot) = self.grow(image, rows, cols, r * cols + c) {
                    found += 1;
                    if out.len() < limit {
                        out.push(Spot { panel, ..spot });
                    }
                }
            }
        }
        found
    }

    /// Each tile's clipped background and candidate threshold.
    fn measure_tiles(&mut self, image: &[f32], rows: usize, cols: usize) {
        let p = self.params;
        let side = p.tile_px.max(1);
        let across = cols.div_ceil(side);
        for tr in 0..rows.div_ceil(side) {
            let sampled = (tr * side..((tr + 1) * side).min(rows)).step_by(SAMPLE_ROW_STRIDE);
            for tc in 0..across {
                let (c0, c1) = (tc * side, ((tc + 1) * side).min(cols));
                let segments = sampled.clone().map(|r| &image[r * cols + c0..r * cols + c1]);
                let stats = clipped_mean_sigma(segments, p.clip_sigma, p.clip_iterations);
                let (mean, sigma, threshold) = match stats {
                    Some((mean, sigma)) => {
                        let sigma = sigma.max(p.min_background_sigma);
                        (mean, sigma, (mean + p.min_photons_above.max(p.min_snr * sigma)).max(p.min_photons_above))
                    }
                    None => (0.0, p.min_background_sigma, f32::INFINITY),
                };
                self.tiles[tr * across + tc] = Tile { mean, sigma, threshold };
            }
        }
    }

    /// The tile of pixel `at`.
    fn tile_of(&self, at: usize, cols: usize) -> Tile {
        let side = self.params.tile_px.max(1);
        let (r, c) = (at / cols, at % cols);
        self.tiles[(r / side) * cols.div_ceil(side) + c / side]
    }

    /// Collects the component that contains `start`, clearing its pixels; the spot when it is one.
    fn grow(&mut self, image: &mut [f32], rows: usize, cols: usize, start: usize) -> Option<Spot> {
        let home = self.tile_of(start, cols);
        let (mut pixels, mut intensity, mut sum_r, mut sum_c, mut peak) = (0u32, 0f64, 0f64, 0f64, 0f32);
        // A queued pixel holds its value negated: every threshold is positive, so it is queued once.
        self.stack.clear();
        image[start] = -image[start];
        self.stack.push(start as u32);
        while let Some(at) = self.stack.pop() {
            let at = at as usize;
            let (r, c) = (at / cols, at % cols);
            let value = -image[at];
            image[at] = f32::NEG_INFINITY;
            let excess = f64::from(value - self.tile_of(at, cols).mean);
            pixels += 1;
            intensity += excess;
            sum_r += excess * r as f64;
            sum_c += excess * c as f64;
            peak = peak.max(value);
            for n in neighbours(r, c, rows, cols) {
                if image[n] >= self.tile_of(n, cols).threshold {
                    image[n] = -image[n];
                    self.stack.push(n as u32);
                }
            }
        }
        let p = &self.params;
        let snr = (intensity / (f64::from(home.sigma) * f64::from(pixels).sqrt())) as f32;
        let keep = pixels >= p.min_pixels
            && pixels <= p.max_pixels
            && intensity >= f64::from(p.min_spot_photons)
            && snr >= p.min_spot_snr;
        if !keep {
            return None;
        }
        let (row, col) = ((sum_r / intensity) as f32, (sum_c / intensity) as f32);
        Some(Spot { panel: 0, row, col, photons: intensity as f32, pixels, peak, snr, ..Spot::default() })
    }
}

/// The first pixel of `row` at or after `from` that reaches its column's threshold. Nearly all pixels
/// are below theirs, so whole chunks are skipped after a branch-free count; compiled for AVX2 as well
/// as the baseline and chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn next_reaching(row: &[f32], thresholds: &[f32], from: usize) -> Option<usize> {
    const CHUNK: usize = 64;
    let n = row.len().min(thresholds.len());
    let mut at = from;
    while at < n {
        let end = ((at / CHUNK + 1) * CHUNK).min(n);
        let (values, limits) = (&row[at..end], &thresholds[at..end]);
        if values.iter().zip(limits).map(|(v, t)| u32::from(v >= t)).sum::<u32>() != 0 {
            return values.iter().zip(limits).position(|(v, t)| v >= t).map(|i| at + i);
        }
        at = end;
    }
    None
}

/// Mean and sigma of the values of `segments` after `iterations` rounds of leaving out those above
/// mean + `clip`·sigma; NaN values take no part; `None` for no values.
fn clipped_mean_sigma<'a>(
    segments: impl Iterator<Item = &'a [f32]> + Clone,
    clip: f32,
    iterations: usize,
) -> Option<(f32, f32)> {
    let mut current = moments(segments.clone(), f32::INFINITY)?;
    for _ in 0..iterations {
        match moments(segments.clone(), current.0 + clip * current.1) {
            Some(next) if next != current => current = next,
            _ => break,
        }
    }
    Some(current)
}

/// Mean and sigma of the values of `segments` at or below `limit` (NaN never is).
fn moments<'a>(segments: impl Iterator<Item = &'a [f32]>, limit: f32) -> Option<(f32, f32)> {
    let mut lanes = Lanes::default();
    for segment in segments {
        add_segment(&mut lanes, segment, limit);
    }
    let (n, sum, sum2) = (lanes.n.iter().sum::<f32>(), lanes.sum.iter().sum::<f32>(), lanes.sum2.iter().sum::<f32>());
    if n == 0.0 {
        return None;
    }
    let mean = sum / n;
    Some((mean, (sum2 / n - mean * mean).max(0.0).sqrt()))
}

/// Count, sum and sum of squares, eight lanes wide so that they vectorise instead of waiting on one
/// another (f32: a tile's samples are a few hundred values of photon size).
#[derive(Default)]
struct Lanes {
    n: [f32; 8],
    sum: [f32; 8],
    sum2: [f32; 8],
}

/// Adds the values of `segment` at or below `limit` to `lanes`; compiled for AVX2 as well as the
/// baseline and chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn add_segment(lanes: &mut Lanes, segment: &[f32], limit: f32) {
    let mut chunks = segment.chunks_exact(8);
    let mut add = |values: &[f32]| {
        let lanes = lanes.n.iter_mut().zip(lanes.sum.iter_mut()).zip(lanes.sum2.iter_mut());
        for (&value, ((n, sum), sum2)) in values.iter().zip(lanes) {
            let keep = value <= limit;
            let v = if keep { value } else { 0.0 };
            *n += if keep { 1.0 } else { 0.0 };
            *sum += v;
            *sum2 += v * v;
        }
    };
    for chunk in &mut chunks {
        add(chunk);
    }
    add(chunks.remainder());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noisy background: `level` photons with ±`spread` uniform noise.
    fn background(rows: usize, cols: usize, level: f32, spread: f32) -> Vec<f32> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..rows * cols)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                level + spread * ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            })
            .collect()
    }

    fn add_spot(image: &mut [f32], cols: usize, r: usize, c: usize, photons: f32) {
        for (dr, dc, share) in [(0, 0, 0.4), (0, 1, 0.2), (1, 0, 0.2), (1, 1, 0.2)] {
            image[(r + dr) * cols + c + dc] += photons * share;
        }
    }

    #[test]
    fn a_flat_high_background_gives_no_spots_where_a_fixed_threshold_sees_thousands() {
        let (rows, cols) = (128, 256);
        let mut image = background(rows, cols, 2.0, 1.0);
        let mut fixed = image.clone();
        let mut out = Vec::with_capacity(64);
        let n =
            LocalThresholdFinder::new(ThresholdParams::default(), rows, cols).find(&mut image, 1, rows, cols, &mut out);
        assert_eq!(n, 0, "{out:?}");
        let mut old = super::super::SpotFinder::new(super::super::SpotFinderParams::default());
        assert!(old.find(&mut fixed, 1, rows, cols, &mut out) > 100);
    }

    #[test]
    fn spots_on_a_high_background_are_found_with_background_subtracted_photons_and_centres() {
        let (rows, cols) = (128, 256);
        let mut image = background(rows, cols, 3.0, 1.5);
        add_spot(&mut image, cols, 40, 50, 60.0);
        add_spot(&mut image, cols, 100, 200, 40.0);
        let mut out = Vec::with_capacity(8);
        let n =
            LocalThresholdFinder::new(ThresholdParams::default(), rows, cols).find(&mut image, 1, rows, cols, &mut out);
        assert_eq!(n, 2, "{out:?}");
        let first = out[0];
        assert!((first.row - 40.4).abs() < 0.3 && (first.col - 50.4).abs() < 0.3, "{first:?}");
        assert!((first.photons - 60.0).abs() < 6.0 && first.snr > 6.0, "{first:?}");
    }

    #[test]
    fn a_spot_on_a_near_empty_frame_is_found_as_the_fixed_threshold_finds_it() {
        let (rows, cols) = (64, 64);
        let mut image = background(rows, cols, 0.05, 0.05);
        add_spot(&mut image, cols, 10, 20, 20.0);
        image[50 * cols + 50] = 40.0; // a hot pixel: one pixel only
        let mut out = Vec::with_capacity(8);
        let n =
            LocalThresholdFinder::new(ThresholdParams::default(), rows, cols).find(&mut image, 1, rows, cols, &mut out);
        assert_eq!((n, out[0].pixels), (1, 4), "{out:?}");
    }

    #[test]
    fn flagged_pixels_and_tile_borders_do_not_break_spots_and_recording_is_capped() {
        let (rows, cols) = (64, 70);
        let mut image = background(rows, cols, 1.0, 0.5);
        // A spot across the corner of four tiles, and a row of flagged pixels through another tile.
        add_spot(&mut image, cols, 31, 31, 80.0);
        add_spot(&mut image, cols, 10, 66, 80.0);
        image[40 * cols..41 * cols].fill(f32::NAN);
        let mut out = Vec::with_capacity(1);
        let n =
            LocalThresholdFinder::new(ThresholdParams::default(), rows, cols).find(&mut image, 1, rows, cols, &mut out);
        assert_eq!((n, out.len()), (2, 1));
        assert_eq!(out[0].pixels, 4, "{out:?}");
    }

    #[test]
    fn clipping_leaves_bright_pixels_out_of_the_background() {
        let mut values = vec![1.0f32; 90];
        values.iter_mut().step_by(2).for_each(|v| *v = 3.0);
        values.extend([100.0; 10]);
        values.push(f32::NAN);
        let (mean, sigma) = clipped_mean_sigma(values.chunks(7), 2.5, 3).unwrap();
        assert!((mean - 2.0).abs() < 1e-4 && (sigma - 1.0).abs() < 1e-4, "{mean} {sigma}");
        assert_eq!(clipped_mean_sigma([&[f32::NAN][..]].into_iter(), 2.5, 3), None);
    }

    #[test]
    fn problems_are_named_by_key() {
        let mut problems = Problems::default();
        ThresholdParams {
            tile_px: 2,
            min_photons_above: 0.0,
            max_pixels: 1,
            min_pixels: 2,
            ..ThresholdParams::default()
        }
        .validate("features.threshold", &mut problems);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let text = text.join("; ");
        for k in ["tile_px", "min_photons_above", "max_pixels"] {
            assert!(text.contains(&format!("features.threshold.{k}")), "{text}");
        }
    }
}
