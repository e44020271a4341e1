//! The live sources' sections: `[udp]` (the detector's ports received with `recvmmsg`, on how many
//! threads, pinned where) and `[dma]` (a memory-mapped DMA ring read instead of the ports).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::section::{Claim, Problems, Resource, key, resolve};

/// The kernel interface the receiving thread takes datagrams through.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UdpBackend {
    /// `recvmmsg`, each payload straight into its frame slot.
    Recvmmsg,
    /// io_uring: a multishot `recvmsg` per port into provided buffers, copied into the slots.
    IoUring,
}

/// How a receiving thread waits when nothing is queued.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReceiveWait {
    /// `recvmmsg` with `MSG_WAITFORONE` on a blocking socket with a short timeout; a thread with
    /// several ports polls instead, since waiting on one would leave the others unread.
    Block,
    /// `poll` on every port, then `recvmmsg` on each without waiting.
    Poll,
}

/// Live reception (`hitgate run`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UdpSection {
    /// Address the detector's packets arrive on (the receiving interface's address).
    pub bind_address: IpAddr,
    /// One address per module where modules arrive on different interfaces; overrides `bind_address`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub module_bind_addresses: Vec<IpAddr>,
    /// Kernel receive buffer per socket (`SO_RCVBUF`).
    pub recv_buffer_bytes: usize,
    /// Datagrams taken per `recvmmsg` call.
    pub batch_packets: usize,
    /// `recvmmsg` (the cheaper per GB here, see `bench/RESULTS.md`) or `io_uring`.
    pub backend: UdpBackend,
    /// How the receiving thread waits for datagrams: `block` waits inside the receive (one system
    /// call per wake-up; for a thread with a single port), `poll` waits in `poll` and then receives.
    pub wait: ReceiveWait,
    /// After a receive that found less than a batch, the receiving thread sleeps this long before the
    /// next, so a burst's datagrams are taken in a few full batches rather than a wake-up each few
    /// packets. 0 receives again at once. Adds at most this much to a frame's latency.
    pub linger_us: u32,
    /// Receive each payload straight into its frame slot, where the assembler predicts it goes
    /// (with `receiver_threads = 0`); false receives into a buffer and copies from there.
    pub receive_into_slots: bool,
    /// CPU the receiving (assembling) thread is pinned to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_cpu: Option<usize>,
    /// Threads calling `recvmmsg`, the detector's ports shared among them round-robin, handing whole
    /// batches to the assembling thread. 0: the assembling thread receives itself (one thread less,
    /// but receiving and copying into frames then share one core).
    pub receiver_threads: usize,
    /// CPU for each receiver thread, in order (with `receiver_threads` above 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receiver_cpus: Vec<usize>,
    /// Batches in circulation between receiver threads and the assembling thread.
    pub handoff_batches: usize,
    /// Real-time (`SCHED_FIFO`) priority of the threads that receive (the assembling thread, and
    /// receiver threads where there are any), 1–99, so that no reducer, sink or other process
    /// sharing their core holds them off while the kernel's buffer fills; 0 leaves them to the
    /// normal scheduler. Needs `CAP_SYS_NICE` (the systemd unit grants it); where it is refused, the
    /// run says so once and receives at normal priority. They sleep whenever the socket is empty,
    /// so they take a core only for what arrives.
    pub realtime_priority: u8,
}

impl Default for UdpSection {
    fn default() -> Self {
        UdpSection {
            bind_address: IpAddr::from([0, 0, 0, 0]),
            module_bind_addresses: Vec::new(),
            recv_buffer_bytes: 256 << 20,
            batch_packets: 64,
            receive_into_slots: true,
            backend: UdpBackend::Recvmmsg,
            wait: ReceiveWait::Block,
            linger_us: 200,
            receiver_cpu: None,
            receiver_threads: 0,
            receiver_cpus: Vec::new(),
            handoff_batches: 32,
            realtime_priority: 0,
        }
    }
}

