//! The live stream (DECTRIS Stream V2 over ZeroMQ) read by a consumer written the way beamline tools
//! read it — Python, pyzmq, cbor2 and dectris-compression — against the raw sink of the same run;
//! and a stream nobody reads, which must cost the run nothing but a count.

mod common;

use std::path::Path;
use std::process::Command;

use hitgate::config::{SinkSection, StreamSection};
use hitgate::sim::SimConfig;
use hitgate::sink::raw::{FLAG_AUDIT, read_index};

fn consumer_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/stream2_consumer.py")
}

#[test]
fn a_stream_v2_consumer_reads_every_kept_frame_as_the_raw_sink_stored_it() {
    let Some(python) = common::python_with("zmq, cbor2, numpy, dectris.compression") else { return };
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 60, hit_rate: 0.4, seed: 77, ..SimConfig::default() },
    );
    let endpoint = format!("tcp://127.0.0.1:{}", common::free_tcp_port());
    let received = dir.path().join("received");
    let mut consumer =
        Command::new(&python).arg(consumer_script()).arg(&endpoint).arg(&received).arg("60").spawn().unwrap();

    let mut config = common::replay_config(&sim);
    config.trigger.rate.audit_every = 5;
    let raw_dir = dir.path().join("raw");
    let mut stream = StreamSection::at(&endpoint);
    // The consumer connects while the run starts; the first message waits for it.
    stream.send_timeout_ms = 10_000;
    config.sinks =
        vec![SinkSection::Raw(hitgate::config::RawSection { dir: raw_dir.clone() }), SinkSection::Stream(stream)];
    let summary = common::replay(config, &sim.capture);
    let status = consumer.wait().unwrap();
    assert!(status.success(), "the consumer read the stream to its end\n{summary}");

    let index = read_index(&raw_dir.join("frames.idx")).unwrap();
    let raw = std::fs::read(raw_dir.join("frames.raw")).unwrap();
    let kept = summary.frames_accepted + summary.frames_audited;
    assert!(kept > 10 && summary.frames_audited > 0, "{summary}");
    assert_eq!(index.len() as u64, kept);
    let stream_report = summary.sinks.iter().find(|s| s.name == "stream").unwrap();
    assert_eq!((stream_report.frames_written, stream_report.frames_not_sent), (kept, 0), "{summary}");

    let messages: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(received.join("messages.json")).unwrap()).unwrap();
    let start = &messages["start"];
    assert_eq!((start["image_size_x"].as_u64(), start["image_size_y"].as_u64()), (Some(1024), Some(512)));
    assert_eq!(start["channels"], serde_json::json!(["threshold_1"]));
    assert!((start["pixel_size_x"].as_f64().unwrap() - 75e-6).abs() < 1e-12);
    assert!(start["arm_date"].as_str().unwrap().starts_with("20"), "{start}");
    let unique = start["series_unique_id"].as_str().unwrap();
    assert_eq!(messages["end"]["series_unique_id"].as_str(), Some(unique));

    let images = messages["images"].as_array().unwrap();
    assert_eq!(images.len() as u64, kept);
    let frame_bytes = 512 * 1024 * 2;
    for (record, image) in index.iter().zip(images) {
        // In frame order, each the frame the raw sink stored, pixel for pixel.
        let user = &image["user_data"];
        assert_eq!(user["frame_number"].as_u64(), Some(record.frame_number.get()));
        assert_eq!(image["series_unique_id"].as_str(), Some(unique));
        assert_eq!(user["audit"].as_bool(), Some(record.flags.get() & FLAG_AUDIT != 0));
        assert_eq!(user["score"].as_f64().map(|s| s as f32), Some(record.score.get()));
        assert_eq!(image["shape"], serde_json::json!([512, 1024]));
        assert_eq!(image["dtype"], "<u2");
        let npy = std::fs::read(received.join(format!("image-{}.npy", image["image_id"]))).unwrap();
        let offset = record.offset.get() as usize;
        let stored = &raw[offset..offset + frame_bytes];
        assert!(npy.ends_with(stored), "image {} differs from the raw sink's frame", image["image_id"]);
    }
}

