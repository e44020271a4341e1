//! `hitgate consume`: a writer on another machine that reads one source of the forward through a
//! durable JetStream consumer and writes what a node's own storage writes — the features records of
//! every frame and NeXus/HDF5 files of the kept frames — in parts (`part-000001/`, …) of
//! `frames_per_part` frames.
//!
//! A part is written in `.partial-NNNNNN/`, its files synced, and renamed to `part-NNNNNN/` with a
//! `part.json` naming the last stream sequence it holds; only then are its messages acknowledged
//! (acknowledge-all up to that sequence). A consumer stopped or killed at any moment leaves whole
//! parts and at most a `.partial-` folder, which the next start removes; JetStream then delivers
//! again what was not acknowledged (the durable consumer is made again from the message after the
//! last whole part when its state and the folder's disagree), and what a whole part already holds
//! is skipped by its sequence.
//! A part is closed only when no frame is waiting for its parts, so every message up to its last
//! sequence belongs to it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use super::protocol::{self, ForwardSubjects};
use super::reassemble::{Reassembler, ReassemblyStats, Rebuilt};
use super::{ForwardSection, stream_config};
use crate::scaleout::nats::{self, NatsError};
use crate::sink::features::FeaturesSinkSection;
use crate::sink::hdf5::Hdf5Section;
use crate::sink::{Experiment, Sink, SinkConfig, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    State { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConsumeError + '_ {
    move |source| ConsumeError::Io { path: path.to_path_buf(), source }
}

pub struct ConsumeOptions {
    pub out: PathBuf,
    /// The durable consumer's name: a consumer started again under it resumes.
    pub durable: String,
    /// Which source of the stream to read (a node's name, or `all`).
    pub source: String,
    pub frames_per_part: u64,
    /// Return once the source's run has ended (its end message) and all of it is written.
    pub exit_at_end: bool,
    /// A part with frames is closed after this long without messages.
    pub idle: Duration,
    /// How the parts' NeXus files are written (the node's own HDF5 sink's settings, say); their
    /// folder is each part's, their pixels the forward's.
    pub nexus: Hdf5Section,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumeReport {
    pub parts: u64,
    pub frames: u64,
    pub chunks: u64,
    /// Messages delivered again that a whole part already held.
    pub messages_skipped: u64,
    pub ends: u64,
    pub reassembly: ReassemblyStats,
}

/// What a whole part says of itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct PartInfo {
    frames: u64,
    chunks: u64,
    first_frame: u64,
    last_frame: u64,
    last_stream_sequence: u64,
}

/// The part being written.
struct OpenPart {
    number: u64,
    dir: PathBuf,
    sinks: Vec<Box<dyn Sink>>,
    frames: u64,
    chunks: u64,
    first_frame: u64,
    last_frame: u64,
}

fn part_name(number: u64) -> String {
    format!("part-{number:06}")
}

/// The sinks a part writes in `dir`: the features records, and the kept frames as NeXus/HDF5 in the
/// forward's pixels.
fn part_sinks(
    dir: &Path,
    experiment: &Experiment,
    nexus: &Hdf5Section,
    section: &ForwardSection,
) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    let mut hdf5 = nexus.clone();
    hdf5.dir = dir.to_path_buf();
    hdf5.pixels = section.pixels;
    let features = FeaturesSinkSection { path: dir.join("features.jsonl") };
    Ok(vec![features.open(experiment)?, hdf5.open(experiment)?])
}

