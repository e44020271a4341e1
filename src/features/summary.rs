//! A frame's summary for the learned trigger, in terms that mean the same on every beamline: shells of
//! resolution (1/d from the beam centre, distance and photon energy), and in each shell the frame's own
//! background and what stands out of it.
//!
//! Weak hits' Bragg photons sit together (a spot is about a pixel wide) where background photons are
//! scattered. The summary sums photons in 2 × 2 pixel blocks (pixel values rounded to whole photons)
//! and keeps, per shell, a histogram of the blocks' counts. From it, per shell: whether the detector
//! covers the shell at all; the background, as the clipped mean of the blocks (photons a pixel); how
//! widely blocks spread around it against Poisson's spread (1 for a smooth background, more under
//! ice or a shadow); and the fractions of blocks above the background by 3, 6 and 12 of its Poisson
//! deviations (the compact excess). A shell the detector does not cover reads all zeros, its first
//! value saying it is absent. The learned trigger reads these [`SUMMARY_LEN`] values.
//!
//! Shells are fixed in resolution, not in pixels: the solvent ring and the ice rings always fall in the
//! same shells, whatever the distance or energy, and the model reads the same inputs on every detector.
//! The shell of every block is fixed when the plan is made; a frame costs one pass over its photons,
//! panel by panel, before the spot finder consumes them.

/// Resolution shells.
pub const SHELLS: usize = 12;
/// Shell edges in 1/d (Å⁻¹): the first shell runs from the beam to 1/(20 Å), the last from 1/(1.67 Å)
/// outwards.
pub const SHELL_EDGES: [f64; SHELLS - 1] = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60];
/// Values a shell contributes: covered, background, spread, and the three excess fractions.
pub const PER_SHELL: usize = 6;
/// Deviations above the background (Poisson's, of the block sum) the excess fractions are taken at.
pub const EXCESS_SIGMAS: [f32; 3] = [3.0, 6.0, 12.0];
/// Values in a summary.
pub const SUMMARY_LEN: usize = SHELLS * PER_SHELL;
/// Blocks a shell needs on the detector to be measured: fewer give no stable background.
pub const MIN_BLOCKS: u32 = 64;
/// Block counts up to this many photons are told apart; brighter blocks share the last bin.
const BINS: usize = 256;

// Every pool slot reserves room for the summary, so reducing a frame never grows it.
const _: () = assert!(SUMMARY_LEN <= crate::frame::features::SUMMARY_ROOM);

/// Where the detector sits in the beam: what turns a pixel's position into its resolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Diffraction {
    /// The beam centre in the assembled image (row, column), pixels; it may lie off the detector.
    pub beam_px: (f64, f64),
    pub distance_mm: f64,
    pub pixel_mm: f64,
    pub photon_energy_kev: f64,
}

impl Diffraction {
    /// 1/d (Å⁻¹) at image position (`row`, `col`), the detector flat and normal to the beam.
    pub fn inverse_d(&self, row: f64, col: f64) -> f64 {
        let radius_mm = (row - self.beam_px.0).hypot(col - self.beam_px.1) * self.pixel_mm;
        let theta = 0.5 * radius_mm.atan2(self.distance_mm);
        let wavelength_a = crate::detector::HC_KEV_ANGSTROM / self.photon_energy_kev;
        2.0 * theta.sin() / wavelength_a
    }

    /// The shell of image position (`row`, `col`).
    pub fn shell(&self, row: f64, col: f64) -> usize {
        let s = self.inverse_d(row, col);
        SHELL_EDGES.iter().take_while(|&&edge| s >= edge).count()
    }
}

/// A run of blocks in one row of blocks that lie in one shell: `start..end` and the shell.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Segment {
    start: u32,
    end: u32,
    shell: u8,
}

/// The shells, fixed for a detector geometry: each 2 × 2 block's shell.
#[derive(Clone, Debug)]
pub struct SummaryPlan {
    /// Per panel and row of blocks, where `segments` of that row begin (one more entry at the end).
    row_segments: Vec<usize>,
    /// Each row of blocks cut where the shell changes: a row crosses a shell edge a few times at most,
    /// so counting runs a segment at a time keeps the count a straight loop.
    segments: Vec<Segment>,
    blocks_per_shell: [u32; SHELLS],
    rows: usize,
    cols: usize,
}

