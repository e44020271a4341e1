//! A recording's frames as the learned trigger reads them, labelled, for training it on a beamline's
//! own data: every whole frame reduced with the config's calibration, finder and geometry into its
//! summary, and labelled hit or miss by a conservative rule (peakfinder8's spot count: at least
//! `hit_min_spots` is a hit, at most `miss_max_spots` a miss, frames in between left out).

use std::sync::Arc;

use super::PipelineError;
use super::frames::{FramesRead, each_whole_frame};
use crate::config::{Config, FinderKind, TriggerKind};
use crate::features::summary::SUMMARY_LEN;
use crate::ingest::Recording;
use crate::reduce::{PlanError, Reducer, ReducerPlan};

/// How frames are labelled from peakfinder8's spot count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelRule {
    pub hit_min_spots: u32,
    pub miss_max_spots: u32,
}

/// The labelled frames of a recording.
#[derive(Debug, Default)]
pub struct LabelledFrames {
    /// [`SUMMARY_LEN`] values a frame, as the reducer computes them for the learned trigger.
    pub summaries: Vec<f32>,
    pub hit: Vec<bool>,
    /// Peakfinder8's spots (the label's count).
    pub label_spots: Vec<u32>,
    pub frame_numbers: Vec<u64>,
    /// Whole frames whose count fell between the two limits: neither hit nor miss.
    pub left_out: u64,
    /// Audit frames (a run's evenly sampled rejected frames) below the hit limit, kept as misses.
    pub audit_negatives: u64,
    pub frames_partial: u64,
    pub input_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SummariesError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("the hit label needs more spots ({hit}) than a miss may have ({miss})")]
    Rule { hit: u32, miss: u32 },
    #[error(
        "calibration.dark_frames = {0}: the run measures its pedestals on its first frames; measure them once \
         with `hitgate calibrate dark` and give the files (calibration.pedestal_files)"
    )]
    DarkFrames(usize),
}

/// Reduces and labels every whole frame of `recording` as `config` describes the detector.
///
/// # Errors
/// A rule whose limits overlap, a config that measures pedestals on dark frames, a reduction that
/// cannot be prepared, a frame pool that cannot be allocated.
pub fn label_recording(
    config: &Config,
    recording: &Recording,
    rule: LabelRule,
) -> Result<LabelledFrames, SummariesError> {
    label_recording_with_audit(config, recording, rule, &std::collections::HashSet::new())
}

/// As [`label_recording`], with the frames the run kept for its audit stream (`audit_frames`, by
/// frame number): the trigger rejected them and they were sampled evenly among its rejections, so
/// below the hit limit they are misses — the unbiased negatives the rule would otherwise leave out
/// between its limits. An audit frame at or above the hit limit is a hit the trigger missed.
///
/// # Errors
/// As [`label_recording`].
pub fn label_recording_with_audit(
    config: &Config,
    recording: &Recording,
    rule: LabelRule,
    audit_frames: &std::collections::HashSet<u64>,
) -> Result<LabelledFrames, SummariesError> {
    if rule.hit_min_spots <= rule.miss_max_spots {
        return Err(SummariesError::Rule { hit: rule.hit_min_spots, miss: rule.miss_max_spots });
    }
    if config.calibration.dark_frames > 0 {
        return Err(SummariesError::DarkFrames(config.calibration.dark_frames));
    }
    let geometry = config.geometry().map_err(PipelineError::from)?;
    // One reduction a frame gives both: the summary as the learned trigger reads it (computed for a
    // backend that reads it, whatever its model; it does not depend on the finder), and the label's
    // count from peakfinder8 (counted whether or not the frame has room to list the spots).
    let mut labelling = config.clone();
    labelling.trigger.kind = TriggerKind::Tract;
    labelling.features.finder = FinderKind::Peakfinder8;
    labelling.features.localiser.model = None;
    let mut reducer = Reducer::new(Arc::new(ReducerPlan::new(&labelling.reducer_settings(&geometry))?))?;
    let mut out = LabelledFrames::default();
    let read: FramesRead = each_whole_frame(&geometry, config.assembler_config(), recording, |frame| {
        reducer.reduce(frame);
        let (summary, label) = (&frame.features().summary, frame.features().spots_found);
        let audit = audit_frames.contains(&frame.meta().frame_number);
        let hit = match label {
            n if n >= rule.hit_min_spots => true,
            n if n <= rule.miss_max_spots => false,
            _ if audit => {
                out.audit_negatives += 1;
                false
            }
            _ => {
                out.left_out += 1;
                return;
            }
        };
        if summary.len() != SUMMARY_LEN {
            return;
        }
        out.summaries.extend_from_slice(summary);
        out.hit.push(hit);
        out.label_spots.push(label);
        out.frame_numbers.push(frame.meta().frame_number);
    })?;
    out.frames_partial = read.frames_partial;
    out.input_error = read.input_error;
    Ok(out)
}
