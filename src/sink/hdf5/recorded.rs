//! A run the HDF5 sink wrote, read back for replay: the master's linked data files in order, each
//! frame's chunk read as stored (`H5Dread_chunk`) and decoded by hitgate's own bitshuffle-LZ4, with
//! the per-frame values beside it (frame number, bunch id, detector clock, receive time, packet mask).
//! Only raw pixels can be replayed: photons cannot be turned back into what the detector sent.

use std::path::{Path, PathBuf};

use hdf5::{Dataset, File};

use super::inspect::{MasterSummary, summarize};
use crate::codec::bitshuffle::decompress;

/// Why a stored run cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: its frames hold {content}; only raw detector values can be replayed (pixels = \"raw\")")]
    NotRaw { path: PathBuf, content: String },
}

/// One stored frame: its raw bytes (the frame buffer as assembled) and what was recorded with it.
pub struct StoredFrame<'a> {
    pub frame_number: u64,
    pub bunch_id: u64,
    pub detector_timestamp: u64,
    pub receive_time_ns: u64,
    /// One bit a packet, as the frame's packet mask.
    pub packet_mask: &'a [u64],
    pub pixels: &'a [u8],
}

/// A stored run, opened.
pub struct RecordedRun {
    master: PathBuf,
    summary: MasterSummary,
}

impl RecordedRun {
    /// Opens the master `path`, checking that it holds raw frames.
    ///
    /// # Errors
    /// HDF5 cannot read it as a master of this layout, or its frames are photons.
    pub fn open(path: &Path) -> Result<RecordedRun, RecordedError> {
        let summary = summarize(path).map_err(|e| unreadable(path, e))?;
        if summary.pixel_content != crate::codec::StoredPixels::Raw.description() {
            return Err(RecordedError::NotRaw { path: path.to_path_buf(), content: summary.pixel_content });
        }
        Ok(RecordedRun { master: path.to_path_buf(), summary })
    }

    pub fn master(&self) -> &Path {
        &self.master
    }

    /// The detector model the run was taken with (the master's description).
    pub fn detector(&self) -> &str {
        &self.summary.detector
    }

    /// Modules, and bytes a frame.
    pub fn modules(&self) -> usize {
        self.summary.modules
    }

    pub fn frame_bytes(&self) -> usize {
        self.summary.frame_shape.0 * self.summary.frame_shape.1 * self.summary.element_bytes
    }

    pub fn total_frames(&self) -> u64 {
        self.summary.frames()
    }

    /// Bytes on disk over every linked file.
    pub fn len_bytes(&self) -> u64 {
        self.summary.files.iter().map(|f| f.bytes_on_disk).sum()
    }

    /// Calls `frame` with every stored frame in order; it may stop the replay by returning false.
    /// Returns the frames read and the error that cut the run short, when one did.
    pub fn replay(&self, mut frame: impl FnMut(&StoredFrame<'_>) -> bool) -> (u64, Option<RecordedError>) {
        let file = match File::open(&self.master) {
            Ok(f) => f,
            Err(e) => return (0, Some(unreadable(&self.master, e))),
        };
        let mut read = 0;
        let mut chunk = Vec::new();
        for linked in &self.summary.files {
            let path = &linked.file;
            let columns = match Columns::read(&file, &linked.link) {
                Ok(c) => c,
                Err(e) => return (read, Some(unreadable(path, e))),
            };
            let Ok(data) = file.dataset(&format!("/entry/data/{}", linked.link)) else {
                return (read, Some(unreadable(path, "no frames")));
            };
            for k in 0..linked.frames as usize {
                let pixels = match read_chunk(&data, k, &mut chunk)
                    .and_then(|()| decompress(&chunk, self.summary.element_bytes).map_err(|e| e.to_string()))
                {
                    Ok(p) if p.len() == self.frame_bytes() => p,
                    Ok(p) => return (read, Some(unreadable(path, format!("frame {k} holds {} bytes", p.len())))),
                    Err(e) => return (read, Some(unreadable(path, format!("frame {k}: {e}")))),
                };
                let Some(stored) = columns.frame(k, &pixels) else {
                    return (read, Some(unreadable(path, format!("frame {k} has no per-frame values"))));
                };
                read += 1;
                if !frame(&stored) {
                    return (read, None);
                }
            }
        }
        (read, None)
    }
}

/// A data file's per-frame values.
struct Columns {
    frame_number: Vec<u64>,
    bunch_id: Vec<u64>,
    detector_timestamp: Vec<u64>,
    receive_time_ns: Vec<u64>,
    packet_mask: Vec<u64>,
    mask_words: usize,
}

impl Columns {
    fn read(file: &File, link: &str) -> hdf5::Result<Columns> {
        let group = format!("/entry/data/frames_{}", link.trim_start_matches("data_"));
        let column = |name: &str| file.dataset(&format!("{group}/{name}")).and_then(|d| d.read_raw::<u64>());
        let mask = file.dataset(&format!("{group}/packet_mask"))?;
        let mask_words = mask.shape().get(1).copied().unwrap_or(0);
        Ok(Columns {
            frame_number: column("frame_number")?,
            bunch_id: column("bunch_id")?,
            detector_timestamp: column("detector_timestamp")?,
            receive_time_ns: column("timestamp")?,
            packet_mask: mask.read_raw::<u64>()?,
            mask_words,
        })
    }

    fn frame<'a>(&'a self, k: usize, pixels: &'a [u8]) -> Option<StoredFrame<'a>> {
        Some(StoredFrame {
            frame_number: *self.frame_number.get(k)?,
            bunch_id: *self.bunch_id.get(k)?,
            detector_timestamp: *self.detector_timestamp.get(k)?,
            receive_time_ns: *self.receive_time_ns.get(k)?,
            packet_mask: self.packet_mask.get(k * self.mask_words..(k + 1) * self.mask_words)?,
            pixels,
        })
    }
}

/// Reads frame `k`'s chunk of `data` as stored (still compressed) into `out`.
fn read_chunk(data: &Dataset, k: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let offset = [k as u64, 0, 0];
    let id = data.id();
    let (mut filters, mut addr, mut size) = (0u32, 0u64, 0u64);
    let status = hdf5::sync::sync(|| {
        // SAFETY: `id` is an open dataset borrowed from `data` for the call; `offset` has one element
        // per dimension of the data set (3); the three out-pointers are live locals.
        unsafe { hdf5_sys::h5d::H5Dget_chunk_info_by_coord(id, offset.as_ptr(), &mut filters, &mut addr, &mut size) }
    });
    if status < 0 || size == 0 || size > 1 << 31 {
        return Err(format!("no stored chunk ({size} bytes)"));
    }
    out.clear();
    out.resize(size as usize, 0);
    let status = hdf5::sync::sync(|| {
        // SAFETY: as above for `id` and `offset`; `out` holds exactly the chunk's stored size, which
        // HDF5 just reported, so the chunk it copies in fits.
        unsafe {
            hdf5_sys::h5d::H5Dread_chunk(
                id,
                hdf5_sys::h5p::H5P_DEFAULT,
                offset.as_ptr(),
                &mut filters,
                out.as_mut_ptr().cast(),
            )
        }
    });
    if status < 0 {
        return Err("H5Dread_chunk failed".into());
    }
    Ok(())
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> RecordedError {
    RecordedError::Unreadable { path: path.to_path_buf(), reason: e.to_string() }
}
