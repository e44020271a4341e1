//! A frame's summary for the learned trigger, in terms that mean the same on every beamline: shells of
//! resolution (1/d from the beam centre, distance and photon energy), and in each shell the frame's own
//! background and what stands out of it.
//!
//! Weak hits' Bragg photons sit together (a spot is about a pixel wide) where background photons are
//! scattered. The summary counts the photons of 2 × 2 pixel blocks (the four pixels summed, then
//! rounded to whole photons). Per shell: whether the detector covers the shell at all; the background,
//! as the clipped mean of the blocks (photons a pixel); how widely blocks spread around it against
//! Poisson's spread (1 for a smooth background, more under ice or a shadow); and the fractions of
//! blocks above the background by 3, 6 and 12 of its Poisson deviations (the compact excess). A shell
//! the detector does not cover reads all zeros, its first value saying it is absent. The learned
//! trigger reads these [`SUMMARY_LEN`] values.
//!
//! The background is measured on a histogram of one row of blocks in [`BODY_ROW_STRIDE`] (a smooth
//! level needs far fewer blocks than a shell has, and the histogram's increments are the costliest
//! step); the excess is counted on every block, once every panel's background is known.
//!
//! Shells are fixed in resolution, not in pixels: the solvent ring and the ice rings always fall in the
//! same shells, whatever the distance or energy, and the model reads the same inputs on every detector.
//! The shell of every block is fixed when the plan is made; a frame costs one pass over its photons,
//! panel by panel, before the spot finder consumes them, and one over its blocks' counts.
//!
//! A plan made [`ignoring_persistent`](SummaryPlan::ignoring_persistent) leaves out of the excess the
//! blocks that stand out in most of the frames its counter sees: hot pixels and fixed structures
//! (`features::persistent`).

use super::persistent::{self, PersistentBlocks};

/// Resolution shells.
pub const SHELLS: usize = 12;
/// Shell edges in 1/d (Å⁻¹): the first shell runs from the beam to 1/(20 Å), the last from 1/(1.67 Å)
/// outwards.
pub const SHELL_EDGES: [f64; SHELLS - 1] = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60];
/// Deviations above the background (Poisson's, of the block sum) the excess fractions are taken at.
pub const EXCESS_SIGMAS: [f32; 3] = [3.0, 6.0, 12.0];
/// Values a shell contributes: covered, background, spread, and an excess fraction per threshold.
pub const PER_SHELL: usize = 3 + EXCESS_SIGMAS.len();
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
    /// Whether blocks that stand out in most frames are left out of the excess (`features::persistent`).
    ignore_persistent: bool,
    /// Per panel and row of blocks, where `segments` of that row begin (one more entry at the end).
    row_segments: Vec<usize>,
    /// Each row of blocks cut where the shell changes: a row crosses a shell edge a few times at most,
    /// so counting runs a segment at a time keeps the count a straight loop.
    segments: Vec<Segment>,
    /// Each panel's blocks in each shell.
    panel_blocks: Vec<[u32; SHELLS]>,
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
        let mut panel_blocks = Vec::with_capacity(origins.len());
        for &(r0, c0) in origins {
            let mut in_panel = [0u32; SHELLS];
            for br in 0..block_rows {
                let row = r0 as f64 + 2.0 * br as f64 + 0.5;
                for (bc, shell) in shells.iter_mut().enumerate() {
                    *shell = diffraction.shell(row, c0 as f64 + 2.0 * bc as f64 + 0.5) as u8;
                    in_panel[usize::from(*shell)] += 1;
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
            for (total, n) in blocks_per_shell.iter_mut().zip(in_panel) {
                *total += n;
            }
            panel_blocks.push(in_panel);
        }
        row_segments.push(segments.len());
        SummaryPlan { ignore_persistent: false, row_segments, segments, panel_blocks, blocks_per_shell, rows, cols }
    }

    /// The plan, its counters leaving out of the excess the blocks that stand out in most frames they
    /// count (`features::persistent`) when `ignore` is true.
    pub fn ignoring_persistent(self, ignore: bool) -> SummaryPlan {
        SummaryPlan { ignore_persistent: ignore, ..self }
    }

    /// Panels the plan covers.
    pub fn panels(&self) -> usize {
        self.panel_blocks.len()
    }

    /// The segments of row of blocks `br` of panel `panel`.
    fn row(&self, panel: usize, br: usize) -> &[Segment] {
        let row = panel * (self.rows / 2) + br;
        match (self.row_segments.get(row), self.row_segments.get(row + 1)) {
            (Some(&first), Some(&last)) => &self.segments[first..last],
            _ => &[],
        }
    }

    /// Blocks of the detector in each shell.
    pub fn blocks_per_shell(&self) -> [u32; SHELLS] {
        self.blocks_per_shell
    }

    /// The shell of block (`br`, `bc`) of panel `panel`.
    #[cfg(test)]
    fn shell_of(&self, panel: usize, br: usize, bc: usize) -> u8 {
        self.row(panel, br)
            .iter()
            .find(|s| (s.start as usize..s.end as usize).contains(&bc))
            .map_or(u8::MAX, |s| s.shell)
    }
}

