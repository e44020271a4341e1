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
use crate::sim::rng::Rng;

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

#[derive(Clone, Debug)]
pub struct SendOptions {
    pub host: IpAddr,
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
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Capture(#[from] PcapError),
    #[error(transparent)]
    Socket(#[from] UdpError),
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
    let destinations: Vec<SocketAddr> = if options.ports.is_empty() {
        capture_ports.iter().map(|&p| SocketAddr::new(options.host, p)).collect()
    } else if options.ports.len() == sorted.len() {
        capture_ports
            .iter()
            .map(|p| SocketAddr::new(options.host, options.ports[sorted.iter().position(|q| q == p).unwrap_or(0)]))
            .collect()
    } else {
        return Err(SendError::PortCount { given: options.ports.len(), needed: sorted.len(), ports: sorted });
    };
    let frames: Vec<u64> = plan.iter().map(|p| p.frame_number).filter(|&f| f > 0).collect();
    let (min_frame, max_frame) = (frames.iter().copied().min().unwrap_or(1), frames.iter().copied().max().unwrap_or(1));
    let span = max_frame - min_frame + 1;
    let t0 = plan[0].timestamp_ns;
    let duration_ns = plan.iter().map(|p| p.timestamp_ns.saturating_sub(t0)).max().unwrap_or(0);

    let socket = UdpBatchSocket::for_sending(destinations[0], options.send_buffer_bytes)?;
    let slot = payload_at.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let mut batch = SendBatch::new(options.batch.max(1), slot);
    let mut rng = Rng::new(options.faults.seed, 0x5e4d);
    let mut held: Vec<(usize, u64, usize)> = Vec::new();
    let mut scratch = vec![0u8; slot];
    let started = Instant::now();
    let mut sequence = 0u64;
    summary.first_frame = u64::MAX;
    'passes: for pass in 0..u64::from(options.loops) {
        for (i, p) in plan.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                summary.interrupted = true;
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
            if let Some(due) = due {
                let now = started.elapsed();
                if due > now {
                    flush(&socket, &mut batch)?;
                    wait_until(started, due);
                }
            }
            if rng.uniform() < options.faults.loss {
                summary.lost += 1;
                continue;
            }
            let copies = if rng.uniform() < options.faults.duplicate { 2 } else { 1 };
            summary.duplicated += copies - 1;
            if rng.uniform() < options.faults.reorder {
                // Held back and released a few datagrams later.
                held.push((i, frame_offset, 1 + rng.below(8)));
                summary.reordered += 1;
                continue;
            }
            for _ in 0..copies {
                queue(
                    capture,
                    &payload_at[i],
                    destinations[p.port_index],
                    frame_offset,
                    &mut rng,
                    options.faults.corrupt,
                    &mut scratch,
                    &mut batch,
                    &socket,
                    &mut summary,
                )?;
            }
            let mut k = 0;
            while k < held.len() {
                held[k].2 -= 1;
                if held[k].2 == 0 {
                    let (j, offset, _) = held.swap_remove(k);
                    queue(
                        capture,
                        &payload_at[j],
                        destinations[plan[j].port_index],
                        offset,
                        &mut rng,
                        options.faults.corrupt,
                        &mut scratch,
                        &mut batch,
                        &socket,
                        &mut summary,
                    )?;
                } else {
                    k += 1;
                }
            }
        }
    }
    for (j, offset, _) in std::mem::take(&mut held) {
        queue(
            capture,
            &payload_at[j],
            destinations[plan[j].port_index],
            offset,
            &mut rng,
            options.faults.corrupt,
            &mut scratch,
            &mut batch,
            &socket,
            &mut summary,
        )?;
    }
    flush(&socket, &mut batch)?;
    summary.elapsed = started.elapsed();
    if summary.first_frame == u64::MAX {
        summary.first_frame = 0;
    }
    Ok(summary)
}

fn frame_number_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Copies one datagram into the batch (frame number moved on by `frame_offset`, maybe corrupted),
/// sending the batch first when it is full.
#[allow(clippy::too_many_arguments)]
fn queue(
    capture: &Capture,
    at: &(usize, usize),
    to: SocketAddr,
    frame_offset: u64,
    rng: &mut Rng,
    corrupt: f64,
    scratch: &mut [u8],
    batch: &mut SendBatch,
    socket: &UdpBatchSocket,
    summary: &mut SendSummary,
) -> Result<(), SendError> {
    let payload = &capture.bytes()[at.0..at.0 + at.1];
    let out = &mut scratch[..payload.len()];
    out.copy_from_slice(payload);
    if let Some(frame) = frame_number_of(out).filter(|_| out.len() >= HEADER_BYTES) {
        let frame = frame + frame_offset;
        out[..8].copy_from_slice(&frame.to_le_bytes());
        summary.first_frame = summary.first_frame.min(frame);
        summary.last_frame = summary.last_frame.max(frame);
        if rng.uniform() < corrupt {
            out[rng.below(HEADER_BYTES)] ^= 1 + rng.below(255) as u8;
            summary.corrupted += 1;
        }
    }
    if batch.is_full() {
        flush(socket, batch)?;
    }
    batch.push(to, out);
    summary.datagrams_sent += 1;
    summary.bytes_sent += out.len() as u64;
    Ok(())
}

/// Sends everything queued, retrying while the kernel's send buffer is full.
fn flush(socket: &UdpBatchSocket, batch: &mut SendBatch) -> Result<(), SendError> {
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
