//! What a frame slot carries besides its pixels: the reducer's findings (spots, the summary the
//! learned trigger reads, a compressed copy for storage) and the trigger's verdict. It lives in the
//! slot, its buffers preallocated with the pool, so reducing a frame allocates nothing. The finders
//! and the summary that fill it are `crate::features`.

/// Room reserved in every slot for a frame's summary, in values (`features::summary` checks at
/// compile time that its summary fits).
pub const SUMMARY_ROOM: usize = 256;

/// One spot: connected pixels above threshold, in the coordinates of its panel.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spot {
    /// Panel (a module, or an EIGER port) the spot lies in.
    pub panel: u16,
    /// Photon-weighted centre, in pixels of the panel.
    pub row: f32,
    pub col: f32,
    /// Summed photons.
    pub photons: f32,
    pub pixels: u32,
    /// Brightest pixel, photons.
    pub peak: f32,
    /// Integrated intensity over the local background's noise (peakfinder8; 0 where not measured).
    pub snr: f32,
    /// The centre in the assembled detector image (modules placed with their gaps), pixels.
    pub image_row: f32,
    pub image_col: f32,
    /// The centre the learned localiser gives, in the assembled image (row, column); `None` where the
    /// spot was not refined (no model, a rejected frame, or past the recorded spots).
    pub refined: Option<[f32; 2]>,
}

/// A frame's features and the trigger's verdict on it.
#[derive(Clone, Debug, Default)]
pub struct FrameFeatures {
    /// Spots recorded, up to the configured maximum.
    pub spots: Vec<Spot>,
    /// Spots found, recorded or not.
    pub spots_found: u32,
    pub score: f32,
    pub accepted: bool,
    /// A rejected frame kept for the audit stream (1 in `trigger.rate.audit_every`).
    pub audit: bool,
    /// The trigger's backend failed on this frame (it was accepted so no hit is lost).
    pub trigger_failed: bool,
    /// Judged by the spots trigger while the learned one's inputs were unfamiliar
    /// (`trigger.on_unfamiliar = "fallback"`): the score is a spot count.
    pub fallback: bool,
    /// A dark frame of the run's start, used for the pedestal, not judged.
    pub dark: bool,
    /// Time the reducer spent on this frame.
    pub reduce_ns: u64,
    /// Pixels without a photon count this frame: saturated, an invalid gain code, or in a packet
    /// that never came (they read `calib::FLAGGED`).
    pub pixels_flagged: u32,
    /// Spots the learned localiser refined, and batches of patches it failed on.
    pub spots_localised: u32,
    pub localiser_batches_failed: u32,
    /// The frame's summary for the learned trigger (`features::summary`), empty when the trigger does
    /// not use one.
    pub summary: Vec<f32>,
    /// Blocks the summary left out of its excess: they stand out in most frames (`features::persistent`).
    pub persistent_ignored: u32,
    /// The frame compressed for storage (one bitshuffle-LZ4 chunk), when a sink stores compressed
    /// frames and the reducer kept the frame; empty otherwise.
    pub chunk: Vec<u8>,
}

impl FrameFeatures {
    /// Empty features whose spot list can hold `capacity` spots without allocating.
    pub fn with_capacity(capacity: usize) -> FrameFeatures {
        FrameFeatures {
            spots: Vec::with_capacity(capacity),
            summary: Vec::with_capacity(SUMMARY_ROOM),
            ..FrameFeatures::default()
        }
    }

    pub fn clear(&mut self) {
        self.spots.clear();
        self.spots_found = 0;
        self.score = 0.0;
        self.accepted = false;
        self.audit = false;
        self.trigger_failed = false;
        self.fallback = false;
        self.dark = false;
        self.reduce_ns = 0;
        self.spots_localised = 0;
        self.pixels_flagged = 0;
        self.localiser_batches_failed = 0;
        self.summary.clear();
        self.persistent_ignored = 0;
        self.chunk.clear();
    }

    /// Becomes a copy of `other` without its compressed chunk (left empty), reusing its own buffers
    /// (no allocation once they are large enough).
    pub fn copy_without_chunk(&mut self, other: &FrameFeatures) {
        let FrameFeatures {
            spots,
            spots_found,
            score,
            accepted,
            audit,
            trigger_failed,
            fallback,
            dark,
            reduce_ns,
            spots_localised,
            pixels_flagged,
            localiser_batches_failed,
            summary,
            persistent_ignored,
            chunk: _,
        } = other;
        self.spots.clear();
        self.spots.extend_from_slice(spots);
        self.summary.clear();
        self.summary.extend_from_slice(summary);
        self.chunk.clear();
        (self.spots_found, self.score, self.accepted, self.audit) = (*spots_found, *score, *accepted, *audit);
        (self.trigger_failed, self.fallback, self.dark, self.reduce_ns) =
            (*trigger_failed, *fallback, *dark, *reduce_ns);
        (self.spots_localised, self.localiser_batches_failed) = (*spots_localised, *localiser_batches_failed);
        (self.pixels_flagged, self.persistent_ignored) = (*pixels_flagged, *persistent_ignored);
    }

    /// Whether a frame-storing sink keeps this frame: accepted, or sampled for the audit stream.
    pub fn is_kept(&self) -> bool {
        self.accepted || self.audit
    }
}
