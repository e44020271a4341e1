use std::sync::Arc;

use super::picture::SHELLS;
use super::*;
use crate::calib::Photons;
use crate::config::Config;
use crate::features::Spot;
use crate::frame::FramePool;

/// JUNGFRAU modules one above the other, 36 rows apart, the beam at (row 600, column 500) of the image.
fn config(modules: usize) -> Config {
    let text = format!(
        "[detector]\nmodel = \"jungfrau-1if\"\nmodules = {modules}\nmodule_gap_rows_px = 36\nbeam_center_row_px = 600.0\n\
         beam_center_col_px = 500.0\n[[sink]]\nkind = \"null\"\n"
    );
    Config::parse(&text).unwrap().validated().unwrap()
}

fn monitor(modules: usize) -> (Arc<Monitor>, Arc<FramePool>) {
    let config = config(modules);
    let geometry = config.geometry().unwrap();
    let monitor = Monitor::new(&config.experiment(&geometry), geometry.frame_bytes() / 2);
    let pool = FramePool::with_chunk_room(geometry.frame_bytes(), geometry.packets_per_frame(), 4, 16, 0).unwrap();
    (monitor, pool)
}

/// A judged frame of `photons` counts in every pixel, with spots at image positions `spots`, and
/// every packet of the first module arrived.
fn frame(pool: &Arc<FramePool>, number: u64, accepted: bool, photons: u16, spots: &[(f32, f32)]) -> FrameHandle {
    let mut f = pool.try_acquire().unwrap();
    f.meta_mut().frame_number = number;
    f.data_mut().chunks_exact_mut(2).for_each(|p| p.copy_from_slice(&photons.to_le_bytes()));
    for i in 0..128 {
        f.mark_packet(i);
    }
    let features = f.pixels_and_features().1;
    features.accepted = accepted;
    features.score = spots.len() as f32;
    features.spots_found = spots.len() as u32;
    for &(image_row, image_col) in spots {
        features.spots.push(Spot { image_row, image_col, ..Spot::default() });
    }
    f
}

#[test]
fn the_layout_holds_every_module_and_keeps_pictures_within_their_longest_side() {
    let (two, _) = monitor(2);
    let l = &two.layout;
    assert_eq!((l.height, l.width), (2 * 514 + 36, 1030));
    assert_eq!((l.scale, l.display_shape()), (1, (1030, l.height)));
    assert_eq!(l.display_index(600.4, 500.9), Some(600 * 1030 + 500));
    assert_eq!(l.display_index(-1.0, 3.0), None);
    assert_eq!(l.display_index(3.0, 1030.0), None);
    assert!(l.q(600.0, 500.0) < 1e-9, "no momentum transfer at the beam");
    assert!(l.q(600.0, 900.0) > l.q(600.0, 700.0), "q grows away from the beam");
    let q = l.shell_q();
    assert!(q.windows(2).all(|w| w[1] > w[0]) && q[SHELLS - 1] < l.q_max);
    let (eight, _) = monitor(8);
    let (w, h) = eight.layout.display_shape();
    assert!(eight.layout.scale >= 2 && w.max(h) <= 1200, "a 4M is binned: {w} × {h}");
}

#[test]
fn the_feed_counts_every_judged_frame_and_places_every_spot() {
    let (monitor, pool) = monitor(2);
    let mut feed = MonitorFeed::new(Arc::clone(&monitor));
    feed.observe(&frame(&pool, 1, true, 0, &[(600.0, 500.0), (10.5, 20.5)]));
    feed.observe(&frame(&pool, 2, false, 0, &[(600.2, 500.7)]));
    let mut dark = frame(&pool, 3, false, 0, &[(5.0, 5.0)]);
    dark.pixels_and_features().1.dark = true;
    feed.observe(&dark);
    drop(dark);
    feed.publish(true);
    let view = monitor.view();
    assert_eq!(
        (view["frames"].as_u64(), view["frames_accepted"].as_u64()),
        (Some(2), Some(1)),
        "dark frames are not judged"
    );
    assert_eq!(view["module_packets"], json!([256, 0]), "the first module's packets of two frames");
    assert_eq!(view["scores"], json!([2.0, 1.0]));
    let mut points: Vec<Vec<u64>> = serde_json::from_value(view["powder"]["points"].clone()).unwrap();
    points.sort();
    assert_eq!(points, vec![vec![20, 10, 1], vec![500, 600, 2]], "column, row, spots there");
    assert_eq!(view["powder"]["beam"], json!([500.0, 600.0]));
    assert!(view["last_hit"].is_null(), "nothing drawn before the control plane's turn");
}

