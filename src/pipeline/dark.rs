//! A dark run measured from a recording (a capture, or an slsReceiver run on disk): its frames
//! assembled as any source's, each whole frame's raw values added to the pedestal sums (a frame with
//! packets missing is left out and counted), for `hitgate calibrate dark`.

use super::PipelineError;
use super::frames::each_whole_frame;
use crate::calib::dark::{DarkMeasurement, DarkRun};
use crate::detector::DetectorGeometry;
use crate::frame::AssemblerConfig;
use crate::ingest::Recording;

/// A dark run's pedestals and what went into them.
pub struct DarkReport {
    pub measurement: DarkMeasurement,
    /// Frames left out because packets were missing.
    pub frames_partial: u64,
    /// Where the recording was cut short, when it was.
    pub input_error: Option<String>,
}

/// Measures the pedestals of the detector `geometry` describes over every whole frame of `recording`.
///
/// # Errors
/// The frame pool cannot be allocated.
pub fn measure_dark(
    geometry: &DetectorGeometry,
    assembler: AssemblerConfig,
    recording: &Recording,
) -> Result<DarkReport, PipelineError> {
    let (panels, rows, cols) = geometry.panels();
    let mut dark = DarkRun::new(panels * rows * cols);
    let read = each_whole_frame(geometry, assembler, recording, |frame| dark.add(frame.pixels_u16()))?;
    Ok(DarkReport {
        measurement: dark.measurement(),
        frames_partial: read.frames_partial,
        input_error: read.input_error,
    })
}
