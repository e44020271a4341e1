//! A frame's summary for the learned trigger: how photons cluster, shell by shell around the beam.
//!
//! Weak hits have Bragg reflections of a few photons each — too faint for the spot finder, but their
//! photons sit together (a spot is about a pixel wide) where background photons are scattered. The
//! summary counts 2 × 2 pixel blocks by the photons they hold (pixel values rounded to whole photons),
//! in [`SHELLS`] rings of equal width around the beam: for each ring, the fraction of its blocks with at
//! least 1, 2, 3, 4 and 6 photons. Two numbers from the spot finder follow: spots found and the photons
//! in the recorded spots. The learned trigger reads these [`SUMMARY_LEN`] values.
//!
//! The rings are fixed per detector geometry and beam centre when the plan is made; a frame costs one
//! pass over its photons, panel by panel, before the spot finder consumes them.

use super::Spot;

/// Rings around the beam.
pub const SHELLS: usize = 8;
/// Block photon counts a ring's fractions are taken at.
pub const BLOCK_PHOTONS: [u32; 5] = [1, 2, 3, 4, 6];
/// Values in a summary.
pub const SUMMARY_LEN: usize = SHELLS * BLOCK_PHOTONS.len() + 2;

// Every pool slot reserves room for the summary, so reducing a frame never grows it.
const _: () = assert!(SUMMARY_LEN <= crate::frame::features::SUMMARY_ROOM);

/// A run of blocks in one row of blocks that lie in one ring: `start..end` and the ring.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Segment {
    start: u32,
    end: u32,
    ring: u8,
}

/// The rings, fixed for a detector geometry: each 2 × 2 block's ring, and the blocks per ring.
#[derive(Clone, Debug)]
pub struct SummaryPlan {
    /// Per panel and row of blocks, where `segments` of that row begin (one more entry at the end).
    row_segments: Vec<usize>,
    /// Each row of blocks cut where the ring changes: a row crosses a ring boundary a few times at most,
    /// so counting runs a segment at a time keeps the count a straight loop.
    segments: Vec<Segment>,
    blocks_per_ring: [u32; SHELLS],
    rows: usize,
    cols: usize,
}

impl SummaryPlan {
    /// Rings of equal width around `beam` (image row, column) out to the farthest block of the panels
    /// whose first pixels sit at `origins` in the image, each `rows × cols`.
    pub fn new(origins: &[(usize, usize)], rows: usize, cols: usize, beam: (f64, f64)) -> SummaryPlan {
        let (block_rows, block_cols) = (rows / 2, cols / 2);
        let radius = |panel: (usize, usize), br: usize, bc: usize| {
            let r = panel.0 as f64 + 2.0 * br as f64 + 0.5;
            let c = panel.1 as f64 + 2.0 * bc as f64 + 0.5;
            (r - beam.0).hypot(c - beam.1)
        };
        let mut farthest = 1.0f64;
        for &o in origins {
            for (br, bc) in [(0, 0), (0, block_cols), (block_rows, 0), (block_rows, block_cols)] {
                farthest = farthest.max(radius(o, br.saturating_sub(1), bc.saturating_sub(1)));
            }
        }
        let width = farthest / SHELLS as f64 + 1e-9;
        let mut ring_of_block = Vec::with_capacity(origins.len() * block_rows * block_cols);
        let mut blocks_per_ring = [0u32; SHELLS];
        for &o in origins {
            for br in 0..block_rows {
                for bc in 0..block_cols {
                    let ring = ((radius(o, br, bc) / width) as usize).min(SHELLS - 1);
                    ring_of_block.push(ring as u8);
                    blocks_per_ring[ring] += 1;
                }
            }
        }
        let mut row_segments = Vec::with_capacity(ring_of_block.len() / block_cols.max(1) + 1);
        let mut segments = Vec::new();
        for row in ring_of_block.chunks_exact(block_cols.max(1)) {
            row_segments.push(segments.len());
            let mut start = 0;
            for c in 1..=row.len() {
                if c == row.len() || row[c] != row[start] {
                    segments.push(Segment { start: start as u32, end: c as u32, ring: row[start] });
                    start = c;
                }
            }
        }
        row_segments.push(segments.len());
        SummaryPlan { row_segments, segments, blocks_per_ring, rows, cols }
    }

    /// The ring of block (`br`, `bc`) of panel `panel`.
    #[cfg(test)]
    fn ring_of(&self, panel: usize, br: usize, bc: usize) -> u8 {
        let row = panel * (self.rows / 2) + br;
        let segs = &self.segments[self.row_segments[row]..self.row_segments[row + 1]];
        segs.iter().find(|s| (s.start as usize..s.end as usize).contains(&bc)).map_or(u8::MAX, |s| s.ring)
    }
}

/// One worker's summary in the making: block counts per ring, and rows of sums as scratch.
#[derive(Clone, Debug)]
pub struct SummaryCounter {
    /// Per ring, blocks with at least each of [`BLOCK_PHOTONS`].
    counts: [[u32; BLOCK_PHOTONS.len()]; SHELLS],
    column_sums: Vec<f32>,
    block_row: Vec<f32>,
}

impl SummaryCounter {
    /// A counter for panels of `plan`'s size, its scratch allocated now.
    pub fn new(plan: &SummaryPlan) -> SummaryCounter {
        SummaryCounter {
            counts: [[0; BLOCK_PHOTONS.len()]; SHELLS],
            column_sums: vec![0.0; plan.cols],
            block_row: vec![0.0; plan.cols / 2],
        }
    }