/// One worker's summary in the making: every block's count, and per shell a histogram of the
/// counts of the blocks in every [`BODY_ROW_STRIDE`]-th row of blocks.
#[derive(Clone, Debug)]
pub struct SummaryCounter {
    /// [`LANES`] histograms a shell, blocks taking turns: consecutive blocks of a background mostly
    /// fall in one bin, and separate counters let several increments be in flight at once.
    histograms: Vec<[u32; BINS]>,
    /// Every block's count, panel after panel: the excess is counted against thresholds only known
    /// once every panel's background is in.
    blocks: Vec<u8>,
    /// Panels added since the last clear.
    added: Vec<bool>,
    /// Scratch for a row of blocks: each block's lowest threshold (its shell's).
    lowest: Vec<u8>,
    /// Which blocks stand out frame after frame, when the plan leaves them out.
    persistent: Option<PersistentBlocks>,
    /// Blocks of the last frame left out of the excess as persistent.
    ignored: u32,
}

/// The background is measured on one row of blocks in this many: the histogram's increments are
/// the summary's costliest step, and a shell's background needs far fewer blocks than it has. The
/// excess is counted on every block.
pub const BODY_ROW_STRIDE: usize = 4;

impl SummaryCounter {
    /// A counter for `plan`'s panels, its room allocated now.
    pub fn new(plan: &SummaryPlan) -> SummaryCounter {
        let panels = plan.panels();
        let blocks = panels * (plan.rows / 2) * (plan.cols / 2);
        SummaryCounter {
            histograms: vec![[0; BINS]; LANES * SHELLS],
            blocks: vec![0; blocks],
            added: vec![false; panels],
            lowest: vec![u8::MAX; plan.cols / 2],
            persistent: plan.ignore_persistent.then(|| PersistentBlocks::new(blocks)),
            ignored: 0,
        }
    }

    /// Blocks the last summary left out of its excess because they stand out in most frames.
    pub fn persistent_ignored(&self) -> u32 {
        self.ignored
    }

    pub fn clear(&mut self) {
        for h in &mut self.histograms {
            *h = [0; BINS];
        }
        self.added.fill(false);
    }

    /// Counts the blocks of panel `panel`, whose photons are `photons` (row-major, the plan's size).
    pub fn add_panel(&mut self, plan: &SummaryPlan, panel: usize, photons: &[f32]) {
        let (rows, cols) = (plan.rows, plan.cols);
        let (block_rows, block_cols) = (rows / 2, cols / 2);
        let Some(blocks) = self.blocks.get_mut(panel * block_rows * block_cols..(panel + 1) * block_rows * block_cols)
        else {
            return;
        };
        for (br, row_blocks) in blocks.chunks_exact_mut(block_cols).enumerate() {
            let Some(two_rows) = photons.get(2 * br * cols..(2 * br + 2) * cols) else { break };
            let (top, bottom) = two_rows.split_at(cols);
            block_sums(top, bottom, row_blocks);
            if br % BODY_ROW_STRIDE != 0 {
                continue;
            }
            for seg in plan.row(panel, br) {
                let run = &row_blocks[seg.start as usize..seg.end as usize];
                let lanes = LANES * usize::from(seg.shell);
                if let Some(h) = self.histograms.get_mut(lanes..lanes + LANES).and_then(|h| h.try_into().ok()) {
                    histogram(run, h);
                }
            }
        }
        self.added[panel] = true;
    }

