//! One worker's reducer: the shared plan plus its own scratch (photon image, finder, localiser
//! batch, trigger scorer, encoder), so reducing a frame allocates nothing.

use std::sync::Arc;
use std::time::Instant;

use super::{FinderPlan, PlanError, ReducerPlan};
use crate::calib::{PhotonConverter, Photons, flag_lost};
use crate::codec::FrameEncoder;
use crate::features::localiser::{LocaliseFrames, LocaliserState};
use crate::features::patch::{PATCH_PIXELS, PATCH_SIDE, extract_patch, patch_centre};
use crate::features::summary::{SUMMARY_LEN, SummaryCounter};
use crate::features::{LocalThresholdFinder, Peakfinder8};
use crate::frame::FrameHandle;
use crate::trigger::{Decision, FrameFacts, Scorer};

/// A worker's spot finder with its scratch.
enum Finder {
    Threshold(LocalThresholdFinder),
    /// Boxed: its scratch is larger than the threshold finder's.
    Peakfinder8(Box<Peakfinder8>),
}

/// A worker's localiser with its batch of patches.
struct LocaliserBatch {
    localiser: LocaliserState,
    patches: Vec<f32>,
    /// Which spot each patch of the batch belongs to, and the patch centre in the image.
    owners: Vec<(usize, [f32; 2])>,
    centres: Vec<[f32; 2]>,
}

/// One worker's reducer: the shared plan plus its own scratch.
pub struct Reducer {
    plan: Arc<ReducerPlan>,
    /// One panel's photons as the detector sends them, and its image when that differs (a JUNGFRAU
    /// module assembled).
    photons: Vec<f32>,
    image: Vec<f32>,
    finder: Finder,
    /// The converter in use and the epoch it was published at.
    converter: Option<(u64, Arc<PhotonConverter>)>,
    localiser: Option<LocaliserBatch>,
    scorer: Box<dyn Scorer>,
    summary: Option<SummaryCounter>,
    encoder: Option<FrameEncoder>,
    /// The frames of a batch waiting for the trigger's verdict.
    staged: Vec<FrameHandle>,
    /// A partial frame's packet mask, copied before its pixels are borrowed.
    packets_present: Vec<u64>,
}

impl Reducer {
    /// A worker's reducer, with its scratch allocated now.
    ///
    /// # Errors
    /// The peak model's state for this worker cannot be made.
    pub fn new(plan: Arc<ReducerPlan>) -> Result<Reducer, PlanError> {
        let (_, rows, cols) = plan.panels;
        // Written now, not merely reserved, so its pages are in place before the first frame.
        let mut photons = Vec::with_capacity(rows * cols);
        photons.resize(rows * cols, 0.0);
        let image = if plan.image.is_split() { vec![0.0; plan.image.pixels()] } else { Vec::new() };
        let (image_rows, image_cols) = plan.image.shape();
        let finder = match &plan.finder {
            FinderPlan::Threshold(p) => Finder::Threshold(LocalThresholdFinder::new(*p, image_rows, image_cols)),
            FinderPlan::Peakfinder8(p, map) => Finder::Peakfinder8(Box::new(Peakfinder8::new(*p, map.rings))),
        };
        let localiser = match &plan.localiser {
            Some((model, _)) => {
                let batch = model.batch();
                Some(LocaliserBatch {
                    localiser: model.state()?,
                    patches: vec![0.0; batch * PATCH_PIXELS],
                    owners: Vec::with_capacity(batch),
                    centres: vec![[0.0; 2]; batch],
                })
            }
            None => None,
        };
        let scorer = plan.trigger.scorer()?;
        let summary = plan.summary.as_ref().map(SummaryCounter::new);
        let encoder = plan.encoder().transpose()?;
        let staged = Vec::with_capacity(plan.trigger.batch_frames());
        let packets_present = Vec::with_capacity(plan.packet_pixels.len().div_ceil(64));
        Ok(Reducer {
            plan,
            photons,
            image,
            finder,
            converter: None,
            localiser,
            scorer,
            summary,
            encoder,
            staged,
            packets_present,
        })
    }

    /// The most frames to reduce together (see [`Reducer::reduce_batch`]).
    pub fn batch_frames(&self) -> usize {
        self.plan.trigger.batch_frames()
    }

    /// Reduces one frame in place: its features and verdict are written into the frame.
    pub fn reduce(&mut self, frame: &mut FrameHandle) {
        let t0 = Instant::now();
        if self.measure(frame) {
            let sequence = frame.meta().sequence;
            let features = frame.pixels_and_features().1;
            let facts = FrameFacts { spots_found: features.spots_found, summary: &features.summary };
            let decision = self.plan.trigger.decide(self.scorer.as_mut(), facts, sequence);
            self.finish(frame, decision);
        }
        frame.pixels_and_features().1.reduce_ns = t0.elapsed().as_nanos() as u64;
    }

