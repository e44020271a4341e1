//! The forward's messages on JetStream. Per source (a node, or `all`), in publish order:
//!
//! - `<subject>.<source>.frame`: a part of a kept frame's compressed chunk (the HDF5 sink's very
//!   bytes), headers `Hitgate-Series`, `Hitgate-Sequence`, `Hitgate-Part` (`i/n`, from 1) and
//!   `Hitgate-Bytes` (the whole chunk's length). A chunk larger than the server's maximum payload is
//!   cut into several parts.
//! - `<subject>.<source>.features`: the frame's features record, the features sink's JSON line,
//!   headers `Hitgate-Series`, `Hitgate-Sequence` and `Hitgate-Parts` (how many parts its chunk has,
//!   0 for a frame not kept). Sent after the frame's parts: it completes the frame.
//! - `<subject>.<source>.end`: the run closed (`{"series":…,"frames":…,"kept":…}`).
//!
//! Every message carries a `Nats-Msg-Id` (`<series>-<sequence>-<what>`), so one sent again after a
//! failed acknowledgement is stored once.

use async_nats::HeaderMap;

pub const SERIES: &str = "Hitgate-Series";
pub const SEQUENCE: &str = "Hitgate-Sequence";
pub const PART: &str = "Hitgate-Part";
pub const PARTS: &str = "Hitgate-Parts";
pub const BYTES: &str = "Hitgate-Bytes";

/// Room left in a message for its headers when a part is as large as the server takes.
pub const HEADER_ROOM: usize = 4096;

/// A source's subjects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSubjects {
    pub frame: String,
    pub features: String,
    pub end: String,
    /// Every message of the source.
    pub source: String,
}

impl ForwardSubjects {
    /// The subjects of `source` under the stream's subject prefix `subject`.
    pub fn of(subject: &str, source: &str) -> ForwardSubjects {
        let base = format!("{subject}.{source}");
        ForwardSubjects {
            frame: format!("{base}.frame"),
            features: format!("{base}.features"),
            end: format!("{base}.end"),
            source: format!("{base}.>"),
        }
    }
}

/// The byte ranges of a chunk of `len` bytes cut in parts of at most `part_bytes`; one (empty)
/// range for an empty chunk.
pub fn parts(len: usize, part_bytes: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let step = part_bytes.max(1);
    let count = len.div_ceil(step).max(1);
    (0..count).map(move |i| (i * step).min(len)..((i + 1) * step).min(len))
}

/// How many parts a chunk of `len` bytes takes.
pub fn part_count(len: usize, part_bytes: usize) -> usize {
    if len == 0 { 0 } else { len.div_ceil(part_bytes.max(1)) }
}

/// What a message of the forward is, read from its subject and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Part `index` (from 1) of `count` of a chunk of `bytes` bytes.
    Part {
        series: String,
        sequence: u64,
        index: u32,
        count: u32,
        bytes: u64,
    },
    /// A features record whose chunk came in `parts` parts.
    Features {
        series: String,
        sequence: u64,
        parts: u32,
    },
    End,
}

/// A message the forward did not send that way.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("no {0} header")]
    MissingHeader(&'static str),
    #[error("{0} is not a number")]
    NotANumber(&'static str),
    #[error("{0} too large")]
    TooLarge(&'static str),
    #[error("{PART} is not i/n")]
    PartNotFraction,
    #[error("{PART} {index}/{count} is out of range")]
    PartOutOfRange { index: u32, count: u32 },
    #[error("subject {0} is not one of this source's")]
    ForeignSubject(String),
}

/// Reads what a message is; `Err` says what is wrong with it.
///
/// # Errors
/// A subject the forward does not use, or a header missing or malformed.
pub fn kind(subjects: &ForwardSubjects, subject: &str, headers: Option<&HeaderMap>) -> Result<Kind, ProtocolError> {
    let header = |name: &'static str| -> Result<&str, ProtocolError> {
        headers.and_then(|h| h.get(name)).map(|v| v.as_str()).ok_or(ProtocolError::MissingHeader(name))
    };
    let number = |name: &'static str| -> Result<u64, ProtocolError> {
        header(name)?.parse::<u64>().map_err(|_| ProtocolError::NotANumber(name))
    };
    if subject == subjects.end {
        return Ok(Kind::End);
    }
    let series = || header(SERIES).map(str::to_string);
    if subject == subjects.features {
        let parts = u32::try_from(number(PARTS)?).map_err(|_| ProtocolError::TooLarge(PARTS))?;
        return Ok(Kind::Features { series: series()?, sequence: number(SEQUENCE)?, parts });
    }
    if subject == subjects.frame {
        let (index, count) = header(PART)?.split_once('/').ok_or(ProtocolError::PartNotFraction)?;
        let (Ok(index), Ok(count)) = (index.parse::<u32>(), count.parse::<u32>()) else {
            return Err(ProtocolError::PartNotFraction);
        };
        if index == 0 || index > count {
            return Err(ProtocolError::PartOutOfRange { index, count });
        }
        return Ok(Kind::Part { series: series()?, sequence: number(SEQUENCE)?, index, count, bytes: number(BYTES)? });
    }
    Err(ProtocolError::ForeignSubject(subject.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_in_parts_that_cover_them_once() {
        let ranges: Vec<_> = parts(10, 4).collect();
        assert_eq!(ranges, vec![0..4, 4..8, 8..10]);
        assert_eq!(part_count(10, 4), 3);
        assert_eq!(parts(8, 4).count(), 2);
        assert_eq!(part_count(8, 4), 2);
        assert_eq!(part_count(0, 4), 0);
        assert_eq!(parts(3, 1 << 20).collect::<Vec<_>>(), vec![0..3]);
    }

    #[test]
    fn messages_are_told_apart_by_subject_and_headers() {
        let subjects = ForwardSubjects::of("hitgate.forward", "a");
        assert_eq!(subjects.frame, "hitgate.forward.a.frame");
        let mut h = HeaderMap::new();
        h.insert(SERIES, "s1");
        h.insert(SEQUENCE, "7");
        h.insert(PART, "2/3");
        h.insert(BYTES, "100");
        assert_eq!(
            kind(&subjects, &subjects.frame, Some(&h)),
            Ok(Kind::Part { series: "s1".into(), sequence: 7, index: 2, count: 3, bytes: 100 })
        );
        h.insert(PART, "4/3");
        assert_eq!(
            kind(&subjects, &subjects.frame, Some(&h)),
            Err(ProtocolError::PartOutOfRange { index: 4, count: 3 })
        );
        assert_eq!(kind(&subjects, &subjects.features, Some(&h)), Err(ProtocolError::MissingHeader(PARTS)));
        assert!(matches!(kind(&subjects, "hitgate.forward.b.frame", Some(&h)), Err(ProtocolError::ForeignSubject(_))));
        assert_eq!(kind(&subjects, &subjects.end, None), Ok(Kind::End));
    }
}
