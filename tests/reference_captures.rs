//! The vendor's own receiver (slsReceiver 9.2) wrote, from the very same packet streams as the captures
//! in `../shared/captures/`, one file per UDP port: per frame a 112-byte header (the 48-byte detector
//! header with `packetNumber` replaced by the packets caught, then a 64-byte mask of packets received)
//! and the port's image. We assemble each capture and compare, for every frame and every port: the image
//! byte for byte, the frame number, the packets-caught count and the packet mask.
//!
//! The captures live beside the checkout, never in the repository; where they are absent these tests
//! fail in CI and say they are skipped elsewhere (`common::missing`).

mod common;

use std::path::PathBuf;

use hitgate::detector::DetectorGeometry;
use hitgate::frame::{Assembler, AssemblerConfig, FramePool};
use hitgate::ingest::Capture;
use hitgate::ingest::raw::RawRun;

fn captures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HITGATE_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/captures"));
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        common::missing(&format!("the reference captures at {} (set HITGATE_CAPTURES)", dir.display()));
        None
    }
}

struct ReceiverFrame {
    frame_number: u64,
    packets_caught: u32,
    mask: [u8; 64],
    image: Vec<u8>,
}

fn receiver_frames(path: &PathBuf, image_bytes: usize) -> Vec<ReceiverFrame> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len() % (112 + image_bytes), 0, "{}", path.display());
    bytes
        .chunks_exact(112 + image_bytes)
        .map(|c| ReceiverFrame {
            frame_number: u64::from_le_bytes(c[0..8].try_into().unwrap()),
            packets_caught: u32::from_le_bytes(c[12..16].try_into().unwrap()),
            mask: c[48..112].try_into().unwrap(),
            image: c[112..].to_vec(),
        })
        .collect()
}

fn check(capture: &str, model: &str, ports: &[u16], expected_frames: usize) {
    let Some(dir) = captures_dir() else { return };
    check_file(&dir, &dir.join(capture), capture, model, ports, expected_frames);
}

fn check_file(
    dir: &std::path::Path,
    file: &std::path::Path,
    capture: &str,
    model: &str,
    ports: &[u16],
    expected_frames: usize,
) {
    let geometry = DetectorGeometry::new(model, 1, ports.to_vec()).unwrap();
    let pool = FramePool::new(geometry.frame_bytes(), geometry.packets_per_frame(), 8, 0).unwrap();
    let mut assembler = Assembler::new(geometry.clone(), AssemblerConfig::default(), pool);
    let cap = Capture::open(file).unwrap();
    let stem = capture.trim_end_matches(".pcap");
    let reference: Vec<Vec<ReceiverFrame>> = (0..ports.len())
        .map(|d| {
            let file = dir.join(format!("slsreceiver-output/{stem}_d{d}_f0_0.raw"));
            receiver_frames(&file, geometry.model.port_image_bytes())
        })
        .collect();
    let mut compared = 0;
    let mut check_frame = |frame: hitgate::frame::FrameHandle| {
        let meta = *frame.meta();
        assert!(meta.is_complete(), "{capture}: frame {} partial", meta.frame_number);
        for (port, frames) in reference.iter().enumerate() {
            let r = frames.iter().find(|r| r.frame_number == meta.frame_number).expect("receiver wrote it");
            let ours = &frame.data()[geometry.port_range(port)];
            assert!(ours == r.image.as_slice(), "{capture}: frame {} port {port} differs", meta.frame_number);
            let ppp = geometry.model.packets_per_port();
            assert_eq!(r.packets_caught as usize, ppp);
            for n in 0..512 {
                let theirs = r.mask[n / 8] & (1 << (n % 8)) != 0;
                let ours = n < ppp && frame.has_packet(geometry.packet_index(port, n));
                assert_eq!(ours, theirs, "{capture}: frame {} port {port} mask bit {n}", meta.frame_number);
            }
        }
        compared += 1;
    };
    for record in cap.records() {
        let record = record.unwrap();
        let udp = record.udp().unwrap();
        assembler.push(udp.dst_port, udp.payload, record.timestamp_ns).unwrap();
        while let Some(f) = assembler.pop_ready() {
            check_frame(f);
        }
    }
    assembler.flush();
    while let Some(f) = assembler.pop_ready() {
        check_frame(f);
    }
    assert_eq!(compared, expected_frames, "{capture}");
    assert_eq!(reference[0].len(), expected_frames);
    let c = assembler.counters();
    assert_eq!(c.packets_offered(), c.packets_placed, "{capture}: no packet dropped");
}

