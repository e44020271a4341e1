//! The live source: the detector's UDP ports received on one named (optionally pinned) thread with
//! batched `recvmmsg`, each payload copied once into its frame slot by the assembler. Receiving never
//! waits on later stages: a frame that finds no free slot or a full queue is dropped and counted. On
//! stop, what the kernel already queued is still read and assembled before the source ends.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::stages::{SourceContext, SourceOutcome, pin_to};
use super::summary::{Progress, RunSummary};
use super::{PipelineError, Plan};
use crate::ingest::udp::{BufferReport, RecvBatch, UdpBatchSocket, pollfd, wait_readable};
use crate::telemetry::{self, AssemblyFlusher};

/// How long the receiver sleeps in `poll` when nothing arrives; also how often partial frames are
/// checked for their timeout when the detector is silent.
const IDLE_POLL_MS: i32 = 2;

#[derive(Clone, Copy, Debug, Default)]
pub struct LiveOptions {}

/// The detector's sockets, bound when the run is prepared.
pub struct UdpSources {
    sockets: Vec<(u16, UdpBatchSocket)>,
    pub reports: Vec<(u16, BufferReport)>,
}

impl Plan {
    /// Binds every UDP port of the detector, as the config says.
    ///
    /// # Errors
    /// A port cannot be bound (in use, no such address).
    pub fn bind_udp(&self) -> Result<UdpSources, PipelineError> {
        let u = &self.config.udp;
        let per_module = self.geometry.model.ports_per_module;
        let mut sockets = Vec::new();
        let mut reports = Vec::new();
        for (i, &port) in self.geometry.udp_ports.iter().enumerate() {
            let addr: IpAddr = u.module_bind_addresses.get(i / per_module).copied().unwrap_or(u.bind_address);
            let (socket, report) = UdpBatchSocket::bind(addr, port, u.recv_buffer_bytes)?;
            reports.push((port, report));
            sockets.push((port, socket));
        }
        Ok(UdpSources { sockets, reports })
    }

    /// Receives live until `stop` is set, then drains and returns the summary.
    ///
    /// # Errors
    /// Threads cannot start, or a sink fails.
    pub fn run_live(
        &self,
        sources: UdpSources,
        stop: &AtomicBool,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError> {
        self.run_stages(|ctx| udp_source(ctx, &sources, stop), true, progress)
    }
}

fn udp_source(ctx: &SourceContext<'_>, sources: &UdpSources, stop: &AtomicBool) -> SourceOutcome {
    pin_to(ctx.plan.config.udp.receiver_cpu);
    let mut assembler = ctx.assembler();
    let mut outcome = SourceOutcome::default();
    // Room for the largest jumbo datagram: anything longer is cut, flagged and counted as oversized.
    let slot = (ctx.plan.geometry.model.packet_bytes() + 64).max(9216);
    let mut batch = RecvBatch::new(ctx.plan.config.udp.batch_packets, slot);
    let mut fds: Vec<libc::pollfd> = sources.sockets.iter().map(|(_, s)| pollfd(s.raw_fd())).collect();
    let mut flusher = AssemblyFlusher::new();
    let mut stopping = false;
    loop {
        let mut received = 0;
        for (port, socket) in &sources.sockets {
            let n = match socket.recv_batch(&mut batch) {
                Ok(n) => n,
                Err(e) => {
                    outcome.input_error.get_or_insert_with(|| format!("receiving on UDP port {port}: {e}"));
                    0
                }
            };
            if n == 0 {
                continue;
            }
            received += n;
            let now_ns = telemetry::now_ns();
            for (datagram, _truncated) in batch.datagrams() {
                // A cut datagram is longer than the slot and so longer than any packet: the
                // assembler counts it as oversized.
                outcome.input_bytes += datagram.len() as u64;
                let _ = assembler.push(*port, datagram, now_ns);
            }
            outcome.records += n as u64;
            outcome.frames_dropped_queue_full += ctx.forward_or_drop(&mut assembler);
        }
        assembler.poll_timeouts(telemetry::now_ns());
        outcome.frames_dropped_queue_full += ctx.forward_or_drop(&mut assembler);
        ctx.progress.input_bytes_read.store(outcome.input_bytes, Ordering::Relaxed);
        flusher.flush(assembler.counters(), outcome.records, outcome.input_bytes);
        if received == 0 {
            if stopping || ctx.abort.load(Ordering::Relaxed) {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                // One more pass over every socket: what the kernel queued before the stop is read.
                stopping = true;
                continue;
            }
            let _ = wait_readable(&mut fds, IDLE_POLL_MS);
        }
    }
    assembler.flush();
    ctx.forward_waiting(&mut assembler);
    flusher.flush(assembler.counters(), outcome.records, outcome.input_bytes);
    outcome.assembly = *assembler.counters();
    outcome
}

impl Plan {
    /// Opens the DMA ring the config names.
    ///
    /// # Errors
    /// No device configured, or it cannot be opened as a ring.
    pub fn open_dma(&self) -> Result<crate::ingest::dma::DmaRing, PipelineError> {
        let dma = &self.config.dma;
        let path = dma.device.clone().ok_or(PipelineError::NoDmaDevice)?;
        if dma.create_buffers > 0 {
            // The host allocates the buffers, as a driver does; an emulated card then opens them.
            return Ok(crate::ingest::dma::DmaRing::create(&path, dma.create_buffers, dma.create_buffer_bytes)?);
        }
        Ok(crate::ingest::dma::DmaRing::open(&path)?)
    }

