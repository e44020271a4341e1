//! The detector's ports received through io_uring (`udp.backend = "io_uring"`): one multishot
//! `recvmsg` armed per port, each datagram landing in a buffer the kernel picks from a ring of
//! provided buffers, completions harvested in batches with one system call per wake-up. Each
//! payload is then copied into its frame slot by the assembler, as the handoff path does: a
//! provided buffer is whole datagrams, header first, so a payload cannot be steered into its place
//! the way two iovecs steer it with `recvmmsg`. `bench/live_udp.rs` compares the two per GB.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, types};

use super::direct::Received;
use crate::frame::{Assembler, PacketDrop};

/// Provided buffers in the ring: datagrams the kernel may hold for us between two harvests.
const BUFFERS: u16 = 512;
/// The buffer group of the provided buffers.
const GROUP: u16 = 0;
/// Bytes of the kernel's `io_uring_recvmsg_out` before each datagram in its buffer.
const OUT_HEADER: usize = 16;
/// One provided buffer's entry in the ring (`struct io_uring_buf`).
const ENTRY_BYTES: usize = 16;

/// Errors in setting the ring up.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    #[error("io_uring is not available here ({0}); use udp.backend = \"recvmmsg\"")]
    Unavailable(io::Error),
    #[error("cannot register io_uring's provided buffers: {0}")]
    Buffers(io::Error),
    #[error("cannot map io_uring's provided buffers: {0}")]
    Map(io::Error),
}

/// Fails as [`UringReceiver::new`] would for want of io_uring: to refuse a run before it starts.
///
/// # Errors
/// The kernel refuses io_uring.
pub fn probe() -> Result<(), UringError> {
    IoUring::new(8).map(drop).map_err(UringError::Unavailable)
}

/// The ring, its provided buffers and one multishot receive per port.
pub struct UringReceiver {
    // Dropped first: the kernel lets go of the buffers and the message header when the ring closes.
    ring: IoUring,
    /// The ring of `io_uring_buf` entries the kernel takes buffers from, page-aligned; reached only
    /// through `entries_at`, since the kernel reads it while we write.
    _entries: memmap2::MmapMut,
    entries_at: *mut u8,
    /// The provided buffers, `buffer_bytes` each; reached only through `buffers_at`, since the
    /// kernel writes into those it holds while we read those it gave us.
    _buffers: memmap2::MmapMut,
    buffers_at: *mut u8,
    buffer_bytes: usize,
    /// The next ring position to hand a buffer back at.
    tail: u16,
    /// The `msghdr` each multishot receive was armed with: no name, no control data.
    message: Box<libc::msghdr>,
    /// Per port: its UDP port number, its socket, and whether its receive is armed.
    ports: Vec<(u16, RawFd, bool)>,
    max_packet: usize,
}

impl UringReceiver {
    /// A ring receiving `ports` (UDP port, socket), for datagrams up to `max_packet` bytes.
    ///
    /// # Errors
    /// The kernel refuses io_uring (too old, or forbidden by the container) or its buffer ring.
    pub fn new(ports: &[(u16, RawFd)], max_packet: usize) -> Result<UringReceiver, UringError> {
        // Default task work: queued completion work interrupts this thread and runs before it is
        // back in user space, so an empty completion queue here is up to date. (Cooperative task
        // work held completions back until the wait's timeout and let frames time out.)
        let ring = IoUring::builder().build(u32::from(BUFFERS) * 2).map_err(UringError::Unavailable)?;
        let buffer_bytes = (OUT_HEADER + max_packet + 1).next_multiple_of(64);
        let map = |bytes: usize| memmap2::MmapOptions::new().len(bytes).populate().map_anon().map_err(UringError::Map);
        let mut entries = map(usize::from(BUFFERS) * ENTRY_BYTES)?;
        let mut buffers = map(usize::from(BUFFERS) * buffer_bytes)?;
        let (entries_at, buffers_at) = (entries.as_mut_ptr(), buffers.as_mut_ptr());
        // SAFETY: `msghdr` is a plain C struct for which all-zero bytes are valid (no name, no
        // control data, no iovecs: a multishot receive ignores them).
        let message: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        let mut receiver = UringReceiver {
            ring,
            _entries: entries,
            entries_at,
            _buffers: buffers,
            buffers_at,
            buffer_bytes,
            tail: 0,
            message,
            ports: ports.iter().map(|&(port, fd)| (port, fd, false)).collect(),
            max_packet,
        };
        for bid in 0..BUFFERS {
            receiver.give_back(bid);
        }
        receiver.publish();
        // SAFETY: the entries' mapping is page-aligned, `BUFFERS` entries long, and lives in this
        // struct as long as the ring (dropped first); every buffer an entry names is inside
        // `buffers`, which lives as long.
        unsafe {
            receiver.ring.submitter().register_buf_ring_with_flags(receiver.entries_at as u64, BUFFERS, GROUP, 0)
        }
        .map_err(UringError::Buffers)?;
        Ok(receiver)
    }

