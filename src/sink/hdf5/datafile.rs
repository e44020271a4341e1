//! One data file: `/entry/data/data` (frames × rows × cols, one frame a chunk, bitshuffle-LZ4 by
//! filter 32008) written a finished chunk at a time with `H5Dwrite_chunk`, and beside it one value per
//! frame: frame number, order, bunch id, detector timestamp, receive time, trigger score, audit flag,
//! packets received and the packet mask.
//!
//! The file is written under a `.partial` name and renamed when closed: a file with its final name
//! is always whole; a `.partial` one is the file a stop interrupted. Its frame metadata is written
//! and the file flushed every `flush_every_frames`.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group, H5Type, Location};

use crate::codec::StoredPixels;

/// HDF5's registered number for the bitshuffle filter.
pub const BITSHUFFLE_FILTER: hdf5_sys::h5z::H5Z_filter_t = 32008;
/// The filter's parameters as its own library records them: format version 0.4, the element size,
/// the default block size (0), and LZ4 (2).
pub fn bitshuffle_params(elem_size: usize) -> [u32; 5] {
    [0, 4, elem_size as u32, 0, 2]
}

/// Frames' metadata in the open file, written at each flush.
#[derive(Default)]
struct Columns {
    frame_number: Vec<u64>,
    sequence: Vec<u64>,
    bunch_id: Vec<u64>,
    detector_timestamp: Vec<u64>,
    receive_time_ns: Vec<u64>,
    trigger_score: Vec<f32>,
    audit: Vec<u8>,
    packets_received: Vec<u32>,
    packet_mask: Vec<u64>,
}

/// What a frame brings to a data file.
pub struct FrameEntry<'a> {
    pub frame_number: u64,
    pub sequence: u64,
    pub bunch_id: u64,
    pub detector_timestamp: u64,
    pub receive_time_ns: u64,
    pub trigger_score: f32,
    pub audit: bool,
    pub packets_received: u32,
    pub packet_mask: &'a [u64],
    pub chunk: &'a [u8],
}

pub struct DataFile {
    file: File,
    data: Dataset,
    group: Group,
    partial: PathBuf,
    finished: PathBuf,
    shape: (usize, usize),
    mask_words: usize,
    columns: Columns,
    frames: u64,
    chunk_bytes: u64,
    /// Frames whose metadata is in the file (as of the last flush).
    flushed: u64,
}

