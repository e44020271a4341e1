//! The HDF5 sink itself: data files rotated as they fill, the master rewritten as each closes.

use std::path::{Path, PathBuf};

use super::Hdf5Section;
use super::datafile::{DataFile, Element, FrameEntry};
use super::nxmx::{LinkedFile, RunDescription, write_master};
use crate::codec::{chunk_bound, stored_element_size};
use crate::sink::{Experiment, FrameRecord, Frames, Interest, Payload, Sink, SinkError, SinkReport};
use crate::telemetry::iso8601_now;

pub struct Hdf5Sink {
    section: Hdf5Section,
    master: PathBuf,
    run: RunDescription,
    elem_size: usize,
    shape: (usize, usize),
    mask_words: usize,
    chunk_bound: usize,
    open: Option<DataFile>,
    closed: Vec<LinkedFile>,
    frames: u64,
    bytes: u64,
}

impl Hdf5Sink {
    /// Creates the folder and an initial master (no data files yet).
    ///
    /// # Errors
    /// The folder, the master or the calibration mask cannot be made.
    pub fn create(section: &Hdf5Section, experiment: &Experiment) -> Result<Hdf5Sink, SinkError> {
        let (geometry, calibration) = (&experiment.geometry, &experiment.calibration);
        let dir = &section.dir;
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io { sink: "hdf5", path: dir.clone(), source })?;
        let (panels, raw_rows, raw_cols) = geometry.panels();
        let (image, beam_center_px) = experiment.stored(section.pixels);
        let (rows, cols) = image.shape();
        let panel_origins = experiment.panel_origins.clone();
        let pixel_mask = match crate::calib::PixelMask::for_calibration(calibration, panels * raw_rows * raw_cols) {
            Ok(Some(mask)) => {
                // In the stored image: both halves of a split pixel carry its flags.
                let flags: Vec<u32> = mask.flags().iter().map(|&f| u32::from(f)).collect();
                let mut stored = vec![0u32; panels * image.pixels()];
                image.spread(&flags, &mut stored);
                stored
            }
            Ok(None) => Vec::new(),
            Err(e) => return Err(failed(calibration.mask_file.as_deref().unwrap_or(dir), e)),
        };
        let wavelength = experiment.wavelength_angstrom();
        let run = RunDescription {
            detector_model: geometry.model.name.to_string(),
            bits_per_pixel: geometry.model.bits_per_pixel as u32,
            pixel_size_m: f64::from(geometry.model.pixel_size_um) * 1e-6,
            distance_m: experiment.distance_mm * 1e-3,
            wavelength_angstrom: wavelength,
            beam_center_px,
            panel_rows: rows,
            panel_cols: cols,
            panel_origins,
            pixels: section.pixels.description(),
            flagged_value: (section.pixels == crate::codec::StoredPixels::PhotonsU32)
                .then_some(crate::codec::FLAGGED_U32),
            units: if section.pixels == crate::codec::StoredPixels::Raw { "counts" } else { "photons" },
            element: Element::of(section.pixels, stored_element_size(section.pixels, geometry)),
            sample_name: section.sample_name.clone(),
            start_time: iso8601_now(),
            pixel_mask,
        };
        let master = dir.join(format!("{}_master.h5", section.prefix));
        let sink = Hdf5Sink {
            section: section.clone(),
            master,
            run,
            elem_size: stored_element_size(section.pixels, geometry),
            shape: (panels * rows, cols),
            mask_words: geometry.packets_per_frame().div_ceil(64),
            chunk_bound: chunk_bound(section.pixels, geometry, &experiment.panel_image),
            open: None,
            closed: Vec::new(),
            frames: 0,
            bytes: 0,
        };
        sink.write_master(None)?;
        Ok(sink)
    }

    fn data_file_name(&self, index: usize) -> String {
        format!("{}_data_{:06}.h5", self.section.prefix, index)
    }

    /// The path of the data file being written (or about to be).
    fn open_path(&self) -> PathBuf {
        self.section.dir.join(self.data_file_name(self.closed.len() + 1))
    }

    fn write_master(&self, end_time: Option<&str>) -> Result<(), SinkError> {
        write_master(&self.master, &self.run, &self.closed, end_time).map_err(|e| failed(&self.master, e))
    }

    /// Closes the open data file under its final name and links it from the master.
    fn close_open(&mut self) -> Result<(), SinkError> {
        let Some(file) = self.open.take() else { return Ok(()) };
        let frames = file.frames();
        let first = self.frames - frames + 1;
        let name = self.data_file_name(self.closed.len() + 1);
        file.close(first).map_err(|e| failed(&self.section.dir.join(&name), e))?;
        self.closed.push(LinkedFile { name, frames });
        self.write_master(None)
    }
}

fn failed(path: &Path, e: impl std::fmt::Display) -> SinkError {
    SinkError::Format { sink: "hdf5", path: path.to_path_buf(), reason: e.to_string() }
}

impl Sink for Hdf5Sink {
    fn interest(&self) -> Interest {
        Interest { frames: Frames::Kept, payload: Payload::Chunk, payload_bytes: self.chunk_bound }
    }

    fn write(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        let path = self.open_path();
        if self.open.is_none() {
            let s = &self.section;
            let file = DataFile::create(
                &path,
                s.pixels,
                self.elem_size,
                self.shape,
                self.mask_words,
                s.frames_per_file as usize,
            )
            .map_err(|e| failed(&path, e))?;
            self.open = Some(file);
        }
        let meta = &record.meta;
        let entry = FrameEntry {
            frame_number: meta.frame_number,
            sequence: meta.sequence,
            bunch_id: meta.bunch_id,
            detector_timestamp: meta.detector_timestamp,
            receive_time_ns: meta.first_packet_ns,
            trigger_score: record.features.score,
            audit: record.features.audit,
            packets_received: meta.packets_received,
            packet_mask: &record.packet_mask,
            chunk: &record.payload,
        };
        let section = &self.section;
        let Some(file) = self.open.as_mut() else { return Ok(()) };
        file.append(&entry).map_err(|e| failed(&path, e))?;
        self.frames += 1;
        self.bytes += record.payload.len() as u64;
        let full = file.frames() >= section.frames_per_file || file.chunk_bytes() >= section.max_file_mib << 20;
        if !full && file.frames().is_multiple_of(section.flush_every_frames) {
            file.flush().map_err(|e| failed(&path, e))?;
        }
        if full {
            self.close_open()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        self.close_open()?;
        self.write_master(Some(&iso8601_now()))?;
        Ok(SinkReport {
            name: "hdf5",
            frames_written: self.frames,
            bytes_written: self.bytes,
            location: Some(self.master.clone()),
            ..SinkReport::default()
        })
    }
}
