//! A dark run measured from a recording (a capture, or an slsReceiver run on disk): its frames
//! assembled as any source's, each whole frame's raw values added to the pedestal sums (a frame with
//! packets missing is left out and counted), for `hitgate calibrate dark`.

use std::sync::Arc;

use super::PipelineError;
use crate::calib::dark::{DarkMeasurement, DarkRun};
use crate::detector::DetectorGeometry;
use crate::frame::{Assembler, AssemblerConfig, FramePool};
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
    let pool = FramePool::new(geometry.frame_bytes(), geometry.packets_per_frame(), assembler.window_frames + 2, 0)?;
    let mut a = Assembler::new(geometry.clone(), assembler, Arc::clone(&pool));
    let (panels, rows, cols) = geometry.panels();
    let mut dark = DarkRun::new(panels * rows * cols);
    let mut partial = 0u64;
    let mut take = |a: &mut Assembler| {
        while let Some(frame) = a.pop_ready() {
            if frame.meta().is_complete() {
                dark.add(frame.pixels_u16());
            } else {
                partial += 1;
            }
        }
    };
    let input_error = match recording {
        Recording::Capture(capture) => {
            let mut error = None;
            for record in capture.records() {
                match record {
                    Ok(record) => {
                        if let Ok(udp) = record.udp() {
                            let _ = a.push(udp.dst_port, udp.payload, record.timestamp_ns);
                        }
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
                take(&mut a);
            }
            error
        }
        Recording::Raw(run) => {
            let ports = &geometry.udp_ports;
            let (_, error) = run.replay(|port, packet, ts| {
                let _ = a.push(ports[port], packet, ts);
                take(&mut a);
                true
            });
            error.map(|e| e.to_string())
        }
    };
    a.flush();
    take(&mut a);
    Ok(DarkReport { measurement: dark.measurement(), frames_partial: partial, input_error })
}
