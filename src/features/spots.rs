//! Classical spot finding on a photon image: pixels at or above a photon threshold, grouped into
//! 8-connected components within their panel, kept when their size and summed photons are in range.
//! The photon image is the caller's scratch buffer and is consumed (visited pixels are cleared), which
//! saves a visited map and keeps the search allocation-free. The threshold must be positive.

use super::Spot;

/// The threshold finder's parameters (configured under `[trigger.spots]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpotFinderParams {
    /// A pixel belongs to a spot from this many photons on.
    pub threshold_photons: f32,
    /// Connected pixels a spot needs, at least and at most.
    pub min_spot_pixels: u32,
    pub max_spot_pixels: u32,
    /// A spot's summed photons must reach this.
    pub min_spot_photons: f32,
}

impl Default for SpotFinderParams {
    /// What the simulator's runs were tuned on, and what the datasets are made with.
    fn default() -> Self {
        SpotFinderParams { threshold_photons: 2.5, min_spot_pixels: 2, max_spot_pixels: 400, min_spot_photons: 8.0 }
    }
}

/// A reusable spot finder (one per worker).
pub struct SpotFinder {
    params: SpotFinderParams,
    stack: Vec<u32>,
}

impl SpotFinder {
    pub fn new(params: SpotFinderParams) -> SpotFinder {
        SpotFinder { params, stack: Vec::with_capacity(4096) }
    }

    /// Finds the spots of `panels` panels of `rows × cols` pixels laid out one after the other in
    /// `photons`; records up to `out.capacity()` of them in `out` and returns how many there were.
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
        let limit = out.capacity();
        let t = self.params.threshold_photons;
        let len = (rows * cols).min(image.len());
        let image = &mut image[..len];
        let mut found = 0u32;
        let mut from = 0;
        while let Some(start) = next_at_or_above(image, from, t) {
            from = start + 1;
            let spot = self.grow(image, rows, cols, start);
            let p = &self.params;
            if spot.pixels >= p.min_spot_pixels
                && spot.pixels <= p.max_spot_pixels
                && spot.photons >= p.min_spot_photons
            {
                found += 1;
                if out.len() < limit {
                    out.push(Spot { panel, ..spot });
                }
            }
        }
        found
    }

    /// Collects the component that contains `start`, clearing its pixels.
    fn grow(&mut self, image: &mut [f32], rows: usize, cols: usize, start: usize) -> Spot {
        let t = self.params.threshold_photons;
        let (mut pixels, mut sum, mut sum_r, mut sum_c, mut peak) = (0u32, 0f64, 0f64, 0f64, 0f32);
        // A queued pixel holds its value negated: below any (positive) threshold, so it is queued once.
        self.stack.clear();
        image[start] = -image[start];
        self.stack.push(start as u32);
        while let Some(at) = self.stack.pop() {
            let at = at as usize;
            let (r, c) = (at / cols, at % cols);
            let value = -image[at];
            image[at] = f32::NEG_INFINITY;
            pixels += 1;
            sum += f64::from(value);
            sum_r += f64::from(value) * r as f64;
            sum_c += f64::from(value) * c as f64;
            peak = peak.max(value);
            for n in neighbours(r, c, rows, cols) {
                if image[n] >= t {
                    image[n] = -image[n];
                    self.stack.push(n as u32);
                }
            }
        }
        let (row, col) = if sum > 0.0 { ((sum_r / sum) as f32, (sum_c / sum) as f32) } else { (0.0, 0.0) };
        Spot { panel: 0, row, col, photons: sum as f32, pixels, peak, snr: 0.0, ..Spot::default() }
    }
}

/// Clears `out`, then runs `find` on each of `panels` panels of `rows × cols` pixels laid out one after
/// the other in `photons`, with the panel's index; the spots found over all.
pub(crate) fn by_panel(
    photons: &mut [f32],
    (panels, rows, cols): (usize, usize, usize),
    out: &mut Vec<Spot>,
    mut find: impl FnMut(&mut [f32], u16, &mut Vec<Spot>) -> u32,
) -> u32 {
    out.clear();
    let panel_pixels = (rows * cols).max(1);
    photons.chunks_exact_mut(panel_pixels).take(panels).enumerate().map(|(p, image)| find(image, p as u16, out)).sum()
}

