//! The ordering thread. Frames come back from the reducers out of order; it restores the order they
//! left assembly ([`ReorderBuffer`]), then, frame by frame and in that order ([`Delivery`]): follows
//! the trigger's target rate and samples the audit stream, measures the pedestal on the run's dark
//! frames and follows it on frames without signal, compresses the kept frames the reducers did not,
//! and hands the frame to every sink's lane — in a cluster, once the builder's verdict is in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use super::PipelineError;
use super::monitor::MonitorFeed;
use super::summary::{Progress, add};
use crate::calib::{PedestalTracker, Photons, SharedConverter};
use crate::codec::FrameEncoder;
use crate::frame::{FrameHandle, FramePool};
use crate::ring::Ring;
use crate::scaleout::cluster::{ClusterNode, NodeReport};
use crate::sink::backpressure::Backpressure;
use crate::sink::lanes::{Offer, SinkLane};
use crate::sink::{Payload, SinkReport};
use crate::telemetry::{self, latency::LatencyHistogram};
use crate::trigger::{RateTracker, Trigger};

/// Frames handed back out of order, released in the order of their sequence numbers.
pub(super) struct ReorderBuffer {
    /// At most `slots` frames exist (the pool's), so their sequence numbers are distinct modulo it.
    pending: Vec<Option<FrameHandle>>,
    next: u64,
}

impl ReorderBuffer {
    pub fn new(slots: usize) -> ReorderBuffer {
        ReorderBuffer { pending: (0..slots.max(1)).map(|_| None).collect(), next: 0 }
    }

    fn place(&self, sequence: u64) -> usize {
        (sequence % self.pending.len() as u64) as usize
    }

    pub fn insert(&mut self, frame: FrameHandle) {
        let at = self.place(frame.meta().sequence);
        self.pending[at] = Some(frame);
    }

    /// The next frame in order, once it is in.
    pub fn pop_next(&mut self) -> Option<FrameHandle> {
        let at = self.place(self.next);
        let frame = self.pending[at].take()?;
        self.next += 1;
        Some(frame)
    }

    /// Frames released so far.
    pub fn released(&self) -> u64 {
        self.next
    }

    /// What is left (only if a sequence number never came), in order.
    pub fn into_rest(self) -> Vec<FrameHandle> {
        let mut rest: Vec<FrameHandle> = self.pending.into_iter().flatten().collect();
        rest.sort_by_key(|f| f.meta().sequence);
        rest
    }
}

/// The pedestal measured on the run's dark frames, then followed on frames without signal, and the
/// converter every later frame is calibrated with.
pub(super) struct PedestalFollower<'a> {
    pub tracker: PedestalTracker,
    pub converter: &'a SharedConverter,
    /// Track on every n-th frame without signal.
    pub track_every: u64,
    tracked: u64,
}

/// Tracked frames between two publications of a new converter.
const PUBLISH_PEDESTAL_EVERY: u64 = 10;

impl<'a> PedestalFollower<'a> {
    pub fn new(tracker: PedestalTracker, converter: &'a SharedConverter, track_every: u64) -> Self {
        PedestalFollower { tracker, converter, track_every: track_every.max(1), tracked: 0 }
    }

    /// Takes a frame in order: dark frames first, then the run.
    fn observe(&mut self, frame: &FrameHandle) {
        let f = frame.features();
        if f.dark {
            self.tracker.add_dark(frame.pixels_u16());
            if self.tracker.has_pedestal() {
                self.converter.publish(self.converter.base.with_g0_pedestal(self.tracker.pedestal()));
            }
        } else if !f.accepted && f.spots_found == 0 && frame.meta().is_complete() {
            self.tracked += 1;
            if self.tracked.is_multiple_of(self.track_every) {
                self.tracker.track(frame.pixels_u16());
                if (self.tracked / self.track_every).is_multiple_of(PUBLISH_PEDESTAL_EVERY) {
                    self.converter.publish(self.converter.base.with_g0_pedestal(self.tracker.pedestal()));
                }
            }
        }
    }
}