impl OpenPart {
    fn open(
        out: &Path,
        number: u64,
        experiment: &Experiment,
        options: &ConsumeOptions,
        section: &ForwardSection,
    ) -> Result<OpenPart, ConsumeError> {
        let dir = out.join(format!(".partial-{number:06}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let sinks = part_sinks(&dir, experiment, &options.nexus, section)?;
        Ok(OpenPart { number, dir, sinks, frames: 0, chunks: 0, first_frame: u64::MAX, last_frame: 0 })
    }

    fn write(&mut self, frame: &Rebuilt) -> Result<(), ConsumeError> {
        for sink in &mut self.sinks {
            let interest = sink.interest();
            let needs_chunk = interest.payload == crate::sink::Payload::Chunk;
            // A kept frame whose chunk did not come has its record, not an image.
            if interest.takes(&frame.record.features) && !(needs_chunk && frame.record.payload.is_empty()) {
                sink.write(&frame.record)?;
            }
        }
        let n = frame.record.meta.frame_number;
        self.frames += 1;
        self.chunks += u64::from(!frame.record.payload.is_empty());
        self.first_frame = self.first_frame.min(n);
        self.last_frame = self.last_frame.max(n);
        Ok(())
    }

    /// Closes the sinks, syncs the files and renames the folder into place.
    fn commit(mut self, out: &Path, last_stream_sequence: u64) -> Result<(), ConsumeError> {
        for sink in &mut self.sinks {
            sink.finish()?;
        }
        self.sinks.clear();
        let info = PartInfo {
            frames: self.frames,
            chunks: self.chunks,
            first_frame: self.first_frame,
            last_frame: self.last_frame,
            last_stream_sequence,
        };
        let info_path = self.dir.join("part.json");
        let text = serde_json::to_vec_pretty(&info)
            .map_err(|e| ConsumeError::State { path: info_path.clone(), reason: e.to_string() })?;
        std::fs::write(&info_path, text).map_err(io(&info_path))?;
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        }
        let whole = out.join(part_name(self.number));
        std::fs::rename(&self.dir, &whole).map_err(io(&whole))?;
        std::fs::File::open(out).and_then(|f| f.sync_all()).map_err(io(out))?;
        Ok(())
    }
}

/// What earlier runs left in `out`: the next part's number and the last stream sequence whole
/// parts hold. Unfinished parts are removed.
fn resume_point(out: &Path) -> Result<(u64, u64), ConsumeError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (mut next, mut done) = (1, 0);
    for entry in std::fs::read_dir(out).map_err(io(out))? {
        let path = entry.map_err(io(out))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with(".partial-") {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        } else if let Some(n) = name.strip_prefix("part-").and_then(|n| n.parse::<u64>().ok()) {
            let info_path = path.join("part.json");
            let text = std::fs::read(&info_path).map_err(io(&info_path))?;
            let info: PartInfo = serde_json::from_slice(&text)
                .map_err(|e| ConsumeError::State { path: info_path.clone(), reason: e.to_string() })?;
            next = next.max(n + 1);
            done = done.max(info.last_stream_sequence);
        }
    }
    Ok((next, done))
}

/// A message handle kept to acknowledge everything up to it, without its payload.
fn ack_handle(mut message: jetstream::Message) -> jetstream::Message {
    message.message.payload = bytes::Bytes::new();
    message
}

