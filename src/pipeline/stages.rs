//! The stages every run shares, whatever its source: N reducer workers and one sink thread joined to
//! the source by bounded rings, started downstream first and shut down in order. A source is a
//! function run on its own named thread with a [`SourceContext`]; when it returns, its ring is closed
//! and everything it handed on is reduced, ordered and written before the run returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::summary::{Progress, RunSummary, add};
use super::{PipelineError, Plan};
use crate::calib::PedestalTracker;
use crate::cluster::{ClusterNode, NodeReport};
use crate::config::OnFull;
use crate::frame::{Assembler, AssemblyCounters, FrameHandle, FramePool};
use crate::ingest::SkipReason;
use crate::reduce::{Reducer, ReducerPlan, SharedConverter};
use crate::ring::Ring;
use crate::sink::backpressure::Backpressure;
use crate::sink::encode::FrameEncoder;
use crate::sink::lanes::{Offer, SinkLane};
use crate::sink::{self, Payload, SinkReport};
use crate::telemetry::{self, latency::LatencyHistogram};
use crate::trigger::{RateTracker, Trigger};
use metrics::{counter, gauge, histogram};

/// What a source thread has to work with.
pub(super) struct SourceContext<'a> {
    pub plan: &'a Plan,
    pub pool: &'a Arc<FramePool>,
    out: &'a Ring<FrameHandle>,
    /// Sequence number of the next frame handed on. Frames are numbered here, as they enter the
    /// reducers' queue, not when they leave assembly: a frame dropped in between must not leave a
    /// hole that the sink thread, restoring order, would wait on.
    next_sequence: std::cell::Cell<u64>,
    /// Set when a later stage failed: the source should stop.
    pub abort: &'a AtomicBool,
    pub progress: &'a Progress,
}

impl SourceContext<'_> {
    pub fn assembler(&self) -> Assembler {
        Assembler::new(self.plan.geometry.clone(), self.plan.config.assembler_config(), Arc::clone(self.pool))
    }

    /// Hands on every ready frame, waiting while the ring is full (a file can wait).
    pub fn forward_waiting(&self, assembler: &mut Assembler) {
        while let Some(mut frame) = assembler.pop_ready() {
            frame.meta_mut().sequence = self.next_sequence.get();
            if self.out.push_waiting(frame, || !self.abort.load(Ordering::Relaxed)).is_ok() {
                self.next_sequence.set(self.next_sequence.get() + 1);
            }
        }
    }

    /// Publishes how many frames were dropped so far (for progress and `/status`).
    pub fn report_drops(&self, assembler: &Assembler, dropped_queue_full: u64) {
        let c = assembler.counters();
        let dropped = c.frames_no_slot + c.frames_partial_dropped + dropped_queue_full;
        self.progress.frames_dropped.store(dropped, Ordering::Relaxed);
    }

    /// Hands on every ready frame without waiting; a frame that finds the ring full is dropped (its
    /// slot goes back to the pool) and counted. Returns how many were dropped.
    pub fn forward_or_drop(&self, assembler: &mut Assembler) -> u64 {
        let mut dropped = 0;
        while let Some(mut frame) = assembler.pop_ready() {
            frame.meta_mut().sequence = self.next_sequence.get();
            match self.out.try_push(frame) {
                Ok(()) => self.next_sequence.set(self.next_sequence.get() + 1),
                Err(_) => dropped += 1,
            }
        }
        dropped
    }
}

/// What a source reports when it ends.
#[derive(Default)]
pub(super) struct SourceOutcome {
    pub records: u64,
    pub input_bytes: u64,
    pub skipped: [u64; SkipReason::ALL.len()],
    pub assembly: AssemblyCounters,
    /// Frames assembled but dropped because the reducers' ring was full.
    pub frames_dropped_queue_full: u64,
    pub input_error: Option<String>,
    /// CPU time of the source thread (receiving, assembling).
    pub cpu_seconds: f64,
}

struct SinkOutcome {
    accepted: u64,
    rejected: u64,
    accepted_partial: u64,
    reduce_time: Duration,
    audited: u64,
    trigger_failures: u64,
    spots_refined: u64,
    peak_batches_failed: u64,
    reports: Vec<SinkReport>,
    latency: LatencyHistogram,
    /// The lowest accept-rate ceiling storage imposed, if it did.
    storage_ceiling_min: Option<f64>,
    cluster: Option<NodeReport>,
}