/// The trigger's rate control as the ordering thread runs it: the tracker that holds a target rate
/// and samples the audit stream, and, when full sink queues raise the cut, storage's hold on it.
pub(super) struct RateFollower<'a> {
    pub trigger: &'a Trigger,
    pub tracker: RateTracker,
    /// The rate of the spots trigger a learned one falls back to on unfamiliar inputs, when it can.
    pub fallback_tracker: Option<RateTracker>,
    pub backpressure: Option<Backpressure>,
    /// Whether the frames' inputs look like the model's training inputs, when it knows those.
    pub familiar: Option<crate::trigger::FamiliarityWatch>,
}

/// Compresses the kept frames the reducers left as they were (audit frames, chosen here; in a
/// cluster, frames the builder kept that this node's trigger did not).
pub(super) struct LateEncoder<'a> {
    pub encoder: FrameEncoder,
    pub photons: &'a Photons,
    /// A partial frame's packet mask, copied before its pixels are borrowed.
    pub packets_present: Vec<u64>,
}

/// What the ordering thread counted over a run.
pub(super) struct OrderingOutcome {
    pub accepted: u64,
    pub rejected: u64,
    pub accepted_partial: u64,
    pub reduce_time: Duration,
    pub audited: u64,
    pub trigger_failures: u64,
    /// Frames the spots trigger judged while the learned one's inputs were unfamiliar.
    pub fallback_frames: u64,
    pub spots_localised: u64,
    pub localiser_batches_failed: u64,
    /// Spots found, and frames that found more than they could list.
    pub spots_found: u64,
    pub frames_spots_capped: u64,
    /// The most blocks one frame's summary left out as standing out in most frames.
    pub persistent_ignored_max: u32,
    pub reports: Vec<SinkReport>,
    pub latency: LatencyHistogram,
    /// The lowest accept-rate ceiling storage imposed, if it did.
    pub storage_ceiling_min: Option<f64>,
    /// The target rate as it was measured when it could not be held, if ever (the last time).
    pub rate_not_held: Option<crate::trigger::RateHeld>,
    /// The highest share of unfamiliar inputs while the alarm was raised, if it was.
    pub unfamiliar: Option<crate::trigger::Familiarity>,
    pub cluster: Option<NodeReport>,
}

/// The metrics the ordering thread updates per frame, looked up once.
struct Meters {
    accepted: Counter,
    rejected: Counter,
    to_verdict: Histogram,
    reduce_time: Histogram,
    localised: Counter,
    localiser_failures: Counter,
    audit: Counter,
    trigger_failures: Counter,
    ceiling: Gauge,
    rate_held: Gauge,
    unfamiliar: Gauge,
    fallback: Gauge,
    persistent: Gauge,
    backlogs: Vec<Gauge>,
}

/// Everything that happens to a frame once it is next in order.
pub(super) struct Delivery<'a> {
    lanes: Vec<SinkLane>,
    /// Wait for a sink that is behind, rather than drop the frame there.
    sinks_wait: bool,
    /// Frame times are on `telemetry::now_ns`'s clock: packet-to-verdict latency is measured.
    live: bool,
    pedestal: Option<PedestalFollower<'a>>,
    rate: Option<RateFollower<'a>>,
    encoder: Option<LateEncoder<'a>>,
    wants_chunks: bool,
    meters: Meters,
    monitor: Option<MonitorFeed>,
    pub outcome: OrderingOutcome,
    /// The first failure; later frames are counted, not written.
    pub failure: Option<PipelineError>,
    abort: &'a AtomicBool,
    progress: &'a Progress,
}

/// How the ordering thread is set up.
pub(super) struct DeliverySetup<'a> {
    pub lanes: Vec<SinkLane>,
    pub sinks_wait: bool,
    pub live: bool,
    pub pedestal: Option<PedestalFollower<'a>>,
    pub rate: Option<RateFollower<'a>>,
    pub encoder: Option<LateEncoder<'a>>,
    /// The live monitor's feed, when the run has one.
    pub monitor: Option<MonitorFeed>,
    /// Set on a failure, so the source stops.
    pub abort: &'a AtomicBool,
    pub progress: &'a Progress,
}

