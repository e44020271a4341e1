//! The reducer on frames made by hand: photons from known raw values, spots where they were put, the
//! verdict, dark frames set aside, batches judged as single frames are, kept frames compressed.

use std::sync::Arc;

use super::*;
use crate::codec::bitshuffle::decompress;
use crate::frame::{FrameHandle, FramePool};
use crate::trigger::{SpotsTriggerSection, TriggerKind};

/// One photon at the defaults (12.4 keV, 40 ADU/keV in G0): 496 ADU above the 3000 ADU pedestal.
const PEDESTAL: u16 = 3000;
const ADU_PER_PHOTON: f32 = 496.0;

struct Bench {
    geometry: DetectorGeometry,
    calibration: CalibrationSection,
    features: FeaturesSection,
    trigger: TriggerSection,
    stored_pixels: Option<StoredPixels>,
    /// A module's image: raw unless a test assembles it.
    split_chips: bool,
}

impl Bench {
    fn jungfrau(min_spots: u32) -> Bench {
        Bench {
            geometry: DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap(),
            calibration: CalibrationSection::default(),
            features: FeaturesSection::default(),
            trigger: TriggerSection {
                kind: TriggerKind::Spots,
                spots: SpotsTriggerSection { min_spots, ..SpotsTriggerSection::default() },
                ..TriggerSection::default()
            },
            stored_pixels: None,
            split_chips: false,
        }
    }

    fn image(&self) -> crate::detector::PanelImage {
        crate::detector::PanelImage::for_geometry(&self.geometry, self.split_chips)
    }

    fn plan(&self) -> Arc<ReducerPlan> {
        let settings = ReducerSettings {
            geometry: &self.geometry,
            calibration: &self.calibration,
            features: &self.features,
            trigger: &self.trigger,
            panel_image: self.image(),
            panel_origins: vec![(0, 0)],
            beam_center_px: (256.0, 512.0),
            photon_energy_kev: 12.4,
            diffraction: crate::features::summary::Diffraction {
                beam_px: (256.0, 512.0),
                distance_mm: 100.0,
                pixel_mm: 0.075,
                photon_energy_kev: 12.4,
            },
            stored_pixels: self.stored_pixels,
        };
        Arc::new(ReducerPlan::new(&settings).unwrap())
    }

    fn pool(&self, slots: usize) -> Arc<FramePool> {
        let g = &self.geometry;
        let room = self.stored_pixels.map_or(0, |p| crate::codec::chunk_bound(p, g, &self.image()));
        FramePool::with_chunk_room(g.frame_bytes(), g.packets_per_frame(), slots, 64, room).unwrap()
    }
}

/// A frame slot whose packets came, but those in `lost`.
fn arrived(pool: &Arc<FramePool>, sequence: u64, lost: &[usize]) -> FrameHandle {
    let mut f = pool.try_acquire().unwrap();
    f.meta_mut().sequence = sequence;
    f.meta_mut().frame_number = sequence + 1;
    let packets = f.meta().packets_expected as usize;
    for i in (0..packets).filter(|i| !lost.contains(i)) {
        f.mark_packet(i);
    }
    f.meta_mut().packets_received = (packets - lost.len()) as u32;
    f
}

fn whole(pool: &Arc<FramePool>, sequence: u64) -> FrameHandle {
    arrived(pool, sequence, &[])
}

/// Background, with a 3 × 3 spot of `photons` per pixel at each of `centres`, into `f`.
fn paint(f: &mut FrameHandle, centres: &[(usize, usize)], photons: f32) {
    let cols = 1024;
    let spot = PEDESTAL + (photons * ADU_PER_PHOTON) as u16;
    for (i, pixel) in f.data_mut().chunks_exact_mut(2).enumerate() {
        let (r, c) = (i / cols, i % cols);
        let lit = centres.iter().any(|&(sr, sc)| r.abs_diff(sr) <= 1 && c.abs_diff(sc) <= 1);
        pixel.copy_from_slice(&if lit { spot } else { PEDESTAL }.to_le_bytes());
    }
}

/// A whole frame of background with a 3 × 3 spot of `photons` per pixel at each of `centres`.
fn frame(pool: &Arc<FramePool>, sequence: u64, centres: &[(usize, usize)], photons: f32) -> FrameHandle {
    let mut f = whole(pool, sequence);
    paint(&mut f, centres, photons);
    f
}