    /// Puts buffer `bid` at the ring's tail (seen by the kernel at the next [`Self::publish`]).
    fn give_back(&mut self, bid: u16) {
        let at = usize::from(self.tail & (BUFFERS - 1)) * ENTRY_BYTES;
        let addr = self.buffers_at as u64 + u64::from(bid) * self.buffer_bytes as u64;
        let mut entry = [0u8; 14];
        entry[..8].copy_from_slice(&addr.to_ne_bytes());
        entry[8..12].copy_from_slice(&(self.buffer_bytes as u32).to_ne_bytes());
        entry[12..14].copy_from_slice(&bid.to_ne_bytes());
        // SAFETY: `at` is an entry of the ring (masked to its length) and 14 bytes fit in its 16;
        // the kernel does not read entries past the published tail, and bytes 14..16 (the first
        // entry's are the tail itself) are left alone.
        unsafe { std::ptr::copy_nonoverlapping(entry.as_ptr(), self.entries_at.add(at), entry.len()) };
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lets the kernel see every buffer given back so far.
    fn publish(&self) {
        // SAFETY: the tail is the `u16` at byte 14 of the page-aligned entries' mapping, so it is
        // aligned and inside it; the kernel reads it concurrently, hence the atomic store, whose
        // release orders the entries written before it.
        let tail = unsafe { &*(self.entries_at.add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Arms a multishot receive on every port that has none (at start, and after the kernel ended
    /// one, as it does when the provided buffers ran out).
    fn arm(&mut self) -> io::Result<()> {
        let message: *const libc::msghdr = &*self.message;
        for (index, (_, fd, armed)) in self.ports.iter_mut().enumerate() {
            if *armed {
                continue;
            }
            let entry = opcode::RecvMsgMulti::new(types::Fd(*fd), message, GROUP).build().user_data(index as u64);
            // SAFETY: the message header the entry points at is boxed in this struct and outlives
            // the ring; the socket stays open for the receiver's life (the caller's sockets).
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                return Err(io::Error::other("io_uring submission queue full"));
            }
            *armed = true;
        }
        Ok(())
    }

    /// Waits up to `wait` (`None`: not at all) for datagrams, then offers up to `max` of them to
    /// `assembler`; returns
    /// what was taken and whether the completion queue was left empty.
    ///
    /// # Errors
    /// The ring failed for a reason other than the wait running out or a signal.
    pub fn receive(
        &mut self,
        assembler: &mut Assembler,
        max: usize,
        wait: Option<Duration>,
    ) -> io::Result<(Received, bool)> {
        self.arm()?;
        let entered = match wait {
            Some(wait) => {
                let timeout = types::Timespec::from(wait);
                self.ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&timeout))
            }
            None => self.ring.submitter().submit(),
        };
        match entered {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now_ns = crate::telemetry::now_ns();
        let mut got = Received::default();
        let mut taken = 0;
        let mut ended = false;
        let emptied = loop {
            let Some(cqe) = self.ring.completion().next() else { break true };
            let index = cqe.user_data() as usize;
            if !cqueue::more(cqe.flags())
                && let Some(p) = self.ports.get_mut(index)
            {
                // Ended (out of buffers, most often): datagrams may be queued behind it.
                p.2 = false;
                ended = true;
            }
            if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                if cqe.result() >= 0 {
                    self.offer(assembler, index, bid, cqe.result() as usize, now_ns, &mut got);
                }
                self.give_back(bid);
            }
            taken += 1;
            if taken == max {
                break self.ring.completion().is_empty();
            }
        };
        self.publish();
        Ok((got, emptied && !ended))
    }

    /// Offers the datagram in buffer `bid` (`len` bytes of output) that port `index` received.
    fn offer(&self, assembler: &mut Assembler, index: usize, bid: u16, len: usize, now_ns: u64, got: &mut Received) {
        // SAFETY: buffer `bid` lies inside the mapping; the kernel handed it to us with this
        // completion and writes to it no more until it is given back, after this read.
        let buffer = unsafe {
            std::slice::from_raw_parts(
                self.buffers_at.add(usize::from(bid) * self.buffer_bytes),
                len.min(self.buffer_bytes),
            )
        };
        let Ok(out) = types::RecvMsgOut::parse(buffer, &self.message) else {
            assembler.count_drop(PacketDrop::Truncated);
            got.datagrams += 1;
            return;
        };
        let payload = out.payload_data();
        got.datagrams += 1;
        got.bytes += u64::from(out.incoming_payload_len());
        let port = self.ports.get(index).map_or(0, |p| p.0);
        if out.is_payload_truncated() || payload.len() > self.max_packet {
            // Longer than the buffer and so than any packet.
            assembler.count_drop(PacketDrop::Oversized);
        } else {
            let _ = assembler.push(port, payload, now_ns);
        }
    }
}
