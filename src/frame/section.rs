//! `[assembler]`: how long a frame may take to arrive, how many are assembled at once, what happens to
//! a partial one, and how many frame buffers the pool holds for the whole pipeline.

use serde::{Deserialize, Serialize};

use super::assembler::{AssemblerConfig, PartialPolicy};
use crate::section::{Problems, key};

/// Frame assembly.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AssemblerSection {
    /// A partial frame leaves this long after its first packet.
    pub frame_timeout_us: u64,
    /// Frames assembled at once.
    pub window_frames: usize,
    /// Frame numbers further ahead than this of the newest are dropped as garbage.
    pub max_frame_jump: u64,
    /// `keep_flagged` or `drop`.
    pub partial_frames: PartialPolicy,
    /// Frame buffers preallocated for the whole pipeline.
    pub pool_frames: usize,
}

impl Default for AssemblerSection {
    fn default() -> Self {
        AssemblerSection {
            frame_timeout_us: 10_000,
            window_frames: 8,
            max_frame_jump: 1_000_000,
            partial_frames: PartialPolicy::KeepFlagged,
            pool_frames: 64,
        }
    }
}

impl AssemblerSection {
    /// The assembler's own settings.
    pub fn assembler_config(&self) -> AssemblerConfig {
        AssemblerConfig {
            frame_timeout_ns: self.frame_timeout_us.saturating_mul(1000),
            window_frames: self.window_frames,
            max_frame_jump: self.max_frame_jump,
            partial_policy: self.partial_frames,
        }
    }

    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        problems.outside(k("frame_timeout_us"), self.frame_timeout_us, (1, 60_000_000));
        problems.outside(k("window_frames"), self.window_frames, (1, 64));
        if self.max_frame_jump < self.window_frames as u64 {
            problems.bad(
                k("max_frame_jump"),
                format!("{} is less than window_frames ({})", self.max_frame_jump, self.window_frames),
            );
        }
        if self.pool_frames < self.window_frames + 2 || self.pool_frames > 4096 {
            problems.bad(
                k("pool_frames"),
                format!(
                    "{} is outside {}..=4096 (window_frames + 2 at least)",
                    self.pool_frames,
                    self.window_frames + 2
                ),
            );
        }
    }
}