#[test]
fn spots_are_found_where_they_were_put_and_counted_into_the_verdict() {
    let bench = Bench::jungfrau(2);
    let mut reducer = Reducer::new(bench.plan()).unwrap();
    let pool = bench.pool(4);
    let mut hit = frame(&pool, 0, &[(100, 200), (300, 700)], 10.0);
    reducer.reduce(&mut hit);
    let f = hit.features();
    assert_eq!(f.spots_found, 2);
    assert!((f.score, f.accepted, f.trigger_failed) == (2.0, true, false), "{f:?}");
    let mut centres: Vec<(f32, f32)> = f.spots.iter().map(|s| (s.image_row, s.image_col)).collect();
    centres.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(centres, vec![(100.0, 200.0), (300.0, 700.0)]);
    assert!(f.spots.iter().all(|s| (s.photons - 90.0).abs() < 0.5 && s.pixels == 9), "{:?}", f.spots);
    let mut miss = frame(&pool, 1, &[(100, 200)], 10.0);
    reducer.reduce(&mut miss);
    assert_eq!((miss.features().spots_found, miss.features().accepted), (1, false));
}

#[test]
fn in_the_assembled_module_a_spot_on_a_chip_border_keeps_its_photons_and_its_place() {
    let mut bench = Bench::jungfrau(1);
    bench.split_chips = true;
    let mut reducer = Reducer::new(bench.plan()).unwrap();
    let pool = bench.pool(2);
    // Raw columns 254–256 straddle the border of chips 0 and 1 (255 and 256 are double pixels).
    let mut f = frame(&pool, 0, &[(100, 255), (300, 700)], 10.0);
    reducer.reduce(&mut f);
    let mut spots = f.features().spots.clone();
    spots.sort_by(|a, b| a.image_row.total_cmp(&b.image_row));
    assert_eq!(spots.len(), 2, "{spots:?}");
    let (border, inner) = (spots[0], spots[1]);
    // 10 photons in raw 254, 5 + 5 in each half of 255 and of 256: the centre of mass moves to
    // (254·10 + (255 + 256 + 257 + 258)·5) / 30 in the 1030-column image.
    assert!((border.image_row - 100.0).abs() < 1e-3 && (border.image_col - 7670.0 / 30.0).abs() < 1e-3, "{border:?}");
    assert!((border.photons - 90.0).abs() < 0.5 && border.pixels == 15, "{border:?}");
    // Past one gap row and two gap columns on each axis.
    assert_eq!((inner.image_row, inner.image_col), (302.0, 704.0));
    assert!((inner.photons - 90.0).abs() < 0.5 && inner.pixels == 9, "{inner:?}");
}

#[test]
fn dark_frames_are_set_aside_unjudged() {
    let mut bench = Bench::jungfrau(1);
    bench.calibration.dark_frames = 2;
    let plan = bench.plan();
    assert_eq!(plan.dark_frames(), 2);
    assert!(plan.pedestal_tracker().is_some());
    let mut reducer = Reducer::new(Arc::clone(&plan)).unwrap();
    let pool = bench.pool(2);
    let mut dark = frame(&pool, 1, &[(100, 200)], 10.0);
    reducer.reduce(&mut dark);
    let f = dark.features();
    assert!(f.dark && !f.accepted && f.spots_found == 0, "{f:?}");
}

#[test]
fn a_batch_is_judged_as_its_frames_are_one_by_one() {
    let bench = Bench::jungfrau(2);
    let pool = bench.pool(8);
    let spots = [vec![], vec![(50, 50)], vec![(50, 50), (400, 900)], vec![(10, 10), (200, 300), (500, 1000)]];
    let mut alone = Reducer::new(bench.plan()).unwrap();
    let mut verdicts = Vec::new();
    for (i, centres) in spots.iter().enumerate() {
        let mut f = frame(&pool, i as u64, centres, 8.0);
        alone.reduce(&mut f);
        verdicts.push((f.features().spots_found, f.features().accepted));
    }
    let mut together = Reducer::new(bench.plan()).unwrap();
    let mut batch: Vec<FrameHandle> =
        spots.iter().enumerate().map(|(i, c)| frame(&pool, 10 + i as u64, c, 8.0)).collect();
    let mut done = Vec::new();
    together
        .reduce_batch(&mut batch, |f| done.push((f.meta().sequence, f.features().spots_found, f.features().accepted)));
    assert!(batch.is_empty());
    let order: Vec<u64> = done.iter().map(|d| d.0).collect();
    assert_eq!(order, vec![10, 11, 12, 13], "handed on in the order given");
    assert_eq!(done.iter().map(|d| (d.1, d.2)).collect::<Vec<_>>(), verdicts);
    assert_eq!(verdicts, vec![(0, false), (1, false), (2, true), (3, true)]);
}

