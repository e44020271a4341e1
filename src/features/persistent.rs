//! Blocks that stand out of their shell's background frame after frame: a hot pixel no mask names,
//! the bright side of a fixed shadow's edge, a ring's flank that its shell's level sits under. In
//! serial crystallography every crystal lands in a new orientation, so its reflections fall somewhere
//! new in each frame; what stands out in the same place in most frames is the detector or the setup.
//! The learned trigger's summary leaves such blocks out of its excess
//! (`[trigger.inputs] ignore_persistent_excess`), so that a hot pixel is not read as a reflection in
//! every frame.
//!
//! Each block keeps a score: one more each frame it stands out (over its shell's lowest threshold,
//! 3 deviations), and every block's score halved every [`HALVING_FRAMES`] frames. A block that stands
//! out in a share `p` of the frames settles between `p` × [`HALVING_FRAMES`] and twice that. It is
//! persistent from [`PERSISTENT_SCORE`]: after that many frames in a row, and for good once it stands
//! out in a quarter of the frames. Bragg spots of random orientations come back to one block far less
//! often. Spots that repeat frame after frame (one crystal shot many times in one orientation, a
//! raster scan of one crystal) would be left out too: the key is there to turn this off for them.

/// Frames between two halvings of every score: how far back the scores remember.
pub const HALVING_FRAMES: u32 = 32;
/// The score from which a block is persistent.
pub const PERSISTENT_SCORE: u8 = 8;

// A block standing out in every frame must reach the score, and one in a quarter of them hold it.
const _: () = assert!(HALVING_FRAMES / 4 >= PERSISTENT_SCORE as u32 && 2 * HALVING_FRAMES <= u8::MAX as u32);

/// Every block's score, in the summary's order of blocks (panel after panel, row after row).
#[derive(Clone, Debug)]
pub struct PersistentBlocks {
    scores: Vec<u8>,
    /// Frames since the last halving.
    frames: u32,
}

impl PersistentBlocks {
    /// Scores for `blocks` blocks, all zero, allocated now.
    pub fn new(blocks: usize) -> PersistentBlocks {
        PersistentBlocks { scores: vec![0; blocks], frames: 0 }
    }

    /// The scores of blocks `range` (a row of blocks), for [`stands_out`].
    pub fn row_mut(&mut self, range: std::ops::Range<usize>) -> Option<&mut [u8]> {
        self.scores.get_mut(range)
    }

    /// Ends a frame: every [`HALVING_FRAMES`] frames, every score is halved.
    pub fn end_frame(&mut self) {
        self.frames += 1;
        if self.frames < HALVING_FRAMES {
            return;
        }
        self.frames = 0;
        for s in &mut self.scores {
            *s /= 2;
        }
    }
}

/// Notes that the block whose score is `score` stands out this frame; whether it is persistent,
/// and so left out of the excess.
#[inline]
pub fn stands_out(score: &mut u8) -> bool {
    *score = score.saturating_add(1);
    *score >= PERSISTENT_SCORE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of one block standing out (`true`) or not, and the frames in which it reads as
    /// persistent.
    fn persistent_frames(pattern: impl Iterator<Item = bool>) -> Vec<bool> {
        let mut blocks = PersistentBlocks::new(1);
        pattern
            .map(|out| {
                let persistent = out && stands_out(&mut blocks.row_mut(0..1).unwrap()[0]);
                blocks.end_frame();
                persistent
            })
            .collect()
    }

    #[test]
    fn a_block_out_in_every_frame_is_persistent_from_the_eighth_on() {
        let seen = persistent_frames(std::iter::repeat_n(true, 200));
        assert!(seen[..7].iter().all(|&p| !p));
        assert!(seen[7..].iter().all(|&p| p), "{seen:?}");
    }

    #[test]
    fn a_block_out_in_a_quarter_of_the_frames_stays_persistent_and_one_in_ten_never_is() {
        let quarter = persistent_frames((0..400).map(|f| f % 4 == 0));
        // Once its score has built up over a few halvings, every frame it stands out in, it is left out.
        assert!(quarter.iter().skip(128).step_by(4).all(|&p| p), "{quarter:?}");
        let tenth = persistent_frames((0..400).map(|f| f % 10 == 0));
        assert!(tenth.iter().all(|&p| !p));
    }

    #[test]
    fn a_pixel_that_cools_down_is_forgotten() {
        // Hot for 100 frames, then quiet for 100, then standing out once: not persistent any more.
        let seen = persistent_frames((0..201).map(|f| f < 100 || f == 200));
        assert!(seen[99]);
        assert!(!seen[200]);
    }
}
