//! `hitgate send`: a capture's detector packets onto UDP (or into a DMA ring), paced, looped,
//! optionally damaged.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use hitgate::ingest::send::{SendError, SendFaults, SendOptions, SendPace, SendTarget, send};

use super::out::show;
use super::simulate::FaultArgs;
use super::{Exit, describe, open_capture, stop_on_signals};

#[derive(Args)]
pub struct SendArgs {
    capture: PathBuf,
    /// HOST, or HOST:PORT[,PORT…] — one port per destination port of the capture, in ascending
    /// order; or dma:PATH to write into a DMA ring as the card would.
    #[arg(long)]
    to: String,
    /// With dma:PATH, drop (and count) a payload when the host holds every buffer, as a card does,
    /// instead of waiting.
    #[arg(long)]
    dma_drop_when_full: bool,
    /// Send at the recorded pace times this factor (the default pace is the recorded one).
    #[arg(long, conflicts_with_all = ["frame_rate_hz", "packet_rate", "fast"])]
    speed: Option<f64>,
    /// Send whole frames at this rate.
    #[arg(long, conflicts_with_all = ["packet_rate", "fast"])]
    frame_rate_hz: Option<f64>,
    /// Send packets at this rate (per second).
    #[arg(long, conflicts_with = "fast")]
    packet_rate: Option<f64>,
    /// As fast as the socket takes them.
    #[arg(long)]
    fast: bool,
    /// Times through the capture; frame numbers carry on rising.
    #[arg(long, default_value_t = 1)]
    loops: u32,
    #[command(flatten)]
    faults: FaultArgs,
    /// Fraction of packets with a corrupted header.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

pub fn run(a: &SendArgs) -> Result<()> {
    let (target, ports) = match a.to.strip_prefix("dma:") {
        Some(path) => (SendTarget::Dma { path: path.into(), drop_when_full: a.dma_drop_when_full }, Vec::new()),
        None => {
            let (host, ports) = parse_destination(&a.to)?;
            (SendTarget::Udp(host), ports)
        }
    };
    let pace = match (a.speed, a.frame_rate_hz, a.packet_rate, a.fast) {
        (_, _, _, true) => SendPace::AsFastAsPossible,
        (_, _, Some(per_second), _) => SendPace::PacketRate { per_second },
        (_, Some(hz), _, _) => SendPace::FrameRate { hz },
        (speed, _, _, _) => SendPace::Recorded { speed: speed.unwrap_or(1.0) },
    };
    let options = SendOptions {
        target,
        ports,
        pace,
        loops: a.loops,
        faults: SendFaults {
            loss: a.faults.loss,
            reorder: a.faults.reorder,
            duplicate: a.faults.duplicate,
            corrupt: a.corrupt,
            seed: a.seed,
        },
        batch: a.batch,
        send_buffer_bytes: 4 << 20,
    };
    let cap = open_capture(&a.capture)?;
    let stop = stop_on_signals()?;
    let summary = send(&cap, &options, &stop).map_err(|e| match e {
        SendError::Option(_) | SendError::PortCount { .. } => Exit { code: 2, message: describe(&e) }.into(),
        other => anyhow::Error::new(other).context(format!("sending {}", a.capture.display())),
    })?;
    show!("{summary}");
    Ok(())
}

/// `HOST` or `HOST:PORT[,PORT…]`, the host an address or a name (IPv6 in brackets).
fn parse_destination(to: &str) -> Result<(IpAddr, Vec<u16>)> {
    let (host, ports) = match to.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (h.starts_with('[') || !h.contains(':')) => (h, Some(p)),
        _ => (to, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, 0))
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| Exit { code: 2, message: format!("--to {to}: cannot resolve {host:?}") })?,
    };
    let ports = match ports {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| Exit { code: 2, message: format!("--to {to}: {p:?} is not a UDP port") })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok((addr, ports))
}