/// The 8-connected neighbours of pixel (`r`, `c`) inside a panel of `rows × cols`, as pixel indices.
pub(crate) fn neighbours(r: usize, c: usize, rows: usize, cols: usize) -> impl Iterator<Item = usize> {
    [(-1i64, -1i64), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)].into_iter().filter_map(
        move |(dr, dc)| {
            let (nr, nc) = (r as i64 + dr, c as i64 + dc);
            (nr >= 0 && nc >= 0 && nr < rows as i64 && nc < cols as i64).then(|| nr as usize * cols + nc as usize)
        },
    )
}

/// The first pixel at or after `from` whose value reaches `threshold`. Nearly all pixels are below it,
/// so whole chunks are skipped after a branch-free count; compiled for AVX2 as well as the baseline and
/// chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx2"))]
pub(crate) fn next_at_or_above(image: &[f32], from: usize, threshold: f32) -> Option<usize> {
    const CHUNK: usize = 64;
    let mut at = from;
    while at < image.len() {
        let end = ((at / CHUNK + 1) * CHUNK).min(image.len());
        let chunk = &image[at..end];
        if chunk.iter().map(|&v| u32::from(v >= threshold)).sum::<u32>() != 0 {
            return chunk.iter().position(|&v| v >= threshold).map(|i| at + i);
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finder() -> SpotFinder {
        SpotFinder::new(SpotFinderParams {
            threshold_photons: 2.5,
            min_spot_pixels: 2,
            max_spot_pixels: 20,
            min_spot_photons: 8.0,
        })
    }

    #[test]
    fn finds_connected_spots_with_their_centres_and_skips_lone_pixels() {
        let (rows, cols) = (8, 10);
        let mut img = vec![0.0f32; 2 * rows * cols];
        // A 2×2 spot in panel 0 centred at (2.5, 3.5).
        for (r, c) in [(2, 3), (2, 4), (3, 3), (3, 4)] {
            img[r * cols + c] = 5.0;
        }
        // A hot pixel: one pixel only.
        img[6 * cols + 8] = 50.0;
        // A diagonal pair in panel 1 at the panel's last row: 8-connected, stays inside the panel.
        img[rows * cols + 7 * cols] = 6.0;
        img[rows * cols + 6 * cols + 1] = 4.0;
        let mut out = Vec::with_capacity(8);
        let n = finder().find(&mut img, 2, rows, cols, &mut out);
        assert_eq!(n, 2);
        assert_eq!(
            out[0],
            Spot { panel: 0, row: 2.5, col: 3.5, photons: 20.0, pixels: 4, peak: 5.0, ..Spot::default() }
        );
        assert_eq!((out[1].panel, out[1].pixels, out[1].photons), (1, 2, 10.0));
        assert!((out[1].row - 6.6).abs() < 1e-5 && (out[1].col - 0.4).abs() < 1e-5);
    }

    #[test]
    fn spots_never_join_across_panels_and_recording_is_capped() {
        let (rows, cols) = (4, 4);
        let mut img = vec![0.0f32; 2 * rows * cols];
        // Last row of panel 0 and first row of panel 1 are neighbours in memory, not on the detector.
        img[3 * cols + 1] = 9.0;
        img[rows * cols + 1] = 9.0;
        let mut f = SpotFinder::new(SpotFinderParams {
            threshold_photons: 1.0,
            min_spot_pixels: 1,
            max_spot_pixels: 5,
            min_spot_photons: 1.0,
        });
        let mut out = Vec::with_capacity(1);
        assert_eq!(f.find(&mut img, 2, rows, cols, &mut out), 2);
        assert_eq!(out.len(), 1, "only capacity recorded");
    }

    #[test]
    fn oversized_components_are_not_spots() {
        let mut img = vec![3.0f32; 100];
        let mut out = Vec::with_capacity(4);
        assert_eq!(finder().find(&mut img, 1, 10, 10, &mut out), 0);
    }
}
