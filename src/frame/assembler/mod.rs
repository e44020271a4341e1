//! The sans-IO frame assembler: bytes and a `now` in, frames out; no sockets, clocks or threads.
//!
//! Contract:
//! - A packet lands in its frame slot at the place its (module port, packet number) gives; the payload is
//!   copied once.
//! - A frame leaves as soon as its last packet lands. A partial frame leaves when it is older than
//!   `frame_timeout_ns`, when `window_frames` newer frames push it out, or at [`Assembler::flush`]; its
//!   missing packets read as zeros and are flagged in its packet mask. [`PartialPolicy`] keeps or drops it.
//! - Every packet offered is counted exactly once: placed, or dropped under one [`PacketDrop`] reason.
//!   Packets that never came are counted as lost when their frame leaves.
//! - A packet whose frame number jumps beyond the window is held aside until a second packet agrees
//!   (then both are placed and the window follows); one that stays alone is dropped as out of the
//!   window, so a single corrupted frame number cannot make every genuine packet after it late.
//! - When the pool has no free slot the frame is dropped and counted (`frames_no_slot`): the assembler
//!   never waits and never allocates after construction.

use std::collections::VecDeque;
use std::sync::Arc;

use zerocopy::IntoBytes;

use crate::detector::{DetectorGeometry, HEADER_BYTES, SlsDetectorHeader};

use super::pool::{FrameHandle, FramePool};

/// What to do with a frame that leaves with packets missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PartialPolicy {
    /// Hand it on, flagged by its packet mask.
    #[default]
    KeepFlagged,
    /// Count it and give its slot back.
    Drop,
}

/// Tunables of the assembler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// A partial frame leaves this long after its first packet.
    pub frame_timeout_ns: u64,
    /// Frames assembled at once; a newer frame beyond this pushes the oldest out.
    pub window_frames: usize,
    /// A frame number this far ahead of the newest is taken as garbage, not as the future.
    pub max_frame_jump: u64,
    pub partial_policy: PartialPolicy,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            frame_timeout_ns: 10_000_000,
            window_frames: 8,
            max_frame_jump: 1_000_000,
            partial_policy: PartialPolicy::KeepFlagged,
        }
    }
}

/// Why a packet was not placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketDrop {
    /// Sent to a UDP port the detector does not use, or from another detector type.
    Foreign,
    /// Shorter than a whole packet of this detector.
    Truncated,
    /// Longer than a whole packet of this detector.
    Oversized,
    /// Frame number 0 or a packet number past the frame's end.
    BadHeader,
    /// Its place in an assembling (or complete) frame is already filled.
    Duplicate,
    /// Its frame already left partial, or is older than the window.
    Late,
    /// Frame number implausibly far ahead of the newest frame.
    OutOfWindow,
    /// Its frame got no slot because the pool was empty.
    NoSlot,
}

impl PacketDrop {
    pub const ALL: [PacketDrop; 8] = [
        PacketDrop::Foreign,
        PacketDrop::Truncated,
        PacketDrop::Oversized,
        PacketDrop::BadHeader,
        PacketDrop::Duplicate,
        PacketDrop::Late,
        PacketDrop::OutOfWindow,
        PacketDrop::NoSlot,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PacketDrop::Foreign => "foreign",
            PacketDrop::Truncated => "truncated",
            PacketDrop::Oversized => "oversized",
            PacketDrop::BadHeader => "bad_header",
            PacketDrop::Duplicate => "duplicate",
            PacketDrop::Late => "late",
            PacketDrop::OutOfWindow => "out_of_window",
            PacketDrop::NoSlot => "no_slot",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The assembler's account of everything it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssemblyCounters {
    pub packets_placed: u64,
    pub packets_dropped: [u64; PacketDrop::ALL.len()],
    /// Packets that never arrived, in frames that left (or were dropped) partial.
    pub packets_lost: u64,
    pub frames_complete: u64,
    /// Partial frames handed on, flagged.
    pub frames_partial: u64,
    /// Partial frames dropped by policy.
    pub frames_partial_dropped: u64,
    /// Frames that found the pool empty.
    pub frames_no_slot: u64,
    /// Packets received straight into a frame slot at a place that turned out not to be theirs
    /// (loss, reorder, a frame not foreseen), then copied where they belong.
    pub packets_misplaced: u64,
}

impl AssemblyCounters {
    pub fn dropped(&self, reason: PacketDrop) -> u64 {
        self.packets_dropped[reason.index()]
    }

