//! Every frame of a recording (a capture, or an slsReceiver run on disk), assembled as any source's,
//! handed to a caller one at a time: for measurements over a run (a dark run's pedestals, the beam
//! centre) that need frames but not the pipeline's threads.

use std::sync::Arc;

use super::PipelineError;
use crate::detector::DetectorGeometry;
use crate::frame::{Assembler, AssemblerConfig, FrameHandle, FramePool};
use crate::ingest::Recording;

/// What reading the recording met: frames with packets missing, and where it was cut short.
pub struct FramesRead {
    pub frames_partial: u64,
    pub input_error: Option<String>,
}

/// Calls `whole` with every frame of `recording` that came with all its packets, in the order they
/// leave assembly; frames with packets missing are counted, not handed on.
///
/// # Errors
/// The frame pool cannot be allocated.
pub fn each_whole_frame(
    geometry: &DetectorGeometry,
    assembler: AssemblerConfig,
    recording: &Recording,
    mut whole: impl FnMut(&mut FrameHandle),
) -> Result<FramesRead, PipelineError> {
    let pool = FramePool::new(geometry.frame_bytes(), geometry.packets_per_frame(), assembler.window_frames + 2, 0)?;
    let mut a = Assembler::new(geometry.clone(), assembler, Arc::clone(&pool));
    let mut partial = 0u64;
    let mut take = |a: &mut Assembler| {
        while let Some(mut frame) = a.pop_ready() {
            if frame.meta().is_complete() {
                whole(&mut frame);
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
    Ok(FramesRead { frames_partial: partial, input_error })
}