    /// Reads the DMA ring until `stop` is set, then drains it and returns the summary.
    ///
    /// # Errors
    /// Threads cannot start, or a sink fails.
    pub fn run_dma(
        &self,
        ring: crate::ingest::dma::DmaRing,
        stop: &AtomicBool,
        progress: &Progress,
    ) -> Result<RunSummary, PipelineError> {
        let mut ring = ring;
        self.run_stages(move |ctx| dma_source(ctx, &mut ring, stop), true, progress)
    }
}

/// Descriptors taken per pass, as a batch.
const DMA_BATCH: usize = 256;

fn dma_source(ctx: &SourceContext<'_>, ring: &mut crate::ingest::dma::DmaRing, stop: &AtomicBool) -> SourceOutcome {
    pin_to(ctx.plan.config.udp.receiver_cpu);
    let mut assembler = ctx.assembler();
    let mut outcome = SourceOutcome::default();
    let mut flusher = AssemblyFlusher::new();
    let idle = std::time::Duration::from_micros(ctx.plan.config.dma.idle_sleep_us);
    let mut stopping = false;
    loop {
        let now_ns = telemetry::now_ns();
        let (mut records, mut bytes) = (0u64, 0u64);
        let n = ring.consume(DMA_BATCH, |destination, payload, truncated| {
            records += 1;
            bytes += payload.len() as u64;
            if truncated {
                assembler.count_drop(crate::frame::PacketDrop::Oversized);
            } else {
                let _ = assembler.push(destination, payload, now_ns);
            }
        });
        outcome.records += records;
        outcome.input_bytes += bytes;
        assembler.poll_timeouts(telemetry::now_ns());
        outcome.frames_dropped_queue_full += ctx.forward_or_drop(&mut assembler);
        ctx.progress.input_bytes_read.store(outcome.input_bytes, Ordering::Relaxed);
        flusher.flush(assembler.counters(), outcome.records, outcome.input_bytes);
        if n == 0 {
            if stopping || ctx.abort.load(Ordering::Relaxed) {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                stopping = true;
                continue;
            }
            std::thread::sleep(idle);
        }
    }
    assembler.flush();
    ctx.forward_waiting(&mut assembler);
    flusher.flush(assembler.counters(), outcome.records, outcome.input_bytes);
    outcome.assembly = *assembler.counters();
    outcome
}