impl SummaryPlan {
    /// The shells of the 2 × 2 blocks of the panels whose first pixels sit at `origins` in the image,
    /// each `rows × cols`, seen from where `diffraction` puts the detector.
    pub fn new(origins: &[(usize, usize)], rows: usize, cols: usize, diffraction: &Diffraction) -> SummaryPlan {
        let (block_rows, block_cols) = (rows / 2, cols / 2);
        let mut row_segments = Vec::with_capacity(origins.len() * block_rows + 1);
        let mut segments = Vec::new();
        let mut blocks_per_shell = [0u32; SHELLS];
        let mut shells = vec![0u8; block_cols];
        for &(r0, c0) in origins {
            for br in 0..block_rows {
                let row = r0 as f64 + 2.0 * br as f64 + 0.5;
                for (bc, shell) in shells.iter_mut().enumerate() {
                    *shell = diffraction.shell(row, c0 as f64 + 2.0 * bc as f64 + 0.5) as u8;
                    blocks_per_shell[usize::from(*shell)] += 1;
                }
                row_segments.push(segments.len());
                let mut start = 0;
                for c in 1..=shells.len() {
                    if c == shells.len() || shells[c] != shells[start] {
                        segments.push(Segment { start: start as u32, end: c as u32, shell: shells[start] });
                        start = c;
                    }
                }
            }
        }
        row_segments.push(segments.len());
        SummaryPlan { row_segments, segments, blocks_per_shell, rows, cols }
    }

    /// Blocks of the detector in each shell.
    pub fn blocks_per_shell(&self) -> [u32; SHELLS] {
        self.blocks_per_shell
    }

    /// The shell of block (`br`, `bc`) of panel `panel`.
    #[cfg(test)]
    fn shell_of(&self, panel: usize, br: usize, bc: usize) -> u8 {
        let row = panel * (self.rows / 2) + br;
        let segs = &self.segments[self.row_segments[row]..self.row_segments[row + 1]];
        segs.iter().find(|s| (s.start as usize..s.end as usize).contains(&bc)).map_or(u8::MAX, |s| s.shell)
    }
}

/// One worker's summary in the making: per shell a histogram of block counts, and rows of sums as
/// scratch.
#[derive(Clone, Debug)]
pub struct SummaryCounter {
    /// [`LANES`] histograms a shell, blocks taking turns: consecutive blocks of a background mostly
    /// fall in one bin, and separate counters let several increments be in flight at once.
    histograms: Vec<[u32; BINS]>,
    column_sums: Vec<f32>,
    block_row: Vec<u8>,
}

impl SummaryCounter {
    /// A counter for panels of `plan`'s size, its scratch allocated now.
    pub fn new(plan: &SummaryPlan) -> SummaryCounter {
        SummaryCounter {
            histograms: vec![[0; BINS]; LANES * SHELLS],
            column_sums: vec![0.0; plan.cols],
            block_row: vec![0; plan.cols / 2],
        }
    }

    pub fn clear(&mut self) {
        for h in &mut self.histograms {
            *h = [0; BINS];
        }
    }

    /// Counts the blocks of panel `panel`, whose photons are `photons` (row-major, the plan's size).
    pub fn add_panel(&mut self, plan: &SummaryPlan, panel: usize, photons: &[f32]) {
        let (rows, cols) = (plan.rows, plan.cols);
        let (block_rows, block_cols) = (rows / 2, cols / 2);
        let (sums, blocks) = (&mut self.column_sums, &mut self.block_row);
        for br in 0..block_rows {
            let Some(two_rows) = photons.get(2 * br * cols..(2 * br + 2) * cols) else { break };
            let (top, bottom) = two_rows.split_at(cols);
            block_sums(top, bottom, sums, &mut blocks[..block_cols]);
            let row = panel * block_rows + br;
            let (first, last) = (plan.row_segments[row], plan.row_segments[row + 1]);
            for seg in &plan.segments[first..last] {
                let run = &blocks[seg.start as usize..seg.end as usize];
                let lanes = LANES * usize::from(seg.shell);
                if let Some(h) = self.histograms.get_mut(lanes..lanes + LANES).and_then(|h| h.try_into().ok()) {
                    histogram(run, h);
                }
            }
        }
    }

    /// The summary: [`PER_SHELL`] values for each shell (see the module's description).
    /// `out` must hold [`SUMMARY_LEN`] values.
    pub fn finish(&self, out: &mut [f32]) {
        let Some(out) = out.get_mut(..SUMMARY_LEN) else { return };
        for (shell, values) in out.chunks_exact_mut(PER_SHELL).enumerate() {
            let mut merged = [0u32; BINS];
            for lane in &self.histograms[LANES * shell..LANES * (shell + 1)] {
                for (m, x) in merged.iter_mut().zip(lane) {
                    *m += x;
                }
            }
            values.copy_from_slice(&shell_values(&merged));
        }
    }
}

