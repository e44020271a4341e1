//! Replaying a capture through the whole pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::summary::{Progress, RunSummary, add};
use super::{PipelineError, Plan};
use crate::frame::{Assembler, AssemblyCounters, FrameHandle, FramePool};
use crate::ingest::{Capture, SkipReason};
use crate::reduce::Reducer;
use crate::ring::Ring;
use crate::sink::{self, Sink, SinkReport};

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

struct SourceOutcome {
    records: u64,
    skipped: [u64; SkipReason::ALL.len()],
    assembly: AssemblyCounters,
    input_error: Option<String>,
}

struct SinkOutcome {
    accepted: u64,
    rejected: u64,
    accepted_partial: u64,
    reduce_time: Duration,
    reports: Vec<SinkReport>,
}

impl Plan {
    /// Replays `capture` through assembly, reduction and the sinks.
    ///
    /// # Errors
    /// Setting up (pool, sinks, threads) or a sink failing during the run. A damaged capture is not
    /// an error: everything before the damage is processed and [`RunSummary::input_error`] says where.
    pub fn replay(
        &self,
        capture: &Capture,
        options: ReplayOptions,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        let cfg = &self.config;
        let pool = &self.pool;
        let mut sinks: Vec<Box<dyn Sink>> =
            cfg.sinks.iter().map(|s| sink::open(s, &self.geometry)).collect::<Result<_, _>>()?;
        let to_reducers: Ring<FrameHandle> = Ring::new(cfg.reducer.queue_frames);
        let to_sinks: Ring<FrameHandle> = Ring::new(cfg.reducer.queue_frames);
        let abort = AtomicBool::new(false);
        let reducers_running = AtomicUsize::new(cfg.reducer.workers);
        progress.input_bytes_total.store(capture.len_bytes() as u64, Ordering::Relaxed);

        // Threads start downstream first, so a thread that fails to start leaves only threads that
        // can drain: its input ring is closed and every started thread runs out and returns.
        let (source, sink_result) = std::thread::scope(|s| -> Result<_, PipelineError> {
            let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());
            let failed = |name: &str| {
                let name = name.to_string();
                move |source| PipelineError::Thread { name, source }
            };
            let sink_thread = spawn("hg-sink")
                .spawn_scoped(s, || run_sinks(&mut sinks, &to_sinks, pool.capacity(), &abort, progress))
                .map_err(failed("hg-sink"))?;
            let mut workers = Vec::new();
            for w in 0..cfg.reducer.workers {
                let (input, output, running) = (&to_reducers, &to_sinks, &reducers_running);
                let mut reducer = Reducer::new(Arc::clone(&self.reducer));
                let name = format!("hg-reduce-{w}");
                let started = spawn(&name).spawn_scoped(s, move || {
                    while let Some(mut frame) = input.pop_waiting() {
                        let t0 = Instant::now();
                        reducer.reduce(&mut frame);
                        frame.pixels_and_features().1.reduce_ns = t0.elapsed().as_nanos() as u64;
                        // The sink thread drains its ring even after a failure, so this wait ends.
                        let _ = output.push_waiting(frame, || true);
                    }
                    if running.fetch_sub(1, Ordering::AcqRel) == 1 {
                        output.close();
                    }
                });
                match started {
                    Ok(handle) => workers.push(handle),
                    Err(e) => {
                        let never_started = cfg.reducer.workers - w;
                        if reducers_running.fetch_sub(never_started, Ordering::AcqRel) == never_started {
                            to_sinks.close();
                        }
                        to_reducers.close();
                        return Err(failed(&name)(e));
                    }
                }
            }
            let source = spawn("hg-source")
                .spawn_scoped(s, || self.run_source(capture, options, pool, &to_reducers, &abort, progress))
                .map_err(|e| {
                    to_reducers.close();
                    failed("hg-source")(e)
                })?;
            let source = source.join().map_err(|_| PipelineError::Panicked("hg-source".into()))?;
            for w in workers {
                w.join().map_err(|_| PipelineError::Panicked("hg-reduce".into()))?;
            }
            let sink_result = sink_thread.join().map_err(|_| PipelineError::Panicked("hg-sink".into()))?;
            Ok((source, sink_result))
        })?;
        let sinks = sink_result?;
        Ok(RunSummary {
            input_bytes: capture.len_bytes() as u64,
            records: source.records,
            skipped: SkipReason::ALL.iter().copied().zip(source.skipped).collect(),
            assembly: source.assembly,
            frames_accepted: sinks.accepted,
            frames_rejected: sinks.rejected,
            frames_accepted_partial: sinks.accepted_partial,
            reduce_time: sinks.reduce_time,
            sinks: sinks.reports,
            elapsed: started.elapsed(),
            input_error: source.input_error,
        })
    }

    fn run_source(
        &self,
        capture: &Capture,
        options: ReplayOptions,
        pool: &Arc<FramePool>,
        out: &Ring<FrameHandle>,
        abort: &AtomicBool,
        progress: &Progress,
    ) -> SourceOutcome {
        let mut assembler = Assembler::new(self.geometry.clone(), self.config.assembler_config(), Arc::clone(pool));
        let mut outcome = SourceOutcome {
            records: 0,
            skipped: [0; SkipReason::ALL.len()],
            assembly: AssemblyCounters::default(),
            input_error: None,
        };
        let lossless = options.pace == Pace::AsFastAsPossible;
        let wall_start = Instant::now();
        let mut first_ts: Option<u64> = None;
        let mut records = capture.records();
        let mut last_ts = 0;
        let forward = |assembler: &mut Assembler| {
            while let Some(frame) = assembler.pop_ready() {
                let _ = out.push_waiting(frame, || !abort.load(Ordering::Relaxed));
            }
        };
        while let Some(record) = records.next() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    outcome.input_error = Some(e.to_string());
                    break;
                }
            };
            outcome.records += 1;
            last_ts = last_ts.max(record.timestamp_ns);
            if let Pace::Recorded { speed } = options.pace
                && record.timestamp_ns != 0
            {
                let t0 = *first_ts.get_or_insert(record.timestamp_ns);
                let due = Duration::from_nanos(((record.timestamp_ns.saturating_sub(t0)) as f64 / speed) as u64);
                let now = wall_start.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            let udp = match record.udp() {
                Ok(u) => u,
                Err(reason) => {
                    outcome.skipped[SkipReason::ALL.iter().position(|r| *r == reason).unwrap_or(0)] += 1;
                    continue;
                }
            };
            if lossless {
                // A file can wait: hold the next packet until a slot is free rather than drop a frame.
                let backoff = crossbeam::utils::Backoff::new();
                while pool.free_slots() == 0 && !abort.load(Ordering::Relaxed) {
                    if backoff.is_completed() {
                        std::thread::sleep(Duration::from_micros(50));
                    } else {
                        backoff.snooze();
                    }
                }
            }
            let _ = assembler.push(udp.dst_port, udp.payload, record.timestamp_ns);
            if outcome.records.is_multiple_of(BATCH_RECORDS) {
                assembler.poll_timeouts(last_ts);
                progress.input_bytes_read.store(records.offset() as u64, Ordering::Relaxed);
                if abort.load(Ordering::Relaxed) {
                    break;
                }
            }
            forward(&mut assembler);
        }
        assembler.flush();
        forward(&mut assembler);
        out.close();
        progress.input_bytes_read.store(records.offset() as u64, Ordering::Relaxed);
        outcome.assembly = *assembler.counters();
        outcome
    }
}