    /// Reduces frames popped together, judging them in one trigger call (the FPGA card's batch);
    /// `done` takes each frame, in order, once it is reduced. A dark frame is handed on at once: the
    /// sink thread measures the pedestal that the frames after it wait for. `frames` is left empty.
    pub fn reduce_batch(&mut self, frames: &mut Vec<FrameHandle>, mut done: impl FnMut(FrameHandle)) {
        if frames.len() <= 1 {
            if let Some(mut frame) = frames.pop() {
                self.reduce(&mut frame);
                done(frame);
            }
            return;
        }
        let plan = Arc::clone(&self.plan);
        let trigger = &plan.trigger;
        for mut frame in frames.drain(..) {
            let t0 = Instant::now();
            let judge = self.measure(&mut frame);
            let features = frame.pixels_and_features().1;
            features.reduce_ns = t0.elapsed().as_nanos() as u64;
            if judge {
                self.scorer.stage(&features.summary);
                self.staged.push(frame);
            } else {
                done(frame);
            }
        }
        let t0 = Instant::now();
        self.scorer.judge_staged();
        let judge_share = t0.elapsed().as_nanos() as u64 / self.staged.len().max(1) as u64;
        let mut staged = std::mem::take(&mut self.staged);
        for (index, mut frame) in staged.drain(..).enumerate() {
            let t0 = Instant::now();
            let sequence = frame.meta().sequence;
            let features = frame.pixels_and_features().1;
            let facts = FrameFacts { spots_found: features.spots_found, summary: &features.summary };
            let decision = trigger.decide_staged(self.scorer.as_mut(), index, facts, sequence);
            self.finish(&mut frame, decision);
            frame.pixels_and_features().1.reduce_ns += judge_share + t0.elapsed().as_nanos() as u64;
            done(frame);
        }
        self.staged = staged;
    }