#[test]
fn kept_frames_leave_compressed_in_the_stored_pixels_and_rejected_ones_do_not() {
    let mut bench = Bench::jungfrau(1);
    bench.stored_pixels = Some(StoredPixels::PhotonsU32);
    let mut reducer = Reducer::new(bench.plan()).unwrap();
    let pool = bench.pool(2);
    let mut kept = frame(&pool, 0, &[(100, 200)], 10.0);
    reducer.reduce(&mut kept);
    let photons = decompress(&kept.features().chunk, 4).unwrap();
    let at = |r: usize, c: usize| u32::from_le_bytes(photons[(r * 1024 + c) * 4..][..4].try_into().unwrap());
    assert_eq!((at(100, 200), at(99, 199), at(0, 0)), (10, 10, 0));
    let mut rejected = frame(&pool, 1, &[], 0.0);
    reducer.reduce(&mut rejected);
    assert!(!rejected.features().accepted && rejected.features().chunk.is_empty());
}

#[test]
fn a_counting_detectors_masked_pixels_hold_no_spot() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = DetectorGeometry::with_consecutive_ports("eiger-10g-16bit", 1, 50001).unwrap();
    let (panels, rows, cols) = geometry.panels();
    let mut mask = PixelMask::none(panels * rows * cols);
    for p in [10 * cols + 10, 10 * cols + 11, 11 * cols + 10, 11 * cols + 11] {
        mask.set(p, crate::calib::mask::HOT);
    }
    let mask_file = dir.path().join("mask.bin");
    mask.save(&mask_file).unwrap();
    let mut bench = Bench::jungfrau(1);
    bench.geometry = geometry;
    bench.calibration.mask_file = Some(mask_file);
    let plan = bench.plan();
    let mut reducer = Reducer::new(Arc::clone(&plan)).unwrap();
    let pool = bench.pool(2);
    let mut f = whole(&pool, 0);
    for (i, px) in f.data_mut().chunks_exact_mut(2).enumerate() {
        let (panel, r, c) = (i / (rows * cols), i % (rows * cols) / cols, i % cols);
        // In the first panel, a 2 × 2 block of 50 counts under the mask, another one in the clear.
        let lit = panel == 0 && (10..12).contains(&r) && ((10..12).contains(&c) || (40..42).contains(&c));
        px.copy_from_slice(&if lit { 50u16 } else { 0 }.to_le_bytes());
    }
    reducer.reduce(&mut f);
    let found: Vec<(f32, f32)> = f.features().spots.iter().map(|s| (s.row, s.col)).collect();
    assert_eq!(found, vec![(10.5, 40.5)]);
}

#[test]
fn saturated_pixels_and_lost_packets_are_flagged_not_counted_as_photons() {
    let mut bench = Bench::jungfrau(1);
    bench.stored_pixels = Some(StoredPixels::PhotonsU32);
    let mut reducer = Reducer::new(bench.plan()).unwrap();
    let pool = bench.pool(2);
    // Packet 10 (rows 40–43: 8192 bytes, 4096 pixels) never came; its place holds zeros.
    let mut f = arrived(&pool, 0, &[10]);
    paint(&mut f, &[(100, 200)], 10.0);
    f.data_mut()[10 * 8192..11 * 8192].fill(0);
    // A saturated G2 pixel and an invalid gain code inside the spot, a saturated G1 pixel elsewhere.
    for (at, raw) in [(100 * 1024 + 200, 3u16 << 14), (100 * 1024 + 201, 2 << 14), (300 * 1024 + 7, 1 << 14)] {
        f.data_mut()[at * 2..at * 2 + 2].copy_from_slice(&raw.to_le_bytes());
    }
    reducer.reduce(&mut f);
    let features = f.features();
    assert_eq!(features.pixels_flagged, 3 + 4096);
    assert_eq!(features.spots_found, 1, "the spot is still found, around its flagged pixels");
    assert!(features.spots[0].photons < 90.0 && features.spots[0].pixels == 7, "{:?}", features.spots);
    let photons = decompress(&features.chunk, 4).unwrap();
    let at = |r: usize, c: usize| u32::from_le_bytes(photons[(r * 1024 + c) * 4..][..4].try_into().unwrap());
    assert_eq!((at(100, 200), at(100, 201), at(300, 7)), (u32::MAX, u32::MAX, u32::MAX));
    assert_eq!((at(40, 0), at(43, 1023), at(44, 0)), (u32::MAX, u32::MAX, 0), "the lost packet's rows, not more");
}