    pub fn packets_offered(&self) -> u64 {
        self.packets_placed + self.packets_dropped.iter().sum::<u64>()
    }

    /// Adds another assembler's counts (several sources).
    pub fn add(&mut self, other: &AssemblyCounters) {
        self.packets_placed += other.packets_placed;
        for (a, b) in self.packets_dropped.iter_mut().zip(other.packets_dropped) {
            *a += b;
        }
        self.packets_lost += other.packets_lost;
        self.frames_complete += other.frames_complete;
        self.frames_partial += other.frames_partial;
        self.frames_partial_dropped += other.frames_partial_dropped;
        self.frames_no_slot += other.frames_no_slot;
        self.packets_misplaced += other.packets_misplaced;
    }
}

/// What became of a frame number that is no longer assembling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gone {
    Complete,
    Partial,
    NoSlot,
}

/// Frame numbers that left recently, to name the reason of a straggler precisely.
const RECENT: usize = 256;

struct InFlight {
    handle: FrameHandle,
    deadline_ns: u64,
}

/// Where a packet's payload is when it is offered.
#[derive(Clone, Copy)]
enum Payload<'a> {
    /// To be copied into its place.
    Copy(&'a [u8]),
    /// Received into a place that was not its own and saved from there: copied, and counted as
    /// misplaced.
    Rescued(&'a [u8]),
    /// Received straight into its place, at this address (see [`landing`]).
    Landed(usize),
}

/// Packets that may pass a held jump before it is given up as a corrupted frame number.
const HOLD_PACKETS: u32 = 64;

/// A packet whose frame number jumps beyond the window, held (its bytes in `Assembler::held_bytes`)
/// until a second packet agrees: one corrupted frame number must not move the window on and make
/// every genuine packet after it late.
#[derive(Clone, Copy)]
struct HeldJump {
    udp_port: u16,
    frame_number: u64,
    since_ns: u64,
    passed: u32,
}

/// Packets in, frames out. See the module documentation for the contract.
pub struct Assembler {
    geometry: DetectorGeometry,
    config: AssemblerConfig,
    pool: Arc<FramePool>,
    /// UDP port → detector port index, `u16::MAX` where none.
    port_lookup: Box<[u16]>,
    packet_bytes: usize,
    packets_per_port: usize,
    det_type: u8,
    in_flight: Vec<InFlight>,
    ready: VecDeque<FrameHandle>,
    recent: Box<[(u64, Gone)]>,
    recent_next: usize,
    newest: u64,
    counters: AssemblyCounters,
    held: Option<HeldJump>,
    held_bytes: Box<[u8]>,
    /// Per detector port, the (frame, packet) last placed: where its next packet is predicted.
    cursor: Box<[(u64, u32)]>,
    /// A slot taken ahead for the frame after the newest, so its first packets can be received
    /// straight into it; it becomes that frame's slot when the frame opens.
    spare: Option<FrameHandle>,
    /// When the last packet was placed.
    last_placed_ns: u64,
    /// Nothing assembling and nothing placed for a frame timeout: the detector is idle, and no slot is
    /// taken ahead until a packet comes.
    dormant: bool,
}

impl Assembler {
    /// An assembler for `geometry` that takes its slots from `pool`. All its memory is allocated here.
    pub fn new(geometry: DetectorGeometry, config: AssemblerConfig, pool: Arc<FramePool>) -> Assembler {
        let mut port_lookup = vec![u16::MAX; 1 << 16].into_boxed_slice();
        for (index, &udp) in geometry.udp_ports.iter().enumerate() {
            port_lookup[udp as usize] = index as u16;
        }
        let window = config.window_frames.max(1);
        let packet_bytes = geometry.model.packet_bytes();
        let geometry_ports = geometry.udp_ports.len();
        Assembler {
            packet_bytes,
            packets_per_port: geometry.model.packets_per_port(),
            det_type: geometry.model.det_type.code(),
            geometry,
            config: AssemblerConfig { window_frames: window, ..config },
            pool,
            port_lookup,
            in_flight: Vec::with_capacity(window),
            ready: VecDeque::with_capacity(window + 1),
            recent: vec![(0, Gone::Complete); RECENT].into_boxed_slice(),
            recent_next: 0,
            newest: 0,
            counters: AssemblyCounters::default(),
            held: None,
            held_bytes: vec![0; packet_bytes].into_boxed_slice(),
            cursor: vec![(0, 0); geometry_ports].into_boxed_slice(),
            spare: None,
            last_placed_ns: 0,
            dormant: true,
        }
    }

    pub fn geometry(&self) -> &DetectorGeometry {
        &self.geometry
    }

    pub fn counters(&self) -> &AssemblyCounters {
        &self.counters
    }

    /// Frames currently assembling.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn drop_packet(&mut self, reason: PacketDrop) -> Result<(), PacketDrop> {
        self.counters.packets_dropped[reason.index()] += 1;
        Err(reason)
    }

    /// Counts a packet its source already knows is bad (e.g. cut short by a DMA engine), so that
    /// every packet offered is still counted exactly once.
    pub fn count_drop(&mut self, reason: PacketDrop) {
        let _ = self.drop_packet(reason);
    }

    /// Offers one UDP payload that arrived on `udp_port` at `now_ns`.
    ///
    /// # Errors
    /// The reason the packet was dropped (already counted).
    pub fn push(&mut self, udp_port: u16, packet: &[u8], now_ns: u64) -> Result<(), PacketDrop> {
        let cut = packet.len().min(HEADER_BYTES);
        self.offer(udp_port, packet.len(), &packet[..cut], Payload::Copy(&packet[cut..]), now_ns)
    }

    /// The one way in for a datagram of `len` bytes whose header bytes are `header` and whose payload
    /// is `payload` (copied in, or already in its place).
    fn offer(
        &mut self,
        udp_port: u16,
        len: usize,
        header: &[u8],
        payload: Payload<'_>,
        now_ns: u64,
    ) -> Result<(), PacketDrop> {
        let port_index = self.port_lookup[udp_port as usize];
        if port_index == u16::MAX {
            return self.drop_packet(PacketDrop::Foreign);
        }
        if len < self.packet_bytes {
            return self.drop_packet(PacketDrop::Truncated);
        }
        if len > self.packet_bytes {
            return self.drop_packet(PacketDrop::Oversized);
        }
        let Ok((header, _)) = SlsDetectorHeader::split(header) else {
            return self.drop_packet(PacketDrop::Truncated);
        };
        if header.det_type != self.det_type {
            return self.drop_packet(PacketDrop::Foreign);
        }
        let frame_number = header.frame_number.get();
        let packet_number = header.packet_number.get() as usize;
        if frame_number == 0 || packet_number >= self.packets_per_port {
            return self.drop_packet(PacketDrop::BadHeader);
        }
        if self.jumps_beyond_window(frame_number) {
            let window = self.config.window_frames as u64;
            match self.held {
                // A second packet in the same place: a real jump (a burst lost, the detector restarted).
                Some(h) if frame_number.abs_diff(h.frame_number) < window => self.release_held(true),
                _ => return self.hold(udp_port, header, payload, frame_number, now_ns),
            }
        } else if let Some(h) = self.held.as_mut() {
            h.passed += 1;
            if h.passed >= HOLD_PACKETS {
                self.release_held(false);
            }
        }
        self.place(port_index, header, payload, now_ns)
    }

    /// A frame number ahead of the newest by more than the window (but within `max_frame_jump`).
    fn jumps_beyond_window(&self, frame_number: u64) -> bool {
        self.newest != 0
            && frame_number > self.newest.saturating_add(self.config.window_frames as u64)
            && frame_number <= self.newest.saturating_add(self.config.max_frame_jump)
    }

    /// Keeps the packet aside; one already held, never confirmed, is dropped.
    fn hold(
        &mut self,
        udp_port: u16,
        header: &SlsDetectorHeader,
        payload: Payload<'_>,
        frame_number: u64,
        now_ns: u64,
    ) -> Result<(), PacketDrop> {
        if self.held.is_some() {
            self.release_held(false);
        }
        // Never a payload landed in place: a jump beyond the window is never predicted.
        let (Payload::Copy(bytes) | Payload::Rescued(bytes)) = payload else {
            return self.drop_packet(PacketDrop::OutOfWindow);
        };
        self.held_bytes[..HEADER_BYTES].copy_from_slice(header.as_bytes());
        self.held_bytes[HEADER_BYTES..].copy_from_slice(bytes);
        self.held = Some(HeldJump { udp_port, frame_number, since_ns: now_ns, passed: 0 });
        Ok(())
    }

    /// Places the held packet (confirmed) or drops it as out of the window (never confirmed).
    fn release_held(&mut self, confirmed: bool) {
        let Some(h) = self.held.take() else { return };
        if !confirmed {
            let _ = self.drop_packet(PacketDrop::OutOfWindow);
            return;
        }
        let bytes = std::mem::take(&mut self.held_bytes);
        let port_index = usize::from(self.port_lookup[h.udp_port as usize]);
        if let Ok((header, payload)) = SlsDetectorHeader::split(&bytes) {
            let _ = self.place(port_index as u16, header, Payload::Copy(payload), h.since_ns);
        }
        self.held_bytes = bytes;
    }

    /// Puts a packet that passed every check into its frame.
    fn place(
        &mut self,
        port_index: u16,
        header: &SlsDetectorHeader,
        payload: Payload<'_>,
        now_ns: u64,
    ) -> Result<(), PacketDrop> {
        let frame_number = header.frame_number.get();
        let packet_number = header.packet_number.get() as usize;
        let slot = match self.in_flight.iter().position(|f| f.handle.meta().frame_number == frame_number) {
            Some(slot) => slot,
            None => match self.open_frame(frame_number, header, now_ns) {
                Ok(slot) => slot,
                Err(reason) => return self.drop_packet(reason),
            },
        };
        let port_index = usize::from(port_index);
        let mask_index = self.geometry.packet_index(port_index, packet_number);
        let range = self.geometry.packet_range(port_index, packet_number);
        let handle = &mut self.in_flight[slot].handle;
        if !handle.mark_packet(mask_index) {
            return self.drop_packet(PacketDrop::Duplicate);
        }
        match payload {
            Payload::Copy(bytes) => handle.data_mut()[range].copy_from_slice(bytes),
            Payload::Rescued(bytes) => {
                handle.data_mut()[range].copy_from_slice(bytes);
                self.counters.packets_misplaced += 1;
            }
            Payload::Landed(address) => {
                // The prediction and this placement follow the same rules, so they agree; were they
                // ever to differ the bytes are elsewhere, and the packet is not claimed as placed.
                if address != handle.data_address() + range.start {
                    debug_assert!(false, "a payload landed where its packet does not go");
                    handle.unmark_packet(mask_index);
                    return self.drop_packet(PacketDrop::Late);
                }
            }
        }
        self.cursor[port_index] = (frame_number, packet_number as u32);
        let handle = &mut self.in_flight[slot].handle;
        let meta = handle.meta_mut();
        meta.packets_received += 1;
        meta.last_packet_ns = now_ns;
        self.counters.packets_placed += 1;
        (self.last_placed_ns, self.dormant) = (now_ns, false);
        if meta.is_complete() {
            self.finish(slot);
        }
        Ok(())
    }

    /// Finds room for a frame not seen assembling, or says why its packet is dropped.
    fn open_frame(&mut self, frame_number: u64, header: &SlsDetectorHeader, now_ns: u64) -> Result<usize, PacketDrop> {
        if let Some(gone) = self.recently_gone(frame_number) {
            return Err(match gone {
                Gone::Complete => PacketDrop::Duplicate,
                Gone::Partial => PacketDrop::Late,
                Gone::NoSlot => PacketDrop::NoSlot,
            });
        }
        let window = self.config.window_frames as u64;
        if self.newest != 0 {
            if frame_number.saturating_add(window) <= self.newest {
                return Err(PacketDrop::Late);
            }
            if frame_number > self.newest.saturating_add(self.config.max_frame_jump) {
                return Err(PacketDrop::OutOfWindow);
            }
        }
        if frame_number > self.newest {
            self.newest = frame_number;
            // The window moved on: frames that fell out of it will not complete any more.
            while let Some(old) =
                self.in_flight.iter().position(|f| f.handle.meta().frame_number.saturating_add(window) <= frame_number)
            {
                self.finish(old);
            }
        }
        if self.in_flight.len() == self.config.window_frames {
            let oldest =
                (0..self.in_flight.len()).min_by_key(|&i| self.in_flight[i].handle.meta().frame_number).unwrap_or(0);
            self.finish(oldest);
        }
        let Some(mut handle) = self.spare.take().or_else(|| self.pool.try_acquire()) else {
            self.counters.frames_no_slot += 1;
            self.remember(frame_number, Gone::NoSlot);
            return Err(PacketDrop::NoSlot);
        };
        let meta = handle.meta_mut();
        meta.frame_number = frame_number;
        meta.bunch_id = header.bunch_id.get();
        meta.detector_timestamp = header.timestamp.get();
        meta.first_packet_ns = now_ns;
        self.in_flight.push(InFlight { handle, deadline_ns: now_ns.saturating_add(self.config.frame_timeout_ns) });
        Ok(self.in_flight.len() - 1)
    }

    fn recently_gone(&self, frame_number: u64) -> Option<Gone> {
        self.recent.iter().find(|(f, _)| *f == frame_number).map(|(_, g)| *g)
    }

    fn remember(&mut self, frame_number: u64, gone: Gone) {
        self.recent[self.recent_next] = (frame_number, gone);
        self.recent_next = (self.recent_next + 1) % RECENT;
    }

    /// Takes frame `slot` out of assembly and hands it on (or drops it by policy).
    fn finish(&mut self, slot: usize) {
        let InFlight { mut handle, .. } = self.in_flight.swap_remove(slot);
        let meta = *handle.meta();
        if meta.is_complete() {
            self.counters.frames_complete += 1;
            self.remember(meta.frame_number, Gone::Complete);
        } else {
            self.counters.packets_lost += u64::from(meta.packets_expected - meta.packets_received);
            self.remember(meta.frame_number, Gone::Partial);
            if self.config.partial_policy == PartialPolicy::Drop {
                self.counters.frames_partial_dropped += 1;
                return;
            }
            self.counters.frames_partial += 1;
            // The slot still holds an older frame where packets are missing: blank those places.
            for index in 0..self.geometry.packets_per_frame() {
                if !handle.has_packet(index) {
                    let (port, packet) = (index / self.packets_per_port, index % self.packets_per_port);
                    let range = self.geometry.packet_range(port, packet);
                    handle.data_mut()[range].fill(0);
                }
            }
        }
        self.ready.push_back(handle);
    }

    /// Lets partial frames whose time is up leave.
    pub fn poll_timeouts(&mut self, now_ns: u64) {
        if self.held.is_some_and(|h| h.since_ns.saturating_add(self.config.frame_timeout_ns) <= now_ns) {
            self.release_held(false);
        }
        while let Some(slot) = self.in_flight.iter().position(|f| f.deadline_ns <= now_ns) {
            self.finish(slot);
        }
        // An assembler with nothing assembling and nothing placed for a frame timeout holds no slot:
        // the pool reads full when the detector is idle. Between the frames of a stream it keeps the
        // one taken ahead, so the next frame's first packets still land in place.
        if self.in_flight.is_empty() && now_ns.saturating_sub(self.last_placed_ns) >= self.config.frame_timeout_ns {
            self.spare = None;
            self.dormant = true;
        }
    }

    /// Ends the stream: every frame still assembling leaves.
    pub fn flush(&mut self) {
        self.release_held(false);
        self.spare = None;
        while !self.in_flight.is_empty() {
            let oldest =
                (0..self.in_flight.len()).min_by_key(|&i| self.in_flight[i].handle.meta().frame_number).unwrap_or(0);
            self.finish(oldest);
        }
    }

    /// The next frame ready to go, in the order frames left assembly.
    pub fn pop_ready(&mut self) -> Option<FrameHandle> {
        self.ready.pop_front()
    }
}

mod landing;
pub use landing::Landing;

#[cfg(test)]
mod tests;
