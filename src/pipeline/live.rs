//! The live sources. UDP: the detector's ports received with batched `recvmmsg` on one named
//! (optionally pinned) thread, or on several receiver threads that hand whole batches to the
//! assembling thread; each payload is copied once into its frame slot by the assembler. DMA: a
//! mapped descriptor ring read in batches. Receiving never
//! waits on later stages: a frame that finds no free slot or a full queue is dropped and counted. On
//! stop, what the kernel already queued is still read and assembled before the source ends.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::assembly_metrics::AssemblyFlusher;
use super::stages::{SourceContext, SourceOutcome, place_receiver};
use super::summary::{Progress, RunSummary};
use super::{PipelineError, Plan};
use crate::ingest::direct::{DirectBatch, Received};
use crate::ingest::udp::{BufferReport, RecvBatch, UdpBatchSocket, UdpError, pollfd, wait_readable};
use crate::ingest::uring::UringReceiver;
use crate::ingest::{ReceiveWait, UdpBackend};
use crate::ring::Ring;
use crate::telemetry;

/// How long the receiver sleeps in `poll` when nothing arrives; also how often partial frames are
/// checked for their timeout when the detector is silent.
const IDLE_POLL_MS: i32 = 2;

/// What a live source does after a pass over its input that found nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WhenIdle {
    /// Nothing queued: wait a little for more.
    Wait,
    /// Stop was just asked: one more pass, so what was queued before the stop is still read.
    PassAgain,
    /// The pass after the stop found nothing too (or the run aborted): the source ends.
    End,
}

/// The stopping protocol shared by every live source, as a small state machine.
struct Stopping {
    asked: bool,
}

impl Stopping {
    fn new() -> Stopping {
        Stopping { asked: false }
    }

    /// Whether the run has been told to stop or abort.
    fn asked(stop: &AtomicBool, abort: &AtomicBool) -> bool {
        stop.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed)
    }

    fn when_idle(&mut self, stop: &AtomicBool, abort: &AtomicBool) -> WhenIdle {
        if self.asked || abort.load(Ordering::Relaxed) {
            WhenIdle::End
        } else if stop.load(Ordering::Relaxed) {
            self.asked = true;
            WhenIdle::PassAgain
        } else {
            WhenIdle::Wait
        }
    }
}

/// What every live source keeps: its assembler, its account and its metric flusher, with the
/// bookkeeping done after each batch and at the end.
struct LiveAssembly {
    assembler: crate::frame::Assembler,
    outcome: SourceOutcome,
    flusher: AssemblyFlusher,
}

impl LiveAssembly {
    fn new(ctx: &SourceContext<'_>) -> LiveAssembly {
        LiveAssembly { assembler: ctx.assembler(), outcome: SourceOutcome::default(), flusher: AssemblyFlusher::new() }
    }

    /// Hands on what is ready; a frame that finds the reducers' queue full is dropped and counted.
    fn forward(&mut self, ctx: &SourceContext<'_>) {
        self.outcome.frames_dropped_queue_full += ctx.forward_or_drop(&mut self.assembler);
    }

    /// After a batch (or an idle wait): timed-out frames leave, progress and metrics are published.
    fn after_batch(&mut self, ctx: &SourceContext<'_>) {
        self.after_round(ctx, true);
    }

    /// As `after_batch`, after a round over the sockets that may have left datagrams queued in the
    /// kernel (`drained` false): then no frame is timed out, since its missing packets may be
    /// waiting there (the receiver was descheduled for longer than the timeout).
    fn after_round(&mut self, ctx: &SourceContext<'_>, drained: bool) {
        if drained {
            self.assembler.poll_timeouts(telemetry::now_ns());
        }
        self.forward(ctx);
        self.publish(ctx);
    }

    fn publish(&mut self, ctx: &SourceContext<'_>) {
        let o = &self.outcome;
        ctx.progress.input_bytes_read.store(o.input_bytes, Ordering::Relaxed);
        self.flusher.flush(self.assembler.counters(), o.records, o.input_bytes);
        self.flusher.flush_queue_full(o.frames_dropped_queue_full);
        ctx.report_drops(&self.assembler, o.frames_dropped_queue_full);
    }

    /// The source is done: every frame still assembling leaves, waiting for room this time.
    fn finish(mut self, ctx: &SourceContext<'_>) -> SourceOutcome {
        self.assembler.flush();
        ctx.forward_waiting(&mut self.assembler);
        self.publish(ctx);
        self.outcome.assembly = *self.assembler.counters();
        self.outcome
    }
}

