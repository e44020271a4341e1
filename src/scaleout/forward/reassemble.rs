//! Frames rebuilt from the forward's messages, without I/O: parts gathered per frame until the
//! features record that completes the frame has come and every part it names is there. A part sent
//! again after a failed acknowledgement can arrive after its record, so frames wait for their parts;
//! one whose parts never come (the stream dropped them past its limits) is handed on without its
//! chunk, and counted.

use std::collections::VecDeque;

use super::protocol::{Kind, ProtocolError};
use crate::sink::FrameRecord;

/// A frame handed on to the consumer's sinks.
pub struct Rebuilt {
    pub record: FrameRecord,
    /// The chunk was announced and did not come whole.
    pub chunk_missing: bool,
}

struct Pending {
    series: String,
    sequence: u64,
    record: Option<FrameRecord>,
    parts_expected: Option<u32>,
    parts: Vec<Option<bytes::Bytes>>,
    bytes: u64,
    /// Messages read since this frame's first.
    age: u64,
}

impl Pending {
    fn complete(&self) -> bool {
        self.record.is_some()
            && self.parts_expected.is_some_and(|n| n as usize == self.parts.len() || n == 0)
            && self.parts.iter().all(Option::is_some)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub frames: u64,
    pub chunks: u64,
    /// Frames handed on without the chunk their record announced.
    pub chunks_missing: u64,
    /// Parts no record ever claimed, and parts that disagree with their frame's others.
    pub parts_dropped: u64,
    /// Messages that are not the forward's (wrong subject, headers or record).
    pub messages_malformed: u64,
}

pub struct Reassembler {
    pending: VecDeque<Pending>,
    /// A frame waits for its parts at most this many messages.
    patience: u64,
    stats: ReassemblyStats,
}

impl Reassembler {
    pub fn new(patience: u64) -> Reassembler {
        Reassembler { pending: VecDeque::new(), patience: patience.max(1), stats: ReassemblyStats::default() }
    }

    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Frames begun and not yet handed on.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn entry(&mut self, series: &str, sequence: u64) -> &mut Pending {
        let at = self.pending.iter().position(|p| p.sequence == sequence && p.series == series);
        let at = at.unwrap_or_else(|| {
            self.pending.push_back(Pending {
                series: series.to_string(),
                sequence,
                record: None,
                parts_expected: None,
                parts: Vec::new(),
                bytes: 0,
                age: 0,
            });
            self.pending.len() - 1
        });
        &mut self.pending[at]
    }

    /// Takes one message (`kind` read from it, or why it could not be) and its payload; frames it
    /// completes go to `out`.
    pub fn add(&mut self, kind: Result<Kind, ProtocolError>, payload: bytes::Bytes, out: &mut Vec<Rebuilt>) {
        for p in &mut self.pending {
            p.age += 1;
        }
        match kind {
            Ok(Kind::End) => {}
            Err(_) => self.stats.messages_malformed += 1,
            Ok(Kind::Part { series, sequence, index, count, bytes }) => {
                let p = self.entry(&series, sequence);
                let fits = p.parts.is_empty() || (p.parts.len() == count as usize && p.bytes == bytes);
                if !fits || p.parts_expected.is_some_and(|n| n != count) {
                    self.stats.parts_dropped += 1;
                } else {
                    if p.parts.is_empty() {
                        p.parts = vec![None; count as usize];
                        p.bytes = bytes;
                    }
                    p.parts[index as usize - 1] = Some(payload);
                }
            }
            Ok(Kind::Features { series, sequence, parts }) => match crate::sink::features::decode_line(&payload) {
                Ok(record) => {
                    let p = self.entry(&series, sequence);
                    let mut dropped = 0;
                    if !p.parts.is_empty() && p.parts.len() != parts as usize {
                        dropped = p.parts.iter().flatten().count() as u64;
                        p.parts.clear();
                    }
                    p.record = Some(record);
                    p.parts_expected = Some(parts);
                    self.stats.parts_dropped += dropped;
                }
                Err(_) => self.stats.messages_malformed += 1,
            },
        }
        self.hand_on(out, false);
    }

    /// Hands on every frame that has a record, whole or not: the stream has ended, nothing more
    /// will come. Parts no record claimed are counted and dropped.
    pub fn flush(&mut self, out: &mut Vec<Rebuilt>) {
        self.hand_on(out, true);
        let orphans: usize = self.pending.drain(..).map(|p| p.parts.iter().flatten().count()).sum();
        self.stats.parts_dropped += orphans as u64;
    }

