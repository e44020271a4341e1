//! `hitgate send`: replays a capture's detector packets onto UDP with `sendmmsg` — at the recorded
//! pace × a factor, at a frame or packet rate, or as fast as possible; onto other destination ports;
//! several times over with frame numbers carried on; optionally damaged on the way (loss, reordering,
//! duplication, corrupted headers). It reports what it sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::detector::HEADER_BYTES;
use crate::ingest::udp::{SendBatch, UdpBatchSocket, UdpError};
use crate::ingest::{Capture, PcapError};
use crate::rng::Rng;

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SendPace {
    /// The capture's own timing, divided by `speed`.
    Recorded {
        speed: f64,
    },
    /// Whole frames at this rate, each as a burst.
    FrameRate {
        hz: f64,
    },
    /// Packets evenly spaced at this rate.
    PacketRate {
        per_second: f64,
    },
    AsFastAsPossible,
}

/// Damage done on the way, as fractions of packets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SendFaults {
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    /// A byte of the detector header overwritten at random.
    pub corrupt: f64,
    pub seed: u64,
}

/// Where the datagrams go.
#[derive(Clone, Debug, PartialEq)]
pub enum SendTarget {
    /// UDP to this host.
    Udp(IpAddr),
    /// Into a DMA ring, as the card would write it; `drop_when_full` drops (and counts) a payload that
    /// finds no free buffer instead of waiting for the host.
    Dma { path: std::path::PathBuf, drop_when_full: bool },
}