/// The detector's sockets, bound when the run is prepared.
pub struct UdpSources {
    sockets: Vec<(u16, UdpBatchSocket)>,
    pub reports: Vec<(u16, BufferReport)>,
    /// The one socket waits inside its receive; otherwise the thread waits in `poll`.
    blocking: bool,
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
        if u.backend == UdpBackend::IoUring {
            crate::ingest::uring::probe()?;
        }
        let blocking = u.backend == UdpBackend::Recvmmsg
            && u.wait == ReceiveWait::Block
            && u.receiver_threads == 0
            && sockets.len() == 1;
        if blocking {
            for (port, socket) in &mut sockets {
                let at = std::net::SocketAddr::new(socket.local_addr().ip(), *port);
                socket
                    .wait_in_receive(std::time::Duration::from_millis(IDLE_POLL_MS as u64))
                    .map_err(|source| UdpError::Setup { addr: at, source })?;
            }
        }
        Ok(UdpSources { sockets, reports, blocking })
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
        self.run_stages(|ctx| udp_source(ctx, &sources, stop), true, false, progress)
    }
}

fn udp_source(ctx: &SourceContext<'_>, sources: &UdpSources, stop: &AtomicBool) -> SourceOutcome {
    place_receiver(ctx.plan.config.udp.receiver_cpu, ctx.plan.config.udp.realtime_priority);
    if ctx.plan.config.udp.receiver_threads > 0 {
        return handoff_udp_source(ctx, sources, stop);
    }
    if ctx.plan.config.udp.backend == UdpBackend::IoUring {
        return uring_udp_source(ctx, sources, stop);
    }
    let mut live = LiveAssembly::new(ctx);
    let batch_capacity = ctx.plan.config.udp.batch_packets;
    let mut batch = if ctx.plan.config.udp.receive_into_slots {
        Batch::Direct(DirectBatch::new(batch_capacity, &live.assembler))
    } else {
        Batch::Copy(RecvBatch::new(batch_capacity, slot_bytes(ctx)))
    };
    let mut fds: Vec<libc::pollfd> = sources.sockets.iter().map(|(_, s)| pollfd(s.raw_fd())).collect();
    let mut stopping = Stopping::new();
    let linger = std::time::Duration::from_micros(u64::from(ctx.plan.config.udp.linger_us));
    let mut waiting = sources.blocking;
    loop {
        let stopping_now = Stopping::asked(stop, ctx.abort);
        if stopping_now && waiting {
            // A waiting receive never comes back empty from a steady stream: drain without waiting.
            sources.sockets.iter().for_each(|(_, s)| s.stop_waiting());
            waiting = false;
        }
        let mut received = 0;
        let mut drained = true;
        for (port, socket) in &sources.sockets {
            let got = match batch.receive(socket, &mut live.assembler, *port) {
                Ok(got) => got,
                Err(e) => {
                    live.outcome.input_error.get_or_insert_with(|| format!("receiving on UDP port {port}: {e}"));
                    Received::default()
                }
            };
            if got.datagrams == 0 {
                continue;
            }
            drained &= got.datagrams < batch_capacity;
            received += got.datagrams;
            live.outcome.input_bytes += got.bytes;
            live.outcome.records += got.datagrams as u64;
            live.forward(ctx);
        }
        live.after_round(ctx, drained);
        if received > 0 && drained && !linger.is_zero() && !stopping_now {
            std::thread::sleep(linger);
            continue;
        }
        if received == 0 {
            match stopping.when_idle(stop, ctx.abort) {
                WhenIdle::End => break,
                WhenIdle::PassAgain => continue,
                // A blocking receive has just waited its timeout.
                WhenIdle::Wait if waiting => {}
                WhenIdle::Wait => {
                    let _ = wait_readable(&mut fds, IDLE_POLL_MS);
                }
            }
        } else if drained && !waiting && !stopping_now {
            // Every port returned less than a batch: wait for more now rather than spend a receive
            // per port on finding them empty.
            let _ = wait_readable(&mut fds, IDLE_POLL_MS);
        }
    }
    live.finish(ctx)
}