/// The sink thread: restores the order frames left assembly, then hands each to every sink.
fn run_sinks(
    sinks: &mut [Box<dyn Sink>],
    input: &Ring<FrameHandle>,
    pool_capacity: usize,
    abort: &AtomicBool,
    progress: &Progress,
) -> Result<SinkOutcome, PipelineError> {
    // At most `pool_capacity` frames exist, so their sequence numbers are distinct modulo it.
    let mut pending: Vec<Option<FrameHandle>> = (0..pool_capacity).map(|_| None).collect();
    let mut next = 0u64;
    let mut outcome =
        SinkOutcome { accepted: 0, rejected: 0, accepted_partial: 0, reduce_time: Duration::ZERO, reports: Vec::new() };
    let mut failure: Option<PipelineError> = None;
    let mut deliver = |frame: FrameHandle, outcome: &mut SinkOutcome, failure: &mut Option<PipelineError>| {
        let f = frame.features();
        if f.accepted {
            outcome.accepted += 1;
            outcome.accepted_partial += u64::from(!frame.meta().is_complete());
            add(&progress.frames_accepted, 1);
        } else {
            outcome.rejected += 1;
        }
        outcome.reduce_time += Duration::from_nanos(f.reduce_ns);
        add(&progress.frames_done, 1);
        if failure.is_none() {
            for s in sinks.iter_mut() {
                if let Err(e) = s.write(&frame) {
                    *failure = Some(e.into());
                    abort.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
    };
    while let Some(frame) = input.pop_waiting() {
        let at = (frame.meta().sequence % pool_capacity as u64) as usize;
        pending[at] = Some(frame);
        while let Some(frame) = pending[(next % pool_capacity as u64) as usize].take() {
            deliver(frame, &mut outcome, &mut failure);
            next += 1;
        }
    }
    // Anything left (only if a sequence never came) still goes out, in order.
    let mut rest: Vec<FrameHandle> = pending.into_iter().flatten().collect();
    rest.sort_by_key(|f| f.meta().sequence);
    for frame in rest {
        deliver(frame, &mut outcome, &mut failure);
    }
    for s in sinks.iter_mut() {
        match s.finish() {
            Ok(report) => outcome.reports.push(report),
            Err(e) => failure = failure.or(Some(e.into())),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}
