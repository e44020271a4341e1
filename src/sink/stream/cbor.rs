//! The little of CBOR (RFC 8949) the live stream writes: definite-length maps, arrays, text and byte
//! strings, unsigned integers, doubles, booleans and tags, appended to a reused buffer. Written here
//! rather than taken from a crate: the messages are few and fixed, and this keeps every image
//! message to one copy of its pixels.

/// Appends CBOR items to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    pub out: Vec<u8>,
}

const UNSIGNED: u8 = 0;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;
const SIMPLE: u8 = 7;

impl Encoder {
    /// Starts a new message in the reused buffer.
    pub fn clear(&mut self) {
        self.out.clear();
    }

    /// A major type with its argument, in the shortest form (RFC 8949 §3).
    fn head(&mut self, major: u8, value: u64) {
        let m = major << 5;
        match value {
            0..=23 => self.out.push(m | value as u8),
            24..=0xff => self.out.extend_from_slice(&[m | 24, value as u8]),
            0x100..=0xffff => {
                self.out.push(m | 25);
                self.out.extend_from_slice(&(value as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.out.push(m | 26);
                self.out.extend_from_slice(&(value as u32).to_be_bytes());
            }
            _ => {
                self.out.push(m | 27);
                self.out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }

    pub fn uint(&mut self, value: u64) -> &mut Self {
        self.head(UNSIGNED, value);
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.head(TEXT, value.len() as u64);
        self.out.extend_from_slice(value.as_bytes());
        self
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.head(BYTES, value.len() as u64);
        self.out.extend_from_slice(value);
        self
    }

    /// An array of `len` items; the caller writes them next.
    pub fn array(&mut self, len: usize) -> &mut Self {
        self.head(ARRAY, len as u64);
        self
    }

    /// A map of `len` pairs; the caller writes key, value, key, value… next.
    pub fn map(&mut self, len: usize) -> &mut Self {
        self.head(MAP, len as u64);
        self
    }

    /// A tag; the caller writes the tagged item next.
    pub fn tag(&mut self, tag: u64) -> &mut Self {
        self.head(TAG, tag);
        self
    }

    pub fn float(&mut self, value: f64) -> &mut Self {
        self.out.push((SIMPLE << 5) | 27);
        self.out.extend_from_slice(&value.to_bits().to_be_bytes());
        self
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.out.push((SIMPLE << 5) | if value { 21 } else { 20 });
        self
    }

    /// A text key of a map.
    pub fn key(&mut self, key: &str) -> &mut Self {
        self.text(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(f: impl FnOnce(&mut Encoder) -> &mut Encoder) -> Vec<u8> {
        let mut e = Encoder::default();
        f(&mut e);
        e.out
    }

    #[test]
    fn items_match_the_rfc_examples() {
        // RFC 8949 Appendix A.
        assert_eq!(encoded(|e| e.uint(0)), [0x00]);
        assert_eq!(encoded(|e| e.uint(23)), [0x17]);
        assert_eq!(encoded(|e| e.uint(24)), [0x18, 0x18]);
        assert_eq!(encoded(|e| e.uint(1000)), [0x19, 0x03, 0xe8]);
        assert_eq!(encoded(|e| e.uint(1_000_000)), [0x1a, 0x00, 0x0f, 0x42, 0x40]);
        assert_eq!(encoded(|e| e.uint(1_000_000_000_000)), [0x1b, 0x00, 0x00, 0x00, 0xe8, 0xd4, 0xa5, 0x10, 0x00]);
        assert_eq!(encoded(|e| e.float(1.1)), [0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]);
        assert_eq!(encoded(|e| e.bool(false)), [0xf4]);
        assert_eq!(encoded(|e| e.bool(true)), [0xf5]);
        assert_eq!(encoded(|e| e.text("IETF")), [0x64, 0x49, 0x45, 0x54, 0x46]);
        assert_eq!(encoded(|e| e.bytes(&[1, 2, 3, 4])), [0x44, 1, 2, 3, 4]);
        assert_eq!(encoded(|e| e.array(3).uint(1).uint(2).uint(3)), [0x83, 1, 2, 3]);
        assert_eq!(
            encoded(|e| e.map(2).key("a").uint(1).key("b").array(2).uint(2).uint(3)),
            [0xa2, 0x61, 0x61, 0x01, 0x61, 0x62, 0x82, 0x02, 0x03]
        );
        // 0("2013-03-21T20:04:00Z")
        let date = encoded(|e| e.tag(0).text("2013-03-21T20:04:00Z"));
        assert_eq!(&date[..2], [0xc0, 0x74]);
        // Tags past 23 take the longer forms too: 56500 in two bytes.
        assert_eq!(encoded(|e| e.tag(56500)), [0xd9, 0xdc, 0xb4]);
    }
}
