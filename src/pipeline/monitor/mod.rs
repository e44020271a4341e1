//! What the live monitor shows of a run: rates over the last minutes, the score distribution, every
//! spot of the run in detector coordinates (the virtual powder pattern), packets per module, the
//! background in resolution, and a picture of the last kept frame.
//!
//! The ordering thread feeds it ([`MonitorFeed`]): per frame it adds to counters and fixed-size
//! buffers it owns (no lock, no allocation) and hands them over every 200 ms, and whenever it has
//! nothing else to do, with a lock the control plane holds only as long as a copy. Now and then a
//! frame — a kept one, or any frame once a second for the background — is copied whole into the one
//! spare buffer. The control plane's thread
//! does the rest ([`Monitor::tick`]): converts it to photons, measures its background per resolution
//! shell and draws the picture, off the frames' path. It then says when the next frame may be
//! sampled: after forty times what this one took, and at least 250 ms, so the monitor keeps to a
//! fortieth of a core whatever the detector's size. (Drawing every 250 ms on a 4M took enough of a
//! two-core node's time that its receiver let packets go late.)

mod picture;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, bounded};
use serde_json::{Value, json};

use crate::calib::Photons;
use crate::frame::FrameHandle;
use crate::sink::Experiment;

pub use picture::Layout;

/// How often the feed hands its counts over.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// The least time between two sampled frames, and how often a frame is sampled when none is kept.
const SAMPLE_GAP: Duration = Duration::from_millis(250);
const ANY_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The time a sample took, times this, passes before the next is taken.
const SAMPLE_DUTY: u32 = 40;
/// `next_sample_ns` while a sample waits for the control plane.
const SAMPLE_IN_FLIGHT: u64 = u64::MAX;
/// Per-second points kept: ten minutes.
const SERIES_POINTS: usize = 600;
/// Recent scores kept for the distribution.
const RECENT_SCORES: usize = 2000;
/// What the feed holds between hand-overs; beyond it, scores and spots of that interval are left out
/// of the distribution and the powder pattern (counted).
const FEED_SCORES: usize = 4096;
const FEED_SPOTS: usize = 32_768;
/// Background profiles averaged into the recent one.
const PROFILE_SAMPLES: u32 = 10;
/// Places of the powder pattern sent to the page at the most (the most visited).
const POWDER_POINTS: usize = 20_000;

/// A frame copied for the monitor.
struct Sample {
    raw: Vec<u16>,
    /// Spots in the detector image (row, column).
    spots: Vec<(f32, f32)>,
    frame_number: u64,
    accepted: bool,
    score: f32,
    spots_found: u32,
}

/// One point a second.
#[derive(Clone, Copy, Default)]
struct Point {
    t: f64,
    frames_per_s: f64,
    accepted_per_s: f64,
    packets_per_s: f64,
    spots_per_frame: Option<f64>,
    background: Option<f64>,
}

/// A copy of what the page is shown, taken under the lock.
struct View {
    frames: u64,
    accepted: u64,
    frames_sampled: u64,
    series: Vec<Point>,
    scores: Vec<f32>,
    module_packets: Vec<u64>,
    powder_spots: u64,
    left_out: u64,
    profile: Vec<f64>,
    profile_samples: u32,
    /// Frame number, score, spots found and picture bytes of the last kept frame drawn.
    last_hit: Option<(u64, f32, u32, usize)>,
}

#[derive(Clone, Copy, Default)]
struct Totals {
    frames: u64,
    accepted: u64,
    spots: u64,
    packets: u64,
}

struct LastHit {
    frame_number: u64,
    score: f32,
    spots_found: u32,
    png: Arc<Vec<u8>>,
}

#[derive(Default)]
struct Shared {
    totals: Totals,
    module_packets: Vec<u64>,
    scores: VecDeque<f32>,
    powder: Vec<u32>,
    powder_spots: u64,
    left_out: u64,
    series: VecDeque<Point>,
    /// Totals and time at the last point.
    last_point: Option<(Instant, Totals)>,
    background_since_point: Option<f64>,
    profile: Vec<f64>,
    profile_samples: u32,
    frames_sampled: u64,
    last_hit: Option<LastHit>,
}

