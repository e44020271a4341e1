//! The durable forward's throughput beside a bare ZeroMQ push of the same bytes, in the same run: a
//! simulated JUNGFRAU 4M's frames compressed as the HDF5 sink stores them (raw pixels, bitshuffle-LZ4),
//! then, each timed from the first frame handed over until the last is on the other side:
//!
//! - bare ZeroMQ PUSH → PULL on 127.0.0.1 of each chunk (the limit: one copy through the kernel);
//! - the live stream sink (DECTRIS Stream V2 CBOR over the same PUSH), read by a PULL consumer;
//! - the JetStream forward sink, to a nats-server on 127.0.0.1 with file storage on this machine's
//!   disk, until every message is acknowledged (stored), chunks cut at the default 1 MiB payload.
//!
//! `cargo bench --bench forward` (needs `nats-server`, installed by `scripts/setup`)

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use hitgate::codec::bitshuffle::{ChunkCompressor, ElementSize};
use hitgate::config::{ForwardSection, StoredPixels, StreamSection};
use hitgate::sim::SimConfig;
use hitgate::sink::{FrameRecord, Sink};

const ROUNDS: usize = 3;

/// A PULL consumer on its own thread that takes `messages` messages and says how many bytes.
fn pull(context: &zmq::Context, endpoint: &str, messages: usize) -> std::thread::JoinHandle<u64> {
    let socket = context.socket(zmq::PULL).unwrap();
    socket.connect(endpoint).unwrap();
    std::thread::spawn(move || {
        let mut bytes = 0;
        for _ in 0..messages {
            bytes += socket.recv_bytes(0).unwrap().len() as u64;
        }
        bytes
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(server) = common::nats_server() else {
        println!("no nats-server: nothing measured (scripts/setup installs it)");
        return;
    };
    let frames = 40;
    let (dir, sim) = common::simulated(&SimConfig {
        frames,
        hit_rate: 0.5,
        seed: 812,
        modules: 8,
        modules_per_row: 2,
        ..SimConfig::default()
    });
    let config = hitgate::config::Config::load(&sim.replay_config).unwrap();
    let geometry = config.geometry().unwrap();
    let handles = common::assembled(&sim.capture, &geometry, frames as usize, 64);
    let mut compressor = ChunkCompressor::default();
    let records: Vec<FrameRecord> = handles
        .iter()
        .map(|h| {
            let mut r = FrameRecord::with_capacity(0, h.packet_mask().len(), 0);
            r.meta = *h.meta();
            r.packet_mask.extend_from_slice(h.packet_mask());
            r.features.accepted = true;
            compressor.compress(h.data(), ElementSize::new(2).unwrap(), &mut r.payload);
            r
        })
        .collect();
    let bytes: u64 = records.iter().map(|r| r.payload.len() as u64).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "JUNGFRAU 4M, {} kept frames, chunks of {:.2} MB on average ({mb:.0} MB); {ROUNDS} rounds each, the median",
        records.len(),
        mb / records.len() as f64
    );
    println!("{:<64} {:>10} {:>10} {:>8}", "path", "MB/s", "frames/s", "× bare");

    let context = zmq::Context::new();
    let mut bare = Vec::new();
    for round in 0..ROUNDS {
        let endpoint = format!("tcp://127.0.0.1:{}", 31100 + round);
        let push = context.socket(zmq::PUSH).unwrap();
        // The stream sink's default high-water mark: the same queue between the two ends.
        push.set_sndhwm(StreamSection::at(&endpoint).high_water_mark).unwrap();
        push.bind(&endpoint).unwrap();
        let consumer = pull(&context, &endpoint, records.len());
        // Timed once connected, as the stream sink is.
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        for r in &records {
            push.send(&r.payload[..], 0).unwrap();
        }
        assert_eq!(consumer.join().unwrap(), bytes);
        bare.push(t0.elapsed().as_secs_f64());
    }
    let bare = median(bare);
    let line = |name: &str, s: f64| {
        println!("{name:<64} {:>10.0} {:>10.1} {:>8.2}", mb / s, records.len() as f64 / s, bare / s);
    };
    line("bare ZeroMQ PUSH → PULL of the chunks", bare);

    let mut stream = Vec::new();
    for round in 0..ROUNDS {
        let endpoint = format!("tcp://127.0.0.1:{}", 31200 + round);
        let mut section = StreamSection::at(&endpoint);
        section.send_timeout_ms = 10_000;
        let mut sink = hitgate::sink::stream::StreamSink::create(&section, &config.experiment(&geometry)).unwrap();
        // start, the images, end
        let consumer = pull(&context, &endpoint, records.len() + 2);
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        for r in &records {
            sink.write(r).unwrap();
        }
        let report = sink.finish().unwrap();
        assert!(consumer.join().unwrap() >= bytes);
        stream.push(t0.elapsed().as_secs_f64());
        assert_eq!(report.frames_not_sent, 0);
    }
    line("live stream sink (Stream V2 CBOR over PUSH) → PULL", median(stream));

    let (mut child, port) = common::start_nats(server, &dir.path().join("nats"));
    let mut forward = Vec::new();
    for round in 0..ROUNDS {
        let mut section = ForwardSection::to(&format!("nats://127.0.0.1:{port}"));
        section.stream = format!("BENCH_{round}");
        section.subject = format!("bench.r{round}");
        section.pixels = StoredPixels::Raw;
        let mut sink = hitgate::scaleout::forward::sink::JetstreamSink::create(
            &section,
            &geometry,
            &hitgate::detector::PanelImage::for_geometry(&geometry, true),
        )
        .unwrap();
        let t0 = Instant::now();
        for r in &records {
            sink.write(r).unwrap();
        }
        let report = sink.finish().unwrap();
        forward.push(t0.elapsed().as_secs_f64());
        assert_eq!(report.frames_written, records.len() as u64);
    }
    line("JetStream forward sink → nats-server, file storage, acknowledged", median(forward));
    let _ = child.kill();
    let _ = child.wait();
}
