//! UDP sockets read and written in batches: `recvmmsg` into caller-owned, preallocated buffers and
//! `sendmmsg` from them, so the packet-rate loop makes one system call per batch and allocates nothing.
//! Receive buffers (`SO_RCVBUF`) are sized from config; when the kernel grants less, [`BufferReport`]
//! says so together with the sysctl that would raise it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::direct::{DirectBatch, Received};
use crate::frame::Assembler;

/// Errors in setting up a socket.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("cannot bind UDP {addr}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot set up UDP socket for {addr}")]
    Setup { addr: SocketAddr, source: io::Error },
}

/// What the kernel made of the receive buffer asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferReport {
    pub requested_bytes: usize,
    /// As the kernel reports it (Linux counts its own overhead, so up to twice what was set).
    pub granted_bytes: usize,
    /// `SO_RCVBUFFORCE` (root) was needed past `net.core.rmem_max`.
    pub forced: bool,
}

impl BufferReport {
    pub fn is_short(&self) -> bool {
        self.granted_bytes < self.requested_bytes
    }

    /// What to tell the operator when the buffer is short.
    pub fn advice(&self) -> String {
        format!(
            "receive buffer is {} bytes, {} were asked for: raise the limit with `sysctl -w net.core.rmem_max={}` (or run as root)",
            self.granted_bytes, self.requested_bytes, self.requested_bytes
        )
    }
}

/// A bound, non-blocking UDP socket that receives and sends in batches.
pub struct UdpBatchSocket {
    socket: Socket,
    local: SocketAddr,
    /// Receives wait for the first datagram (up to the socket's timeout), then take what is queued.
    blocking: AtomicBool,
}

