//! Discards frames, counting them: for throughput measurements.

use super::{Sink, SinkError, SinkReport};
use crate::frame::FrameHandle;

#[derive(Default)]
pub struct NullSink {
    frames: u64,
}

impl Sink for NullSink {
    fn write(&mut self, _frame: &FrameHandle) -> Result<(), SinkError> {
        self.frames += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        Ok(SinkReport { name: "null", frames_written: self.frames, ..SinkReport::default() })
    }
}
