//! `kind = "stream"`: where the live stream binds, its socket type, what a pixel holds, and how long a
//! message may wait for a consumer.

use serde::{Deserialize, Serialize};

use crate::codec::StoredPixels;
use crate::section::{Claim, Problems, Resource, key};
use crate::sink::{Experiment, Sink, SinkConfig, SinkError};

/// The live stream of kept frames: DECTRIS Stream V2 (start, image and end messages, CBOR, images
/// as bitshuffle-LZ4 multi-dimensional typed arrays) on a ZeroMQ socket consumers connect to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    /// Where the stream binds: `tcp://ADDRESS:PORT` (31001 is Stream V2's port) or `ipc://PATH`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `push` (each message to one consumer, round robin, as DECTRIS detectors do) or `pub` (every
    /// subscriber gets every message; a slow one loses messages, never slows the stream).
    #[serde(default)]
    pub socket: StreamSocket,
    /// What a pixel holds, as for the HDF5 sink (frames are compressed once for both).
    #[serde(default)]
    pub pixels: StoredPixels,
    /// A message no consumer takes within this long is not sent, and counted.
    #[serde(default = "default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// Messages queued per consumer before sending waits (ZeroMQ's high-water mark).
    #[serde(default = "default_high_water_mark")]
    pub high_water_mark: i32,
}

/// The ZeroMQ socket type of the live stream.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StreamSocket {
    #[default]
    Push,
    Pub,
}

fn default_endpoint() -> String {
    "tcp://127.0.0.1:31001".into()
}

fn default_send_timeout_ms() -> u64 {
    500
}

fn default_high_water_mark() -> i32 {
    64
}

impl StreamSection {
    /// A push stream of raw frames bound at `endpoint`, every other key at its default.
    pub fn at(endpoint: &str) -> StreamSection {
        StreamSection {
            endpoint: endpoint.into(),
            socket: StreamSocket::Push,
            pixels: StoredPixels::Raw,
            send_timeout_ms: default_send_timeout_ms(),
            high_water_mark: default_high_water_mark(),
        }
    }
}

impl SinkConfig for StreamSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if Resource::of_endpoint(&self.endpoint).is_none() {
            problems.bad(k("endpoint"), format!("{:?}: tcp://ADDRESS:PORT or ipc://PATH", self.endpoint));
        }
        problems.outside(k("send_timeout_ms"), self.send_timeout_ms, (1, 60_000));
        problems.outside(k("high_water_mark"), self.high_water_mark, (1, 1_000_000));
    }

    fn claims(&self, path: &str) -> Vec<Claim> {
        Resource::of_endpoint(&self.endpoint).map(|r| Claim::new(key(path, "endpoint"), r)).into_iter().collect()
    }

    fn stored_pixels(&self) -> Option<StoredPixels> {
        Some(self.pixels)
    }

    fn open(&self, experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(super::StreamSink::create(self, experiment)?))
    }
}