impl UdpBatchSocket {
    /// Binds `addr:port` for receiving with a receive buffer of `recv_buffer_bytes` (0 keeps the
    /// system default).
    ///
    /// # Errors
    /// The socket cannot be created, configured or bound.
    pub fn bind(addr: IpAddr, port: u16, recv_buffer_bytes: usize) -> Result<(UdpBatchSocket, BufferReport), UdpError> {
        let at = SocketAddr::new(addr, port);
        let setup = |source| UdpError::Setup { addr: at, source };
        let socket = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP)).map_err(setup)?;
        socket.set_nonblocking(true).map_err(setup)?;
        let mut report = BufferReport { requested_bytes: recv_buffer_bytes, granted_bytes: 0, forced: false };
        if recv_buffer_bytes > 0 {
            socket.set_recv_buffer_size(recv_buffer_bytes).map_err(setup)?;
            report.granted_bytes = socket.recv_buffer_size().map_err(setup)?;
            if report.is_short() && force_recv_buffer(socket.as_raw_fd(), recv_buffer_bytes).is_ok() {
                report.granted_bytes = socket.recv_buffer_size().map_err(setup)?;
                report.forced = true;
            }
        } else {
            report.granted_bytes = socket.recv_buffer_size().map_err(setup)?;
            report.requested_bytes = report.granted_bytes;
        }
        socket.bind(&at.into()).map_err(|source| UdpError::Bind { addr: at, source })?;
        let local = socket.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(at);
        Ok((UdpBatchSocket { socket, local, blocking: AtomicBool::new(false) }, report))
    }

    /// An unbound socket for sending to `family`'s addresses.
    ///
    /// # Errors
    /// The socket cannot be created.
    pub fn for_sending(to: SocketAddr, send_buffer_bytes: usize) -> Result<UdpBatchSocket, UdpError> {
        let setup = |source| UdpError::Setup { addr: to, source };
        let socket = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP)).map_err(setup)?;
        if send_buffer_bytes > 0 {
            socket.set_send_buffer_size(send_buffer_bytes).map_err(setup)?;
        }
        let any: SocketAddr =
            if to.is_ipv4() { "0.0.0.0:0".parse().expect("literal") } else { "[::]:0".parse().expect("literal") };
        socket.bind(&any.into()).map_err(setup)?;
        let local = socket.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(any);
        Ok(UdpBatchSocket { socket, local, blocking: AtomicBool::new(false) })
    }

    /// Makes receives wait up to `timeout` for a first datagram, then take whatever else is queued
    /// (`MSG_WAITFORONE`): one system call per wake-up instead of a `poll` and a receive.
    ///
    /// # Errors
    /// The socket cannot be switched to blocking or given its timeout.
    pub fn wait_in_receive(&mut self, timeout: std::time::Duration) -> io::Result<()> {
        self.socket.set_nonblocking(false)?;
        self.socket.set_read_timeout(Some(timeout))?;
        self.blocking.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Receives no longer wait, from any thread's next call on: a run that is stopping drains what
    /// is queued and ends, where a waiting receive would take a steady stream for ever.
    pub fn stop_waiting(&self) {
        self.blocking.store(false, Ordering::Relaxed);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Receives up to a batch of datagrams without waiting (or, after [`UdpBatchSocket::wait_in_receive`],
    /// waiting for the first); `Ok(0)` when none came.
    ///
    /// # Errors
    /// The system call failed for a reason other than an empty queue.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.prepare();
        // SAFETY: `prepare` pointed every header at its own iovec and every iovec at its own
        // `slot_bytes` region of `batch.buffers`; all three vectors live in `batch`, which is borrowed
        // mutably for the whole call and not resized, so the kernel writes only inside memory we own.
        let n = unsafe { self.recvmmsg_into(&mut batch.headers) }?;
        batch.received = n;
        Ok(batch.received)
    }

    /// Receives up to a batch of `udp_port`'s datagrams without waiting, each payload straight into
    /// the frame slot `assembler` predicts for it, and offers them all (see [`DirectBatch`]).
    ///
    /// # Errors
    /// The system call failed for a reason other than an empty queue; nothing was offered.
    pub fn recv_into_frames(
        &self,
        batch: &mut DirectBatch,
        assembler: &mut Assembler,
        udp_port: u16,
    ) -> io::Result<Received> {
        batch.receive_with(assembler, udp_port, crate::telemetry::now_ns, |messages| {
            // SAFETY: `receive_with` pointed each message at its own pair of iovecs: the first at a
            // 48-byte header of the batch, the second at `payload_bytes` either of the batch's spill
            // buffer or of a place `Assembler::predict` just handed out, which lies inside a frame
            // slot the assembler holds and is not used by anything else until the datagrams are
            // offered. `receive_with` borrows the batch and the assembler mutably across this call,
            // so none of that memory moves or is read meanwhile; the kernel writes at most each
            // iovec's length.
            unsafe { self.recvmmsg_into(messages) }
        })
    }

    /// `recvmmsg` into `messages`, waiting as the socket is set to; `Ok(0)` only when nothing is
    /// queued, since the caller then lets frames time out. A wait cut short by a signal (a stopped
    /// and continued process among them) is made again.
    ///
    /// # Safety
    /// Every message must point at its own iovecs, each of writable memory that nothing else reads
    /// or writes during the call.
    unsafe fn recvmmsg_into(&self, messages: &mut [libc::mmsghdr]) -> io::Result<usize> {
        let mut flags = if self.blocking.load(Ordering::Relaxed) { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        loop {
            // SAFETY: the caller's promise; the count passed is the slice's length.
            let n = unsafe {
                libc::recvmmsg(
                    self.socket.as_raw_fd(),
                    messages.as_mut_ptr(),
                    messages.len() as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                // A wait whose time ran out while the process was stopped reports nothing even
                // with datagrams queued: look once more without waiting.
                io::ErrorKind::WouldBlock if flags != libc::MSG_DONTWAIT => flags = libc::MSG_DONTWAIT,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(err),
            }
        }
    }

    /// Sends every datagram of `batch` (to its own destination) and returns how many the kernel took.
    ///
    /// # Errors
    /// The system call failed for a reason other than a full send buffer.
    pub fn send_batch(&self, batch: &mut SendBatch) -> io::Result<usize> {
        if batch.len == 0 {
            return Ok(0);
        }
        batch.prepare();
        // SAFETY: `prepare` pointed the first `batch.len` headers at their iovecs, payload regions and
        // destination addresses, all owned by `batch`, which is borrowed for the whole call; the kernel
        // only reads them. The count passed is at most the vectors' length.
        let n = unsafe {
            libc::sendmmsg(self.socket.as_raw_fd(), batch.headers.as_mut_ptr(), batch.len as libc::c_uint, 0)
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        Ok(n as usize)
    }
}

/// Raises the receive buffer past `net.core.rmem_max`, which only root may do.
fn force_recv_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` is a live c_int whose address and size are passed together; the kernel reads
    // exactly that many bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Waits until one of `fds` has data or `timeout_ms` passes; true when something is readable.
///
/// # Errors
/// `poll` failed for a reason other than a signal.
pub fn wait_readable(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<bool> {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd and its length is passed with it.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(err) };
    }
    Ok(rc > 0)
}

/// A pollfd for a socket, for [`wait_readable`].
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// Caller-owned buffers for one `recvmmsg` call: `batch` datagrams of up to `slot_bytes` each.
pub struct RecvBatch {
    /// The UDP port the batch was received on, for a batch handed to another thread.
    pub port: u16,
    buffers: Vec<u8>,
    slot_bytes: usize,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` point only into `buffers` and `iovecs` of the
// same value and are rewritten before every use; moving the batch to another thread moves what they
// point to with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(batch: usize, slot_bytes: usize) -> RecvBatch {
        let batch = batch.max(1);
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero bytes are a valid value
        // (null pointers, zero lengths); they are filled in by `prepare` before any use.
        let zero_iovec: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_header: libc::mmsghdr = unsafe { std::mem::zeroed() };
        RecvBatch {
            port: 0,
            buffers: vec![0; batch * slot_bytes],
            slot_bytes,
            iovecs: vec![zero_iovec; batch],
            headers: vec![zero_header; batch],
            received: 0,
        }
    }

    fn prepare(&mut self) {
        let base = self.buffers.as_mut_ptr();
        for (i, (iov, h)) in self.iovecs.iter_mut().zip(self.headers.iter_mut()).enumerate() {
            // SAFETY: `i * slot_bytes` is inside `buffers`, which holds `len * slot_bytes` bytes.
            iov.iov_base = unsafe { base.add(i * self.slot_bytes) }.cast();
            iov.iov_len = self.slot_bytes;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        self.received = 0;
    }

    /// The datagrams of the last receive, each with a flag set when it was cut to the buffer size.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], bool)> {
        self.headers[..self.received].iter().enumerate().map(move |(i, h)| {
            let len = (h.msg_len as usize).min(self.slot_bytes);
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            (&self.buffers[i * self.slot_bytes..i * self.slot_bytes + len], truncated)
        })
    }
}

/// Caller-owned buffers for one `sendmmsg` call.
pub struct SendBatch {
    buffers: Vec<u8>,
    lens: Vec<usize>,
    slot_bytes: usize,
    addresses: Vec<SockAddr>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    len: usize,
}

// SAFETY: as for RecvBatch, the raw pointers only point into the batch's own vectors and are rewritten
// before every use.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn new(batch: usize, slot_bytes: usize) -> SendBatch {
        let batch = batch.max(1);
        // SAFETY: all-zero iovec and mmsghdr are valid values, filled in by `prepare` before use.
        let zero_iovec: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_header: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let unspecified: SockAddr = SocketAddr::from(([0, 0, 0, 0], 0)).into();
        SendBatch {
            buffers: vec![0; batch * slot_bytes],
            lens: vec![0; batch],
            slot_bytes,
            addresses: vec![unspecified; batch],
            iovecs: vec![zero_iovec; batch],
            headers: vec![zero_header; batch],
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.headers.len()
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Queues a copy of `payload` for `to`; the payload is cut to the slot size. False when full.
    pub fn push(&mut self, to: SocketAddr, payload: &[u8]) -> bool {
        if self.is_full() {
            return false;
        }
        let n = payload.len().min(self.slot_bytes);
        let at = self.len * self.slot_bytes;
        self.buffers[at..at + n].copy_from_slice(&payload[..n]);
        self.lens[self.len] = n;
        self.addresses[self.len] = to.into();
        self.len += 1;
        true
    }

    /// Drops the first `n` queued datagrams (sent), keeping the rest in order.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        let rest = self.len - n;
        self.buffers.copy_within(n * self.slot_bytes..self.len * self.slot_bytes, 0);
        self.lens.copy_within(n..self.len, 0);
        self.addresses.rotate_left(n);
        self.len = rest;
    }

    fn prepare(&mut self) {
        let base = self.buffers.as_mut_ptr();
        for i in 0..self.len {
            // SAFETY: `i < len <= capacity`, so the region starting at `i * slot_bytes` is inside `buffers`.
            self.iovecs[i].iov_base = unsafe { base.add(i * self.slot_bytes) }.cast();
            self.iovecs[i].iov_len = self.lens[i];
            let h = &mut self.headers[i];
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = self.addresses[i].as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.addresses[i].len();
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_crosses_loopback_whole_and_in_order() {
        let (rx, report) = UdpBatchSocket::bind("127.0.0.1".parse().unwrap(), 0, 1 << 20).unwrap();
        assert!(report.granted_bytes > 0);
        let to = rx.local_addr();
        let tx = UdpBatchSocket::for_sending(to, 0).unwrap();
        let mut send = SendBatch::new(8, 9000);
        for i in 0..8u8 {
            assert!(send.push(to, &vec![i; 100 + usize::from(i)]));
        }
        assert!(!send.push(to, b"full"));
        let mut sent = 0;
        while sent < 8 {
            let n = tx.send_batch(&mut send).unwrap();
            send.consume(n);
            sent += n;
        }
        let mut recv = RecvBatch::new(16, 9000);
        let mut got = Vec::new();
        let mut fds = [pollfd(rx.raw_fd())];
        while got.len() < 8 {
            assert!(wait_readable(&mut fds, 2000).unwrap(), "datagrams arrive");
            rx.recv_batch(&mut recv).unwrap();
            got.extend(recv.datagrams().map(|(d, t)| (d.to_vec(), t)));
        }
        for (i, (d, truncated)) in got.iter().enumerate() {
            assert_eq!(d.len(), 100 + i);
            assert!(d.iter().all(|&b| b == i as u8));
            assert!(!truncated);
        }
    }

    #[test]
    fn a_datagram_larger_than_its_buffer_is_flagged() {
        let (rx, _) = UdpBatchSocket::bind("127.0.0.1".parse().unwrap(), 0, 0).unwrap();
        let tx = UdpBatchSocket::for_sending(rx.local_addr(), 0).unwrap();
        let mut send = SendBatch::new(1, 2000);
        send.push(rx.local_addr(), &[7; 2000]);
        assert_eq!(tx.send_batch(&mut send).unwrap(), 1);
        let mut recv = RecvBatch::new(4, 1000);
        let mut fds = [pollfd(rx.raw_fd())];
        assert!(wait_readable(&mut fds, 2000).unwrap());
        assert_eq!(rx.recv_batch(&mut recv).unwrap(), 1);
        let (d, truncated) = recv.datagrams().next().unwrap();
        assert_eq!((d.len(), truncated), (1000, true));
    }

    #[test]
    fn a_receive_that_waits_takes_what_is_queued_and_returns_empty_when_its_time_runs_out() {
        let (mut rx, _) = UdpBatchSocket::bind("127.0.0.1".parse().unwrap(), 0, 1 << 20).unwrap();
        rx.wait_in_receive(std::time::Duration::from_millis(5)).unwrap();
        let mut recv = RecvBatch::new(8, 1000);
        assert_eq!(rx.recv_batch(&mut recv).unwrap(), 0, "nothing sent: the wait runs out");
        let tx = UdpBatchSocket::for_sending(rx.local_addr(), 0).unwrap();
        let mut send = SendBatch::new(3, 100);
        for i in 0..3u8 {
            send.push(rx.local_addr(), &[i; 100]);
        }
        assert_eq!(tx.send_batch(&mut send).unwrap(), 3);
        let mut got = 0;
        while got < 3 {
            let n = rx.recv_batch(&mut recv).unwrap();
            assert!(n > 0, "datagrams were queued");
            got += n;
        }
        assert_eq!(got, 3);
    }

    #[test]
    fn an_empty_queue_is_not_an_error() {
        let (rx, _) = UdpBatchSocket::bind("127.0.0.1".parse().unwrap(), 0, 0).unwrap();
        let mut recv = RecvBatch::new(4, 1000);
        assert_eq!(rx.recv_batch(&mut recv).unwrap(), 0);
        assert_eq!(recv.datagrams().count(), 0);
    }
}