/// The monitor's state, shared by the ordering thread's feed and the control plane.
pub struct Monitor {
    layout: Layout,
    started: Instant,
    shared: Mutex<Shared>,
    samples: (Sender<Box<Sample>>, Receiver<Box<Sample>>),
    spare: (Sender<Box<Sample>>, Receiver<Box<Sample>>),
    /// When the next frame may be sampled, in nanoseconds since `started`.
    next_sample_ns: AtomicU64,
    /// Scratch of the control plane's thread: a frame's photons, panel by panel and assembled.
    scratch: Mutex<picture::Scratch>,
}

impl Monitor {
    /// A monitor of the run `experiment` describes, with a spare frame buffer of `frame_pixels`.
    pub fn new(experiment: &Experiment, frame_pixels: usize) -> Arc<Monitor> {
        let layout = Layout::new(experiment);
        let (spare_tx, spare_rx) = bounded(1);
        {
            let sample = Sample {
                raw: Vec::with_capacity(frame_pixels),
                spots: Vec::with_capacity(FEED_SPOTS),
                frame_number: 0,
                accepted: false,
                score: 0.0,
                spots_found: 0,
            };
            let _ = spare_tx.send(Box::new(sample));
        }
        let shared = Shared {
            scores: VecDeque::with_capacity(RECENT_SCORES),
            series: VecDeque::with_capacity(SERIES_POINTS),
            module_packets: vec![0; layout.modules],
            powder: vec![0; layout.display_pixels()],
            profile: vec![0.0; picture::SHELLS],
            ..Shared::default()
        };
        let scratch = Mutex::new(picture::Scratch::new(&layout));
        Arc::new(Monitor {
            layout,
            started: Instant::now(),
            shared: Mutex::new(shared),
            samples: bounded(1),
            spare: (spare_tx, spare_rx),
            next_sample_ns: AtomicU64::new(0),
            scratch,
        })
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere while holding it leaves counts that are still worth showing.
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The control plane's share of the work, called a few times a second: sampled frames converted,
    /// measured and drawn, and a point added to the series each second.
    pub fn tick(&self, photons: &Photons) {
        while let Ok(sample) = self.samples.1.try_recv() {
            let began = Instant::now();
            let measured = {
                let mut scratch = self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                scratch.measure(&self.layout, photons, &sample)
            };
            {
                let mut s = self.shared();
                s.frames_sampled += 1;
                s.background_since_point = measured.background;
                if let Some(profile) = measured.profile {
                    // A running mean over the last few samples: the recent background, not one frame's.
                    let n = f64::from(s.profile_samples.min(PROFILE_SAMPLES - 1));
                    for (mean, value) in s.profile.iter_mut().zip(profile) {
                        *mean = (*mean * n + value) / (n + 1.0);
                    }
                    s.profile_samples += 1;
                }
                if let Some(png) = measured.png {
                    s.last_hit = Some(LastHit {
                        frame_number: sample.frame_number,
                        score: sample.score,
                        spots_found: sample.spots_found,
                        png: Arc::new(png),
                    });
                }
            }
            let _ = self.spare.0.send(sample);
            let gap = began.elapsed().saturating_mul(SAMPLE_DUTY).max(SAMPLE_GAP);
            let next = (began + gap).duration_since(self.started).as_nanos();
            self.next_sample_ns.store(u64::try_from(next).unwrap_or(SAMPLE_IN_FLIGHT - 1), Ordering::Release);
        }
        let now = Instant::now();
        let mut s = self.shared();
        let due = s.last_point.as_ref().is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1));
        if !due {
            return;
        }
        let totals = s.totals;
        if let Some((at, before)) = s.last_point.take() {
            let dt = now.duration_since(at).as_secs_f64();
            let frames = totals.frames - before.frames;
            let point = Point {
                t: now.duration_since(self.started).as_secs_f64(),
                frames_per_s: frames as f64 / dt,
                accepted_per_s: (totals.accepted - before.accepted) as f64 / dt,
                packets_per_s: (totals.packets - before.packets) as f64 / dt,
                spots_per_frame: (frames > 0).then(|| (totals.spots - before.spots) as f64 / frames as f64),
                background: s.background_since_point.take(),
            };
            if s.series.len() == SERIES_POINTS {
                s.series.pop_front();
            }
            s.series.push_back(point);
        }
        s.last_point = Some((now, totals));
    }

    /// The last kept frame's picture, as PNG.
    pub fn last_hit_png(&self) -> Option<Arc<Vec<u8>>> {
        self.shared().last_hit.as_ref().map(|h| Arc::clone(&h.png))
    }

    /// Everything the page draws, as JSON. The lock is held only to copy what is shown.
    pub fn view(&self) -> Value {
        let l = &self.layout;
        let (width, height) = l.display_shape();
        let s = self.shared();
        let mut powder: Vec<[u32; 3]> = s
            .powder
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &n)| [(i % width) as u32, (i / width) as u32, n])
            .collect();
        let view = View {
            frames: s.totals.frames,
            accepted: s.totals.accepted,
            frames_sampled: s.frames_sampled,
            series: s.series.iter().copied().collect(),
            scores: s.scores.iter().copied().collect(),
            module_packets: s.module_packets.clone(),
            powder_spots: s.powder_spots,
            left_out: s.left_out,
            profile: s.profile.clone(),
            profile_samples: s.profile_samples,
            last_hit: s.last_hit.as_ref().map(|h| (h.frame_number, h.score, h.spots_found, h.png.len())),
        };
        drop(s);
        // The most visited places, when a long run has spread its spots over more than a page can draw.
        let places = powder.len();
        if places > POWDER_POINTS {
            powder.select_nth_unstable_by_key(POWDER_POINTS, |p| std::cmp::Reverse(p[2]));
            powder.truncate(POWDER_POINTS);
        }
        let s = view;
        let series: Vec<Value> = s
            .series
            .iter()
            .map(|p| {
                json!({
                    "t": round(p.t, 2),
                    "frames_per_s": round(p.frames_per_s, 2),
                    "accepted_per_s": round(p.accepted_per_s, 2),
                    "packets_per_s": round(p.packets_per_s, 1),
                    "spots_per_frame": p.spots_per_frame.map(|v| round(v, 2)),
                    "background": p.background.map(|v| round(v, 4)),
                })
            })
            .collect();
        let (beam_row, beam_col) = l.beam_display();
        json!({
            "frames": s.frames,
            "frames_accepted": s.accepted,
            "frames_sampled": s.frames_sampled,
            "series": series,
            "scores": s.scores.iter().map(|&v| round(f64::from(v), 5)).collect::<Vec<_>>(),
            "module_packets": s.module_packets,
            "packets_per_frame": l.packets_per_module * l.modules,
            "powder": {
                "width": width, "height": height, "scale": l.scale,
                "spots": s.powder_spots, "left_out": s.left_out, "places": places,
                "beam": [round(beam_col, 1), round(beam_row, 1)],
                "points": powder,
            },
            "profile": {
                "q_per_angstrom": l.shell_q().iter().map(|&q| round(q, 4)).collect::<Vec<_>>(),
                "photons_per_pixel": s.profile.iter().map(|&v| round(v, 4)).collect::<Vec<_>>(),
                "samples": s.profile_samples,
            },
            "last_hit": s.last_hit.map(|(frame_number, score, spots_found, png_bytes)| json!({
                "frame_number": frame_number,
                "score": score,
                "spots_found": spots_found,
                "width": width,
                "height": height,
                "png_bytes": png_bytes,
            })),
        })
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// The ordering thread's side: counts and buffers it owns, handed over every 200 ms and when idle.
pub struct MonitorFeed {
    monitor: Arc<Monitor>,
    totals: Totals,
    module_packets: Vec<u64>,
    scores: Vec<f32>,
    powder: Vec<u32>,
    left_out: u64,
    published: Instant,
    sampled: Instant,
}

