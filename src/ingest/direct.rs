//! Receiving a port's datagrams straight into their frame slots. Each datagram is scattered by two
//! iovecs: its 48-byte header into a header array, its payload into the place the assembler
//! predicts for it (`frame::assembler::landing`), so a payload crosses memory once, in the kernel's
//! copy. Where nothing could be predicted the payload goes to a buffer of the batch. After the
//! receive the headers say which payloads landed where they belong; from the first that did not (a
//! packet lost or reordered, a frame not foreseen) the rest of the batch is saved to the batch's own
//! buffers and offered from there, one copy each, counted as misplaced. Frames, counts and pixels
//! are those of copying every datagram from a plain buffer (`tests::direct_*` hold them to that).

use std::io;

use crate::detector::HEADER_BYTES;
use crate::frame::{Assembler, PacketDrop, assembler::Landing};

/// What one receive into frames took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub datagrams: usize,
    pub bytes: u64,
}

/// Preallocated room for one receive of up to `batch` datagrams into frame slots.
pub struct DirectBatch {
    headers: Vec<[u8; HEADER_BYTES]>,
    /// A payload's room where nothing was predicted, and its refuge when it landed in a place not
    /// its own.
    spill: Vec<u8>,
    payload_bytes: usize,
    landings: Vec<Landing>,
    iovecs: Vec<[libc::iovec; 2]>,
    messages: Vec<libc::mmsghdr>,
    /// Per datagram: its payload landed in a place not its own and could not be saved from there.
    unsaved: Vec<bool>,
}

impl DirectBatch {
    /// Room for `batch` datagrams of the assembler's packets.
    pub fn new(batch: usize, assembler: &Assembler) -> DirectBatch {
        let batch = batch.max(1);
        let payload_bytes = assembler.payload_bytes();
        let no_iovec = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value (null
        // pointers, zero lengths); every field used is written before each receive.
        let zero_message: libc::mmsghdr = unsafe { std::mem::zeroed() };
        DirectBatch {
            headers: vec![[0; HEADER_BYTES]; batch],
            spill: vec![0; batch * payload_bytes],
            payload_bytes,
            landings: vec![Landing::NOWHERE; batch],
            iovecs: vec![[no_iovec; 2]; batch],
            messages: vec![zero_message; batch],
            unsaved: vec![false; batch],
        }
    }

    pub fn capacity(&self) -> usize {
        self.messages.len()
    }

    /// Predicts where `udp_port`'s next datagrams go, receives them with `receive` (which fills the
    /// messages it is given as `recvmmsg` does and returns how many it filled), then offers every
    /// datagram to the assembler. `now_ns` is read once the datagrams are in.
    ///
    /// # Errors
    /// `receive` failed; nothing was offered.
    pub fn receive_with(
        &mut self,
        assembler: &mut Assembler,
        udp_port: u16,
        now_ns: impl FnOnce() -> u64,
        receive: impl FnOnce(&mut [libc::mmsghdr]) -> io::Result<usize>,
    ) -> io::Result<Received> {
        assembler.predict(udp_port, &mut self.landings);
        let payload_bytes = self.payload_bytes;
        // One pointer per buffer, every place derived from it: a reborrow per datagram would retag
        // the whole buffer and void the places handed out before it.
        let spill = self.spill.as_mut_ptr();
        let headers = self.headers.as_mut_ptr();
        for (i, ((iov, message), landing)) in
            self.iovecs.iter_mut().zip(self.messages.iter_mut()).zip(&self.landings).enumerate()
        {
            let payload = if landing.is_predicted() { landing.dest } else { spill.wrapping_add(i * payload_bytes) };
            iov[0] = libc::iovec { iov_base: headers.wrapping_add(i).cast(), iov_len: HEADER_BYTES };
            iov[1] = libc::iovec { iov_base: payload.cast(), iov_len: payload_bytes };
            let h = &mut message.msg_hdr;
            h.msg_iov = iov.as_mut_ptr();
            h.msg_iovlen = 2;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            message.msg_len = 0;
        }
        let got = receive(&mut self.messages)?.min(self.messages.len());
        if got == 0 {
            return Ok(Received::default());
        }
        let now_ns = now_ns();
        let packet_bytes = HEADER_BYTES + payload_bytes;
        // A datagram cut to the iovecs is longer than any packet: offered as such, it is oversized.
        let len = |m: &libc::mmsghdr| {
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 { packet_bytes + 1 } else { m.msg_len as usize }
        };
        let in_place = (0..got)
            .take_while(|&i| self.landings[i].is_met_by(len(&self.messages[i]), &self.headers[i], packet_bytes))
            .count();
        // Saved before anything is offered: offering moves frames on, and a later packet may be
        // copied over a place where an earlier one landed by mistake.
        for i in in_place..got {
            self.unsaved[i] = false;
            if self.landings[i].is_predicted() {
                let room = &mut self.spill[i * payload_bytes..(i + 1) * payload_bytes];
                match assembler.landed_bytes(&self.landings[i]) {
                    Some(bytes) => room.copy_from_slice(bytes),
                    None => self.unsaved[i] = true,
                }
            }
        }
        let mut bytes = 0u64;
        for i in 0..got {
            let m = &self.messages[i];
            bytes += u64::from(m.msg_len);
            let header = &self.headers[i][..(m.msg_len as usize).min(HEADER_BYTES)];
            if i < in_place {
                let _ = assembler.accept_landed(udp_port, header, &self.landings[i], now_ns);
            } else if self.unsaved[i] {
                // Cannot happen while the landing contract holds: the payload is nowhere to be had.
                assembler.count_drop(PacketDrop::Late);
            } else {
                let room = &self.spill[i * payload_bytes..(i + 1) * payload_bytes];
                let _ = assembler.offer_rescued(udp_port, len(m), header, room, now_ns);
            }
        }
        Ok(Received { datagrams: got, bytes })
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