    fn hand_on(&mut self, out: &mut Vec<Rebuilt>, all: bool) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let overdue = all || p.age > self.patience;
            if p.complete() || (overdue && p.record.is_some()) {
                let Some(mut p) = self.pending.remove(i) else { break };
                let whole = p.complete();
                let Some(mut record) = p.record.take() else { continue };
                record.payload.clear();
                if whole {
                    for part in p.parts.iter().flatten() {
                        record.payload.extend_from_slice(part);
                    }
                    if record.payload.len() as u64 != p.bytes {
                        record.payload.clear();
                    }
                }
                let announced = p.parts_expected.unwrap_or(0) > 0;
                let chunk_missing = announced && record.payload.is_empty();
                self.stats.frames += 1;
                self.stats.chunks += u64::from(announced && !chunk_missing);
                self.stats.chunks_missing += u64::from(chunk_missing);
                out.push(Rebuilt { record, chunk_missing });
            } else if overdue && p.record.is_none() && p.age > 2 * self.patience {
                // Parts whose record never came.
                let orphans = p.parts.iter().flatten().count() as u64;
                self.pending.remove(i);
                self.stats.parts_dropped += orphans;
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"frame_number":12,"sequence":11,"bunch_id":3,"detector_timestamp":99,"first_packet_ns":5,"last_packet_ns":9,"accepted":true,"audit":false,"score":23.0,"dark":false,"complete":false,"packets_received":126,"packets_expected":128,"missing_packets":[40,41],"pixels_flagged":2048,"spots_found":0,"spots":[],"reduce_us":412.5}"#;

    fn part(sequence: u64, index: u32, count: u32, bytes: u64) -> Result<Kind, ProtocolError> {
        Ok(Kind::Part { series: "s".into(), sequence, index, count, bytes })
    }

    fn features(sequence: u64, parts: u32) -> Result<Kind, ProtocolError> {
        Ok(Kind::Features { series: "s".into(), sequence, parts })
    }

    #[test]
    fn a_record_after_its_parts_completes_the_frame_with_its_chunk_in_order() {
        let mut r = Reassembler::new(100);
        let mut out = Vec::new();
        r.add(part(11, 2, 2, 5), bytes::Bytes::from_static(b"de"), &mut out);
        r.add(part(11, 1, 2, 5), bytes::Bytes::from_static(b"abc"), &mut out);
        assert!(out.is_empty());
        r.add(features(11, 2), bytes::Bytes::from_static(LINE.as_bytes()), &mut out);
        assert_eq!(out.len(), 1);
        let rebuilt = &out[0];
        assert_eq!(rebuilt.record.payload, b"abcde");
        assert!(!rebuilt.chunk_missing);
        assert_eq!(rebuilt.record.meta.frame_number, 12);
        assert_eq!(rebuilt.record.missing_packets().collect::<Vec<_>>(), vec![40, 41]);
        // The very line the node wrote.
        let mut line = Vec::new();
        crate::sink::features::encode_line(&rebuilt.record, &mut Vec::new(), &mut line).unwrap();
        assert_eq!(String::from_utf8(line).unwrap().trim_end(), LINE);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_part_arriving_after_its_record_still_completes_the_frame() {
        let mut r = Reassembler::new(100);
        let mut out = Vec::new();
        r.add(part(11, 1, 2, 5), bytes::Bytes::from_static(b"abc"), &mut out);
        r.add(features(11, 2), bytes::Bytes::from_static(LINE.as_bytes()), &mut out);
        r.add(features(12, 0), bytes::Bytes::from_static(LINE.as_bytes()), &mut out);
        assert_eq!(out.len(), 1, "the frame without a chunk needs no part");
        r.add(part(11, 2, 2, 5), bytes::Bytes::from_static(b"de"), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].record.payload, b"abcde");
    }

    #[test]
    fn a_chunk_that_never_comes_whole_is_handed_on_without_it_and_counted() {
        let mut r = Reassembler::new(3);
        let mut out = Vec::new();
        r.add(part(11, 1, 2, 5), bytes::Bytes::from_static(b"abc"), &mut out);
        r.add(features(11, 2), bytes::Bytes::from_static(LINE.as_bytes()), &mut out);
        for s in 12..16 {
            r.add(features(s, 0), bytes::Bytes::from_static(LINE.as_bytes()), &mut out);
        }
        let missing: Vec<_> = out.iter().filter(|f| f.chunk_missing).collect();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].record.payload.is_empty());
        assert_eq!(r.stats().chunks_missing, 1);
        assert_eq!(r.stats().frames, 5);
    }

    #[test]
    fn malformed_and_mismatched_messages_are_counted_not_taken() {
        let mut r = Reassembler::new(100);
        let mut out = Vec::new();
        r.add(Err(ProtocolError::MissingHeader(super::super::protocol::SERIES)), bytes::Bytes::new(), &mut out);
        r.add(features(1, 0), bytes::Bytes::from_static(b"{not json"), &mut out);
        r.add(part(2, 1, 2, 5), bytes::Bytes::from_static(b"abc"), &mut out);
        r.add(part(2, 2, 3, 5), bytes::Bytes::from_static(b"de"), &mut out);
        assert_eq!(r.stats().messages_malformed, 2);
        assert_eq!(r.stats().parts_dropped, 1);
        r.flush(&mut out);
        assert!(out.is_empty());
        assert_eq!(r.stats().parts_dropped, 2, "the orphan part is dropped at the end");
    }
}
