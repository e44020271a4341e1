//! What the reducer extracts from a frame: spots (a threshold finder and peakfinder8), the summary the
//! learned trigger reads, the patches the learned localiser refines spots from. The findings travel
//! with the frame in its pool slot ([`FrameFeatures`], defined with the slot in `crate::frame`).

pub mod beam_centre;
pub mod local_threshold;
pub mod localiser;
pub mod patch;
pub mod peakfinder8;
pub mod persistent;
pub mod spots;
pub mod summary;

pub use crate::frame::features::{FrameFeatures, Spot};
pub use local_threshold::{LocalThresholdFinder, ThresholdParams};
pub use peakfinder8::{PanelRings, Peakfinder8, Peakfinder8Params, RadialMap, RingSamples};
pub use spots::{SpotFinder, SpotFinderParams};

use serde::{Deserialize, Serialize};

use crate::section::{Problems, key};
pub use localiser::{LocaliseFrames, LocaliserSection};

/// `[features]`: which spot finder the reducer runs, its parameters, and the localiser.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesSection {
    pub finder: FinderKind,
    /// Parameters of the threshold finder (see `features::local_threshold`).
    pub threshold: ThresholdParams,
    /// Parameters of the peakfinder8 finder (see `features::peakfinder8`).
    pub peakfinder8: Peakfinder8Params,
    /// The localiser (see `features::localiser`).
    pub localiser: LocaliserSection,
    /// Spots recorded per frame at most (the rest are counted, not listed).
    pub max_spots_recorded: usize,
}

impl Default for FeaturesSection {
    fn default() -> Self {
        FeaturesSection {
            finder: FinderKind::default(),
            threshold: ThresholdParams::default(),
            peakfinder8: Peakfinder8Params::default(),
            localiser: LocaliserSection::default(),
            max_spots_recorded: 512,
        }
    }
}

/// Which spot finder the reducer runs.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FinderKind {
    /// Connected pixels above their tile's local background, in units of its noise
    /// (`features.threshold`).
    #[default]
    Threshold,
    /// Per-ring background by sigma clipping, SNR against a local background.
    Peakfinder8,
}

impl FeaturesSection {
    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        self.threshold.validate(&key(path, "threshold"), problems);
        self.peakfinder8.validate(&key(path, "peakfinder8"), problems);
        if self.max_spots_recorded > 100_000 {
            problems.bad(key(path, "max_spots_recorded"), format!("{} is above 100000", self.max_spots_recorded));
        }
        self.localiser.validate(&key(path, "localiser"), problems);
    }
}
