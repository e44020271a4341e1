//! Discards frames, counting them: for throughput measurements, and (with a write delay) to rehearse
//! storage that is slower than the accept rate.

use std::time::Duration;

use super::{FrameRecord, Frames, Interest, Payload, Sink, SinkError, SinkReport};

#[derive(Default)]
pub struct NullSink {
    frames: u64,
    delay: Duration,
}

impl NullSink {
    /// A sink taking what a frame-storing sink takes, each frame `write_delay_us` long.
    pub fn new(write_delay_us: u64) -> NullSink {
        NullSink { frames: 0, delay: Duration::from_micros(write_delay_us) }
    }
}

impl Sink for NullSink {
    fn interest(&self) -> Interest {
        Interest { frames: Frames::Kept, payload: Payload::Nothing, payload_bytes: 0 }
    }

    fn write(&mut self, _frame: &FrameRecord) -> Result<(), SinkError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        self.frames += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        Ok(SinkReport { name: "null", frames_written: self.frames, ..SinkReport::default() })
    }
}