#[test]
fn jungfrau_one_interface_matches_slsreceiver() {
    check("jf1if.pcap", "jungfrau-1if", &[50001], 16);
}

#[test]
fn jungfrau_two_interfaces_match_slsreceiver() {
    check("jf2if.pcap", "jungfrau-2if", &[50001, 50002], 8);
}

#[test]
fn eiger_half_module_16bit_matches_slsreceiver() {
    check("eiger16.pcap", "eiger-10g-16bit", &[50011, 50012], 8);
}

/// The same comparison on the vendor capture rewritten by Wireshark's editcap as pcapng and as
/// nanosecond pcap: our reader must agree with a writer that is not ours.
#[test]
fn editcap_rewrites_assemble_identically() {
    let Some(dir) = captures_dir() else { return };
    if std::process::Command::new("editcap").arg("-V").output().is_err() {
        common::missing("editcap (Wireshark's; scripts/setup installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for format in ["pcapng", "nsecpcap"] {
        let out = tmp.path().join(format!("jf2if.{format}"));
        let status = std::process::Command::new("editcap")
            .args(["-F", format, dir.join("jf2if.pcap").to_str().unwrap(), out.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "editcap -F {format}");
        check_file(&dir, &out, "jf2if.pcap", "jungfrau-2if", &[50001, 50002], 8);
    }
}

/// A frame as assembled: its number, bytes and packet mask.
type Assembled = (u64, Vec<u8>, Vec<u64>, bool);

fn assemble(geometry: &DetectorGeometry, mut feed: impl FnMut(&mut Assembler)) -> Vec<Assembled> {
    // Room for every frame of a run: they are taken out only at the end.
    let pool = FramePool::new(geometry.frame_bytes(), geometry.packets_per_frame(), 32, 0).unwrap();
    let mut assembler = Assembler::new(geometry.clone(), AssemblerConfig::default(), pool);
    feed(&mut assembler);
    assembler.flush();
    let mut out = Vec::new();
    while let Some(f) = assembler.pop_ready() {
        out.push((f.meta().frame_number, f.data().to_vec(), f.packet_mask().to_vec(), f.meta().is_complete()));
    }
    out
}

/// slsReceiver's files of each vendor capture, replayed as the packets they were caught as, give the
/// very frames the capture itself gives: pixels, frame numbers and packet masks.
#[test]
fn slsreceiver_raw_files_replay_to_the_frames_of_their_captures() {
    let Some(dir) = captures_dir() else { return };
    for (stem, model, ports, frames) in [
        ("jf1if", "jungfrau-1if", vec![50001u16], 16),
        ("jf2if", "jungfrau-2if", vec![50001, 50002], 8),
        ("eiger16", "eiger-10g-16bit", vec![50011, 50012], 8),
    ] {
        let geometry = DetectorGeometry::new(model, 1, ports.clone()).unwrap();
        let run = RawRun::open(&dir.join(format!("slsreceiver-output/{stem}_master_0.json"))).unwrap();
        assert_eq!((run.model().name, run.ports(), run.total_frames()), (model, ports.len(), frames));
        let from_files = assemble(&geometry, |a| {
            let (read, error) = run.replay(|port, packet, ts| {
                a.push(ports[port], packet, ts).unwrap();
                true
            });
            assert!(error.is_none(), "{stem}: {error:?}");
            assert_eq!(read.frames, frames as u64);
        });
        let cap = Capture::open(&dir.join(format!("{stem}.pcap"))).unwrap();
        let from_capture = assemble(&geometry, |a| {
            for record in cap.records() {
                let record = record.unwrap();
                let udp = record.udp().unwrap();
                a.push(udp.dst_port, udp.payload, record.timestamp_ns).unwrap();
            }
        });
        assert_eq!(from_files.len(), frames, "{stem}");
        assert!(from_files.iter().all(|f| f.3), "{stem}: every frame whole");
        assert!(from_files == from_capture, "{stem}: the raw files' frames differ from the capture's");
    }
}