    /// The summary: [`PER_SHELL`] values for each shell (see the module's description).
    /// `out` must hold [`SUMMARY_LEN`] values.
    pub fn finish(&mut self, plan: &SummaryPlan, out: &mut [f32]) {
        let Some(out) = out.get_mut(..SUMMARY_LEN) else { return };
        let backgrounds: [Option<Background>; SHELLS] = std::array::from_fn(|shell| {
            let mut merged = [0u32; BINS];
            for lane in &self.histograms[LANES * shell..LANES * (shell + 1)] {
                for (m, x) in merged.iter_mut().zip(lane) {
                    *m += x;
                }
            }
            Background::measure(&merged)
        });
        let thresholds: [[u8; 2 * EXCESS_SIGMAS.len()]; SHELLS] = std::array::from_fn(|shell| {
            backgrounds[shell].map_or([u8::MAX; 2 * EXCESS_SIGMAS.len()], |b| b.whole_thresholds())
        });
        let mut excess = [Excess::default(); SHELLS];
        let block_cols = plan.cols / 2;
        let per_panel = (plan.rows / 2) * block_cols;
        let lowest = &mut self.lowest;
        let mut ignored = 0;
        for (panel, blocks) in self.blocks.chunks_exact(per_panel).enumerate() {
            if !self.added[panel] {
                continue;
            }
            for (e, n) in excess.iter_mut().zip(plan.panel_blocks[panel]) {
                e.blocks += u64::from(n);
            }
            for (br, row_blocks) in blocks.chunks_exact(block_cols).enumerate() {
                let segments = plan.row(panel, br);
                for seg in segments {
                    lowest[seg.start as usize..seg.end as usize].fill(thresholds[usize::from(seg.shell)][0]);
                }
                let first = panel * per_panel + br * block_cols;
                let scores = self.persistent.as_mut().and_then(|p| p.row_mut(first..first + block_cols));
                ignored += count_excess(row_blocks, segments, lowest, &thresholds, scores, &mut excess);
            }
        }
        if let Some(p) = self.persistent.as_mut() {
            p.end_frame();
        }
        self.ignored = ignored;
        for (shell, values) in out.chunks_exact_mut(PER_SHELL).enumerate() {
            values.copy_from_slice(&shell_values(backgrounds[shell], &excess[shell]));
        }
    }
}

/// A shell's background, measured on its histogram of block counts.
#[derive(Clone, Copy, Debug)]
struct Background {
    /// Photons a block.
    mean: f64,
    variance: f64,
}

/// Blocks a shell's background needs: fewer give no stable level.
const MIN_BODY_BLOCKS: u64 = 16;

impl Background {
    fn measure(hist: &[u32; BINS]) -> Option<Background> {
        let n: u64 = hist.iter().map(|&h| u64::from(h)).sum();
        if n < MIN_BODY_BLOCKS {
            return None;
        }
        // The median block, then the mean and variance of the blocks below a clip well above it:
        // Bragg spots, hot pixels and ice crystals are the tail the clip leaves out.
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
        Some(Background { mean, variance: (squares / count.max(1.0) - mean * mean).max(0.0) })
    }

    /// Where the excess fractions are taken: [`EXCESS_SIGMAS`] Poisson deviations above the mean.
    fn thresholds(&self) -> [f64; EXCESS_SIGMAS.len()] {
        let deviation = (self.mean + 1.0).sqrt();
        EXCESS_SIGMAS.map(|k| (self.mean + f64::from(k) * deviation).min((BINS - 1) as f64))
    }

    /// For each threshold, the whole counts just below and above it: the blocks at or above each are
    /// counted, and a threshold between two counts reads as a share of the blocks at the lower.
    fn whole_thresholds(&self) -> [u8; 2 * EXCESS_SIGMAS.len()] {
        let t = self.thresholds();
        std::array::from_fn(|i| (t[i / 2].floor() as usize + i % 2).min(BINS - 1) as u8)
    }
}

/// One shell's blocks, and those at or above each whole threshold.
#[derive(Clone, Copy, Debug, Default)]
struct Excess {
    blocks: u64,
    at_least: [u64; 2 * EXCESS_SIGMAS.len()],
}