impl<'a> Delivery<'a> {
    pub fn new(setup: DeliverySetup<'a>) -> Delivery<'a> {
        telemetry::describe();
        let DeliverySetup { lanes, sinks_wait, live, pedestal, rate, encoder, monitor, abort, progress } = setup;
        let meters = Meters {
            accepted: counter!(telemetry::FRAMES_ACCEPTED),
            rejected: counter!(telemetry::FRAMES_REJECTED),
            to_verdict: histogram!(telemetry::PACKET_TO_VERDICT),
            reduce_time: histogram!(telemetry::REDUCE_TIME),
            localised: counter!(telemetry::LOCALISER_SPOTS),
            localiser_failures: counter!(telemetry::LOCALISER_FAILED_BATCHES),
            audit: counter!(telemetry::FRAMES_AUDIT),
            trigger_failures: counter!(telemetry::TRIGGER_FAILURES),
            ceiling: gauge!(telemetry::STORAGE_RATE_CEILING),
            rate_held: gauge!(telemetry::TRIGGER_RATE_HELD),
            unfamiliar: gauge!(telemetry::TRIGGER_UNFAMILIAR_SHARE),
            fallback: gauge!(telemetry::TRIGGER_FALLBACK),
            persistent: gauge!(telemetry::SUMMARY_PERSISTENT_BLOCKS),
            backlogs: lanes.iter().map(|l| gauge!(telemetry::SINK_BACKLOG, "sink" => l.name())).collect(),
        };
        Delivery {
            wants_chunks: lanes.iter().any(|l| l.interest().payload == Payload::Chunk),
            lanes,
            sinks_wait,
            live,
            pedestal,
            rate,
            encoder,
            meters,
            monitor,
            outcome: OrderingOutcome {
                accepted: 0,
                rejected: 0,
                accepted_partial: 0,
                reduce_time: Duration::ZERO,
                audited: 0,
                trigger_failures: 0,
                fallback_frames: 0,
                spots_localised: 0,
                localiser_batches_failed: 0,
                spots_found: 0,
                frames_spots_capped: 0,
                persistent_ignored_max: 0,
                reports: Vec::new(),
                latency: LatencyHistogram::default(),
                storage_ceiling_min: None,
                rate_not_held: None,
                unfamiliar: None,
                cluster: None,
            },
            failure: None,
            abort,
            progress,
        }
    }

    /// Takes the next frame in order through everything that follows its verdict.
    pub fn deliver(&mut self, mut frame: FrameHandle) {
        if let Some(rate) = self.rate.as_mut() {
            // Frames arrive in order: the target rate follows the run as it was judged.
            let (sequence, f) = (frame.meta().sequence, frame.features());
            if !f.dark
                && !f.summary.is_empty()
                && let Some(watch) = rate.familiar.as_mut()
            {
                watch.observe(&f.summary);
                let state = watch.state();
                rate.trigger.set_familiarity(state, watch.alarmed());
                self.meters.unfamiliar.set(state.share);
                self.meters.fallback.set(f64::from(u8::from(rate.trigger.falling_back())));
                if let Some(changed) = watch.changed() {
                    let fallback = match rate.trigger.fallback_rate() {
                        Some(_) if watch.alarmed() => "; the spots trigger judges until they are familiar again",
                        Some(_) => "; the model judges again",
                        None => "",
                    };
                    eprintln!("hitgate: trigger: {changed}{fallback}");
                }
                if watch.alarmed() && self.outcome.unfamiliar.is_none_or(|u| u.share < state.share) {
                    self.outcome.unfamiliar = Some(state);
                }
            }
            if !f.dark {
                // A frame the fallback judged counts towards its own rate: its score is in spots.
                let (control, tracker) =
                    match (f.fallback, rate.trigger.fallback_rate(), rate.fallback_tracker.as_mut()) {
                        (true, Some(control), Some(tracker)) => (control, tracker),
                        _ => (rate.trigger.rate(), &mut rate.tracker),
                    };
                self.outcome.fallback_frames += u64::from(f.fallback);
                let score = control.effective_score(f.score, sequence);
                if tracker.observe(control, score, f.accepted) {
                    frame.pixels_and_features().1.audit = true;
                    self.outcome.audited += 1;
                    self.meters.audit.increment(1);
                }
                if let Some(held) = tracker.held_changed(control) {
                    // Said once each way: an operator must know the rate asked for is not the rate had.
                    eprintln!("hitgate: trigger: {held}");
                    self.meters.rate_held.set(f64::from(u8::from(held.is_held())));
                    if !held.is_held() {
                        self.outcome.rate_not_held = Some(held);
                    }
                }
            }
        }
        if let Some(pedestal) = self.pedestal.as_mut() {
            pedestal.observe(&frame);
        }
        self.count(&frame);
        if let Some(feed) = self.monitor.as_mut() {
            feed.observe(&frame);
        }
        if self.wants_chunks
            && frame.features().is_kept()
            && frame.features().chunk.is_empty()
            && let Some(late) = self.encoder.as_mut()
        {
            let converter = late.photons.current_converter();
            let complete = frame.meta().is_complete();
            late.packets_present.clear();
            late.packets_present.extend_from_slice(frame.packet_mask());
            let (raw, features) = frame.pixels_and_features();
            let lost = (!complete).then_some(&late.packets_present[..]);
            late.encoder.encode(late.photons, converter.as_deref(), raw, lost, &mut features.chunk);
        }
        let (mut refused, mut fullest) = (false, 0.0f64);
        if self.failure.is_none() {
            for (lane, backlog) in self.lanes.iter_mut().zip(&self.meters.backlogs) {
                refused |= lane.offer_or_wait(&frame, self.sinks_wait) == Offer::Full;
                backlog.set(lane.backlog() as f64);
                fullest = fullest.max(lane.backlog() as f64 / lane.depth() as f64);
                if lane.failed() {
                    // The lane reports its error when it finishes; the source stops now.
                    self.failure = Some(PipelineError::SinkFailed(lane.name()));
                    self.abort.store(true, Ordering::Relaxed);
                }
            }
        }
        let f = frame.features();
        if let Some(rate) = self.rate.as_mut()
            && let Some(bp) = rate.backpressure.as_mut()
            && !f.dark
            && let Some(ceiling) = bp.observe(f.accepted, refused, fullest)
        {
            rate.tracker.set_ceiling(rate.trigger.rate(), ceiling);
            self.meters.ceiling.set(ceiling.unwrap_or(0.0));
            if let Some(c) = ceiling {
                let lowest = &mut self.outcome.storage_ceiling_min;
                *lowest = Some(lowest.map_or(c, |m: f64| m.min(c)));
            }
        }
        if self.live {
            // The verdict is written: from the frame's first packet to here is what an operator waits.
            let ns = telemetry::now_ns().saturating_sub(frame.meta().first_packet_ns);
            self.outcome.latency.record_ns(ns);
            self.meters.to_verdict.record(ns as f64 * 1e-9);
        }
    }

    /// Counts the frame's verdict and what the reducer did to it.
    fn count(&mut self, frame: &FrameHandle) {
        let (f, o, m) = (frame.features(), &mut self.outcome, &self.meters);
        if f.accepted {
            o.accepted += 1;
            o.accepted_partial += u64::from(!frame.meta().is_complete());
            add(&self.progress.frames_accepted, 1);
            m.accepted.increment(1);
        } else {
            o.rejected += 1;
            m.rejected.increment(1);
        }
        if f.trigger_failed {
            o.trigger_failures += 1;
            m.trigger_failures.increment(1);
        }
        if f.spots_localised > 0 || f.localiser_batches_failed > 0 {
            m.localised.increment(u64::from(f.spots_localised));
            m.localiser_failures.increment(u64::from(f.localiser_batches_failed));
            o.spots_localised += u64::from(f.spots_localised);
            o.localiser_batches_failed += u64::from(f.localiser_batches_failed);
        }
        o.spots_found += u64::from(f.spots_found);
        o.frames_spots_capped += u64::from(f.spots_found as usize > f.spots.len());
        if !f.summary.is_empty() {
            o.persistent_ignored_max = o.persistent_ignored_max.max(f.persistent_ignored);
            m.persistent.set(f64::from(f.persistent_ignored));
        }
        o.reduce_time += Duration::from_nanos(f.reduce_ns);
        m.reduce_time.record(f.reduce_ns as f64 * 1e-9);
        add(&self.progress.frames_done, 1);
    }

    /// Closes every lane; the outcome, or the first failure (a sink's own error says more than
    /// "a sink failed").
    pub fn finish(mut self) -> Result<OrderingOutcome, PipelineError> {
        if let Some(rate) = &self.rate
            && let Some(held) = rate.trigger.rate().held().filter(|h| !h.is_held())
        {
            self.outcome.rate_not_held = Some(held);
        }
        for lane in self.lanes.drain(..) {
            match lane.finish() {
                Ok(report) => self.outcome.reports.push(report),
                Err(e) => {
                    self.failure = match self.failure {
                        None | Some(PipelineError::SinkFailed(_)) => Some(e.into()),
                        other => other,
                    }
                }
            }
        }
        match self.failure {
            Some(e) => Err(e),
            None => Ok(self.outcome),
        }
    }
}

/// Queue and pool levels, published for the metrics every so often.
pub(super) struct Levels<'a> {
    pub to_reducers: &'a Ring<FrameHandle>,
    pub to_sinks: &'a Ring<FrameHandle>,
    pub pool: &'a FramePool,
    pub trigger: &'a Trigger,
}

