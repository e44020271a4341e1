//! The `jetstream` sink, the durable forward: every frame's features record, and each kept frame's compressed chunk cut
//! in parts the server takes, published to a JetStream stream and acknowledged by it
//! ([`super::protocol`] has the messages). Consumers on other machines read the stream at
//! their own pace, replay it and resume after a restart (`hitgate consume`); the node's own storage
//! sinks stay the local alternative.
//!
//! The NATS client runs on a runtime with one worker thread of its own; the sink thread hands each
//! frame's messages over and waits only when `ACK_WINDOW` messages are unacknowledged — then the
//! sink's queue fills, and frames are dropped and counted like any sink that falls behind.

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::protocol::{self, ForwardSubjects};
use crate::codec::{StoredPixels, chunk_bound};
use crate::detector::DetectorGeometry;
use crate::scaleout::nats::{self, ACK_WINDOW, NatsError, Outgoing, Publisher};
use crate::section::{Problems, key};
use crate::sink::{Experiment, FrameRecord, Frames, Interest, Payload, Sink, SinkConfig, SinkError, SinkReport};

/// The durable forward: a JetStream stream (file storage, `replicas` copies) holding, per source,
/// every frame's features record on `<subject>.<source>.features` and each kept frame's compressed
/// chunk on `<subject>.<source>.frame`, cut in parts no larger than the server takes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForwardSection {
    /// The NATS servers (any of them; the client moves to another when one goes away).
    #[serde(default = "default_nats")]
    pub nats: Vec<String>,
    /// The JetStream stream's name (created when missing).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subject prefix: the stream holds `<subject>.>`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Names this node's messages; empty: the cluster node's name, or `all` for a single node.
    #[serde(default)]
    pub source: String,
    /// What a pixel holds, as for the HDF5 sink (frames are compressed once for both).
    #[serde(default)]
    pub pixels: StoredPixels,
    /// Copies the stream keeps (servers of a cluster it lives on).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// The stream keeps at most this many GiB, dropping its oldest messages past it; 0: no limit
    /// but the server's.
    #[serde(default)]
    pub max_gib: u64,
    /// Largest part a chunk is cut into, bytes; 0: what the server takes (its `max_payload`)
    /// less room for headers.
    #[serde(default)]
    pub part_bytes: usize,
}

fn default_nats() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}

fn default_stream() -> String {
    "HITGATE_FORWARD".into()
}

fn default_subject() -> String {
    "hitgate.forward".into()
}

fn default_replicas() -> usize {
    1
}

impl ForwardSection {
    /// A forward of raw frames to `nats`, every other key at its default.
    pub fn to(nats: &str) -> ForwardSection {
        ForwardSection {
            nats: vec![nats.into()],
            stream: default_stream(),
            subject: default_subject(),
            source: String::new(),
            pixels: StoredPixels::Raw,
            replicas: default_replicas(),
            max_gib: 0,
            part_bytes: 0,
        }
    }

    /// The name this node's messages carry.
    pub fn source_name(&self) -> &str {
        if self.source.is_empty() { "all" } else { &self.source }
    }
}

impl SinkConfig for ForwardSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if self.nats.is_empty() {
            problems.bad(k("nats"), "no server: give at least one nats://HOST:PORT");
        }
        for url in &self.nats {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                problems.bad(k("nats"), format!("{url:?} is not a NATS URL (nats://HOST:PORT)"));
            }
        }
        let token = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !token(&self.stream) {
            problems.bad(k("stream"), format!("{:?}: letters, digits, '_' and '-' only", self.stream));
        }
        if !self.subject.split('.').all(token) {
            problems
                .bad(k("subject"), format!("{:?}: dot-separated tokens of letters, digits, '_' and '-'", self.subject));
        }
        if !self.source.is_empty() && !token(&self.source) {
            problems.bad(k("source"), format!("{:?}: letters, digits, '_' and '-' only", self.source));
        }
        if !(1..=5).contains(&self.replicas) {
            problems.bad(k("replicas"), format!("{} is outside 1..=5 (JetStream's limit)", self.replicas));
        }
        if self.part_bytes != 0 && !(1024..=64 << 20).contains(&self.part_bytes) {
            problems.bad(
                k("part_bytes"),
                format!("{} is outside 1024..=67108864 (0: the server's max_payload)", self.part_bytes),
            );
        }
    }

    fn stored_pixels(&self) -> Option<StoredPixels> {
        Some(self.pixels)
    }

    fn open(&self, experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(JetstreamSink::create(self, &experiment.geometry, &experiment.panel_image)?))
    }
}

pub struct JetstreamSink {
    // The runtime outlives the client it drives (fields drop in order).
    js: jetstream::Context,
    publisher: Publisher,
    runtime: tokio::runtime::Runtime,
    subjects: ForwardSubjects,
    stream: String,
    series: String,
    part_bytes: usize,
    payload_bytes: usize,
    missing: Vec<u32>,
    line: Vec<u8>,
    frames: u64,
    kept: u64,
    bytes: u64,
}

fn network(section: &ForwardSection, e: NatsError) -> SinkError {
    SinkError::Network { sink: "jetstream", endpoint: section.nats.join(","), reason: e.to_string() }
}

