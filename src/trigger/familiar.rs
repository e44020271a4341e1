//! Whether a learned trigger's inputs look like those it was trained on. A model carries the range
//! its training inputs held ([`InputRanges`]: per input, a low and a high quantile of the training
//! frames' summaries, written by `hitgate dataset frames` and kept beside the model). A frame whose
//! summary has several inputs well outside those ranges is unfamiliar; when more than
//! `[trigger.inputs] unfamiliar_share` of the recent frames are, the trigger is out of its depth and
//! the run says so ([`FamiliarityWatch`]), since its scores then mean little.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::section::{Problems, key};

/// `[trigger.inputs]`: what a learned trigger's inputs leave out, and when they count as unfamiliar.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InputsSection {
    /// Share of the recent frames with unfamiliar inputs that raises the alarm.
    pub unfamiliar_share: f64,
    /// Frames the share is measured over.
    pub window_frames: usize,
    /// Leave out of the summary's excess what stands out in the same place in most frames (a hot
    /// pixel no mask names, a fixed shadow's edge; `features::persistent`). Turn off for runs whose
    /// reflections repeat frame after frame (one crystal shot many times in one orientation).
    pub ignore_persistent_excess: bool,
}

impl Default for InputsSection {
    fn default() -> Self {
        InputsSection { unfamiliar_share: 0.25, window_frames: 200, ignore_persistent_excess: true }
    }
}

impl InputsSection {
    /// Every problem of the section, with its key path under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if !(self.unfamiliar_share > 0.0 && self.unfamiliar_share <= 1.0) {
            problems.bad(key(path, "unfamiliar_share"), format!("{} is outside (0, 1]", self.unfamiliar_share));
        }
        problems.outside(key(path, "window_frames"), self.window_frames, (10, 100_000));
    }
}

/// `[trigger] on_unfamiliar`: what the trigger does while the unfamiliar-input alarm is raised.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnUnfamiliar {
    /// Say so (log line, metric, `/status`, the run summary) and go on judging with the model.
    #[default]
    Warn,
    /// Say so, and judge with the spots trigger (`[trigger.spots]`) under the same rate control until
    /// the inputs are familiar again.
    Fallback,
}

/// A frame is unfamiliar when at least this many of its inputs lie outside their training range.
const UNFAMILIAR_INPUTS: usize = 3;
/// How far past a range's ends (as a share of its width) an input still counts as inside, and at
/// least how far (in the inputs' own units; most are fractions of a ring's blocks): an input that was
/// 0 on every training frame is not unfamiliar at the first block that holds a photon.
const MARGIN: f32 = 0.25;
const MARGIN_FLOOR: f32 = 0.01;

/// The range each input of a model held over its training frames.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct InputRanges {
    /// The quantiles `low` and `high` are, e.g. [0.001, 0.999].
    pub quantiles: [f64; 2],
    pub low: Vec<f32>,
    pub high: Vec<f32>,
    /// Training frames they were measured on, and what made them.
    pub frames: usize,
    pub source: String,
}

/// Why a model's input ranges cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputRangesError {
    #[error("cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("{what} is not a file of input ranges: {reason}")]
    Format { what: String, reason: String },
}

impl InputRanges {
    /// The ranges of `summaries` (frames of `len` inputs each, back to back) between quantiles `q`.
    pub fn from_summaries(summaries: &[f32], len: usize, q: [f64; 2], source: &str) -> InputRanges {
        let frames = summaries.len() / len.max(1);
        let mut column = Vec::with_capacity(frames);
        let (mut low, mut high) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for i in 0..len {
            column.clear();
            column.extend(summaries.chunks_exact(len).map(|s| s[i]).filter(|v| v.is_finite()));
            column.sort_by(f32::total_cmp);
            let at = |q: f64| column.get(((column.len().max(1) - 1) as f64 * q).round() as usize).copied();
            low.push(at(q[0]).unwrap_or(0.0));
            high.push(at(q[1]).unwrap_or(0.0));
        }
        InputRanges { quantiles: q, low, high, frames, source: source.into() }
    }

    /// Reads ranges from their JSON text; `what` names it in errors.
    ///
    /// # Errors
    /// Not JSON of input ranges, or low and high of different lengths.
    pub fn parse(text: &str, what: &str) -> Result<InputRanges, InputRangesError> {
        let bad = |reason: String| InputRangesError::Format { what: what.into(), reason };
        let ranges: InputRanges = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if ranges.low.len() != ranges.high.len() {
            return Err(bad(format!("{} low values against {} high", ranges.low.len(), ranges.high.len())));
        }
        Ok(ranges)
    }

    /// # Errors
    /// As [`InputRanges::parse`], or the file cannot be read.
    pub fn load(path: &Path) -> Result<InputRanges, InputRangesError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InputRangesError::Read { path: path.into(), source })?;
        InputRanges::parse(&text, &path.display().to_string())
    }

    /// The inputs of `summary` outside their ranges (each widened by a quarter of its width, and by
    /// at least 0.01).
    pub fn outside(&self, summary: &[f32]) -> usize {
        summary
            .iter()
            .zip(self.low.iter().zip(&self.high))
            .filter(|&(&v, (&lo, &hi))| {
                let slack = (MARGIN * (hi - lo).abs()).max(MARGIN_FLOOR);
                !(v >= lo - slack && v <= hi + slack)
            })
            .count()
    }

    /// Whether a frame with this summary is unlike the training frames.
    pub fn is_unfamiliar(&self, summary: &[f32]) -> bool {
        self.outside(summary) >= UNFAMILIAR_INPUTS.min(self.low.len().max(1))
    }
}