impl Levels<'_> {
    pub fn publish(&self) {
        for (name, ring) in [("reduce", self.to_reducers), ("sink", self.to_sinks)] {
            counter!(telemetry::QUEUE_PUSHED, "queue" => name).absolute(ring.pushed());
            counter!(telemetry::QUEUE_POPPED, "queue" => name).absolute(ring.popped());
        }
        gauge!(telemetry::POOL_FREE_SLOTS).set(self.pool.free_slots() as f64);
        if self.trigger.has_cut() {
            gauge!(telemetry::TRIGGER_THRESHOLD).set(f64::from(self.trigger.rate().threshold()));
            gauge!(telemetry::TRIGGER_TARGET_RATE).set(self.trigger.rate().target_rate().unwrap_or(0.0));
        }
    }
}

/// How often the ordering thread publishes queue and pool levels.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Runs the ordering thread until the reducers' ring is drained and closed: restores order, hands
/// each frame to `delivery` (in a cluster, through the node's verdict gate), then closes the sinks.
pub(super) fn run_ordering(
    input: &Ring<FrameHandle>,
    mut delivery: Delivery<'_>,
    mut cluster: Option<ClusterNode>,
    levels: &Levels<'_>,
) -> Result<OrderingOutcome, PipelineError> {
    let mut order = ReorderBuffer::new(levels.pool.capacity());
    let mut published = Instant::now();
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
                node.wait(Duration::from_micros(200), |f| delivery.deliver(f));
            },
            None => input.pop_waiting(),
        };
        let Some(frame) = frame else { break };
        order.insert(frame);
        while let Some(frame) = order.pop_next() {
            match cluster.as_mut() {
                Some(node) => node.judge(frame, |f| delivery.deliver(f)),
                None => delivery.deliver(frame),
            }
        }
        if published.elapsed() >= PUBLISH_EVERY {
            levels.publish();
            published = Instant::now();
        }
        if input.pushed() == input.popped()
            && let Some(feed) = delivery.monitor.as_mut()
        {
            // Nothing waits: the monitor shows everything judged so far, not what was judged 200 ms ago.
            feed.publish(true);
        }
    }
    let released = order.released();
    for frame in order.into_rest() {
        match cluster.as_mut() {
            Some(node) => node.judge(frame, |f| delivery.deliver(f)),
            None => delivery.deliver(frame),
        }
    }
    if let Some(node) = cluster {
        let (report, error) = node.finish(released, |f| delivery.deliver(f));
        delivery.outcome.cluster = Some(report);
        if let Some(e) = error {
            delivery.failure = delivery.failure.or(Some(e.into()));
        }
    }
    let outcome = delivery.finish();
    levels.publish();
    outcome
}

#[cfg(test)]
mod tests;
