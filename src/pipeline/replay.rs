//! Replaying a recording through the whole pipeline: a packet capture, or a run as slsReceiver
//! stored it (its frames replayed as the packets they were caught as).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::assembly_metrics::AssemblyFlusher;
use super::stages::{SourceContext, SourceOutcome};
use super::summary::{Progress, RunSummary};
use super::{PipelineError, Plan};
use crate::ingest::raw::RawRun;
use crate::ingest::{Capture, Recording, SkipReason};

/// How fast to replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as the pipeline goes; the file waits for free frame slots, so nothing is dropped.
    AsFastAsPossible,
    /// At the recorded pace times `speed` (2.0 = twice as fast); like a live source, frames that find
    /// no free slot are dropped and counted.
    Recorded { speed: f64 },
}

#[derive(Clone, Copy, Debug)]
pub struct ReplayOptions {
    pub pace: Pace,
}

/// Records between checks for timed-out partial frames and progress updates.
const BATCH_RECORDS: u64 = 32;

impl Plan {
    /// Replays a recording (a capture, or an slsReceiver run on disk) through the pipeline.
    ///
    /// # Errors
    /// As [`Plan::replay`]; a raw run of another detector than the config's.
    pub fn replay_recording(
        &self,
        recording: &Recording,
        options: ReplayOptions,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError> {
        match recording {
            Recording::Capture(capture) => self.replay(capture, options, progress),
            Recording::Raw(run) => self.replay_raw(run, options, progress),
        }
    }

    /// Replays an slsReceiver run on disk: each frame as the packets its mask says were caught, the
    /// others counted lost by the assembler as on the wire.
    ///
    /// # Errors
    /// The run is of another detector than the config's; otherwise as [`Plan::replay`].
    pub fn replay_raw(
        &self,
        run: &RawRun,
        options: ReplayOptions,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError> {
        let g = &self.geometry;
        if run.model().name != g.model.name || run.ports() != g.ports() {
            return Err(PipelineError::RecordingMismatch {
                recording: run.master().display().to_string(),
                found: format!("{} port(s) of {}", run.ports(), run.model().name),
                expected: format!("{} port(s) of {}", g.ports(), g.model.name),
            });
        }
        progress.input_bytes_total.store(run.len_bytes() as u64, Ordering::Relaxed);
        let can_wait = options.pace == Pace::AsFastAsPossible;
        self.run_stages(|ctx| raw_source(ctx, run, options), false, can_wait, progress)
    }

    /// Replays a run the HDF5 sink stored (raw pixels): each frame as the packets its mask says
    /// were caught, rebuilt with their headers, so the frame goes through the assembler's accounting
    /// again and missing packets count as lost.
    ///
    /// # Errors
    /// The run is of another detector than the config's; otherwise as [`Plan::replay`].
    #[cfg(feature = "hdf5")]
    pub fn replay_stored(
        &self,
        run: &crate::sink::hdf5::recorded::RecordedRun,
        options: ReplayOptions,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError> {
        let g = &self.geometry;
        if run.detector() != g.model.name || run.frame_bytes() != g.frame_bytes() {
            return Err(PipelineError::RecordingMismatch {
                recording: run.master().display().to_string(),
                found: format!(
                    "{} module(s) of {}, {} bytes a frame",
                    run.modules(),
                    run.detector(),
                    run.frame_bytes()
                ),
                expected: format!("{}, {} bytes a frame", g.model.name, g.frame_bytes()),
            });
        }
        progress.input_bytes_total.store(run.total_frames() * g.frame_bytes() as u64, Ordering::Relaxed);
        let can_wait = options.pace == Pace::AsFastAsPossible;
        self.run_stages(|ctx| stored_source(ctx, run, options), false, can_wait, progress)
    }

    /// Replays `capture` through assembly, reduction and the sinks.
    ///
    /// # Errors
    /// Setting up (sinks, threads) or a sink failing during the run. A damaged capture is not an
    /// error: everything before the damage is processed and [`RunSummary::input_error`] says where.
    pub fn replay(
        &self,
        capture: &Capture,
        options: ReplayOptions,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError> {
        progress.input_bytes_total.store(capture.len_bytes() as u64, Ordering::Relaxed);
        let can_wait = options.pace == Pace::AsFastAsPossible;
        self.run_stages(|ctx| replay_source(ctx, capture, options), false, can_wait, progress)
    }
}

fn replay_source(ctx: &SourceContext<'_>, capture: &Capture, options: ReplayOptions) -> SourceOutcome {
    let mut feed = PacketFeed::new(ctx, options, capture.len_bytes() as u64);
    let mut records = capture.records();
    let mut error = None;
    while let Some(record) = records.next() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        };
        match record.udp() {
            Ok(udp) => {
                if !feed.push(udp.dst_port, udp.payload, record.timestamp_ns, records.offset() as u64) {
                    break;
                }
            }
            Err(reason) => feed.skip(reason),
        }
    }
    feed.finish(error, records.offset() as u64)
}

/// Waits, while a file is replayed as fast as possible, until a frame slot is free: a file can wait,
/// so no frame is dropped for want of one.
fn wait_for_slot(ctx: &SourceContext<'_>) {
    let backoff = crossbeam::utils::Backoff::new();
    while ctx.pool.free_slots() == 0 && !ctx.abort.load(Ordering::Relaxed) {
        if backoff.is_completed() {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            backoff.snooze();
        }
    }
}

/// Packets replayed from a file one at a time: paced (or waiting for free slots), assembled,
/// flushed and reported in batches, as every file source does.
struct PacketFeed<'c, 'p> {
    ctx: &'c SourceContext<'p>,
    options: ReplayOptions,
    assembler: crate::frame::Assembler,
    flusher: AssemblyFlusher,
    outcome: SourceOutcome,
    wall_start: Instant,
    first_ts: Option<u64>,
    last_ts: u64,
}

impl<'c, 'p> PacketFeed<'c, 'p> {
    fn new(ctx: &'c SourceContext<'p>, options: ReplayOptions, input_bytes: u64) -> Self {
        PacketFeed {
            ctx,
            options,
            assembler: ctx.assembler(),
            flusher: AssemblyFlusher::new(),
            outcome: SourceOutcome { input_bytes, ..SourceOutcome::default() },
            wall_start: Instant::now(),
            first_ts: None,
            last_ts: 0,
        }
    }

    /// Places one packet received on `port` at `timestamp_ns`, the input read up to byte `read_to`;
    /// false once the run is aborted.
    fn push(&mut self, port: u16, packet: &[u8], timestamp_ns: u64, read_to: u64) -> bool {
        let ctx = self.ctx;
        self.outcome.records += 1;
        self.last_ts = self.last_ts.max(timestamp_ns);
        match self.options.pace {
            Pace::Recorded { speed } if timestamp_ns != 0 => {
                let t0 = *self.first_ts.get_or_insert(timestamp_ns);
                let due = Duration::from_nanos((timestamp_ns.saturating_sub(t0) as f64 / speed) as u64);
                let now = self.wall_start.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            Pace::Recorded { .. } => {}
            Pace::AsFastAsPossible => wait_for_slot(ctx),
        }
        let _ = self.assembler.push(port, packet, timestamp_ns);
        if self.outcome.records.is_multiple_of(BATCH_RECORDS) {
            self.assembler.poll_timeouts(self.last_ts);
            ctx.progress.input_bytes_read.store(read_to, Ordering::Relaxed);
            self.flusher.flush(self.assembler.counters(), self.outcome.records, read_to);
            if ctx.abort.load(Ordering::Relaxed) {
                return false;
            }
        }
        ctx.forward_waiting(&mut self.assembler);
        true
    }

    /// Counts a record that holds no detector datagram, by why.
    fn skip(&mut self, reason: SkipReason) {
        self.outcome.records += 1;
        self.outcome.skipped[SkipReason::ALL.iter().position(|r| *r == reason).unwrap_or(0)] += 1;
    }

    /// Flushes what is left, the input read up to byte `read_to`; the outcome, with the error that
    /// cut the input short if one did.
    fn finish(mut self, input_error: Option<String>, read_to: u64) -> SourceOutcome {
        self.outcome.input_error = input_error;
        self.assembler.flush();
        self.ctx.forward_waiting(&mut self.assembler);
        self.ctx.progress.input_bytes_read.store(read_to, Ordering::Relaxed);
        self.flusher.flush(self.assembler.counters(), self.outcome.records, read_to);
        self.outcome.assembly = *self.assembler.counters();
        self.outcome
    }
}

fn raw_source(ctx: &SourceContext<'_>, run: &RawRun, options: ReplayOptions) -> SourceOutcome {
    let ports = ctx.plan.geometry.udp_ports.clone();
    let mut feed = PacketFeed::new(ctx, options, run.len_bytes() as u64);
    let mut read = 0u64;
    let (_, error) = run.replay(|port, packet, timestamp_ns| {
        read += packet.len() as u64;
        feed.push(ports[port], packet, timestamp_ns, read)
    });
    feed.finish(error.map(|e| e.to_string()), read)
}

#[cfg(feature = "hdf5")]
fn stored_source(
    ctx: &SourceContext<'_>,
    run: &crate::sink::hdf5::recorded::RecordedRun,
    options: ReplayOptions,
) -> SourceOutcome {
    use crate::detector::{HEADER_BYTES, SlsDetectorHeader};
    use zerocopy::IntoBytes;
    let g = &ctx.plan.geometry;
    let mut feed = PacketFeed::new(ctx, options, run.len_bytes());
    let mut packet = vec![0u8; HEADER_BYTES + g.model.payload_bytes];
    // Progress in frame bytes, as the replay's total is counted.
    let mut read = 0u64;
    let (_, error) = run.replay(|frame| {
        for port in 0..g.ports() {
            let module = port / g.model.ports_per_module;
            for n in 0..g.model.packets_per_port() {
                let index = g.packet_index(port, n);
                if frame.packet_mask.get(index / 64).is_none_or(|w| w & (1 << (index % 64)) == 0) {
                    continue;
                }
                let header = SlsDetectorHeader {
                    frame_number: frame.frame_number.into(),
                    packet_number: (n as u32).into(),
                    bunch_id: frame.bunch_id.into(),
                    timestamp: frame.detector_timestamp.into(),
                    mod_id: (module as u16).into(),
                    row: ((port % g.model.ports_per_module) as u16).into(),
                    det_type: g.model.det_type.code(),
                    version: 2,
                    ..Default::default()
                };
                packet[..HEADER_BYTES].copy_from_slice(header.as_bytes());
                packet[HEADER_BYTES..].copy_from_slice(&frame.pixels[g.packet_range(port, n)]);
                if !feed.push(g.udp_ports[port], &packet, frame.receive_time_ns, read) {
                    return false;
                }
            }
        }
        read += frame.pixels.len() as u64;
        true
    });
    feed.finish(error.map(|e| e.to_string()), read)
}