    /// Calibrates the frame, finds its spots and sums up what the trigger reads; false for a dark
    /// frame (nothing to judge). Panels are calibrated and searched one at a time so the photon
    /// image stays in cache.
    fn measure(&mut self, frame: &mut FrameHandle) -> bool {
        let sequence = frame.meta().sequence;
        let dark_frames = self.plan.dark_frames() as u64;
        if sequence < dark_frames {
            // The pedestal is measured on this frame (by the sink thread, in order); nothing to judge.
            let features = frame.pixels_and_features().1;
            features.dark = true;
            features.spots.clear();
            features.spots_found = 0;
            return false;
        }
        if let Photons::Integrating(shared) = &self.plan.photons {
            // After dark frames, no frame is converted before their pedestal is in place. The dark
            // frames left the queue before this one, so the sink thread is already on them.
            while dark_frames > 0 && shared.epoch() == 0 {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            let epoch = shared.epoch();
            if self.converter.as_ref().is_none_or(|(e, _)| *e != epoch) {
                self.converter = Some((epoch, shared.current()));
            }
        }
        // The packets that never came: their pixels are flagged, not read as the blank they hold.
        let partial = !frame.meta().is_complete() && !self.plan.packet_pixels.is_empty();
        self.packets_present.clear();
        if partial {
            self.packets_present.extend_from_slice(frame.packet_mask());
        }
        let (raw, features) = frame.pixels_and_features();
        let (panels, rows, cols) = self.plan.panels;
        let panel_pixels = rows * cols;
        let (image_rows, image_cols) = self.plan.image.shape();
        features.spots.clear();
        features.spots_found = 0;
        features.spots_localised = 0;
        features.localiser_batches_failed = 0;
        features.pixels_flagged = 0;
        if let Some(counter) = self.summary.as_mut() {
            counter.clear();
        }
        for (panel, raw) in raw.chunks_exact(panel_pixels).take(panels).enumerate() {
            let converter = self.converter.as_ref().map(|(_, c)| c.as_ref());
            let first = panel * panel_pixels;
            let split = self.plan.image.is_split();
            let flagged = if split && !partial {
                // Converted a row at a time straight into the assembled image: one pass over memory.
                let (plan, row) = (&self.plan, &mut self.photons[..cols]);
                let mut convert =
                    |seg: &[u16], at: usize, out: &mut [f32]| plan.photons.convert(converter, seg, first + at, out);
                plan.image.convert_into(raw, &mut convert, row, &mut self.image)
            } else {
                let mut flagged = self.plan.photons.convert(converter, raw, first, &mut self.photons);
                if partial {
                    flagged += flag_lost(&self.plan.packet_pixels, &self.packets_present, first, &mut self.photons);
                }
                if split {
                    self.plan.image.assemble(&self.photons, &mut self.image);
                }
                flagged
            };
            features.pixels_flagged += flagged as u32;
            let photons = if split { &mut self.image } else { &mut self.photons };
            if let (Some(counter), Some(plan)) = (self.summary.as_mut(), self.plan.summary.as_ref()) {
                // Before the finder: it consumes the photon image.
                counter.add_panel(plan, panel, photons);
            }
            let (spots, id) = (&mut features.spots, panel as u16);
            features.spots_found += match (&mut self.finder, &self.plan.finder) {
                (Finder::Peakfinder8(f), FinderPlan::Peakfinder8(_, map)) => {
                    f.find_in_panel(photons, map.panel(panel), image_rows, image_cols, id, spots)
                }
                (Finder::Threshold(f), _) => f.find_in_panel(photons, image_rows, image_cols, id, spots),
                // A worker's finder is built from its plan's, so the two always agree.
                (Finder::Peakfinder8(_), FinderPlan::Threshold(_)) => 0,
            };
        }
        for spot in features.spots.iter_mut() {
            let (r0, c0) = self.plan.origins.get(usize::from(spot.panel)).copied().unwrap_or((0, 0));
            spot.image_row = r0 as f32 + spot.row;
            spot.image_col = c0 as f32 + spot.col;
        }
        if let (Some(counter), Some(plan)) = (self.summary.as_mut(), self.plan.summary.as_ref()) {
            features.summary.resize(SUMMARY_LEN, 0.0);
            counter.finish(plan, &mut features.summary);
            features.persistent_ignored = counter.persistent_ignored();
        }
        true
    }

    /// Writes the verdict into the frame, then what it calls for: refined spots, a compressed image.
    fn finish(&mut self, frame: &mut FrameHandle, decision: Decision) {
        let features = frame.pixels_and_features().1;
        features.score = decision.score;
        features.accepted = decision.accepted;
        features.trigger_failed = decision.failed;
        features.fallback = decision.fallback;
        let refine = match &self.plan.localiser {
            Some((_, LocaliseFrames::All)) => true,
            Some((_, LocaliseFrames::Accepted)) => decision.accepted,
            None => false,
        };
        if refine {
            self.refine_spots(frame);
        }
        if decision.accepted
            && let Some(encoder) = self.encoder.as_mut()
        {
            let converter = self.converter.as_ref().map(|(_, c)| c.as_ref());
            let complete = frame.meta().is_complete();
            self.packets_present.clear();
            self.packets_present.extend_from_slice(frame.packet_mask());
            let (raw, features) = frame.pixels_and_features();
            let lost = (!complete).then_some(&self.packets_present[..]);
            encoder.encode(&self.plan.photons, converter, raw, lost, &mut features.chunk);
        }
    }

    /// Gives every recorded spot of the frame the localiser's centre, a batch of patches at a time.
    /// A batch the model fails on leaves its spots unrefined and is counted.
    fn refine_spots(&mut self, frame: &mut FrameHandle) {
        let Some(batch) = self.localiser.as_mut() else { return };
        let converter: Option<Arc<PhotonConverter>> = self.converter.as_ref().map(|(_, c)| Arc::clone(c));
        let photons: &Photons = &self.plan.photons;
        let image = &self.plan.image;
        let (panels, rows, cols) = self.plan.panels;
        let panel_pixels = rows * cols;
        let room = batch.centres.len();
        let (raw, features) = frame.pixels_and_features();
        let spot_count = features.spots.len();
        let mut next = 0;
        while next < spot_count {
            batch.owners.clear();
            while next < spot_count && batch.owners.len() < room {
                let spot = features.spots[next];
                let panel = usize::from(spot.panel);
                let Some(panel_raw) =
                    raw.get(panel * panel_pixels..(panel + 1) * panel_pixels).filter(|_| panel < panels)
                else {
                    next += 1;
                    continue;
                };
                let first = panel * panel_pixels;
                let centre = patch_centre(&spot);
                let k = batch.owners.len();
                let out = &mut batch.patches[k * PATCH_PIXELS..(k + 1) * PATCH_PIXELS];
                extract_patch(
                    panel_raw,
                    image,
                    centre,
                    &mut |seg: &[u16], at: usize, o: &mut [f32]| {
                        photons.convert(converter.as_deref(), seg, first + at, o);
                    },
                    out,
                );
                let (r0, c0) = self.plan.origins.get(panel).copied().unwrap_or((0, 0));
                batch.owners.push((next, [(r0 as i64 + centre.0) as f32, (c0 as i64 + centre.1) as f32]));
                next += 1;
            }
            let n = batch.owners.len();
            if n == 0 {
                break;
            }
            match batch.localiser.locate(&batch.patches[..n * PATCH_PIXELS], &mut batch.centres) {
                Ok(()) => {
                    // A centre off its own patch is no refinement (a patch unlike any the model knows).
                    let on_patch = |d: f32| d.is_finite() && d.abs() <= (PATCH_SIDE / 2) as f32;
                    for (&(i, [pr, pc]), [dr, dc]) in batch.owners.iter().zip(&batch.centres) {
                        if on_patch(*dr) && on_patch(*dc) {
                            features.spots[i].refined = Some([pr + dr, pc + dc]);
                            features.spots_localised += 1;
                        }
                    }
                }
                Err(_) => features.localiser_batches_failed += 1,
            }
        }
    }
}