/// The ports through io_uring on this thread: as [`udp_source`], harvesting completions instead of
/// calling `recvmmsg`.
fn uring_udp_source(ctx: &SourceContext<'_>, sources: &UdpSources, stop: &AtomicBool) -> SourceOutcome {
    let mut live = LiveAssembly::new(ctx);
    let ports: Vec<(u16, std::os::fd::RawFd)> = sources.sockets.iter().map(|(p, s)| (*p, s.raw_fd())).collect();
    let mut receiver = match UringReceiver::new(&ports, slot_bytes(ctx)) {
        Ok(r) => r,
        Err(e) => {
            live.outcome.input_error = Some(e.to_string());
            return live.finish(ctx);
        }
    };
    let batch = ctx.plan.config.udp.batch_packets;
    let linger = std::time::Duration::from_micros(u64::from(ctx.plan.config.udp.linger_us));
    let wait = std::time::Duration::from_millis(IDLE_POLL_MS as u64);
    let mut stopping = Stopping::new();
    loop {
        // Stopping: no waiting, as for `recvmmsg`, so a steady stream cannot keep the run going.
        let stopping_now = Stopping::asked(stop, ctx.abort);
        let wait = if stopping_now { None } else { Some(wait) };
        let (got, emptied) = match receiver.receive(&mut live.assembler, batch, wait) {
            Ok(r) => r,
            Err(e) => {
                live.outcome.input_error.get_or_insert_with(|| format!("receiving through io_uring: {e}"));
                break;
            }
        };
        live.outcome.input_bytes += got.bytes;
        live.outcome.records += got.datagrams as u64;
        // Completions not yet taken may be the missing packets of a frame: no timeouts then.
        let drained = emptied && got.datagrams < batch;
        live.after_round(ctx, drained);
        if got.datagrams > 0 && drained && !linger.is_zero() && !stopping_now {
            std::thread::sleep(linger);
        } else if got.datagrams == 0 {
            match stopping.when_idle(stop, ctx.abort) {
                WhenIdle::End => break,
                WhenIdle::PassAgain | WhenIdle::Wait => {}
            }
        }
    }
    live.finish(ctx)
}

/// The receiving thread's buffers: payloads straight into frame slots, or into a buffer first.
enum Batch {
    Direct(DirectBatch),
    Copy(RecvBatch),
}

impl Batch {
    /// Receives what `socket` has queued, up to a batch, and offers it to `assembler`.
    fn receive(
        &mut self,
        socket: &UdpBatchSocket,
        assembler: &mut crate::frame::Assembler,
        port: u16,
    ) -> std::io::Result<Received> {
        match self {
            Batch::Direct(batch) => socket.recv_into_frames(batch, assembler, port),
            Batch::Copy(batch) => {
                let n = socket.recv_batch(batch)?;
                let now_ns = telemetry::now_ns();
                let mut bytes = 0;
                for (datagram, _truncated) in batch.datagrams() {
                    // A cut datagram is longer than the slot and so longer than any packet: the
                    // assembler counts it as oversized.
                    bytes += datagram.len() as u64;
                    let _ = assembler.push(port, datagram, now_ns);
                }
                Ok(Received { datagrams: n, bytes })
            }
        }
    }
}

/// Largest datagram a receive buffer takes: anything longer is cut, flagged and, being longer than
/// any packet, counted as oversized by the assembler.
fn slot_bytes(ctx: &SourceContext<'_>) -> usize {
    (ctx.plan.geometry.model.packet_bytes() + 64).max(9216)
}

/// Several receiver threads, each with its share of the ports, fill batches and hand them whole to
/// this thread, which assembles. Batches circulate between two bounded rings and are never
/// allocated after start; a receiver with no free batch waits (the kernel's buffer holds meanwhile)
/// rather than drop what the kernel delivered.
fn handoff_udp_source(ctx: &SourceContext<'_>, sources: &UdpSources, stop: &AtomicBool) -> SourceOutcome {
    let u = &ctx.plan.config.udp;
    let threads = u.receiver_threads.clamp(1, sources.sockets.len().max(1));
    let free: Ring<Box<RecvBatch>> = Ring::new(u.handoff_batches);
    let full: Ring<Box<RecvBatch>> = Ring::new(u.handoff_batches);
    for _ in 0..u.handoff_batches {
        let _ = free.try_push(Box::new(RecvBatch::new(u.batch_packets, slot_bytes(ctx))));
    }
    let receivers_left = AtomicUsize::new(threads);
    let receive_error: Mutex<Option<String>> = Mutex::new(None);
    let mut live = LiveAssembly::new(ctx);
    std::thread::scope(|s| {
        for t in 0..threads {
            let mine: Vec<&(u16, UdpBatchSocket)> = sources.sockets.iter().skip(t).step_by(threads).collect();
            let cpu = u.receiver_cpus.get(t).copied();
            let (free, full, left, error, abort) = (&free, &full, &receivers_left, &receive_error, ctx.abort);
            let priority = u.realtime_priority;
            let spawned = std::thread::Builder::new().name(format!("hg-recv-{t}")).spawn_scoped(s, move || {
                place_receiver(cpu, priority);
                receive_batches(&mine, free, full, stop, abort, error);
                if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    full.close();
                }
            });
            if let Err(e) = spawned {
                receive_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(format!("cannot start receiver thread {t}: {e}"));
                if receivers_left.fetch_sub(threads - t, Ordering::AcqRel) == threads - t {
                    full.close();
                }
                break;
            }
        }
        let backoff = crossbeam::utils::Backoff::new();
        loop {
            match full.try_pop() {
                Some(batch) => {
                    backoff.reset();
                    let now_ns = telemetry::now_ns();
                    for (datagram, _truncated) in batch.datagrams() {
                        live.outcome.input_bytes += datagram.len() as u64;
                        live.outcome.records += 1;
                        let _ = live.assembler.push(batch.port, datagram, now_ns);
                    }
                    // Every batch came from `free`, so there is always room to give it back.
                    let _ = free.try_push(batch);
                    live.forward(ctx);
                }
                None if full.is_drained() => break,
                None => {
                    live.after_batch(ctx);
                    if backoff.is_completed() {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    } else {
                        backoff.snooze();
                    }
                }
            }
        }
    });
    let mut outcome = live.finish(ctx);
    outcome.input_error = receive_error.into_inner().unwrap_or_else(|p| p.into_inner());
    outcome
}