/// One shell's values from its histogram of block counts.
fn shell_values(hist: &[u32; BINS]) -> [f32; PER_SHELL] {
    let n: u64 = hist.iter().map(|&h| u64::from(h)).sum();
    if n < u64::from(MIN_BLOCKS) {
        return [0.0; PER_SHELL];
    }
    // The median block, then the mean and variance of the blocks below a clip well above it: Bragg
    // spots, hot pixels and ice crystals are the tail the clip leaves out.
    let mut seen = 0u64;
    let median = hist
        .iter()
        .position(|&h| {
            seen += u64::from(h);
            2 * seen >= n
        })
        .unwrap_or(0) as f64;
    let clip = ((median + 4.0 * (median + 1.0).sqrt() + 2.0) as usize).min(BINS - 1);
    let (mut count, mut sum, mut squares) = (0f64, 0f64, 0f64);
    for (v, &h) in hist.iter().enumerate().take(clip + 1) {
        let (v, h) = (v as f64, f64::from(h));
        count += h;
        sum += h * v;
        squares += h * v * v;
    }
    let mean = sum / count.max(1.0);
    let variance = (squares / count.max(1.0) - mean * mean).max(0.0);
    // Blocks at or above `t` photons, `t` between whole counts read as a share of the bin below.
    let at_least = |t: f64| -> f64 {
        let t = t.clamp(0.0, (BINS - 1) as f64);
        let whole = t.floor() as usize;
        let above: u64 = hist[(whole + 1).min(BINS)..].iter().map(|&h| u64::from(h)).sum();
        above as f64 + (whole as f64 + 1.0 - t) * f64::from(hist[whole])
    };
    let deviation = (mean + 1.0).sqrt();
    let mut values = [0f32; PER_SHELL];
    values[0] = 1.0;
    values[1] = (mean / 4.0) as f32;
    values[2] = (variance / mean.max(0.05)) as f32;
    for (v, k) in values[3..].iter_mut().zip(EXCESS_SIGMAS) {
        *v = (at_least(mean + f64::from(k) * deviation) / n as f64) as f32;
    }
    values
}

/// Whole photons in each 2 × 2 block of two rows (pixel values rounded, negatives as 0, brighter
/// blocks than the last bin in the last bin): the two rows summed column by column in a straight
/// loop, then neighbouring columns, each block's count then its bin. Compiled for AVX2 too and chosen
/// at run time.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx2"))]
fn block_sums(top: &[f32], bottom: &[f32], column_sums: &mut [f32], blocks: &mut [u8]) {
    let whole = |p: f32| (p + 0.5).max(0.0).floor();
    for ((s, &t), &b) in column_sums.iter_mut().zip(top).zip(bottom) {
        *s = whole(t) + whole(b);
    }
    for (o, pair) in blocks.iter_mut().zip(column_sums.chunks_exact(2)) {
        // A whole number in 0..=255 added to 2²³ is held in the low bits of the sum's mantissa: a
        // bit cast and a mask, which vectorise where a float-to-integer conversion does not.
        let count = (pair[0] + pair[1]).min((BINS - 1) as f32);
        *o = ((count + MANTISSA_ONE).to_bits() & 0xFF) as u8;
    }
}

/// 2²³: the float whose unit in the last place is 1.
const MANTISSA_ONE: f32 = 8_388_608.0;
const _: () = assert!(BINS == 256, "a block's bin is the low byte of its count");

/// Histograms a shell keeps, blocks taking turns.
const LANES: usize = 8;