#[test]
fn a_sampled_kept_frame_is_drawn_and_its_background_measured_in_resolution() {
    let (monitor, pool) = monitor(2);
    let mut feed = MonitorFeed::new(Arc::clone(&monitor));
    feed.observe(&frame(&pool, 7, true, 3, &[(600.0, 500.0)]));
    // One sample at a time: the next kept frame, before the control plane has drawn this one, is not.
    feed.observe(&frame(&pool, 8, true, 3, &[]));
    feed.publish(true);
    monitor.tick(&Photons::Counting { mask: Vec::new() });
    let view = monitor.view();
    assert_eq!(view["frames_sampled"].as_u64(), Some(1));
    let hit = &view["last_hit"];
    assert_eq!((hit["frame_number"].as_u64(), hit["spots_found"].as_u64()), (Some(7), Some(1)));
    let png = monitor.last_hit_png().unwrap();
    let side = |at: usize| u64::from(u32::from_be_bytes(png[at..at + 4].try_into().unwrap()));
    assert_eq!((side(16), side(20)), (hit["width"].as_u64().unwrap(), hit["height"].as_u64().unwrap()));
    // Drawn, the next waits at least 250 ms, or forty times what drawing took.
    feed.observe(&frame(&pool, 9, true, 3, &[]));
    monitor.tick(&Photons::Counting { mask: Vec::new() });
    assert_eq!(monitor.view()["frames_sampled"].as_u64(), Some(1));
    // Every pixel holds 3 photons: each shell the detector covers reads 3, the others nothing.
    let profile = view["profile"]["photons_per_pixel"].as_array().unwrap();
    assert_eq!(profile.len(), SHELLS);
    let covered: Vec<f64> = profile.iter().filter_map(serde_json::Value::as_f64).collect();
    assert!(covered.len() > SHELLS / 2 && covered.iter().all(|&v| v == 3.0), "{profile:?}");
}

#[test]
fn a_picture_marks_gaps_and_circles_spots_within_its_bounds() {
    let (monitor, _) = monitor(2);
    let mut scratch = picture::Scratch::new(&monitor.layout);
    let sample = Sample {
        raw: vec![5; monitor.layout.panel_raw_pixels * 2],
        spots: vec![(600.0, 500.0), (1.0, 1.0), (5000.0, 5000.0)],
        frame_number: 1,
        accepted: true,
        score: 3.0,
        spots_found: 3,
    };
    let measured = scratch.measure(&monitor.layout, &Photons::Counting { mask: Vec::new() }, &sample);
    assert_eq!(measured.background, Some(5.0));
    let png = measured.png.expect("a kept frame is drawn");
    assert_eq!(&png[1..4], b"PNG");
    let (w, _) = monitor.layout.display_shape();
    let indices = scratch.indices();
    let gap_row = 514 + 18;
    assert_eq!(indices[gap_row * w + 100], 0, "between the modules: the gap colour");
    assert_eq!(indices[600 * w + 506], 255, "a circle around the spot, six pixels out");
    assert!(indices.iter().filter(|&&i| (1..255).contains(&i)).count() > indices.len() / 2);
}

#[test]
fn a_powder_pattern_spread_wider_than_a_page_draws_sends_its_most_visited_places() {
    let (monitor, _) = monitor(1);
    {
        let mut s = monitor.shared();
        for (i, n) in s.powder.iter_mut().enumerate().take(POWDER_POINTS + 500) {
            *n = if i % 300 == 0 { 50 } else { 1 };
        }
    }
    let view = monitor.view();
    let points = view["powder"]["points"].as_array().unwrap();
    assert_eq!(points.len(), POWDER_POINTS);
    assert_eq!(view["powder"]["places"].as_u64(), Some(POWDER_POINTS as u64 + 500));
    let busiest = (POWDER_POINTS + 500).div_ceil(300);
    assert_eq!(points.iter().filter(|p| p[2] == 50).count(), busiest, "every most visited place is sent");
}