/// What the sink thread keeps an eye on besides its own work: queue and pool levels for the metrics.
struct Watch<'a> {
    to_reducers: &'a Ring<FrameHandle>,
    to_sinks: &'a Ring<FrameHandle>,
    pool: &'a Arc<FramePool>,
    live: bool,
    /// Whether the ordering thread waits for a sink that is behind (rather than drop the frame there).
    sinks_wait: bool,
    /// Pedestal measurement and tracking, when the run does them, with the converter to update.
    pedestal: Option<(PedestalTracker, &'a SharedConverter, usize)>,
    /// The trigger's rate control, and the tracker that holds a target rate and samples the audit stream.
    rate: Option<(&'a Trigger, RateTracker)>,
    /// Storage's hold on the trigger, when full queues raise the cut.
    backpressure: Option<Backpressure>,
    /// Compresses audit frames (chosen here, after the reducers) for sinks that store chunks.
    encoder: Option<(FrameEncoder, &'a ReducerPlan)>,
    /// This node's link to the cluster, when the run is one node of several.
    cluster: Option<ClusterNode>,
}

/// Tracked frames between two publications of a new converter.
const PUBLISH_PEDESTAL_EVERY: u64 = 10;

impl Watch<'_> {
    fn publish(&self) {
        for (name, ring) in [("reduce", self.to_reducers), ("sink", self.to_sinks)] {
            counter!(telemetry::QUEUE_PUSHED, "queue" => name).absolute(ring.pushed());
            counter!(telemetry::QUEUE_POPPED, "queue" => name).absolute(ring.popped());
        }
        gauge!(telemetry::POOL_FREE_SLOTS).set(self.pool.free_slots() as f64);
        if let Some((trigger, _)) = &self.rate {
            gauge!(telemetry::TRIGGER_THRESHOLD).set(f64::from(trigger.rate().threshold()));
            gauge!(telemetry::TRIGGER_TARGET_RATE).set(trigger.rate().target_rate().unwrap_or(0.0));
        }
    }
}

impl Plan {
    /// Runs `source` on its own thread, with the reducers and sinks behind it.
    /// With `live`, frame times are on [`telemetry::now_ns`]'s clock and packet-to-verdict latency is
    /// measured; `can_wait` says the source loses nothing by waiting (a file read as fast as possible).
    pub(super) fn run_stages<F>(
        &self,
        source: F,
        live: bool,
        can_wait: bool,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError>
    where
        F: FnOnce(&SourceContext<'_>) -> SourceOutcome + Send,
    {
        let started = Instant::now();
        let cfg = &self.config;
        let pool = &self.pool;
        let mut lanes = Vec::new();
        for section in &cfg.sinks {
            let opened = sink::open(section, cfg, &self.geometry)?;
            let mask_words = self.geometry.packets_per_frame().div_ceil(64);
            let spots = cfg.trigger.spots.max_spots_recorded;
            lanes.push(SinkLane::start(opened, section.kind_name(), cfg.storage.queue_frames, spots, mask_words)?);
        }
        // Connected before any thread starts: a cluster that cannot be reached fails the run at once.
        let cluster = match (&cfg.cluster.node, cfg.cluster.enabled()) {
            (Some(node), true) => Some(ClusterNode::start(&cfg.cluster, node, pool.capacity())?),
            _ => None,
        };
        let to_reducers: Ring<FrameHandle> = Ring::new(cfg.reducer.queue_frames);
        let to_sinks: Ring<FrameHandle> = Ring::new(cfg.reducer.queue_frames);
        let abort = AtomicBool::new(false);
        let reducers_running = AtomicUsize::new(cfg.reducer.workers);

        // Threads start downstream first, so a thread that fails to start leaves only threads that
        // can drain: its input ring is closed and every started thread runs out and returns.
        let (outcome, sink_result) = std::thread::scope(|s| -> Result<_, PipelineError> {
            let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());
            let failed = |name: &str| {
                let name = name.to_string();
                move |source| PipelineError::Thread { name, source }
            };
            let sink_thread = spawn("hg-sink")
                .spawn_scoped(s, || {
                    let pedestal = self
                        .reducer
                        .pedestal_tracker(&self.config)
                        .zip(self.reducer.converter())
                        .map(|(t, c)| (t, c, self.config.calibration.pedestal_track_every));
                    let trigger = self.reducer.trigger();
                    let r = &self.config.trigger.rate;
                    let rate =
                        trigger.has_cut().then(|| (trigger, RateTracker::new(r.window_frames, r.update_every_frames)));
                    let backpressure = (self.config.storage.on_full == OnFull::RaiseThreshold && rate.is_some())
                        .then(|| Backpressure::new(r.update_every_frames.max(10)));
                    let encoder = self.reducer.encoder().map(|e| (e, self.reducer.as_ref()));
                    let mut watch = Watch {
                        to_reducers: &to_reducers,
                        to_sinks: &to_sinks,
                        pool,
                        live,
                        sinks_wait: match self.config.storage.on_full {
                            OnFull::Wait => true,
                            OnFull::Auto => can_wait,
                            OnFull::DropNewest | OnFull::RaiseThreshold => false,
                        },
                        pedestal,
                        rate,
                        backpressure,
                        encoder,
                        cluster,
                    };
                    run_sinks(lanes, &to_sinks, &mut watch, &abort, progress)
                })
                .map_err(failed("hg-sink"))?;
            let mut workers = Vec::new();
            for w in 0..cfg.reducer.workers {
                let (input, output, running) = (&to_reducers, &to_sinks, &reducers_running);
                let mut reducer = match Reducer::new(Arc::clone(&self.reducer)) {
                    Ok(r) => r,
                    Err(e) => {
                        let never_started = cfg.reducer.workers - w;
                        if reducers_running.fetch_sub(never_started, Ordering::AcqRel) == never_started {
                            to_sinks.close();
                        }
                        to_reducers.close();
                        return Err(PipelineError::from(e));
                    }
                };
                let cpu = cfg.reducer.cpus.get(w).copied();
                let name = format!("hg-reduce-{w}");
                let started = spawn(&name).spawn_scoped(s, move || {
                    pin_to(cpu);
                    // What is already queued behind the frame waited for is reduced with it, up
                    // to the trigger's batch: no frame waits for a batch to fill.
                    let most = reducer.batch_frames();
                    let mut batch = Vec::with_capacity(most);
                    while let Some(frame) = input.pop_waiting() {
                        batch.push(frame);
                        while batch.len() < most
                            && let Some(frame) = input.try_pop()
                        {
                            batch.push(frame);
                        }
                        // The sink thread drains its ring even after a failure, so this wait ends.
                        reducer.reduce_batch(&mut batch, |frame| {
                            let _ = output.push_waiting(frame, || true);
                        });
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
            let (to_reducers, abort) = (&to_reducers, &abort);
            let source = spawn("hg-source")
                .spawn_scoped(s, move || {
                    let context = SourceContext {
                        plan: self,
                        pool,
                        out: to_reducers,
                        next_sequence: std::cell::Cell::new(0),
                        abort,
                        progress,
                    };
                    let cpu0 = telemetry::thread_cpu_seconds();
                    let mut outcome = source(&context);
                    outcome.cpu_seconds = telemetry::thread_cpu_seconds() - cpu0;
                    to_reducers.close();
                    outcome
                })
                .map_err(|e| {
                    to_reducers.close();
                    failed("hg-source")(e)
                })?;
            let outcome = source.join().map_err(|_| PipelineError::Panicked("hg-source".into()))?;
            for w in workers {
                w.join().map_err(|_| PipelineError::Panicked("hg-reduce".into()))?;
            }
            let sink_result = sink_thread.join().map_err(|_| PipelineError::Panicked("hg-sink".into()))?;
            Ok((outcome, sink_result))
        })?;
        let sinks = sink_result?;
        Ok(RunSummary {
            input_bytes: outcome.input_bytes,
            records: outcome.records,
            skipped: SkipReason::ALL.iter().copied().zip(outcome.skipped).collect(),
            assembly: outcome.assembly,
            frames_dropped_queue_full: outcome.frames_dropped_queue_full,
            frames_accepted: sinks.accepted,
            frames_rejected: sinks.rejected,
            frames_accepted_partial: sinks.accepted_partial,
            frames_audited: sinks.audited,
            trigger_failures: sinks.trigger_failures,
            reduce_time: sinks.reduce_time,
            spots_refined: sinks.spots_refined,
            peak_batches_failed: sinks.peak_batches_failed,
            frames_dropped_storage: sinks.reports.iter().map(|r| r.frames_dropped_queue_full).sum(),
            storage_ceiling_min: sinks.storage_ceiling_min,
            fpga: self.reducer.trigger().fpga_stats(),
            sinks: sinks.reports,
            elapsed: started.elapsed(),
            input_error: outcome.input_error,
            source_cpu_seconds: outcome.cpu_seconds,
            cluster: sinks.cluster,
            latency_p50_us: sinks.latency.quantile_us(0.5),
            latency_p99_us: sinks.latency.quantile_us(0.99),
        })
    }
}

/// Pins the calling thread to `cpu` when one is configured; a CPU that does not exist is ignored.
pub(super) fn pin_to(cpu: Option<usize>) {
    if let Some(id) = cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

/// How often the sink thread publishes queue and pool levels.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The ordering thread: restores the order frames left assembly, follows the rate and the pedestal,
/// then hands each frame to every sink's lane (in a cluster, once the builder's verdict is in).
fn run_sinks(
    mut lanes: Vec<SinkLane>,
    input: &Ring<FrameHandle>,
    watch: &mut Watch<'_>,
    abort: &AtomicBool,
    progress: &Progress,
) -> Result<SinkOutcome, PipelineError> {
    telemetry::describe();
    let pool_capacity = watch.pool.capacity();
    // At most `pool_capacity` frames exist, so their sequence numbers are distinct modulo it.
    let mut pending: Vec<Option<FrameHandle>> = (0..pool_capacity).map(|_| None).collect();
    let mut next = 0u64;
    let mut outcome = SinkOutcome {
        accepted: 0,
        rejected: 0,
        accepted_partial: 0,
        reduce_time: Duration::ZERO,
        audited: 0,
        trigger_failures: 0,
        spots_refined: 0,
        peak_batches_failed: 0,
        reports: Vec::new(),
        latency: LatencyHistogram::default(),
        storage_ceiling_min: None,
        cluster: None,
    };
    let (accepted, rejected) = (counter!(telemetry::FRAMES_ACCEPTED), counter!(telemetry::FRAMES_REJECTED));
    let (to_verdict, reduce_time) = (histogram!(telemetry::PACKET_TO_VERDICT), histogram!(telemetry::REDUCE_TIME));
    let (refined, peak_failures) = (counter!(telemetry::SPOTS_REFINED), counter!(telemetry::PEAK_MODEL_FAILURES));
    let mut failure: Option<PipelineError> = None;
    let (live, sinks_wait) = (watch.live, watch.sinks_wait);
    let (mut tracked, mut pedestal, mut rate) = (0u64, watch.pedestal.take(), watch.rate.take());
    let (mut backpressure, mut encoder) = (watch.backpressure.take(), watch.encoder.take());
    let wants_chunks = lanes.iter().any(|l| l.interest().payload == Payload::Chunk);
    let ceiling_gauge = gauge!(telemetry::STORAGE_RATE_CEILING);
    let backlog_gauges: Vec<_> = lanes.iter().map(|l| gauge!(telemetry::SINK_BACKLOG, "sink" => l.name())).collect();
    let audit_counter = counter!(telemetry::FRAMES_AUDIT);
    let trigger_failures = counter!(telemetry::TRIGGER_FAILURES);
    let mut deliver = |mut frame: FrameHandle, outcome: &mut SinkOutcome, failure: &mut Option<PipelineError>| {
        if let Some((trigger, tracker)) = rate.as_mut() {
            // Frames arrive in order: the target rate follows the run as it was judged.
            let (sequence, f) = (frame.meta().sequence, frame.features());
            if !f.dark {
                let score = trigger.rate().effective_score(f.score, sequence);
                if tracker.observe(trigger.rate(), score, f.accepted) {
                    frame.pixels_and_features().1.audit = true;
                    outcome.audited += 1;
                    audit_counter.increment(1);
                }
            }
        }
        let f = frame.features();
        if let Some((tracker, converter, every)) = pedestal.as_mut() {
            // Frames arrive here in order: dark frames first, then the run.
            if f.dark {
                tracker.add_dark(frame.pixels_u16());
                if tracker.has_pedestal() {
                    converter.publish(converter.base.with_g0_pedestal(tracker.pedestal()));
                }
            } else if !f.accepted && f.spots_found == 0 && frame.meta().is_complete() {
                tracked += 1;
                if tracked.is_multiple_of(*every as u64) {
                    tracker.track(frame.pixels_u16());
                    if (tracked / *every as u64).is_multiple_of(PUBLISH_PEDESTAL_EVERY) {
                        converter.publish(converter.base.with_g0_pedestal(tracker.pedestal()));
                    }
                }
            }
        }
        if f.accepted {
            outcome.accepted += 1;
            outcome.accepted_partial += u64::from(!frame.meta().is_complete());
            add(&progress.frames_accepted, 1);
            accepted.increment(1);
        } else {
            outcome.rejected += 1;
            rejected.increment(1);
        }
        if f.trigger_failed {
            outcome.trigger_failures += 1;
            trigger_failures.increment(1);
        }
        if f.spots_refined > 0 || f.peak_batches_failed > 0 {
            refined.increment(u64::from(f.spots_refined));
            peak_failures.increment(u64::from(f.peak_batches_failed));
            outcome.spots_refined += u64::from(f.spots_refined);
            outcome.peak_batches_failed += u64::from(f.peak_batches_failed);
        }
        outcome.reduce_time += Duration::from_nanos(f.reduce_ns);
        reduce_time.record(f.reduce_ns as f64 * 1e-9);
        add(&progress.frames_done, 1);
        // Audit frames, and in a cluster frames the builder kept that this node's trigger did not,
        // are compressed here.
        if wants_chunks
            && f.is_kept()
            && f.chunk.is_empty()
            && let Some((encoder, plan)) = encoder.as_mut()
        {
            let converter = plan.current_converter();
            let (raw, features) = frame.pixels_and_features();
            encoder.encode(plan, converter.as_deref(), raw, &mut features.chunk);
        }
        let (mut refused, mut fullest) = (false, 0.0f64);
        if failure.is_none() {
            for (lane, backlog) in lanes.iter_mut().zip(&backlog_gauges) {
                refused |= lane.offer_or_wait(&frame, sinks_wait) == Offer::Full;
                backlog.set(lane.backlog() as f64);
                fullest = fullest.max(lane.backlog() as f64 / lane.depth() as f64);
                if lane.failed() {
                    // The lane reports its error when it finishes; the source stops now.
                    *failure = Some(PipelineError::SinkFailed(lane.name()));
                    abort.store(true, Ordering::Relaxed);
                }
            }
        }
        let f = frame.features();
        if let (Some(bp), Some((trigger, tracker))) = (backpressure.as_mut(), rate.as_mut())
            && !f.dark
            && let Some(ceiling) = bp.observe(f.accepted, refused, fullest)
        {
            tracker.set_ceiling(trigger.rate(), ceiling);
            ceiling_gauge.set(ceiling.unwrap_or(0.0));
            if let Some(c) = ceiling {
                outcome.storage_ceiling_min = Some(outcome.storage_ceiling_min.map_or(c, |m: f64| m.min(c)));
            }
        }
        if live {
            // The verdict is written: from the frame's first packet to here is what an operator waits.
            let ns = telemetry::now_ns().saturating_sub(frame.meta().first_packet_ns);
            outcome.latency.record_ns(ns);
            to_verdict.record(ns as f64 * 1e-9);
        }
    };
    let mut published = Instant::now();
    let mut cluster = watch.cluster.take();
    loop {
        let frame = match cluster.as_mut() {
            Some(node) => loop {
                if let Some(frame) = input.try_pop() {
                    break Some(frame);
                }
                if input.is_drained() {
                    break input.try_pop();
                }
                // Nothing to order: wait a little for verdicts and hand on what they free.
                node.wait(Duration::from_micros(200), |f| deliver(f, &mut outcome, &mut failure));
            },
            None => input.pop_waiting(),
        };
        let Some(frame) = frame else { break };
        let at = (frame.meta().sequence % pool_capacity as u64) as usize;
        pending[at] = Some(frame);
        while let Some(frame) = pending[(next % pool_capacity as u64) as usize].take() {
            match cluster.as_mut() {
                Some(node) => node.judge(frame, |f| deliver(f, &mut outcome, &mut failure)),
                None => deliver(frame, &mut outcome, &mut failure),
            }
            next += 1;
        }
        if published.elapsed() >= PUBLISH_EVERY {
            watch.publish();
            published = Instant::now();
        }
    }
    // Anything left (only if a sequence never came) still goes out, in order.
    let mut rest: Vec<FrameHandle> = pending.into_iter().flatten().collect();
    rest.sort_by_key(|f| f.meta().sequence);
    for frame in rest {
        match cluster.as_mut() {
            Some(node) => node.judge(frame, |f| deliver(f, &mut outcome, &mut failure)),
            None => deliver(frame, &mut outcome, &mut failure),
        }
    }
    if let Some(node) = cluster {
        let (report, error) = node.finish(next, |f| deliver(f, &mut outcome, &mut failure));
        outcome.cluster = Some(report);
        if let Some(e) = error {
            failure = failure.or(Some(e.into()));
        }
    }
    for lane in lanes.drain(..) {
        match lane.finish() {
            Ok(report) => outcome.reports.push(report),
            // The sink's own error says more than "a sink failed".
            Err(e) => {
                failure = match failure {
                    None | Some(PipelineError::SinkFailed(_)) => Some(e.into()),
                    other => other,
                }
            }
        }
    }
    watch.publish();
    match failure {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}
