//! PNG images of 8-bit palette indices, for the live monitor's pictures. The pixels are stored in
//! deflate's uncompressed blocks: a monitor image is a few hundred kilobytes sent over the control
//! plane's connection a few times a second, and no compressor has to be linked for that.

/// The largest payload of one uncompressed deflate block.
const STORED_BLOCK: usize = 65_535;

/// A PNG of `width × height` palette indices (`indices`, row by row) with `palette` (RGB triples,
/// at most 256). Indices beyond the palette are the file's problem to show, not an error here: the
/// caller builds both.
///
/// # Panics
/// Never for consistent input; `indices` shorter than the image is padded with index 0.
pub fn indexed(width: usize, height: usize, indices: &[u8], palette: &[[u8; 3]]) -> Vec<u8> {
    let mut scanlines = Vec::with_capacity(height * (width + 1));
    for row in 0..height {
        // Filter type 0 (none) in front of every row.
        scanlines.push(0);
        let start = (row * width).min(indices.len());
        let end = ((row + 1) * width).min(indices.len());
        scanlines.extend_from_slice(&indices[start..end]);
        scanlines.resize(scanlines.len() + width - (end - start), 0);
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(width as u32).to_be_bytes());
    header.extend_from_slice(&(height as u32).to_be_bytes());
    // Bit depth 8, colour type 3 (palette), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 3, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    let colours: Vec<u8> = palette.iter().take(256).flatten().copied().collect();
    chunk(&mut png, b"PLTE", &colours);
    chunk(&mut png, b"IDAT", &zlib_stored(&scanlines));
    chunk(&mut png, b"IEND", &[]);
    png
}

/// `data` as a zlib stream of uncompressed deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(STORED_BLOCK).max(1);
    let mut out = Vec::with_capacity(2 + data.len() + 5 * blocks + 4);
    // Deflate with a 32 KiB window, no preset dictionary; the check bits make the header a multiple of 31.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut pieces = data.chunks(STORED_BLOCK).peekable();
    if pieces.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(piece) = pieces.next() {
        let last = u8::from(pieces.peek().is_none());
        let len = piece.len() as u16;
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before `b` could overflow.
    for block in data.chunks(5552) {
        for &byte in block {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (n, entry) in table.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *entry = c;
        }
        table
    });
    !data.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_their_published_check_values() {
        // The check values of the standard test string "123456789".
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn an_image_reads_back_chunk_by_chunk_with_its_checksums() {
        // Wider than one stored block, so the stream has several.
        let (width, height) = (300, 260);
        let indices: Vec<u8> = (0..width * height).map(|i| (i * 7 % 251) as u8).collect();
        let palette: Vec<[u8; 3]> = (0..=255u8).map(|i| [i, 255 - i, i / 2]).collect();
        let png = indexed(width, height, &indices, &palette);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), width as u32);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), height as u32);
        // Walk the chunks, checking each CRC, and collect the image data.
        let (mut at, mut idat) = (8, Vec::new());
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let body = &png[at + 4..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc32(body), crc, "chunk {:?}", std::str::from_utf8(&body[..4]));
            if &body[..4] == b"IDAT" {
                idat.extend_from_slice(&body[4..]);
            }
            at += 12 + len;
        }
        let inflated = read_stored_zlib(&idat);
        assert_eq!(inflated.len(), height * (width + 1));
        for row in 0..height {
            assert_eq!(inflated[row * (width + 1)], 0);
            assert_eq!(
                &inflated[row * (width + 1) + 1..(row + 1) * (width + 1)],
                &indices[row * width..(row + 1) * width]
            );
        }
    }

    /// Reads a zlib stream of stored blocks as the format defines it, checking its Adler-32.
    fn read_stored_zlib(zlib: &[u8]) -> Vec<u8> {
        assert_eq!((u16::from(zlib[0]) << 8 | u16::from(zlib[1])) % 31, 0, "header check bits");
        let (mut at, mut out) = (2, Vec::new());
        loop {
            let last = zlib[at] & 1 == 1;
            assert_eq!(zlib[at] >> 1 & 3, 0, "a stored block");
            let len = u16::from_le_bytes([zlib[at + 1], zlib[at + 2]]);
            let nlen = u16::from_le_bytes([zlib[at + 3], zlib[at + 4]]);
            assert_eq!(len, !nlen);
            out.extend_from_slice(&zlib[at + 5..at + 5 + len as usize]);
            at += 5 + len as usize;
            if last {
                break;
            }
        }
        assert_eq!(u32::from_be_bytes(zlib[at..at + 4].try_into().unwrap()), adler32(&out));
        out
    }
}
