//! Receiving payloads straight into their frame slots: the assembler predicts where each of a port's
//! next packets goes (the packet after the last one placed, then the next, into the frame after
//! when a frame's packets run out), a receive writes each datagram's payload there, and the header
//! then says whether the packet was the one predicted. Predicting and checking are all that happens
//! here; the receive itself, and its `unsafe`, belong to the source (`ingest::direct`).
//!
//! The contract a source relies on: a receive that follows [`Assembler::predict`] may write
//! `payload_bytes` at every predicted place, as long as nothing else uses the assembler in between.
//! Then it offers the datagrams in the order received: while every datagram so far was the packet
//! predicted for its place, with [`Assembler::accept_landed`]; from the first that was not, every
//! later one from a copy of its bytes taken before anything was offered, with
//! [`Assembler::offer_rescued`]. Frames, counts and pixels come out exactly as if every datagram
//! had been [`Assembler::push`]ed.

use super::{Assembler, PacketDrop, Payload};
use crate::detector::HEADER_BYTES;

/// Where one datagram's payload is received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Landing {
    /// The packet expected there.
    pub frame_number: u64,
    pub packet_number: u32,
    /// Its place in a frame slot the assembler holds; null where nothing was predicted (the payload
    /// then goes to the receiver's own buffer).
    pub dest: *mut u8,
}

impl Landing {
    pub const NOWHERE: Landing = Landing { frame_number: 0, packet_number: 0, dest: std::ptr::null_mut() };

    pub fn is_predicted(&self) -> bool {
        !self.dest.is_null()
    }

    /// The datagram received here (`len` bytes, `header` its first bytes) is the packet predicted,
    /// whole.
    pub fn is_met_by(&self, len: usize, header: &[u8], packet_bytes: usize) -> bool {
        let Ok((h, _)) = crate::detector::SlsDetectorHeader::split(header) else { return false };
        self.is_predicted()
            && len == packet_bytes
            && h.frame_number.get() == self.frame_number
            && h.packet_number.get() == self.packet_number
    }
}

impl Assembler {
    /// Bytes of one packet's payload (after its header).
    pub fn payload_bytes(&self) -> usize {
        self.packet_bytes - HEADER_BYTES
    }

    /// Bytes of one whole packet.
    pub fn packet_bytes(&self) -> usize {
        self.packet_bytes
    }

    /// Predicts where the next `out.len()` packets of `udp_port` go and returns how many could be:
    /// `out[..n]` are places in frames assembling (or in the slot held for the frame after the
    /// newest), the rest [`Landing::NOWHERE`]. Prediction stops at a place already filled, at a
    /// frame that left, two frames past the newest, or when the pool has no slot to hold ahead.
    ///
    /// Every place predicted is `payload_bytes` long, inside a slot this assembler holds and keeps
    /// until it is next used, and distinct from every other; none holds a packet placed already.
    pub fn predict(&mut self, udp_port: u16, out: &mut [Landing]) -> usize {
        out.fill(Landing::NOWHERE);
        let port_index = self.port_lookup[udp_port as usize];
        if port_index == u16::MAX {
            return 0;
        }
        let port_index = usize::from(port_index);
        let (mut frame, mut packet) = self.cursor[port_index];
        if frame == 0 {
            return 0;
        }
        let last_packet = self.packets_per_port as u32 - 1;
        // The slot of the frame being predicted into, looked up once per frame: one pointer taken
        // per slot, so the places handed out all derive from it.
        let mut base: Option<(u64, *mut u8)> = None;
        let mut n = 0;
        while n < out.len() {
            if packet == last_packet {
                frame += 1;
                packet = 0;
            } else {
                packet += 1;
            }
            let mask_index = self.geometry.packet_index(port_index, packet as usize);
            let slot_start = match base {
                Some((f, ptr)) if f == frame => {
                    if self.frame_has_packet(frame, mask_index) {
                        break;
                    }
                    ptr
                }
                _ => match self.slot_for(frame, mask_index) {
                    Some(ptr) => {
                        base = Some((frame, ptr));
                        ptr
                    }
                    None => break,
                },
            };
            let range = self.geometry.packet_range(port_index, packet as usize);
            out[n] = Landing { frame_number: frame, packet_number: packet, dest: slot_start.wrapping_add(range.start) };
            n += 1;
        }
        n
    }

    fn frame_has_packet(&self, frame: u64, mask_index: usize) -> bool {
        match self.in_flight.iter().find(|f| f.handle.meta().frame_number == frame) {
            Some(f) => f.handle.has_packet(mask_index),
            None => false,
        }
    }

    /// The start of `frame`'s slot when packet `mask_index` may be received into it: the frame is
    /// assembling and lacks it, or it is the frame after the newest, the detector is not idle, and a
    /// slot can be held for it.
    fn slot_for(&mut self, frame: u64, mask_index: usize) -> Option<*mut u8> {
        if let Some(f) = self.in_flight.iter_mut().find(|f| f.handle.meta().frame_number == frame) {
            return (!f.handle.has_packet(mask_index)).then(|| f.handle.data_ptr());
        }
        if frame != self.newest.wrapping_add(1) || self.recently_gone(frame).is_some() || self.dormant {
            return None;
        }
        if self.spare.is_none() {
            self.spare = self.pool.try_acquire();
        }
        self.spare.as_mut().map(|s| s.data_ptr())
    }

    /// The bytes now at a predicted place, before anything else is offered: to save a payload that
    /// landed where it does not belong.
    pub fn landed_bytes(&self, landing: &Landing) -> Option<&[u8]> {
        if !landing.is_predicted() {
            return None;
        }
        let handle = match self.in_flight.iter().find(|f| f.handle.meta().frame_number == landing.frame_number) {
            Some(f) => &f.handle,
            None => self.spare.as_ref()?,
        };
        let start = (landing.dest as usize).checked_sub(handle.data_address())?;
        handle.data().get(start..start + self.payload_bytes())
    }

    /// Offers a datagram received whole at `landing`, the place predicted for it, which its header
    /// confirms ([`Landing::is_met_by`]): counted and placed as [`Assembler::push`] would, without a
    /// copy.
    ///
    /// # Errors
    /// The reason the packet was dropped (already counted).
    pub fn accept_landed(
        &mut self,
        udp_port: u16,
        header: &[u8],
        landing: &Landing,
        now_ns: u64,
    ) -> Result<(), PacketDrop> {
        self.offer(udp_port, self.packet_bytes, header, Payload::Landed(landing.dest as usize), now_ns)
    }

    /// Offers a datagram of `len` bytes whose payload did not land in its place, from a copy of it:
    /// as [`Assembler::push`], and counted as misplaced when placed.
    ///
    /// # Errors
    /// The reason the packet was dropped (already counted).
    pub fn offer_rescued(
        &mut self,
        udp_port: u16,
        len: usize,
        header: &[u8],
        payload: &[u8],
        now_ns: u64,
    ) -> Result<(), PacketDrop> {
        self.offer(udp_port, len, header, Payload::Rescued(payload), now_ns)
    }
}