/// One receiver thread: `recvmmsg` on its sockets into free batches, full ones handed on. On stop it
/// reads what the kernel queued, then returns.
fn receive_batches(
    sockets: &[&(u16, UdpBatchSocket)],
    free: &Ring<Box<RecvBatch>>,
    full: &Ring<Box<RecvBatch>>,
    stop: &AtomicBool,
    abort: &AtomicBool,
    error: &Mutex<Option<String>>,
) {
    let mut fds: Vec<libc::pollfd> = sockets.iter().map(|(_, s)| pollfd(s.raw_fd())).collect();
    let mut stopping = Stopping::new();
    loop {
        let mut received = 0;
        for (port, socket) in sockets {
            let Some(mut batch) = wait_for(free, abort) else { return };
            match socket.recv_batch(&mut batch) {
                Ok(n) if n > 0 => {
                    received += n;
                    batch.port = *port;
                    let _ = full.push_waiting(batch, || true);
                }
                Ok(_) => {
                    let _ = free.try_push(batch);
                }
                Err(e) => {
                    let _ = free.try_push(batch);
                    error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(format!("receiving on UDP port {port}: {e}"));
                }
            }
        }
        if received == 0 {
            match stopping.when_idle(stop, abort) {
                WhenIdle::End => return,
                WhenIdle::PassAgain => continue,
                WhenIdle::Wait => {
                    let _ = wait_readable(&mut fds, IDLE_POLL_MS);
                }
            }
        }
    }
}

/// A free batch, waiting for the assembling thread to return one; `None` if the run is aborted.
fn wait_for(free: &Ring<Box<RecvBatch>>, abort: &AtomicBool) -> Option<Box<RecvBatch>> {
    let backoff = crossbeam::utils::Backoff::new();
    loop {
        if let Some(b) = free.try_pop() {
            return Some(b);
        }
        if abort.load(Ordering::Relaxed) {
            return None;
        }
        if backoff.is_completed() {
            std::thread::sleep(std::time::Duration::from_micros(20));
        } else {
            backoff.snooze();
        }
    }
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
        self.run_stages(move |ctx| dma_source(ctx, &mut ring, stop), true, false, progress)
    }
}

/// Descriptors taken per pass, as a batch.
const DMA_BATCH: usize = 256;

fn dma_source(ctx: &SourceContext<'_>, ring: &mut crate::ingest::dma::DmaRing, stop: &AtomicBool) -> SourceOutcome {
    place_receiver(ctx.plan.config.udp.receiver_cpu, ctx.plan.config.udp.realtime_priority);
    let mut live = LiveAssembly::new(ctx);
    let idle = std::time::Duration::from_micros(ctx.plan.config.dma.idle_sleep_us);
    let mut stopping = Stopping::new();
    loop {
        let now_ns = telemetry::now_ns();
        let LiveAssembly { assembler, outcome, .. } = &mut live;
        let n = ring.consume(DMA_BATCH, |destination, payload, truncated| {
            outcome.records += 1;
            outcome.input_bytes += payload.len() as u64;
            if truncated {
                assembler.count_drop(crate::frame::PacketDrop::Oversized);
            } else {
                let _ = assembler.push(destination, payload, now_ns);
            }
        });
        live.after_batch(ctx);
        if n == 0 {
            match stopping.when_idle(stop, ctx.abort) {
                WhenIdle::End => break,
                WhenIdle::PassAgain => continue,
                WhenIdle::Wait => std::thread::sleep(idle),
            }
        }
    }
    live.finish(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_gets_one_more_pass_and_an_abort_none() {
        let (stop, abort) = (AtomicBool::new(false), AtomicBool::new(false));
        let mut s = Stopping::new();
        assert!(s.when_idle(&stop, &abort) == WhenIdle::Wait);
        stop.store(true, Ordering::Relaxed);
        assert!(s.when_idle(&stop, &abort) == WhenIdle::PassAgain);
        assert!(s.when_idle(&stop, &abort) == WhenIdle::End);
        let mut s = Stopping::new();
        abort.store(true, Ordering::Relaxed);
        assert!(s.when_idle(&stop, &abort) == WhenIdle::End);
    }
}