#[derive(Clone, Debug)]
pub struct SendOptions {
    pub target: SendTarget,
    /// Destination ports, in the order of the capture's own destination ports (ascending); one port
    /// per capture port. Empty keeps the capture's ports.
    pub ports: Vec<u16>,
    pub pace: SendPace,
    /// Times through the capture; frame numbers go on rising from one pass to the next.
    pub loops: u32,
    pub faults: SendFaults,
    /// Datagrams per `sendmmsg` call.
    pub batch: usize,
    pub send_buffer_bytes: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendSummary {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Datagrams of the capture that are not UDP to a mapped port.
    pub skipped: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub first_frame: u64,
    pub last_frame: u64,
    pub elapsed: Duration,
    /// The capture ended in damage; what came before was sent.
    pub input_error: Option<String>,
    /// Sending stopped early on request.
    pub interrupted: bool,
    /// Payloads a DMA card dropped because the host held every buffer.
    pub dma_dropped: u64,
}

impl std::fmt::Display for SendSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "sent         {} datagrams, {:.3} GB in {:.3} s: {:.0} datagrams/s, {:.2} GB/s",
            self.datagrams_sent,
            self.bytes_sent as f64 / 1e9,
            secs,
            self.datagrams_sent as f64 / secs,
            self.bytes_sent as f64 / 1e9 / secs
        )?;
        writeln!(f, "frames       {}..{}", self.first_frame, self.last_frame)?;
        writeln!(
            f,
            "damage       {} lost, {} reordered, {} duplicated, {} corrupted; {} datagrams of the capture not sent (not to a mapped port)",
            self.lost, self.reordered, self.duplicated, self.corrupted, self.skipped
        )?;
        if let Some(e) = &self.input_error {
            writeln!(f, "input damaged: {e} (everything before it was sent)")?;
        }
        if self.interrupted {
            writeln!(f, "interrupted before the end")?;
        }
        if self.dma_dropped > 0 {
            writeln!(f, "dma          {} payloads dropped: every buffer was held by the host", self.dma_dropped)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Capture(#[from] PcapError),
    #[error(transparent)]
    Socket(#[from] UdpError),
    #[error(transparent)]
    Dma(#[from] crate::ingest::dma::DmaError),
    #[error("sending failed")]
    Send(#[source] std::io::Error),
    #[error("{given} destination ports given for the capture's {needed} ports {ports:?}")]
    PortCount { given: usize, needed: usize, ports: Vec<u16> },
    #[error("the capture holds no UDP datagrams")]
    Empty,
    #[error("invalid option: {0}")]
    Option(String),
}

/// One datagram of the capture, located, not copied.
struct Planned {
    timestamp_ns: u64,
    port_index: usize,
    frame_number: u64,
}

/// Sends the capture as the options say, until done or `stop` is set.
///
/// # Errors
/// Bad options, a capture with nothing to send, or a socket that fails.
pub fn send(capture: &Capture, options: &SendOptions, stop: &AtomicBool) -> Result<SendSummary, SendError> {
    for (name, v) in [
        ("loss", options.faults.loss),
        ("reorder", options.faults.reorder),
        ("duplicate", options.faults.duplicate),
        ("corrupt", options.faults.corrupt),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(SendError::Option(format!("{name} = {v} is outside 0..=1")));
        }
    }
    let rate_ok = match options.pace {
        SendPace::Recorded { speed } => speed > 0.0 && speed.is_finite(),
        SendPace::FrameRate { hz } => hz > 0.0 && hz.is_finite(),
        SendPace::PacketRate { per_second } => per_second > 0.0 && per_second.is_finite(),
        SendPace::AsFastAsPossible => true,
    };
    if !rate_ok || options.loops == 0 {
        return Err(SendError::Option("rates and speed must be positive and finite, loops at least 1".into()));
    }
    // First pass: the capture's destination ports, frame range and timing.
    let mut summary = SendSummary::default();
    let mut capture_ports: Vec<u16> = Vec::new();
    let mut plan: Vec<Planned> = Vec::new();
    let mut payload_at: Vec<(usize, usize)> = Vec::new();
    let base = capture.bytes().as_ptr() as usize;
    for record in capture.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                summary.input_error = Some(e.to_string());
                break;
            }
        };
        let Ok(udp) = record.udp() else {
            summary.skipped += 1;
            continue;
        };
        let port_index = match capture_ports.iter().position(|&p| p == udp.dst_port) {
            Some(i) => i,
            None => {
                capture_ports.push(udp.dst_port);
                capture_ports.len() - 1
            }
        };
        let frame_number = frame_number_of(udp.payload).unwrap_or(0);
        plan.push(Planned { timestamp_ns: record.timestamp_ns, port_index, frame_number });
        payload_at.push((udp.payload.as_ptr() as usize - base, udp.payload.len()));
    }
    if plan.is_empty() {
        return Err(SendError::Empty);
    }
    // Capture ports map onto the given ports in ascending order.
    let mut sorted = capture_ports.clone();
    sorted.sort_unstable();
    let host = match &options.target {
        SendTarget::Udp(host) => *host,
        // A DMA card addresses by port only; the host part is unused.
        SendTarget::Dma { .. } => IpAddr::from([127, 0, 0, 1]),
    };
    let destinations: Vec<SocketAddr> = if options.ports.is_empty() {
        capture_ports.iter().map(|&p| SocketAddr::new(host, p)).collect()
    } else if options.ports.len() == sorted.len() {
        capture_ports
            .iter()
            .map(|p| SocketAddr::new(host, options.ports[sorted.iter().position(|q| q == p).unwrap_or(0)]))
            .collect()
    } else {
        return Err(SendError::PortCount { given: options.ports.len(), needed: sorted.len(), ports: sorted });
    };
    let frames: Vec<u64> = plan.iter().map(|p| p.frame_number).filter(|&f| f > 0).collect();
    let (min_frame, max_frame) = (frames.iter().copied().min().unwrap_or(1), frames.iter().copied().max().unwrap_or(1));
    let span = max_frame - min_frame + 1;
    let t0 = plan[0].timestamp_ns;
    let duration_ns = plan.iter().map(|p| p.timestamp_ns.saturating_sub(t0)).max().unwrap_or(0);

    let slot = payload_at.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let out = match &options.target {
        SendTarget::Udp(_) => Out::Udp {
            socket: UdpBatchSocket::for_sending(destinations[0], options.send_buffer_bytes)?,
            batch: SendBatch::new(options.batch.max(1), slot),
        },
        SendTarget::Dma { path, drop_when_full } => {
            Out::Dma { ring: crate::ingest::dma::DmaRing::open(path)?, drop_when_full: *drop_when_full }
        }
    };
    summary.first_frame = u64::MAX;
    let mut w = Writer {
        capture,
        out,
        rng: Rng::new(options.faults.seed, 0x5e4d),
        corrupt: options.faults.corrupt,
        scratch: vec![0u8; slot],
        summary,
    };
    let mut held: Vec<(usize, u64, usize)> = Vec::new();
    let started = Instant::now();
    let mut sequence = 0u64;
    'passes: for pass in 0..u64::from(options.loops) {
        for (i, p) in plan.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                w.summary.interrupted = true;
                break 'passes;
            }
            let frame_offset = pass * span;
            let due = match options.pace {
                SendPace::Recorded { speed } => Some(Duration::from_nanos(
                    (((p.timestamp_ns - t0) + pass * (duration_ns + 1)) as f64 / speed) as u64,
                )),
                SendPace::FrameRate { hz } => {
                    Some(Duration::from_secs_f64((p.frame_number.saturating_sub(min_frame) + frame_offset) as f64 / hz))
                }
                SendPace::PacketRate { per_second } => Some(Duration::from_secs_f64(sequence as f64 / per_second)),
                SendPace::AsFastAsPossible => None,
            };
            sequence += 1;
            if let Some(due) = due
                && due > started.elapsed()
            {
                w.flush()?;
                wait_until(started, due);
            }
            if w.rng.uniform() < options.faults.loss {
                w.summary.lost += 1;
                continue;
            }
            let copies = if w.rng.uniform() < options.faults.duplicate { 2 } else { 1 };
            w.summary.duplicated += copies - 1;
            if w.rng.uniform() < options.faults.reorder {
                // Held back and released a few datagrams later.
                held.push((i, frame_offset, 1 + w.rng.below(8)));
                w.summary.reordered += 1;
                continue;
            }
            for _ in 0..copies {
                w.queue(payload_at[i], destinations[p.port_index], frame_offset, stop)?;
            }
            let mut k = 0;
            while k < held.len() {
                held[k].2 -= 1;
                if held[k].2 == 0 {
                    let (j, offset, _) = held.swap_remove(k);
                    w.queue(payload_at[j], destinations[plan[j].port_index], offset, stop)?;
                } else {
                    k += 1;
                }
            }
        }
    }
    for (j, offset, _) in std::mem::take(&mut held) {
        w.queue(payload_at[j], destinations[plan[j].port_index], offset, stop)?;
    }
    w.flush()?;
    let mut summary = w.summary;
    summary.elapsed = started.elapsed();
    if summary.first_frame == u64::MAX {
        summary.first_frame = 0;
    }
    Ok(summary)
}

