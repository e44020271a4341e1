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
/// Block counts are kept up to this many photons (more counts as this many).
const MAX_COUNTED: usize = 7;

/// The rings, fixed for a detector geometry: each 2 × 2 block's ring, and the blocks per ring.
#[derive(Clone, Debug)]
pub struct SummaryPlan {
    /// Per panel, the ring of each block (row-major over the panel's `rows/2 × cols/2` blocks).
    ring_of_block: Vec<u8>,
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
        SummaryPlan { ring_of_block, blocks_per_ring, rows, cols }
    }
}

/// One worker's summary in the making: block counts per ring, and rows of sums as scratch.
#[derive(Clone, Debug)]
pub struct SummaryCounter {
    counts: [[u32; MAX_COUNTED + 1]; SHELLS],
    column_sums: Vec<f32>,
    block_row: Vec<f32>,
}

impl SummaryCounter {
    /// A counter for panels of `plan`'s size, its scratch allocated now.
    pub fn new(plan: &SummaryPlan) -> SummaryCounter {
        SummaryCounter {
            counts: [[0; MAX_COUNTED + 1]; SHELLS],
            column_sums: vec![0.0; plan.cols],
            block_row: vec![0.0; plan.cols / 2],
        }
    }

    pub fn clear(&mut self) {
        self.counts = [[0; MAX_COUNTED + 1]; SHELLS];
    }

    /// Counts the blocks of panel `panel`, whose photons are `photons` (row-major, the plan's size).
    pub fn add_panel(&mut self, plan: &SummaryPlan, panel: usize, photons: &[f32]) {
        let (rows, cols) = (plan.rows, plan.cols);
        let (block_rows, block_cols) = (rows / 2, cols / 2);
        let rings = &plan.ring_of_block[panel * block_rows * block_cols..(panel + 1) * block_rows * block_cols];
        let (sums, blocks) = (&mut self.column_sums, &mut self.block_row);
        for (br, rings) in rings.chunks_exact(block_cols).enumerate().take(block_rows) {
            let Some(two_rows) = photons.get(2 * br * cols..(2 * br + 2) * cols) else { break };
            let (top, bottom) = two_rows.split_at(cols);
            block_sums(top, bottom, sums, &mut blocks[..block_cols]);
            // Most blocks hold no photon: runs of 16 empty blocks are skipped after one test.
            for (run, rings) in blocks[..block_cols].chunks(16).zip(rings.chunks(16)) {
                // Sums are whole, non-negative and +0.0 when empty: an OR of their bits (which
                // vectorises, unlike a float max) is zero exactly when the run is empty.
                if run.iter().fold(0u32, |a, n| a | n.to_bits()) == 0 {
                    continue;
                }
                for (&n, &ring) in run.iter().zip(rings) {
                    if n > 0.0 {
                        self.counts[usize::from(ring)][(n as usize).min(MAX_COUNTED)] += 1;
                    }
                }
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
            for (k, &at_least) in BLOCK_PHOTONS.iter().enumerate() {
                let n: u32 = counts[at_least as usize..].iter().sum();
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
        assert_eq!(plan.ring_of_block[128 * 512 + 511], 0);
        assert_eq!(plan.ring_of_block[0], (SHELLS - 1) as u8);
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
