//! Accepted (and audit) frames as NeXus NXmx HDF5, in `dir` (`kind = "hdf5"`, [`Hdf5Section`]):
//!
//! - `<prefix>_data_000001.h5`, …: the frames, `frames_per_file` (or `max_file_mib`) a file, each
//!   frame one bitshuffle-LZ4 chunk compressed by the reducers (see [`datafile`]); a file is
//!   `….h5.partial` until it is closed whole.
//! - `<prefix>_master.h5`: the NXmx description and external links to every closed data file
//!   ([`nxmx`]), rewritten (atomically) each time a data file closes and when the run ends.
//!
//! So at any moment, and after a crash, the master and every file it links are complete and
//! valid; only the `.partial` file can be cut short. A hitgate built without the `hdf5` feature keeps
//! the section (so a config naming the sink is refused at load with the reason) but not the writer.

#[cfg(feature = "hdf5")]
pub mod datafile;
#[cfg(feature = "hdf5")]
pub mod inspect;
#[cfg(feature = "hdf5")]
pub mod nxmx;
#[cfg(feature = "hdf5")]
pub mod recorded;
#[cfg(feature = "hdf5")]
mod writer;

#[cfg(feature = "hdf5")]
pub use writer::Hdf5Sink;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::codec::StoredPixels;
use crate::section::{Claim, Moved, Problems, Resource, key};
use crate::sink::{Experiment, Sink, SinkConfig, SinkError};

/// The NeXus/HDF5 sink: data files of `frames_per_file` frames (or `max_file_mib`), and a master
/// file linking them, in `dir`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hdf5Section {
    pub dir: PathBuf,
    /// Files are `<prefix>_master.h5` and `<prefix>_data_000001.h5`, ….
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// What a pixel holds: `raw` (the detector's values), `photons_u32` (whole photons) or
    /// `photons_f32` (photons, unrounded).
    #[serde(default)]
    pub pixels: StoredPixels,
    /// A data file is closed after this many frames…
    #[serde(default = "default_frames_per_file")]
    pub frames_per_file: u64,
    /// …or once it holds this many MiB, whichever comes first.
    #[serde(default = "default_max_file_mib")]
    pub max_file_mib: u64,
    /// The open file's frame metadata is written and the file flushed every this many frames.
    #[serde(default = "default_flush_every")]
    pub flush_every_frames: u64,
    /// Moved to `detector.distance_mm`.
    #[serde(default, skip_serializing_if = "Moved::is_absent")]
    pub distance_mm: Moved,
    /// Moved to `detector.photon_energy_kev` (the wavelength is the photon energy's).
    #[serde(default, skip_serializing_if = "Moved::is_absent")]
    pub wavelength_angstrom: Moved,
    /// Written to `/entry/sample/name`.
    #[serde(default)]
    pub sample_name: String,
}

fn default_prefix() -> String {
    "run".into()
}

fn default_frames_per_file() -> u64 {
    1000
}

fn default_max_file_mib() -> u64 {
    4096
}

fn default_flush_every() -> u64 {
    100
}

impl Hdf5Section {
    /// Raw frames into `dir`, every other key at its default.
    pub fn in_dir(dir: PathBuf) -> Hdf5Section {
        Hdf5Section {
            dir,
            prefix: default_prefix(),
            pixels: StoredPixels::Raw,
            frames_per_file: default_frames_per_file(),
            max_file_mib: default_max_file_mib(),
            flush_every_frames: default_flush_every(),
            distance_mm: Moved::default(),
            wavelength_angstrom: Moved::default(),
            sample_name: String::new(),
        }
    }
}

impl SinkConfig for Hdf5Section {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if !cfg!(feature = "hdf5") {
            problems.bad(k("kind"), "this hitgate was built without HDF5 (cargo feature `hdf5`)");
        }
        if self.dir.as_os_str().is_empty() {
            problems.bad(k("dir"), "an empty path");
        }
        if self.prefix.is_empty() || self.prefix.contains(['/', '\\']) {
            problems.bad(k("prefix"), format!("{:?} must be a non-empty file name part without slashes", self.prefix));
        }
        for (name, value) in [
            ("frames_per_file", self.frames_per_file),
            ("max_file_mib", self.max_file_mib),
            ("flush_every_frames", self.flush_every_frames),
        ] {
            if value == 0 {
                problems.bad(k(name), "must be at least 1");
            }
        }
        self.distance_mm.check(k("distance_mm"), "detector.distance_mm", problems);
        self.wavelength_angstrom.check(k("wavelength_angstrom"), "detector.photon_energy_kev", problems);
    }

    fn claims(&self, path: &str) -> Vec<Claim> {
        vec![Claim::new(key(path, "dir"), Resource::Output(self.dir.clone()))]
    }

    fn output_mut(&mut self) -> Option<&mut PathBuf> {
        Some(&mut self.dir)
    }

    fn stored_pixels(&self) -> Option<StoredPixels> {
        Some(self.pixels)
    }

    #[cfg(feature = "hdf5")]
    fn open(&self, experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(writer::Hdf5Sink::create(self, experiment)?))
    }

    #[cfg(not(feature = "hdf5"))]
    fn open(&self, _experiment: &Experiment) -> Result<Box<dyn Sink>, SinkError> {
        Err(SinkError::Format {
            sink: "hdf5",
            path: self.dir.clone(),
            reason: "this hitgate was built without HDF5 (cargo feature `hdf5`)".into(),
        })
    }
}