fn frame_number_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Where the sender's datagrams go.
enum Out {
    Udp { socket: UdpBatchSocket, batch: SendBatch },
    Dma { ring: crate::ingest::dma::DmaRing, drop_when_full: bool },
}

/// The sending side of one run: output, damage and account.
struct Writer<'a> {
    capture: &'a Capture,
    out: Out,
    rng: Rng,
    corrupt: f64,
    scratch: Vec<u8>,
    summary: SendSummary,
}

impl Writer<'_> {
    /// Sends one datagram of the capture (frame number moved on by `frame_offset`, maybe corrupted).
    fn queue(
        &mut self,
        at: (usize, usize),
        to: SocketAddr,
        frame_offset: u64,
        stop: &AtomicBool,
    ) -> Result<(), SendError> {
        let payload = &self.capture.bytes()[at.0..at.0 + at.1];
        let data = &mut self.scratch[..payload.len()];
        data.copy_from_slice(payload);
        if let Some(frame) = frame_number_of(data).filter(|_| data.len() >= HEADER_BYTES) {
            let frame = frame + frame_offset;
            data[..8].copy_from_slice(&frame.to_le_bytes());
            self.summary.first_frame = self.summary.first_frame.min(frame);
            self.summary.last_frame = self.summary.last_frame.max(frame);
            if self.rng.uniform() < self.corrupt {
                data[self.rng.below(HEADER_BYTES)] ^= 1 + self.rng.below(255) as u8;
                self.summary.corrupted += 1;
            }
        }
        let data = &self.scratch[..payload.len()];
        match &mut self.out {
            Out::Udp { socket, batch } => {
                if batch.is_full() {
                    flush_udp(socket, batch)?;
                }
                batch.push(to, data);
            }
            Out::Dma { ring, drop_when_full } => {
                // A card waits for the host to return a buffer, or drops the payload and counts it.
                while !ring.produce(to.port(), data) {
                    if *drop_when_full {
                        ring.count_drop();
                        self.summary.dma_dropped += 1;
                        return Ok(());
                    }
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::yield_now();
                }
            }
        }
        self.summary.datagrams_sent += 1;
        self.summary.bytes_sent += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SendError> {
        match &mut self.out {
            Out::Udp { socket, batch } => flush_udp(socket, batch),
            Out::Dma { .. } => Ok(()),
        }
    }
}

/// Sends everything queued, retrying while the kernel's send buffer is full.
fn flush_udp(socket: &UdpBatchSocket, batch: &mut SendBatch) -> Result<(), SendError> {
    while !batch.is_empty() {
        let n = socket.send_batch(batch).map_err(SendError::Send)?;
        if n == 0 {
            std::thread::yield_now();
        }
        batch.consume(n);
    }
    Ok(())
}

/// Sleeps most of the way, then spins: sleeping alone overshoots by tens of microseconds.
fn wait_until(started: Instant, due: Duration) {
    loop {
        let now = started.elapsed();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}