#[test]
fn photons_stream_in_the_assembled_module_with_the_beam_where_the_config_puts_it() {
    let Some(python) = common::python_with("zmq, cbor2, numpy, dectris.compression") else { return };
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 20, hit_rate: 0.5, seed: 79, ..SimConfig::default() },
    );
    let endpoint = format!("tcp://127.0.0.1:{}", common::free_tcp_port());
    let received = dir.path().join("received");
    let mut consumer =
        Command::new(&python).arg(consumer_script()).arg(&endpoint).arg(&received).arg("60").spawn().unwrap();
    let mut config = common::replay_config(&sim);
    let mut stream = StreamSection::at(&endpoint);
    stream.send_timeout_ms = 10_000;
    stream.pixels = hitgate::config::StoredPixels::PhotonsF32;
    config.sinks = vec![SinkSection::Stream(stream)];
    let beam = config.beam_center_px();
    let summary = common::replay(config, &sim.capture);
    assert!(consumer.wait().unwrap().success(), "{summary}");
    let kept = summary.frames_accepted + summary.frames_audited;
    let messages: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(received.join("messages.json")).unwrap()).unwrap();
    let start = &messages["start"];
    assert_eq!((start["image_size_x"].as_u64(), start["image_size_y"].as_u64()), (Some(1030), Some(514)));
    assert_eq!((start["beam_center_y"].as_f64(), start["beam_center_x"].as_f64()), (Some(beam.0), Some(beam.1)));
    let images = messages["images"].as_array().unwrap();
    assert!(kept > 5 && images.len() as u64 == kept, "{summary}");
    for image in images {
        assert_eq!(image["shape"], serde_json::json!([514, 1030]));
        assert_eq!(image["dtype"], "<f4");
    }
}

#[test]
fn a_stream_nobody_reads_counts_what_it_could_not_send_and_the_run_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(
        &dir.path().join("sim"),
        &SimConfig { frames: 30, hit_rate: 0.5, seed: 78, ..SimConfig::default() },
    );
    let mut config = common::replay_config(&sim);
    let raw_dir = dir.path().join("raw");
    let mut stream = StreamSection::at(&format!("tcp://127.0.0.1:{}", common::free_tcp_port()));
    stream.send_timeout_ms = 5;
    config.sinks =
        vec![SinkSection::Stream(stream), SinkSection::Raw(hitgate::config::RawSection { dir: raw_dir.clone() })];
    let summary = common::replay(config, &sim.capture);
    let kept = summary.frames_accepted + summary.frames_audited;
    assert!(kept > 5, "{summary}");
    let stream_report = summary.sinks.iter().find(|s| s.name == "stream").unwrap();
    assert_eq!((stream_report.frames_written, stream_report.frames_not_sent), (0, kept), "{summary}");
    assert!(summary.to_string().contains(&format!("{kept} frames not sent: no consumer took them in time")));
    assert_eq!(read_index(&raw_dir.join("frames.idx")).unwrap().len() as u64, kept);
}

#[test]
fn an_endpoint_that_cannot_be_bound_is_refused_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::simulated(&dir.path().join("sim"), &SimConfig { frames: 2, ..SimConfig::default() });
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://127.0.0.1:{}", taken.local_addr().unwrap().port());
    let mut config = common::replay_config(&sim);
    config.sinks = vec![SinkSection::Stream(StreamSection::at(&endpoint))];
    let plan = hitgate::pipeline::Plan::new(config).unwrap();
    let capture = hitgate::ingest::Capture::open(&sim.capture).unwrap();
    let options = hitgate::pipeline::ReplayOptions { pace: hitgate::pipeline::Pace::AsFastAsPossible };
    let err = plan.replay(&capture, options, &hitgate::pipeline::Progress::default()).unwrap_err();
    let shown = format!("{err:#}");
    assert!(shown.contains(&endpoint) || format!("{err:?}").contains(&endpoint), "{shown}");
}
