//! The stages every run shares, whatever its source: N reducer workers and one sink thread joined to
//! the source by bounded rings, started downstream first and shut down in order. A source is a
//! function run on its own named thread with a [`SourceContext`]; when it returns, its ring is closed
//! and everything it handed on is reduced, ordered and written before the run returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use super::monitor::MonitorFeed;
use super::ordering::{Delivery, DeliverySetup, LateEncoder, Levels, PedestalFollower, RateFollower, run_ordering};
use super::summary::{Progress, RunSummary};
use super::{PipelineError, Plan};
use crate::config::OnFull;
use crate::frame::{Assembler, AssemblyCounters, FrameHandle, FramePool};
use crate::ingest::SkipReason;
use crate::reduce::Reducer;
use crate::ring::Ring;
use crate::scaleout::cluster::ClusterNode;
use crate::sink::backpressure::Backpressure;
use crate::sink::lanes::SinkLane;
use crate::telemetry;
use crate::trigger::RateTracker;

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
        let experiment = cfg.experiment(&self.geometry);
        for section in &cfg.sinks {
            let opened = section.config().open(&experiment)?;
            let mask_words = self.geometry.packets_per_frame().div_ceil(64);
            let spots = cfg.features.max_spots_recorded;
            lanes.push(SinkLane::start(opened, section.kind_name(), cfg.storage.queue_frames, spots, mask_words)?);
        }
        // Made before any thread starts: an encoder that cannot be had fails the run now.
        let late_encoder = self.reducer.encoder().transpose().map_err(crate::reduce::PlanError::from)?;
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
                    let plan = &self.reducer;
                    let trigger = plan.trigger();
                    let r = &self.config.trigger.rate;
                    let backpressure = (self.config.storage.on_full == OnFull::RaiseThreshold)
                        .then(|| Backpressure::new(r.update_every_frames.max(10)));
                    let rate = trigger.has_cut().then(|| RateFollower {
                        trigger,
                        tracker: RateTracker::new(r.window_frames, r.update_every_frames),
                        fallback_tracker: trigger
                            .fallback_rate()
                            .map(|_| RateTracker::new(r.window_frames, r.update_every_frames)),
                        backpressure,
                        familiar: trigger.familiarity_watch(),
                    });
                    let pedestal =
                        plan.pedestal_tracker().zip(plan.photons().converter()).map(|(tracker, converter)| {
                            PedestalFollower::new(
                                tracker,
                                converter,
                                self.config.calibration.pedestal_track_every as u64,
                            )
                        });
                    let delivery = Delivery::new(DeliverySetup {
                        lanes,
                        sinks_wait: self.config.storage.sinks_wait(can_wait),
                        live,
                        pedestal,
                        rate,
                        encoder: late_encoder.map(|encoder| LateEncoder {
                            encoder,
                            photons: plan.photons(),
                            packets_present: Vec::with_capacity(self.geometry.packets_per_frame().div_ceil(64)),
                        }),
                        monitor: self.monitor.as_ref().map(|m| MonitorFeed::new(std::sync::Arc::clone(m))),
                        abort: &abort,
                        progress,
                    });
                    let levels = Levels { to_reducers: &to_reducers, to_sinks: &to_sinks, pool, trigger };
                    run_ordering(&to_sinks, delivery, cluster, &levels)
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
            fallback_frames: sinks.fallback_frames,
            reduce_time: sinks.reduce_time,
            spots_localised: sinks.spots_localised,
            localiser_batches_failed: sinks.localiser_batches_failed,
            spots_found: sinks.spots_found,
            frames_spots_capped: sinks.frames_spots_capped,
            persistent_ignored_max: sinks.persistent_ignored_max,
            max_spots_recorded: self.config.features.max_spots_recorded,
            frames_dropped_storage: sinks.reports.iter().map(|r| r.frames_dropped_queue_full).sum(),
            storage_ceiling_min: sinks.storage_ceiling_min,
            rate_not_held: sinks.rate_not_held,
            unfamiliar: sinks.unfamiliar,
            fpga: self.reducer.trigger().backend_as::<crate::trigger::fpga::backend::FpgaTrigger>().map(|f| f.stats()),
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

/// Places a receiving thread: pinned to `cpu`, and at real-time `priority` when it is above 0. A
/// priority the system refuses (no `CAP_SYS_NICE`) is said once a process, and the thread receives
/// at normal priority.
pub(super) fn place_receiver(cpu: Option<usize>, priority: u8) {
    pin_to(cpu);
    if priority == 0 {
        return;
    }
    if let Err(e) = set_realtime_priority(priority) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "hitgate: warning: udp.realtime_priority = {priority} refused ({e}); receiving at normal priority \
                 (it needs CAP_SYS_NICE)"
            );
        });
    }
}

/// Puts the calling thread under `SCHED_FIFO` at `priority`.
fn set_realtime_priority(priority: u8) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: i32::from(priority) };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call, which only reads
    // it; pid 0 names the calling thread, so no other thread's scheduling is touched.
    let status = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if status == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