impl MonitorFeed {
    pub fn new(monitor: Arc<Monitor>) -> MonitorFeed {
        let long_ago = Instant::now().checked_sub(ANY_SAMPLE_EVERY).unwrap_or_else(Instant::now);
        MonitorFeed {
            module_packets: vec![0; monitor.layout.modules],
            monitor,
            totals: Totals::default(),
            scores: Vec::with_capacity(FEED_SCORES),
            powder: Vec::with_capacity(FEED_SPOTS),
            left_out: 0,
            published: Instant::now(),
            sampled: long_ago,
        }
    }

    /// Takes in one judged frame.
    pub fn observe(&mut self, frame: &FrameHandle) {
        let f = frame.features();
        if f.dark {
            return;
        }
        let layout = &self.monitor.layout;
        self.totals.frames += 1;
        self.totals.accepted += u64::from(f.accepted);
        self.totals.spots += u64::from(f.spots_found);
        let per_module = layout.packets_per_module.max(1);
        let mask = frame.packet_mask();
        for (module, count) in self.module_packets.iter_mut().enumerate() {
            let packets = module * per_module..(module + 1) * per_module;
            let arrived = if per_module.is_multiple_of(64) {
                mask.get(packets.start / 64..packets.end / 64).map_or(0, |w| w.iter().map(|w| w.count_ones()).sum())
            } else {
                packets.filter(|&i| mask.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)).count() as u32
            };
            *count += u64::from(arrived);
            self.totals.packets += u64::from(arrived);
        }
        if self.scores.len() < FEED_SCORES {
            self.scores.push(f.score);
        }
        for spot in &f.spots {
            match layout.display_index(spot.image_row, spot.image_col) {
                Some(i) if self.powder.len() < FEED_SPOTS => self.powder.push(i as u32),
                Some(_) => self.left_out += 1,
                None => {}
            }
        }
        let now = Instant::now();
        let since_start = u64::try_from(now.duration_since(self.monitor.started).as_nanos()).unwrap_or(u64::MAX - 1);
        let ready = since_start >= self.monitor.next_sample_ns.load(Ordering::Acquire);
        if ready
            && (f.accepted || now.duration_since(self.sampled) >= ANY_SAMPLE_EVERY)
            && let Ok(mut sample) = self.monitor.spare.1.try_recv()
        {
            // Before it is handed over: the control plane's answer, once it has drawn it, comes after.
            self.monitor.next_sample_ns.store(SAMPLE_IN_FLIGHT, Ordering::Release);
            sample.raw.clear();
            sample.raw.extend_from_slice(frame.pixels_u16());
            sample.spots.clear();
            sample.spots.extend(f.spots.iter().take(FEED_SPOTS).map(|s| (s.image_row, s.image_col)));
            sample.frame_number = frame.meta().frame_number;
            (sample.accepted, sample.score, sample.spots_found) = (f.accepted, f.score, f.spots_found);
            self.sampled = now;
            // One buffer exists and the queue holds one: this never waits.
            let _ = self.monitor.samples.0.try_send(sample);
        }
        if now.duration_since(self.published) >= PUBLISH_EVERY {
            self.publish(false);
        }
    }

    /// Hands the counts over: waiting for the lock when `wait` (the ordering thread is idle or the
    /// run ends), else only when it is free at once.
    pub fn publish(&mut self, wait: bool) {
        let guard = if wait { Some(self.monitor.shared()) } else { self.monitor.shared.try_lock().ok() };
        let Some(mut s) = guard else { return };
        let t = std::mem::take(&mut self.totals);
        s.totals.frames += t.frames;
        s.totals.accepted += t.accepted;
        s.totals.spots += t.spots;
        s.totals.packets += t.packets;
        for (total, count) in s.module_packets.iter_mut().zip(&mut self.module_packets) {
            *total += std::mem::take(count);
        }
        for &score in &self.scores {
            if s.scores.len() == RECENT_SCORES {
                s.scores.pop_front();
            }
            s.scores.push_back(score);
        }
        s.powder_spots += self.powder.len() as u64;
        for &i in &self.powder {
            if let Some(n) = s.powder.get_mut(i as usize) {
                *n = n.saturating_add(1);
            }
        }
        s.left_out += std::mem::take(&mut self.left_out);
        drop(s);
        self.scores.clear();
        self.powder.clear();
        self.published = Instant::now();
    }
}

impl Drop for MonitorFeed {
    fn drop(&mut self) {
        self.publish(true);
    }
}

#[cfg(test)]
mod tests;