/// The alarm over the recent frames: the share of them with unfamiliar inputs, raised above
/// `unfamiliar_share`. Owned by the thread that sees every judged frame in order; allocates once.
#[derive(Debug)]
pub struct FamiliarityWatch {
    ranges: std::sync::Arc<InputRanges>,
    window: Vec<bool>,
    next: usize,
    filled: bool,
    unfamiliar: usize,
    limit: f64,
    alarmed: bool,
    changed: bool,
}

/// The alarm's state as last measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Familiarity {
    /// Share of the recent frames with unfamiliar inputs.
    pub share: f64,
    pub frames: usize,
    pub limit: f64,
}

impl Familiarity {
    pub fn alarmed(&self) -> bool {
        self.share > self.limit
    }
}

impl std::fmt::Display for Familiarity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = 100.0 * self.share;
        if self.alarmed() {
            write!(
                f,
                "unfamiliar inputs: {share:.0}% of the last {} frames have inputs outside what the model was trained \
                 on (alarm above {:.0}%); its scores mean little here: retrain it for this detector and beam, or use \
                 the spots trigger",
                self.frames,
                100.0 * self.limit
            )
        } else {
            write!(
                f,
                "inputs familiar again: {share:.0}% of the last {} frames outside the model's training",
                self.frames
            )
        }
    }
}

impl FamiliarityWatch {
    pub fn new(ranges: std::sync::Arc<InputRanges>, section: &InputsSection) -> FamiliarityWatch {
        FamiliarityWatch {
            ranges,
            window: vec![false; section.window_frames.max(1)],
            next: 0,
            filled: false,
            unfamiliar: 0,
            limit: section.unfamiliar_share,
            alarmed: false,
            changed: false,
        }
    }

    /// Takes one judged frame's summary.
    pub fn observe(&mut self, summary: &[f32]) {
        let strange = self.ranges.is_unfamiliar(summary);
        let old = std::mem::replace(&mut self.window[self.next], strange);
        if self.filled {
            self.unfamiliar -= usize::from(old);
        }
        self.unfamiliar += usize::from(strange);
        self.next += 1;
        if self.next == self.window.len() {
            self.next = 0;
            self.filled = true;
        }
        // Judged on a tenth of the window at least (and 10 frames), so a run's first frames count.
        let state = self.state();
        if state.frames >= (self.window.len() / 10).max(10).min(self.window.len()) && state.alarmed() != self.alarmed {
            self.alarmed = state.alarmed();
            self.changed = true;
        }
    }

    /// The share of unfamiliar frames now.
    pub fn state(&self) -> Familiarity {
        let frames = if self.filled { self.window.len() } else { self.next };
        Familiarity { share: self.unfamiliar as f64 / frames.max(1) as f64, frames, limit: self.limit }
    }

    /// Whether the alarm is raised.
    pub fn alarmed(&self) -> bool {
        self.alarmed
    }

    /// The state, once each time the alarm is raised or lowered.
    pub fn changed(&mut self) -> Option<Familiarity> {
        std::mem::take(&mut self.changed).then(|| self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> std::sync::Arc<InputRanges> {
        // Ten inputs, each trained between 0 and 1.
        let summaries: Vec<f32> =
            (0..1000).flat_map(|k| (0..10).map(move |i| ((k * 7 + i) % 101) as f32 / 100.0)).collect();
        std::sync::Arc::new(InputRanges::from_summaries(&summaries, 10, [0.001, 0.999], "test"))
    }

    #[test]
    fn ranges_are_the_training_quantiles_and_survive_json() {
        let r = ranges();
        assert!(r.low.iter().all(|&v| v <= 0.01) && r.high.iter().all(|&v| v >= 0.99), "{r:?}");
        let back = InputRanges::parse(&serde_json::to_string(&*r).unwrap(), "test").unwrap();
        assert_eq!(&back, &*r);
        assert!(InputRanges::parse("{\"nonsense\": 1}", "x").is_err());
        // Inside, a little past an end (within the margin), and far out.
        assert_eq!(r.outside(&[0.5; 10]), 0);
        assert_eq!(r.outside(&[1.2; 10]), 0);
        assert_eq!(r.outside(&[0.5, 0.5, 9.0, 9.0, 9.0, 0.5, 0.5, 0.5, 0.5, 0.5]), 3);
        assert!(r.is_unfamiliar(&[9.0; 10]) && !r.is_unfamiliar(&[0.5, 9.0, 9.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]));
    }

    #[test]
    fn the_alarm_rises_with_unfamiliar_frames_and_falls_when_they_go() {
        let section = InputsSection { unfamiliar_share: 0.25, window_frames: 100, ..InputsSection::default() };
        let mut watch = FamiliarityWatch::new(ranges(), &section);
        for _ in 0..100 {
            watch.observe(&[0.5; 10]);
        }
        assert_eq!(watch.changed(), None);
        for _ in 0..30 {
            watch.observe(&[50.0; 10]);
        }
        let raised = watch.changed().unwrap();
        assert!(raised.alarmed() && watch.alarmed(), "{raised:?}");
        assert!(raised.to_string().contains("outside what the model was trained on"), "{raised}");
        assert_eq!(watch.changed(), None, "said once");
        for _ in 0..100 {
            watch.observe(&[0.5; 10]);
        }
        assert!(!watch.changed().unwrap().alarmed());
        assert!(!watch.alarmed());
    }
}
