//! Where the beam meets the detector, estimated from a run's own background: solvent, air and
//! ice scatter in rings around the beam, so the centre is the point about which the run's mean
//! background is most nearly a function of radius alone. The mean image is taken over every frame,
//! leaving out flagged pixels and each frame's brightest (Bragg spots, hot pixels), and the centre
//! is searched coarse to fine, far beyond the detector's edges (a beam off the detector is common).
//! Its uncertainty is the scatter of the estimates on four interleaved quarters of the frames.

/// A frame's pixels above its median by this many photons are spots or hot pixels, not background.
const SPOT_MARGIN_PHOTONS: f32 = 10.0;

/// The run's mean background, pixel by pixel (in frame order), in four interleaved quarters.
pub struct BackgroundRings {
    /// Each pixel's place in the assembled image (row, column).
    places: Vec<(f32, f32)>,
    /// Each pixel's area in pixels (2 or 4 for a JUNGFRAU's chip-border pixels).
    areas: Vec<f32>,
    quarters: [Quarter; 4],
    frames: u64,
    sample: Vec<f32>,
}

#[derive(Clone)]
struct Quarter {
    sum: Vec<f64>,
    count: Vec<u32>,
}

/// An estimate: the centre in the assembled image, with its standard uncertainty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeamCentreEstimate {
    pub row: f64,
    pub col: f64,
    /// Standard uncertainty of `row` and `col` (from the quarters' scatter); NaN with fewer than
    /// four frames.
    pub sigma_row: f64,
    pub sigma_col: f64,
    /// How much of the mean background's variance a radial profile about the centre explains (0–1):
    /// near 0, there are no rings to fit and the centre means nothing.
    pub explained: f64,
    pub frames: u64,
}

impl BackgroundRings {
    /// For panels of `rows × cols` whose first pixels sit at `origins` in the assembled image, every
    /// pixel of one size.
    pub fn new(origins: &[(usize, usize)], rows: usize, cols: usize) -> BackgroundRings {
        let mut places = Vec::with_capacity(origins.len() * rows * cols);
        for &(r0, c0) in origins {
            for r in 0..rows {
                for c in 0..cols {
                    places.push(((r0 + r) as f32 + 0.5, (c0 + c) as f32 + 0.5));
                }
            }
        }
        let areas = vec![1.0; places.len()];
        BackgroundRings::with_places(places, areas)
    }

    /// For the detector's chips as placed (`detector::chips`): a JUNGFRAU's chip-border pixels are
    /// double size (quadruple at the corners between four chips), so each counts at its own centre
    /// and with its photons per pixel area, as the detector sees the background.
    pub fn on_chips(placed: &[crate::detector::chips::PlacedPanel], frame_cols: usize) -> BackgroundRings {
        let pixels = placed.iter().map(|p| p.rows * p.cols).sum::<usize>();
        let (mut places, mut areas) = (vec![(0f32, 0f32); pixels], vec![1f32; pixels]);
        let has = |dr: isize, dc: isize, p: &crate::detector::chips::PlacedPanel| {
            let at =
                (p.image_row as isize + dr * (p.rows + 2) as isize, p.image_col as isize + dc * (p.cols + 2) as isize);
            placed.iter().any(|q| q.module == p.module && (q.image_row as isize, q.image_col as isize) == at)
        };
        for p in placed {
            // Only chips two pixels apart (a JUNGFRAU's) share double-size border pixels.
            let (up, down, left, right) = (has(-1, 0, p), has(1, 0, p), has(0, -1, p), has(0, 1, p));
            // Extent (start, size) of a pixel along one side of its chip.
            let span = |k: usize, n: usize, before: bool, after: bool| match (k, before, after) {
                (0, true, _) => (-1.0, 2.0),
                (k, _, true) if k + 1 == n => (k as f32, 2.0),
                (k, _, _) => (k as f32, 1.0),
            };
            for i in 0..p.rows {
                let (r, h) = span(i, p.rows, up, down);
                for j in 0..p.cols {
                    let (c, w) = span(j, p.cols, left, right);
                    let at = (p.data_row + i) * frame_cols + p.data_col + j;
                    if let (Some(place), Some(area)) = (places.get_mut(at), areas.get_mut(at)) {
                        *place = (p.image_row as f32 + r + h / 2.0, p.image_col as f32 + c + w / 2.0);
                        *area = h * w;
                    }
                }
            }
        }
        BackgroundRings::with_places(places, areas)
    }

    fn with_places(places: Vec<(f32, f32)>, areas: Vec<f32>) -> BackgroundRings {
        let quarter = Quarter { sum: vec![0.0; places.len()], count: vec![0; places.len()] };
        BackgroundRings {
            quarters: [quarter.clone(), quarter.clone(), quarter.clone(), quarter],
            places,
            areas,
            frames: 0,
            sample: Vec::new(),
        }
    }