/// Adds each block to its bin, blocks taking turns among the histograms.
fn histogram(blocks: &[u8], lanes: &mut [[u32; BINS]; LANES]) {
    let [a, b, c, d, e, f, g, h] = lanes;
    let mut turns = blocks.chunks_exact(LANES);
    for t in &mut turns {
        a[usize::from(t[0])] += 1;
        b[usize::from(t[1])] += 1;
        c[usize::from(t[2])] += 1;
        d[usize::from(t[3])] += 1;
        e[usize::from(t[4])] += 1;
        f[usize::from(t[5])] += 1;
        g[usize::from(t[6])] += 1;
        h[usize::from(t[7])] += 1;
    }
    for &v in turns.remainder() {
        lanes[0][usize::from(v)] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn module_at(distance_mm: f64, energy: f64, beam: (f64, f64)) -> Diffraction {
        Diffraction { beam_px: beam, distance_mm, pixel_mm: 0.075, photon_energy_kev: energy }
    }

    #[test]
    fn shells_follow_resolution_not_pixels() {
        let d = module_at(100.0, crate::detector::HC_KEV_ANGSTROM, (257.0, 515.0));
        // 1/d of a pixel 500 px from the beam: 2θ = atan(37.5 / 100), λ = 1 Å.
        let s = d.inverse_d(257.0, 1015.0);
        assert!((s - 2.0 * (0.5 * (37.5f64 / 100.0).atan()).sin()).abs() < 1e-9);
        let plan = SummaryPlan::new(&[(0, 0)], 514, 1030, &d);
        let total: u32 = plan.blocks_per_shell.iter().sum();
        assert_eq!(total as usize, 257 * 515);
        assert_eq!(plan.shell_of(0, 128, 257), 0, "the block on the beam");
        // The module's corner at 100 mm, 12.4 keV: 1/d ≈ 0.40 — shell 8 of 12, none beyond.
        assert_eq!(plan.shell_of(0, 0, 0), 8);
        assert!(plan.blocks_per_shell[9..].iter().all(|&n| n == 0));
        // Twice as far, the same pixels see half the resolution range.
        let far = SummaryPlan::new(&[(0, 0)], 514, 1030, &module_at(200.0, 12.4, (257.0, 515.0)));
        assert_eq!(far.shell_of(0, 0, 0), 4);
        // Segments tile every row of blocks.
        for row in 0..257 {
            let segs = &plan.segments[plan.row_segments[row]..plan.row_segments[row + 1]];
            assert_eq!(segs.first().unwrap().start, 0);
            assert_eq!(segs.last().unwrap().end, 515);
            assert!(segs.windows(2).all(|w| w[0].end == w[1].start && w[0].shell != w[1].shell));
        }
    }

    /// A module's photons: Poisson background of `level` a pixel, and `spots` single-pixel spots of
    /// `photons` each.
    fn frame(level: f64, spots: usize, photons: f64, rng: &mut Rng) -> Vec<f32> {
        let mut px: Vec<f32> = (0..514 * 1030).map(|_| rng.poisson(level as f32) as f32).collect();
        for _ in 0..spots {
            let at = rng.below(px.len());
            px[at] += rng.poisson(photons as f32) as f32;
        }
        px
    }

    fn summarise(plan: &SummaryPlan, photons: &[f32]) -> [f32; SUMMARY_LEN] {
        let mut counter = SummaryCounter::new(plan);
        counter.add_panel(plan, 0, photons);
        let mut out = [0f32; SUMMARY_LEN];
        counter.finish(&mut out);
        out
    }

    #[test]
    fn background_is_measured_and_excess_is_relative_to_it() {
        let d = module_at(100.0, 12.4, (257.0, 515.0));
        let plan = SummaryPlan::new(&[(0, 0)], 514, 1030, &d);
        let mut rng = Rng::new(4, 4);
        for level in [0.05, 0.5, 3.0] {
            let blank = summarise(&plan, &frame(level, 0, 0.0, &mut rng));
            // 400 one-pixel spots of 40 photons over the module: at every level they stand out at 12
            // deviations in every shell, where a blank frame has nothing.
            let hit = summarise(&plan, &frame(level, 400, 40.0, &mut rng));
            for shell in 1..7 {
                let (b, h) = (&blank[shell * PER_SHELL..][..PER_SHELL], &hit[shell * PER_SHELL..][..PER_SHELL]);
                assert_eq!(b[0], 1.0, "shell {shell} is covered");
                assert!((f64::from(b[1]) - level).abs() < 0.05 * level + 0.01, "level {level}: {b:?}");
                assert!((0.8..1.25).contains(&b[2]), "Poisson spread {b:?}");
                assert!(b[5] < 1e-4, "blank frame at {level}: {b:?}");
                assert!(h[5] > 2.0 * b[5] + 1e-4, "level {level}, shell {shell}: hit {h:?} blank {b:?}");
            }
            // Shells beyond the module's corner are absent, whatever the frame.
            assert!(blank[9 * PER_SHELL..].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn a_blank_frame_reads_alike_whatever_its_level() {
        let plan = SummaryPlan::new(&[(0, 0)], 514, 1030, &module_at(100.0, 12.4, (257.0, 515.0)));
        let mut rng = Rng::new(5, 5);
        let low = summarise(&plan, &frame(0.3, 0, 0.0, &mut rng));
        let high = summarise(&plan, &frame(6.0, 0, 0.0, &mut rng));
        for shell in 1..7 {
            let (l, h) = (&low[shell * PER_SHELL..][..PER_SHELL], &high[shell * PER_SHELL..][..PER_SHELL]);
            assert!((l[2] - h[2]).abs() < 0.25, "spread {l:?} {h:?}");
            assert!(l[4] < 2e-3 && h[4] < 2e-3, "6 deviations {l:?} {h:?}");
        }
    }
}