impl DataFile {
    /// Creates `<finished>.partial` holding an empty data set of `rows × cols` frames.
    ///
    /// # Errors
    /// The file or a data set cannot be created.
    pub fn create(
        finished: &Path,
        pixels: StoredPixels,
        elem_size: usize,
        (rows, cols): (usize, usize),
        mask_words: usize,
        capacity: usize,
    ) -> hdf5::Result<DataFile> {
        let partial = partial_name(finished);
        let file = File::create(&partial)?;
        let entry = file.create_group("entry")?;
        attr_str(&entry, "NX_class", "NXentry")?;
        let group = entry.create_group("data")?;
        attr_str(&group, "NX_class", "NXdata")?;
        attr_str(&group, "signal", "data")?;
        let data = match Element::of(pixels, elem_size) {
            Element::U8 => data_set::<u8>(&group, rows, cols, elem_size)?,
            Element::U16 => data_set::<u16>(&group, rows, cols, elem_size)?,
            Element::U32 => data_set::<u32>(&group, rows, cols, elem_size)?,
            Element::F32 => data_set::<f32>(&group, rows, cols, elem_size)?,
        };
        attr_str(&data, "units", if pixels == StoredPixels::Raw { "counts" } else { "photons" })?;
        let capacity = capacity.min(1 << 20);
        let columns = Columns {
            frame_number: Vec::with_capacity(capacity),
            sequence: Vec::with_capacity(capacity),
            bunch_id: Vec::with_capacity(capacity),
            detector_timestamp: Vec::with_capacity(capacity),
            receive_time_ns: Vec::with_capacity(capacity),
            trigger_score: Vec::with_capacity(capacity),
            audit: Vec::with_capacity(capacity),
            packets_received: Vec::with_capacity(capacity),
            packet_mask: Vec::with_capacity(capacity * mask_words),
        };
        Ok(DataFile {
            file,
            data,
            group,
            partial,
            finished: finished.to_path_buf(),
            shape: (rows, cols),
            mask_words,
            columns,
            frames: 0,
            chunk_bytes: 0,
            flushed: 0,
        })
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Compressed frame bytes written so far (the file's size, nearly).
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Appends one frame: its chunk goes to the file now, its metadata at the next flush.
    ///
    /// # Errors
    /// The data set cannot grow or the chunk cannot be written.
    pub fn append(&mut self, entry: &FrameEntry<'_>) -> hdf5::Result<()> {
        let (rows, cols) = self.shape;
        let at = self.frames as usize;
        self.data.resize((at + 1, rows, cols))?;
        write_chunk(&self.data, [at as u64, 0, 0], entry.chunk)?;
        let c = &mut self.columns;
        c.frame_number.push(entry.frame_number);
        c.sequence.push(entry.sequence);
        c.bunch_id.push(entry.bunch_id);
        c.detector_timestamp.push(entry.detector_timestamp);
        c.receive_time_ns.push(entry.receive_time_ns);
        c.trigger_score.push(entry.trigger_score);
        c.audit.push(u8::from(entry.audit));
        c.packets_received.push(entry.packets_received);
        let words = self.mask_words;
        c.packet_mask.extend(entry.packet_mask.iter().copied().chain(std::iter::repeat(0)).take(words));
        self.frames += 1;
        self.chunk_bytes += entry.chunk.len() as u64;
        Ok(())
    }

    /// Writes the metadata of every frame so far and flushes the file to disk.
    ///
    /// # Errors
    /// A data set cannot be written or the file cannot be flushed.
    pub fn flush(&mut self) -> hdf5::Result<()> {
        if self.flushed == self.frames && self.frames > 0 {
            return Ok(());
        }
        let c = &self.columns;
        let g = &self.group;
        column(g, "frame_number", &c.frame_number, None)?;
        column(g, "sequence", &c.sequence, None)?;
        column(g, "bunch_id", &c.bunch_id, None)?;
        column(g, "detector_timestamp", &c.detector_timestamp, Some("100 ns"))?;
        column(g, "timestamp", &c.receive_time_ns, Some("ns"))?;
        column(g, "trigger_score", &c.trigger_score, None)?;
        column(g, "audit", &c.audit, None)?;
        column(g, "packets_received", &c.packets_received, None)?;
        let mask = match g.dataset("packet_mask") {
            Ok(ds) => ds,
            Err(_) => g
                .new_dataset::<u64>()
                .shape((0.., self.mask_words))
                .chunk((1024, self.mask_words.max(1)))
                .create("packet_mask")?,
        };
        mask.resize((self.frames as usize, self.mask_words))?;
        if self.frames > 0 && self.mask_words > 0 {
            mask.write_raw(&c.packet_mask)?;
        }
        self.file.flush()?;
        self.flushed = self.frames;
        Ok(())
    }

    /// Flushes, records the frame range and closes the file under its final name.
    ///
    /// # Errors
    /// A last write fails or the file cannot be renamed.
    pub fn close(mut self, first_image_number: u64) -> Result<PathBuf, CloseError> {
        self.flush()?;
        attr_u64(&self.data, "image_nr_low", first_image_number)?;
        attr_u64(&self.data, "image_nr_high", first_image_number + self.frames.saturating_sub(1))?;
        let DataFile { file, data, group, partial, finished, .. } = self;
        drop((data, group));
        file.close()?;
        std::fs::rename(&partial, &finished).map_err(|source| CloseError::Rename { path: partial, source })?;
        Ok(finished)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error(transparent)]
    Hdf5(#[from] hdf5::Error),
    #[error("cannot rename {path}")]
    Rename { path: PathBuf, source: std::io::Error },
}

/// The type of a stored pixel in the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    U8,
    U16,
    U32,
    F32,
}

impl Element {
    /// What `pixels` of `elem_size` bytes are stored as.
    pub fn of(pixels: StoredPixels, elem_size: usize) -> Element {
        match (pixels, elem_size) {
            (StoredPixels::Raw, 1) => Element::U8,
            (StoredPixels::Raw, 4) | (StoredPixels::PhotonsU32, _) => Element::U32,
            (StoredPixels::PhotonsF32, _) => Element::F32,
            _ => Element::U16,
        }
    }
}

/// The name a data file has while it is open.
pub fn partial_name(finished: &Path) -> PathBuf {
    let mut name = finished.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn data_set<T: H5Type>(group: &Group, rows: usize, cols: usize, elem_size: usize) -> hdf5::Result<Dataset> {
    group
        .new_dataset::<T>()
        .set_create_plist(&bitshuffle_pipeline(elem_size)?)
        .shape((0.., rows, cols))
        .chunk((1, rows, cols))
        .create("data")
}

/// A creation property list whose filter pipeline is bitshuffle-LZ4. The filter is recorded, not
/// run: this HDF5 library need not have it, since chunks arrive compressed. (The crate's own filter
/// setter refuses a filter the library lacks; readers load it from hdf5plugin or their own build.)
fn bitshuffle_pipeline(elem_size: usize) -> hdf5::Result<hdf5::plist::DatasetCreate> {
    let dcpl = hdf5::plist::DatasetCreate::try_new()?;
    let params = bitshuffle_params(elem_size);
    let id = dcpl.id();
    let status = hdf5::sync::sync(|| {
        // SAFETY: `id` is a dataset creation property list that `dcpl` keeps open across the call;
        // `params` is an array of exactly the 5 values the call is told of, read during the call only.
        unsafe {
            hdf5_sys::h5p::H5Pset_filter(
                id,
                BITSHUFFLE_FILTER,
                hdf5_sys::h5z::H5Z_FLAG_OPTIONAL,
                params.len(),
                params.as_ptr(),
            )
        }
    });
    if status < 0 {
        return Err(hdf5::Error::from("cannot record the bitshuffle filter in the dataset's pipeline"));
    }
    Ok(dcpl)
}

/// Writes (replacing) a one-dimensional per-frame data set.
fn column<T: H5Type>(group: &Group, name: &str, values: &[T], units: Option<&str>) -> hdf5::Result<()> {
    let ds = match group.dataset(name) {
        Ok(ds) => ds,
        Err(_) => {
            let ds = group.new_dataset::<T>().shape(0..).chunk(1024).create(name)?;
            if let Some(u) = units {
                attr_str(&ds, "units", u)?;
            }
            ds
        }
    };
    ds.resize(values.len())?;
    if !values.is_empty() {
        ds.write_raw(values)?;
    }
    Ok(())
}

/// Stores `chunk`, already filtered, as the chunk at `offset` of `data`.
fn write_chunk(data: &Dataset, offset: [u64; 3], chunk: &[u8]) -> hdf5::Result<()> {
    let id = data.id();
    let status = hdf5::sync::sync(|| {
        // SAFETY: `id` is an open dataset (borrowed from `data` for the call), `offset` has one
        // element per dimension of that dataset (3), and `chunk` is `chunk.len()` readable bytes
        // that HDF5 only reads during the call. Filter mask 0 records that every filter of the
        // pipeline (bitshuffle-LZ4) was applied, which `ChunkCompressor` did.
        unsafe {
            hdf5_sys::h5d::H5Dwrite_chunk(
                id,
                hdf5_sys::h5p::H5P_DEFAULT,
                0,
                offset.as_ptr(),
                chunk.len(),
                chunk.as_ptr().cast(),
            )
        }
    });
    if status < 0 {
        return Err(hdf5::Error::from(format!("H5Dwrite_chunk failed at frame {}", offset[0])));
    }
    Ok(())
}

/// A scalar string attribute (NeXus classes, units, links).
pub fn attr_str(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v: VarLenUnicode = value.parse().map_err(|e| hdf5::Error::from(format!("{name}: {e}")))?;
    loc.new_attr::<VarLenUnicode>().shape(()).create(name)?.write_scalar(&v)
}

fn attr_u64(loc: &Location, name: &str, value: u64) -> hdf5::Result<()> {
    loc.new_attr::<u64>().shape(()).create(name)?.write_scalar(&value)
}
