//! What a NeXus master written by the HDF5 sink holds, for `hitgate inspect`: the run's description,
//! each linked data file with its frames (audit frames among them) and size on disk, and the
//! compression achieved — read through HDF5 itself, following the master's external links.

use std::path::{Path, PathBuf};

use hdf5::File;
use hdf5::types::VarLenUnicode;

/// HDF5's signature, at the start of every file it writes.
pub const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Whether `path` starts like an HDF5 file.
pub fn is_hdf5(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == SIGNATURE
}

#[derive(Debug, serde::Serialize)]
pub struct LinkedSummary {
    pub link: String,
    pub file: PathBuf,
    pub frames: u64,
    pub audit_frames: u64,
    pub bytes_on_disk: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct MasterSummary {
    pub definition: String,
    pub run_complete: bool,
    pub start_time: String,
    pub end_time: Option<String>,
    pub detector: String,
    pub pixel_content: String,
    pub wavelength_angstrom: f64,
    pub distance_m: f64,
    pub beam_center_px: (f64, f64),
    pub modules: usize,
    /// Frame shape (rows, cols) and bytes a pixel.
    pub frame_shape: (usize, usize),
    pub element_bytes: usize,
    pub files: Vec<LinkedSummary>,
    /// Data files in the folder still open (`.partial`): a run in progress or one that was stopped.
    pub partial_files: Vec<PathBuf>,
}

impl MasterSummary {
    pub fn frames(&self) -> u64 {
        self.files.iter().map(|f| f.frames).sum()
    }

    /// Uncompressed frame bytes over bytes on disk.
    pub fn compression_ratio(&self) -> f64 {
        let raw = self.frames() as f64 * (self.frame_shape.0 * self.frame_shape.1 * self.element_bytes) as f64;
        let disk: u64 = self.files.iter().map(|f| f.bytes_on_disk).sum();
        if disk == 0 { 0.0 } else { raw / disk as f64 }
    }
}

fn text(file: &File, path: &str) -> hdf5::Result<String> {
    Ok(file.dataset(path)?.read_scalar::<VarLenUnicode>()?.as_str().to_string())
}

fn number(file: &File, path: &str) -> hdf5::Result<f64> {
    file.dataset(path)?.read_scalar::<f64>()
}

/// Reads a master and the data files it links.
///
/// # Errors
/// The file is not a master of this layout, or HDF5 cannot read it.
pub fn summarize(master: &Path) -> hdf5::Result<MasterSummary> {
    let file = File::open(master)?;
    let folder = master.parent().unwrap_or(Path::new("."));
    let data = file.group("/entry/data")?;
    let mut links: Vec<String> = data.member_names()?.into_iter().filter(|n| n.starts_with("data_")).collect();
    links.sort();
    let mut files = Vec::new();
    let (mut frame_shape, mut element_bytes) = ((0, 0), 0);
    for link in links {
        let ds = data.dataset(&link)?;
        let shape = ds.shape();
        if let [_, rows, cols] = shape[..] {
            frame_shape = (rows, cols);
        }
        element_bytes = ds.dtype()?.size();
        let frames_group = format!("frames_{}", link.trim_start_matches("data_"));
        let audit_frames = data
            .dataset(&format!("{frames_group}/audit"))
            .and_then(|a| a.read_raw::<u8>())
            .map_or(0, |a| a.iter().filter(|&&v| v != 0).count() as u64);
        let name = ds.filename();
        let path = folder.join(Path::new(&name).file_name().unwrap_or_default());
        files.push(LinkedSummary {
            link,
            bytes_on_disk: std::fs::metadata(&path).map_or(0, |m| m.len()),
            file: path,
            frames: shape.first().copied().unwrap_or(0) as u64,
            audit_frames,
        });
    }
    let partial_files = std::fs::read_dir(folder)
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "partial"))
                .collect()
        })
        .unwrap_or_default();
    let detector = file.group("/entry/instrument/detector")?;
    let modules = detector.member_names()?.iter().filter(|n| n.starts_with("module_")).count();
    Ok(MasterSummary {
        definition: text(&file, "/entry/definition")?,
        run_complete: file.dataset("/entry/run_complete")?.read_scalar::<u8>()? == 1,
        start_time: text(&file, "/entry/start_time")?,
        end_time: text(&file, "/entry/end_time").ok(),
        detector: text(&file, "/entry/instrument/detector/description")?,
        pixel_content: text(&file, "/entry/instrument/detector/pixel_content")?,
        wavelength_angstrom: number(&file, "/entry/instrument/beam/incident_wavelength")?,
        distance_m: number(&file, "/entry/instrument/detector/distance")?,
        beam_center_px: (
            number(&file, "/entry/instrument/detector/beam_center_y")?,
            number(&file, "/entry/instrument/detector/beam_center_x")?,
        ),
        modules,
        frame_shape,
        element_bytes,
        files,
        partial_files,
    })
}