/// Consumes `section`'s stream for one source until its end (with `exit_at_end`) or `stop`.
///
/// # Errors
/// NATS cannot be reached, the stream or consumer cannot be had, or a part cannot be written.
pub fn consume(
    experiment: &Experiment,
    section: &ForwardSection,
    options: &ConsumeOptions,
    stop: &AtomicBool,
) -> Result<ConsumeReport, ConsumeError> {
    let out = options.out.as_path();
    let (mut next_part, done) = resume_point(out)?;
    let subjects = ForwardSubjects::of(&section.subject, &options.source);
    let rt = nats::runtime()?;
    rt.block_on(async {
        let client = nats::connect(&section.nats, &format!("hitgate-consume-{}", options.durable)).await?;
        let js = jetstream::new(client);
        let stream = nats::ensure_stream(&js, stream_config(section)).await?;
        let consumer_failed = |e| NatsError::Consumer { consumer: options.durable.clone(), cause: e };
        // The whole parts on disk are the truth: a durable consumer that has messages out
        // unacknowledged (its last reader was killed; they would come again only after the
        // acknowledgement wait) or that is behind them is made again from the message after them.
        let matches_disk = match stream.consumer_info(&options.durable).await {
            Ok(info) => Some(info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= done),
            Err(_) => None,
        };
        if matches_disk == Some(false) {
            stream.delete_consumer(&options.durable).await.map_err(|e| consumer_failed(nats::cause(e)))?;
        }
        let deliver_policy = if done == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: done + 1 }
        };
        let durable: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &options.durable,
                consumer::pull::Config {
                    durable_name: Some(options.durable.clone()),
                    filter_subject: subjects.source.clone(),
                    deliver_policy,
                    ack_policy: consumer::AckPolicy::All,
                    // A part's messages stay unacknowledged until it is whole.
                    ack_wait: Duration::from_secs(600),
                    max_ack_pending: 1_000_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| consumer_failed(nats::cause(e)))?;

        let mut report = ConsumeReport::default();
        let mut reassembler = Reassembler::new(100_000);
        let mut part: Option<OpenPart> = None;
        let mut last: Option<jetstream::Message> = None;
        let mut highest = done;
        let mut rebuilt = Vec::new();
        'follow: while !stop.load(Ordering::Relaxed) {
            let mut messages = match durable.messages().await {
                Ok(m) => m,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let message = match tokio::time::timeout(options.idle, messages.next()).await {
                    Ok(Some(Ok(m))) => m,
                    // The server went away or the consumer's pull broke: pulled again.
                    Ok(Some(Err(_)) | None) => continue 'follow,
                    Err(_) => {
                        // Idle: a part with frames and nothing waiting is closed now.
                        if reassembler.pending() == 0
                            && let Some(p) = part.take_if(|p| p.frames > 0)
                        {
                            close(p, out, &mut last, highest, &mut report).await?;
                        }
                        continue;
                    }
                };
                let Ok(info) = message.info() else { continue };
                let sequence = info.stream_sequence;
                if sequence <= highest {
                    report.messages_skipped += 1;
                    // Still acknowledged, so the server stops delivering it again.
                    if sequence <= done {
                        let _ = message.ack().await;
                    }
                    continue;
                }
                highest = sequence;
                let kind = protocol::kind(&subjects, message.subject.as_str(), message.headers.as_ref());
                let ended = matches!(kind, Ok(protocol::Kind::End));
                reassembler.add(kind, message.payload.clone(), &mut rebuilt);
                if ended {
                    report.ends += 1;
                    reassembler.flush(&mut rebuilt);
                }
                last = Some(ack_handle(message));
                for frame in rebuilt.drain(..) {
                    if part.is_none() {
                        part = Some(OpenPart::open(out, next_part, experiment, options, section)?);
                        next_part += 1;
                    }
                    if let Some(p) = part.as_mut() {
                        p.write(&frame)?;
                    }
                }
                let full = part.as_ref().is_some_and(|p| p.frames >= options.frames_per_part);
                if (full || ended) && reassembler.pending() == 0 {
                    if let Some(p) = part.take() {
                        close(p, out, &mut last, highest, &mut report).await?;
                    } else if let Some(m) = last.take() {
                        // An end with no frame after the last part: acknowledged on its own.
                        let _ = m.double_ack().await;
                    }
                }
                if ended && options.exit_at_end {
                    break 'follow;
                }
            }
        }
        report.reassembly = reassembler.stats().clone();
        Ok(report)
    })
}

/// Commits a part and acknowledges every message up to its last.
async fn close(
    part: OpenPart,
    out: &Path,
    last: &mut Option<jetstream::Message>,
    highest: u64,
    report: &mut ConsumeReport,
) -> Result<(), ConsumeError> {
    report.parts += 1;
    report.frames += part.frames;
    report.chunks += part.chunks;
    part.commit(out, highest)?;
    if let Some(m) = last.take() {
        // A lost acknowledgement only means the messages come again, and are skipped.
        for _ in 0..3 {
            if m.double_ack().await.is_ok() {
                break;
            }
        }
    }
    Ok(())
}