impl UdpSection {
    /// Every problem of the section, with its key path under `path`, for a detector of `modules`
    /// modules.
    pub fn validate(&self, path: &str, modules: usize, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if !self.module_bind_addresses.is_empty() && self.module_bind_addresses.len() != modules {
            problems.bad(
                k("module_bind_addresses"),
                format!("{} addresses for {modules} modules", self.module_bind_addresses.len()),
            );
        }
        if self.recv_buffer_bytes > 1 << 31 {
            problems.bad(k("recv_buffer_bytes"), format!("{} is above 2 GiB", self.recv_buffer_bytes));
        }
        problems.outside(k("batch_packets"), self.batch_packets, (1, 1024));
        problems.outside(k("linger_us"), self.linger_us, (0, 10_000));
        problems.outside(k("realtime_priority"), self.realtime_priority, (0, 99));
        if self.backend == UdpBackend::IoUring && self.receiver_threads > 0 {
            problems
                .bad(k("backend"), "io_uring receives on the assembling thread: set receiver_threads = 0".to_string());
        }
        if self.receiver_threads > 64 {
            problems.bad(k("receiver_threads"), format!("{} is above 64", self.receiver_threads));
        }
        if self.handoff_batches < self.receiver_threads * 2 || self.handoff_batches > 4096 {
            problems.bad(
                k("handoff_batches"),
                format!(
                    "{} is outside {}..=4096 (two per receiver thread at least)",
                    self.handoff_batches,
                    self.receiver_threads * 2
                ),
            );
        }
    }

    /// The CPUs its threads are pinned to.
    pub fn claims(&self, path: &str) -> Vec<Claim> {
        let assembling = self.receiver_cpu.iter().map(|c| Claim::new(key(path, "receiver_cpu"), Resource::Cpu(*c)));
        let receivers = self
            .receiver_cpus
            .iter()
            .enumerate()
            .map(|(i, c)| Claim::new(format!("{}[{i}]", key(path, "receiver_cpus")), Resource::Cpu(*c)));
        assembling.chain(receivers).collect()
    }
}

/// A DMA ring as source for `hitgate run` instead of UDP (see `ingest::dma` for the layout).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DmaSection {
    /// The ring: a `/dev` node exposing the layout, or a file shared with an emulated card. When set,
    /// `hitgate run` reads it instead of the UDP ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// How long the source sleeps when the ring is empty.
    pub idle_sleep_us: u64,
    /// For a file-backed ring: create it at start with this many buffers (a power of two), as a
    /// driver allocates its DMA buffers. 0 opens an existing ring (a device node).
    pub create_buffers: u32,
    pub create_buffer_bytes: u32,
}

impl Default for DmaSection {
    fn default() -> Self {
        DmaSection { device: None, idle_sleep_us: 50, create_buffers: 0, create_buffer_bytes: 9216 }
    }
}

impl DmaSection {
    /// Every problem of the section, with its key path under `path`, for packets of `packet_bytes`
    /// (the detector model's; `None` when the model is unknown).
    pub fn validate(&self, path: &str, packet: Option<(&str, usize)>, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if self.idle_sleep_us > 100_000 {
            problems.bad(k("idle_sleep_us"), format!("{} is above 100000", self.idle_sleep_us));
        }
        if self.create_buffers != 0 && !self.create_buffers.is_power_of_two() {
            problems.bad(k("create_buffers"), format!("{} is not a power of two", self.create_buffers));
        }
        if let Some((model, packet_bytes)) = packet
            && self.create_buffers != 0
            && (self.create_buffer_bytes as usize) < packet_bytes
        {
            problems.bad(
                k("create_buffer_bytes"),
                format!("{} is smaller than a {model} packet ({packet_bytes} bytes)", self.create_buffer_bytes),
            );
        }
    }

    /// Relative paths are taken from the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(device) = self.device.as_mut() {
            resolve(device, base);
        }
    }
}