    /// Adds one frame's photons (frame order; NaN for flagged pixels).
    pub fn add(&mut self, photons: &[f32]) {
        self.sample.clear();
        self.sample.extend(photons.iter().step_by(7).copied().filter(|v| v.is_finite()));
        if self.sample.is_empty() {
            return;
        }
        let mid = self.sample.len() / 2;
        let median = *self.sample.select_nth_unstable_by(mid, f32::total_cmp).1;
        let ceiling = median + SPOT_MARGIN_PHOTONS;
        let q = &mut self.quarters[(self.frames % 4) as usize];
        for (((&v, &area), sum), count) in photons.iter().zip(&self.areas).zip(&mut q.sum).zip(&mut q.count) {
            let v = v / area;
            if v.is_finite() && v <= ceiling {
                *sum += f64::from(v);
                *count += 1;
            }
        }
        self.frames += 1;
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The centre, or `None` before any frame.
    pub fn estimate(&self) -> Option<BeamCentreEstimate> {
        if self.frames == 0 {
            return None;
        }
        let whole = self.mean(&[0, 1, 2, 3]);
        let extent = self.places.iter().fold((1f32, 1f32), |(r, c), &(pr, pc)| (r.max(pr + 1.0), c.max(pc + 1.0)));
        let ((row, col), cost) = search(&whole, extent, None);
        let mut sigma = (f64::NAN, f64::NAN);
        if self.frames >= 4 {
            let quarters: Vec<(f64, f64)> =
                (0..4).map(|k| search(&self.mean(&[k]), extent, Some((row, col))).0).collect();
            let spread = |pick: fn(&(f64, f64)) -> f64| {
                let mean = quarters.iter().map(pick).sum::<f64>() / 4.0;
                let var = quarters.iter().map(|q| (pick(q) - mean).powi(2)).sum::<f64>() / 3.0;
                // A quarter holds a quarter of the frames: the whole run's estimate scatters half as much.
                var.sqrt() / 2.0
            };
            sigma = (spread(|q| q.0), spread(|q| q.1));
        }
        Some(BeamCentreEstimate {
            row,
            col,
            sigma_row: sigma.0,
            sigma_col: sigma.1,
            explained: 1.0 - cost,
            frames: self.frames,
        })
    }

    /// The mean background over the quarters `which`: (row, column, mean) of every pixel seen.
    fn mean(&self, which: &[usize]) -> Vec<(f32, f32, f32)> {
        (0..self.places.len())
            .filter_map(|i| {
                let (sum, count) = which
                    .iter()
                    .fold((0f64, 0u32), |(s, n), &k| (s + self.quarters[k].sum[i], n + self.quarters[k].count[i]));
                (count > 0).then(|| (self.places[i].0, self.places[i].1, (sum / f64::from(count)) as f32))
            })
            .collect()
    }
}

/// Coarse to fine: on 16 × 16 blocks every 8 pixels over a field three detectors wide (or about
/// `near`), the eight best well-separated places are refined on 4 × 4 blocks, then the best of them
/// on every pixel. The centre and its cost.
fn search(pixels: &[(f32, f32, f32)], (rows, cols): (f32, f32), near: Option<(f64, f64)>) -> ((f64, f64), f64) {
    let blocks = block_means(pixels, 4.0);
    let big_blocks = block_means(pixels, 16.0);
    let mut starts: Vec<(f64, (f64, f64))> = Vec::new();
    match near {
        None => {
            let (rows, cols) = (f64::from(rows), f64::from(cols));
            let mut coarse = Vec::new();
            let mut r = -rows;
            while r <= 2.0 * rows {
                let mut c = -cols;
                while c <= 2.0 * cols {
                    coarse.push((unexplained(&big_blocks, (r, c), 12.0), (r, c)));
                    c += 8.0;
                }
                r += 8.0;
            }
            coarse.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (cost, at) in coarse {
                let apart = |s: &(f64, (f64, f64))| (s.1.0 - at.0).hypot(s.1.1 - at.1) >= 24.0;
                if starts.iter().all(apart) {
                    starts.push((cost, at));
                }
                if starts.len() == 8 {
                    break;
                }
            }
        }
        Some(at) => starts.push((f64::INFINITY, at)),
    }
    let refine = |centre: (f64, f64), half: f64, step: f64, points: &[(f32, f32, f32)], bin: f32| {
        let mut best = (f64::INFINITY, centre);
        let mut dr = -half;
        while dr <= half {
            let mut dc = -half;
            while dc <= half {
                let at = (centre.0 + dr, centre.1 + dc);
                let cost = unexplained(points, at, bin);
                if cost < best.0 {
                    best = (cost, at);
                }
                dc += step;
            }
            dr += step;
        }
        best
    };
    let medium = starts
        .iter()
        .map(|&(_, at)| refine(at, 12.0, 2.0, &blocks, 4.0))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or((f64::from(rows) / 2.0, f64::from(cols) / 2.0), |b| b.1);
    let (cost, centre) = refine(medium, 3.0, 1.0, pixels, 2.0);
    (centre, cost)
}

/// The means of `side × side` blocks of pixels, at the blocks' centres of mass.
fn block_means(pixels: &[(f32, f32, f32)], side: f32) -> Vec<(f32, f32, f32)> {
    let mut blocks: std::collections::BTreeMap<(i32, i32), (f64, f64, f64, u32)> = std::collections::BTreeMap::new();
    for &(r, c, v) in pixels {
        let e = blocks.entry(((r / side) as i32, (c / side) as i32)).or_default();
        *e = (e.0 + f64::from(r), e.1 + f64::from(c), e.2 + f64::from(v), e.3 + 1);
    }
    blocks
        .into_values()
        .map(|(r, c, v, n)| {
            let n = f64::from(n);
            ((r / n) as f32, (c / n) as f32, (v / n) as f32)
        })
        .collect()
}

/// The share of the values' variance left when each radial bin of `bin` pixels about `centre` is
/// replaced by its mean: 0 for perfect rings, 1 for none.
fn unexplained(points: &[(f32, f32, f32)], centre: (f64, f64), bin: f32) -> f64 {
    let radius = |r: f32, c: f32| ((f64::from(r) - centre.0).hypot(f64::from(c) - centre.1) / f64::from(bin)) as usize;
    let bins = points.iter().map(|&(r, c, _)| radius(r, c)).max().unwrap_or(0) + 1;
    let (mut n, mut s, mut s2) = (vec![0u32; bins], vec![0f64; bins], vec![0f64; bins]);
    for &(r, c, v) in points {
        let b = radius(r, c);
        n[b] += 1;
        s[b] += f64::from(v);
        s2[b] += f64::from(v) * f64::from(v);
    }
    let within: f64 = (0..bins).filter(|&b| n[b] > 0).map(|b| s2[b] - s[b] * s[b] / f64::from(n[b])).sum();
    let total_n = points.len() as f64;
    let total: f64 = s2.iter().sum::<f64>() - s.iter().sum::<f64>().powi(2) / total_n;
    if total > 0.0 { (within / total).clamp(0.0, 1.0) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring pattern about `centre` with a little noise, on a 128 × 256 panel.
    fn rings(centre: (f32, f32), noise: u64) -> Vec<f32> {
        let mut state = noise | 1;
        (0..128 * 256)
            .map(|i| {
                let (r, c) = ((i / 256) as f32, (i % 256) as f32);
                let d = (r - centre.0).hypot(c - centre.1);
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                2.0 + (-((d - 100.0) / 25.0).powi(2)).exp() * 3.0 + 0.3 * ((state >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect()
    }

    #[test]
    fn the_centre_of_rings_is_found_on_and_off_the_detector_with_its_uncertainty() {
        for centre in [(60.0, 140.0), (-20.0, 40.0)] {
            let mut b = BackgroundRings::new(&[(0, 0)], 128, 256);
            for k in 0..8 {
                let mut frame = rings(centre, 7 + k);
                frame[100] = f32::NAN;
                frame[200] = 500.0; // a spot: left out
                b.add(&frame);
            }
            let e = b.estimate().unwrap();
            assert!((e.row - f64::from(centre.0)).abs() <= 2.0, "{centre:?}: {e:?}");
            assert!((e.col - f64::from(centre.1)).abs() <= 2.0, "{centre:?}: {e:?}");
            assert!(e.explained > 0.8 && e.sigma_row.is_finite() && e.sigma_row < 3.0, "{e:?}");
        }
    }

    #[test]
    fn a_jungfrau_module_counts_its_border_pixels_at_their_size_and_place() {
        let g = crate::detector::DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap();
        let b = BackgroundRings::on_chips(&crate::detector::chips::placed_panels(&g, &[(0, 0)]), 1024);
        let at = |r: usize, c: usize| (b.places[r * 1024 + c], b.areas[r * 1024 + c]);
        assert_eq!(at(0, 0), ((0.5, 0.5), 1.0));
        // The last column of chip 0 spans columns 255–257 of the assembled module; the first of chip 1
        // 257–259; a chip-corner pixel is four pixels.
        assert_eq!(at(10, 255), ((10.5, 256.0), 2.0));
        assert_eq!(at(10, 256), ((10.5, 258.0), 2.0));
        assert_eq!(at(256, 256), ((258.0, 258.0), 4.0));
        assert_eq!(at(511, 1023), ((513.5, 1029.5), 1.0));
        let total: f32 = b.areas.iter().sum();
        assert_eq!(total, 514.0 * 1030.0);
    }

    #[test]
    fn a_flat_background_explains_nothing() {
        let mut b = BackgroundRings::new(&[(0, 0)], 32, 32);
        assert!(b.estimate().is_none());
        let mut state = 3u64;
        let frame: Vec<f32> = (0..32 * 32)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                1.0 + (state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        b.add(&frame);
        let e = b.estimate().unwrap();
        assert!(e.explained < 0.5 && e.sigma_row.is_nan(), "{e:?}");
    }
}