/// Counts a row's blocks (its `segments` giving their shells) over their shells' thresholds. Blocks
/// over the lowest (each block's own shell's, in `lowest`) are rare: a group of blocks is compared at
/// once into a mask of them, and only those are counted. With the row's `scores`, each such block is
/// noted, and those persistent are left out; returns how many were.
fn count_excess(
    blocks: &[u8],
    segments: &[Segment],
    lowest: &[u8],
    thresholds: &[[u8; 2 * EXCESS_SIGMAS.len()]; SHELLS],
    mut scores: Option<&mut [u8]>,
    excess: &mut [Excess; SHELLS],
) -> u32 {
    let mut ignored = 0;
    let mut count = |at: usize| {
        if let Some(score) = scores.as_deref_mut().and_then(|s| s.get_mut(at))
            && persistent::stands_out(score)
        {
            ignored += 1;
            return;
        }
        // A row crosses a few shells: its segments are at hand where a map of every block's shell
        // would be a cache miss for each block counted.
        let shell = segments.iter().find(|s| at < s.end as usize).map_or(u8::MAX, |s| s.shell);
        if let Some(&b) = blocks.get(at)
            && let (Some(t), Some(e)) = (thresholds.get(usize::from(shell)), excess.get_mut(usize::from(shell)))
        {
            for (n, &t) in e.at_least.iter_mut().zip(t) {
                *n += u64::from(b >= t);
            }
        }
    };
    let groups = blocks.len() / GROUP;
    for g in 0..groups {
        let range = g * GROUP..(g + 1) * GROUP;
        let (Ok(b), Ok(l)) =
            (<&[u8; GROUP]>::try_from(&blocks[range.clone()]), <&[u8; GROUP]>::try_from(&lowest[range]))
        else {
            continue;
        };
        let mut over = over_mask(b, l);
        while over != 0 {
            count(g * GROUP + over.trailing_zeros() as usize);
            over &= over - 1;
        }
    }
    let tail = groups * GROUP;
    for (at, (&b, &l)) in blocks.iter().skip(tail).zip(lowest.iter().skip(tail)).enumerate() {
        if b >= l {
            count(tail + at);
        }
    }
    ignored
}

/// Blocks compared at once.
const GROUP: usize = 32;

/// A bit for each block of `group` at least its threshold in `lowest`: two compares of 16 blocks
/// and their masks (SSE2, which every x86-64 processor has). Elsewhere a loop.
fn over_mask(group: &[u8; GROUP], lowest: &[u8; GROUP]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8};
        let half = |i: usize| {
            // SAFETY: both arrays hold GROUP = 32 bytes, so 16 bytes from offset 0 or 16 are in bounds;
            // the unaligned load has no alignment requirement; SSE2, which the compares and the mask
            // move need, is part of the x86-64 baseline.
            unsafe {
                let b = _mm_loadu_si128(group.as_ptr().add(i).cast::<__m128i>());
                let t = _mm_loadu_si128(lowest.as_ptr().add(i).cast::<__m128i>());
                // b ≥ t exactly where max(b, t) = b.
                _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(b, t), b)) as u32 & 0xFFFF
            }
        };
        half(0) | (half(16) << 16)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        group.iter().zip(lowest).enumerate().fold(0u32, |m, (j, (&b, &t))| m | (u32::from(b >= t) << j))
    }
}

/// One shell's values from its background and its blocks' excess.
fn shell_values(background: Option<Background>, excess: &Excess) -> [f32; PER_SHELL] {
    let Some(background) = background.filter(|_| excess.blocks >= u64::from(MIN_BLOCKS)) else {
        return [0.0; PER_SHELL];
    };
    let n = excess.blocks as f64;
    let mut values = [0f32; PER_SHELL];
    values[0] = 1.0;
    values[1] = (background.mean / 4.0) as f32;
    values[2] = (background.variance / background.mean.max(0.05)) as f32;
    for (i, (v, t)) in values[3..].iter_mut().zip(background.thresholds()).enumerate() {
        let (at_whole, above_whole) = (excess.at_least[2 * i] as f64, excess.at_least[2 * i + 1] as f64);
        let share_below = t.floor() + 1.0 - t;
        // Blocks over the whole count above `t`, and a share of those at the count just below it.
        *v = ((above_whole + share_below * (at_whole - above_whole)) / n) as f32;
    }
    values
}

/// Whole photons in each 2 × 2 block of two rows: the four pixels summed, then rounded (a photon whose
/// charge two pixels share counts once), negatives as 0, blocks brighter than the last bin in the
/// last bin. Compiled for AVX-512 and AVX2 too and chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl", "x86_64+avx2+fma", "x86_64+avx2"))]
fn block_sums(top: &[f32], bottom: &[f32], blocks: &mut [u8]) {
    for ((o, t), b) in blocks.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
        // `max` first: a flagged pixel's NaN counts as nothing.
        let count = ((t[0] + t[1]) + (b[0] + b[1])).max(0.0).min((BINS - 1) as f32);
        // A number in 0..=255 added to 2²³ is rounded to a whole one held in the low bits of the
        // sum's mantissa: a bit cast and a mask, which vectorise where a float-to-integer conversion
        // does not.
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
#[path = "summary_tests.rs"]
mod tests;