impl JetstreamSink {
    /// Connects and makes sure the stream exists.
    ///
    /// # Errors
    /// No server answered, or the stream cannot be had.
    pub fn create(
        section: &ForwardSection,
        geometry: &DetectorGeometry,
        image: &crate::detector::PanelImage,
    ) -> Result<JetstreamSink, SinkError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hg-jetstream")
            .enable_all()
            .build()
            .map_err(|e| network(section, NatsError::Runtime(std::sync::Arc::new(e))))?;
        let subjects = ForwardSubjects::of(&section.subject, section.source_name());
        let (js, server_max) = runtime
            .block_on(async {
                let client =
                    nats::connect(&section.nats, &format!("hitgate-forward-{}", section.source_name())).await?;
                let server_max = client.server_info().max_payload;
                let js = jetstream::new(client);
                nats::ensure_stream(&js, super::stream_config(section)).await?;
                Ok::<_, NatsError>((js, server_max))
            })
            .map_err(|e| network(section, e))?;
        let fits = server_max.saturating_sub(protocol::HEADER_ROOM).max(1024);
        let part_bytes = if section.part_bytes == 0 { fits } else { section.part_bytes.min(fits) };
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(JetstreamSink {
            js,
            publisher: Publisher::default(),
            runtime,
            series: format!("{}-{}-{}", section.source_name(), std::process::id(), started.as_nanos()),
            stream: section.stream.clone(),
            subjects,
            part_bytes,
            payload_bytes: chunk_bound(section.pixels, geometry, image),
            missing: Vec::new(),
            line: Vec::with_capacity(4096),
            frames: 0,
            kept: 0,
            bytes: 0,
        })
    }

    fn headers(&self, sequence: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(protocol::SERIES, self.series.as_str());
        h.insert(protocol::SEQUENCE, sequence.to_string().as_str());
        h
    }

    /// Sends `messages`, then waits until at most `keep` are unacknowledged.
    fn publish(&mut self, messages: Vec<Outgoing>, keep: usize) -> Result<(), SinkError> {
        let (js, publisher) = (&self.js, &mut self.publisher);
        self.runtime
            .block_on(async {
                for m in messages {
                    publisher.send(js, m).await?;
                }
                publisher.settle_ready(js).await?;
                publisher.settle(js, keep).await
            })
            .map_err(|e| SinkError::Network { sink: "jetstream", endpoint: self.stream.clone(), reason: e.to_string() })
    }
}

impl Sink for JetstreamSink {
    fn interest(&self) -> Interest {
        // Every frame's record; the chunk is there for kept frames only.
        Interest { frames: Frames::Every, payload: Payload::Chunk, payload_bytes: self.payload_bytes }
    }

    fn write(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        let sequence = record.meta.sequence;
        let chunk = &record.payload;
        let count = protocol::part_count(chunk.len(), self.part_bytes);
        let mut messages = Vec::with_capacity(count + 1);
        if count > 0 {
            for (i, range) in protocol::parts(chunk.len(), self.part_bytes).enumerate() {
                let mut headers = self.headers(sequence);
                headers.insert(protocol::PART, format!("{}/{count}", i + 1).as_str());
                headers.insert(protocol::BYTES, chunk.len().to_string().as_str());
                messages.push(Outgoing {
                    headers: Some(headers),
                    id: Some(format!("{}-{sequence}-p{}", self.series, i + 1)),
                    ..Outgoing::new(self.subjects.frame.clone(), Bytes::copy_from_slice(&chunk[range]))
                });
            }
            self.kept += 1;
        }
        crate::sink::features::encode_line(record, &mut self.missing, &mut self.line).map_err(|e| {
            SinkError::Format { sink: "jetstream", path: self.stream.clone().into(), reason: e.to_string() }
        })?;
        let mut headers = self.headers(sequence);
        headers.insert(protocol::PARTS, count.to_string().as_str());
        messages.push(Outgoing {
            headers: Some(headers),
            id: Some(format!("{}-{sequence}-r", self.series)),
            ..Outgoing::new(self.subjects.features.clone(), Bytes::copy_from_slice(&self.line))
        });
        self.bytes += messages.iter().map(|m| m.payload.len() as u64).sum::<u64>();
        self.publish(messages, ACK_WINDOW)?;
        self.frames += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        // Everything stored before the end marker: a message sent again after a lost
        // acknowledgement (a server restarted) must not land behind it, where a consumer that
        // stops at the end would never read it.
        self.publish(Vec::new(), 0)?;
        let end = serde_json::json!({ "series": self.series, "frames": self.frames, "kept": self.kept });
        let message = Outgoing {
            id: Some(format!("{}-end", self.series)),
            ..Outgoing::new(self.subjects.end.clone(), Bytes::from(end.to_string()))
        };
        self.publish(vec![message], 0)?;
        Ok(SinkReport {
            name: "jetstream",
            frames_written: self.frames,
            bytes_written: self.bytes,
            location: Some(format!("{} ({})", self.stream, self.subjects.source).into()),
            ..SinkReport::default()
        })
    }
}
