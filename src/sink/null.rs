//! Discards frames, counting them: for throughput measurements, and (with a write delay) to rehearse
//! storage that is slower than the accept rate.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Experiment, FrameRecord, Frames, Interest, Payload, Sink, SinkConfig, SinkError, SinkReport};
use crate::section::Problems;

/// `kind = "null"`: discards frames (throughput measurements). `write_delay_us` makes each frame take
/// that long, to rehearse storage slower than the accept rate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NullSection {
    #[serde(default)]
    pub write_delay_us: u64,
}

impl SinkConfig for NullSection {
    fn validate(&self, _path: &str, _problems: &mut Problems) {}

    fn open(&self, _experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(NullSink::new(self.write_delay_us)))
    }
}

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