    pub fn clear(&mut self) {
        self.counts = [[0; BLOCK_PHOTONS.len()]; SHELLS];
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
                count_at_least(run, &mut self.counts[usize::from(seg.ring)]);
            }
        }
    }

    /// The summary: per ring the fractions of blocks at each of [`BLOCK_PHOTONS`], then spots found
    /// and the photons of the recorded spots.
    /// `out` must hold [`SUMMARY_LEN`] values.
    pub fn finish(&self, plan: &SummaryPlan, spots_found: u32, spots: &[Spot], out: &mut [f32]) {
        let Some(out) = out.get_mut(..SUMMARY_LEN) else { return };
        for (ring, counts) in self.counts.iter().enumerate() {
            let blocks = plan.blocks_per_ring[ring].max(1) as f32;
            for (k, &n) in counts.iter().enumerate() {
                out[ring * BLOCK_PHOTONS.len() + k] = n as f32 / blocks;
            }
        }
        out[SHELLS * BLOCK_PHOTONS.len()] = spots_found as f32;
        out[SHELLS * BLOCK_PHOTONS.len() + 1] = spots.iter().map(|s| s.photons.max(0.0)).sum();
    }
}

/// Whole photons in each 2 × 2 block of two rows (pixel values rounded, negatives as 0): the two
/// rows summed column by column in a straight loop, then neighbouring columns. Everything stays in
/// `f32` (whole numbers, exact) because a float-to-integer conversion would not vectorise; compiled
/// for AVX2 too and chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx2"))]
fn block_sums(top: &[f32], bottom: &[f32], column_sums: &mut [f32], blocks: &mut [f32]) {
    let whole = |p: f32| (p + 0.5).max(0.0).floor();
    for ((s, &t), &b) in column_sums.iter_mut().zip(top).zip(bottom) {
        *s = whole(t) + whole(b);
    }
    for (o, pair) in blocks.iter_mut().zip(column_sums.chunks_exact(2)) {
        *o = pair[0] + pair[1];
    }
}

/// Adds the blocks holding at least each of [`BLOCK_PHOTONS`] to `counts`, in one pass: comparisons
/// and integer sums, which vectorise.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx2"))]
fn count_at_least(blocks: &[f32], counts: &mut [u32; BLOCK_PHOTONS.len()]) {
    let [t0, t1, t2, t3, t4] = BLOCK_PHOTONS.map(|n| n as f32);
    let mut c = [0u32; BLOCK_PHOTONS.len()];
    for &v in blocks {
        c[0] += u32::from(v >= t0);
        c[1] += u32::from(v >= t1);
        c[2] += u32::from(v >= t2);
        c[3] += u32::from(v >= t3);
        c[4] += u32::from(v >= t4);
    }
    for (count, n) in counts.iter_mut().zip(c) {
        *count += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_cover_every_block_once() {
        let plan = SummaryPlan::new(&[(0, 0), (0, 1032)], 512, 1024, (256.0, 1028.0));
        let total: u32 = plan.blocks_per_ring.iter().sum();
        assert_eq!(total as usize, 2 * 256 * 512);
        assert!(plan.blocks_per_ring.iter().all(|&n| n > 0), "{:?}", plan.blocks_per_ring);
        // The block nearest the beam is in the first ring, the farthest in the last.
        assert_eq!(plan.ring_of(0, 128, 511), 0);
        assert_eq!(plan.ring_of(0, 0, 0), (SHELLS - 1) as u8);
        // Segments tile every row of blocks.
        for row in 0..2 * 256 {
            let segs = &plan.segments[plan.row_segments[row]..plan.row_segments[row + 1]];
            assert_eq!(segs.first().unwrap().start, 0);
            assert_eq!(segs.last().unwrap().end, 512);
            assert!(segs.windows(2).all(|w| w[0].end == w[1].start && w[0].ring != w[1].ring));
        }
    }

    #[test]
    fn blocks_are_counted_by_their_photons() {
        let (rows, cols) = (8usize, 8usize);
        let plan = SummaryPlan::new(&[(0, 0)], rows, cols, (4.0, 4.0));
        let mut photons = vec![0.0f32; rows * cols];
        // One block of 3 photons (1.2 + 0.9 + 0.6 + 0.2 → 1 + 1 + 1 + 0), one of 7+ (a bright pixel).
        photons[0] = 1.2;
        photons[1] = 0.9;
        photons[cols] = 0.6;
        photons[cols + 1] = 0.2;
        photons[2 * cols + 4] = 30.0;
        // Negative noise counts as nothing.
        photons[6 * cols + 6] = -3.0;
        let mut counter = SummaryCounter::new(&plan);
        counter.add_panel(&plan, 0, &photons);
        let mut out = [0f32; SUMMARY_LEN];
        let spots = [Spot { photons: 30.0, ..Spot::default() }];
        counter.finish(&plan, 1, &spots, &mut out);
        let at = |k: usize| -> f32 {
            (0..SHELLS).map(|r| out[r * BLOCK_PHOTONS.len() + k] * plan.blocks_per_ring[r] as f32).sum()
        };
        assert_eq!(at(0).round(), 2.0, "blocks with at least 1 photon");
        assert_eq!(at(2).round(), 2.0, "blocks with at least 3 photons");
        assert_eq!(at(3).round(), 1.0, "blocks with at least 4 photons");
        assert_eq!(out[SUMMARY_LEN - 2..], [1.0, 30.0]);
        counter.clear();
        counter.add_panel(&plan, 0, &[0.0; 64]);
        counter.finish(&plan, 0, &[], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }
}
