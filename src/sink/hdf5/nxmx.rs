//! The master file: the run described the NXmx way (detector, its modules and where they sit, beam,
//! sample) and `/entry/data/data_NNNNNN` external links to each closed data file's frames, the layout
//! DECTRIS and PSI systems write and DIALS, CrystFEL, XDS-Durin, albula and silx read. Beside the
//! links, `/entry/data/data` is one virtual data set over every closed file's frames in order, so a
//! reader that opens `data` alone (DIALS does) sees the whole run.
//!
//! Geometry follows NeXus (McStas axes: z along the beam, y up): the detector sits `distance` down the
//! beam; each module's first pixel is offset from the beam so that the configured beam centre meets
//! it; fast pixels run along −x and slow pixels along −y, as DECTRIS files have them. The data hold
//! the modules stacked (module `m` at rows `m × rows…`), and each `NXdetector_module` says where its
//! pixels are in the data (`data_origin`, `data_size`) and in space.

use std::path::Path;

use hdf5::{File, Group};

use super::datafile::{Element, attr_str};

/// What the master says about the run; fixed when the sink opens.
#[derive(Clone, Debug)]
pub struct RunDescription {
    pub detector_model: String,
    pub bits_per_pixel: u32,
    pub pixel_size_m: f64,
    pub distance_m: f64,
    pub wavelength_angstrom: f64,
    /// Beam centre in the assembled image (row, column), pixels.
    pub beam_center_px: (f64, f64),
    /// Module (panel) shape and each one's first pixel in the assembled image.
    pub panel_rows: usize,
    pub panel_cols: usize,
    pub panel_origins: Vec<(usize, usize)>,
    pub pixels: &'static str,
    /// How a stored pixel is typed in the data files.
    pub element: Element,
    /// The `units` of the data: counts for raw values, photons for converted ones.
    pub units: &'static str,
    /// The value a pixel flagged in its frame (saturated, invalid gain, lost packet) is stored as, when
    /// the pixels have one: readers take values above `saturation_value` as untrusted, per NXmx.
    pub flagged_value: Option<u32>,
    pub sample_name: String,
    pub start_time: String,
    /// Per-pixel mask (0 = good), module-stacked like the data; empty when none is configured.
    pub pixel_mask: Vec<u32>,
}

/// A closed data file and its frames.
#[derive(Clone, Debug)]
pub struct LinkedFile {
    /// File name, relative to the master's folder (so the run folder can move).
    pub name: String,
    pub frames: u64,
}

const DETECTOR: &str = "/entry/instrument/detector";

/// Writes the master to `path` through a temporary file renamed over it, so a reader (or a crash)
/// sees the old master or the new one, never half of one.
///
/// # Errors
/// The file cannot be written or renamed.
pub fn write_master(
    path: &Path,
    run: &RunDescription,
    files: &[LinkedFile],
    end_time: Option<&str>,
) -> hdf5::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let file = File::create(&tmp)?;
        fill(&file, run, files, end_time)?;
        file.close()?;
    }
    std::fs::rename(&tmp, path).map_err(|e| hdf5::Error::from(format!("cannot rename {}: {e}", tmp.display())))
}

fn fill(file: &File, run: &RunDescription, files: &[LinkedFile], end_time: Option<&str>) -> hdf5::Result<()> {
    let entry = nx_group(file, "entry", "NXentry")?;
    attr_str(&entry, "default", "data")?;
    text(&entry, "definition", "NXmx")?;
    text(&entry, "start_time", &run.start_time)?;
    if let Some(end) = end_time {
        text(&entry, "end_time", end)?;
    }
    // Complete (1) once the run ended; 0 while it runs or if it was stopped without closing.
    scalar(&entry, "run_complete", u8::from(end_time.is_some()), None)?;

    let data = nx_group(&entry, "data", "NXdata")?;
    attr_str(&data, "signal", "data")?;
    let total: u64 = files.iter().map(|f| f.frames).sum();
    scalar(&data, "frames", total, None)?;
    if total > 0 {
        let shape = (run.panel_rows * run.panel_origins.len(), run.panel_cols);
        match run.element {
            Element::U8 => virtual_frames::<u8>(&data, files, shape)?,
            Element::U16 => virtual_frames::<u16>(&data, files, shape)?,
            Element::U32 => virtual_frames::<u32>(&data, files, shape)?,
            Element::F32 => virtual_frames::<f32>(&data, files, shape)?,
        }
        let frames = data.dataset("data")?;
        attr_str(&frames, "units", run.units)?;
    }
    for (i, f) in files.iter().enumerate() {
        data.link_external(&f.name, "/entry/data/data", &format!("data_{:06}", i + 1))?;
        // The per-frame metadata sits beside each file's frames.
        data.link_external(&f.name, "/entry/data", &format!("frames_{:06}", i + 1))?;
    }

    let instrument = nx_group(&entry, "instrument", "NXinstrument")?;
    text(&instrument, "name", &format!("hitgate ({})", run.detector_model))?;
    let beam = nx_group(&instrument, "beam", "NXbeam")?;
    scalar(&beam, "incident_wavelength", run.wavelength_angstrom, Some("angstrom"))?;

    let det = nx_group(&instrument, "detector", "NXdetector")?;
    text(&det, "description", &run.detector_model)?;
    text(&det, "type", "pixel")?;
    text(&det, "sensor_material", "Si")?;
    scalar(&det, "sensor_thickness", 320e-6, Some("m"))?;
    scalar(&det, "x_pixel_size", run.pixel_size_m, Some("m"))?;
    scalar(&det, "y_pixel_size", run.pixel_size_m, Some("m"))?;
    scalar(&det, "distance", run.distance_m, Some("m"))?;
    scalar(&det, "beam_center_x", run.beam_center_px.1, Some("pixel"))?;
    scalar(&det, "beam_center_y", run.beam_center_px.0, Some("pixel"))?;
    scalar(&det, "bit_depth_readout", run.bits_per_pixel, None)?;
    text(&det, "pixel_content", run.pixels)?;
    if let Some(flagged) = run.flagged_value {
        // Frame by frame, a flagged pixel holds `flagged`, one above the largest trusted value.
        scalar(&det, "saturation_value", i64::from(flagged) - 1, None)?;
        scalar(&det, "underload_value", -1i64, None)?;
    }
    text(&det, "depends_on", &format!("{DETECTOR}/transformations/translation"))?;
    if !run.pixel_mask.is_empty() {
        let rows = run.panel_rows * run.panel_origins.len();
        det.new_dataset::<u32>()
            .shape((rows, run.panel_cols))
            .deflate(4)
            .chunk((run.panel_rows, run.panel_cols))
            .create("pixel_mask")?
            .write_raw(&run.pixel_mask)?;
    }
    let transformations = nx_group(&det, "transformations", "NXtransformations")?;
    let t = scalar(&transformations, "translation", run.distance_m, Some("m"))?;
    transform(&t, "translation", [0.0, 0.0, 1.0], ".")?;

    let (bc_row, bc_col) = run.beam_center_px;
    let px = run.pixel_size_m;
    for (m, &(r0, c0)) in run.panel_origins.iter().enumerate() {
        let module = nx_group(&det, &format!("module_{:02}", m + 1), "NXdetector_module")?;
        vector_u64(&module, "data_origin", &[(m * run.panel_rows) as u64, 0])?;
        vector_u64(&module, "data_size", &[run.panel_rows as u64, run.panel_cols as u64])?;
        // The module's first pixel, relative to where the beam meets the detector plane.
        let offset = [(bc_col - c0 as f64) * px, (bc_row - r0 as f64) * px, 0.0];
        let norm = (offset[0] * offset[0] + offset[1] * offset[1]).sqrt();
        let direction = if norm > 0.0 { [offset[0] / norm, offset[1] / norm, 0.0] } else { [1.0, 0.0, 0.0] };
        let o = scalar(&module, "module_offset", norm, Some("m"))?;
        transform(&o, "translation", direction, &format!("{DETECTOR}/transformations/translation"))?;
        let here = format!("{DETECTOR}/module_{:02}/module_offset", m + 1);
        let fast = scalar(&module, "fast_pixel_direction", px, Some("m"))?;
        transform(&fast, "translation", [-1.0, 0.0, 0.0], &here)?;
        let slow = scalar(&module, "slow_pixel_direction", px, Some("m"))?;
        transform(&slow, "translation", [0.0, -1.0, 0.0], &here)?;
    }

    let sample = nx_group(&entry, "sample", "NXsample")?;
    text(&sample, "name", &run.sample_name)?;
    text(&sample, "depends_on", ".")?;
    Ok(())
}

/// `data`: the frames of every file, one after the other, as one virtual data set. Source files are
/// named relative to the master, which HDF5 looks beside first.
fn virtual_frames<T: hdf5::H5Type>(
    group: &Group,
    files: &[LinkedFile],
    (rows, cols): (usize, usize),
) -> hdf5::Result<()> {
    let total: usize = files.iter().map(|f| f.frames as usize).sum();
    let mut builder = group.new_dataset::<T>().shape((total, rows, cols));
    let mut first = 0;
    for f in files {
        let n = f.frames as usize;
        builder = builder.virtual_map(
            &f.name,
            "/entry/data/data",
            (n, rows, cols),
            (.., .., ..),
            (total, rows, cols),
            (first..first + n, .., ..),
        );
        first += n;
    }
    builder.create("data").map(drop)
}

fn nx_group(parent: &Group, name: &str, class: &str) -> hdf5::Result<Group> {
    let g = parent.create_group(name)?;
    attr_str(&g, "NX_class", class)?;
    Ok(g)
}

fn text(group: &Group, name: &str, value: &str) -> hdf5::Result<()> {
    let v: hdf5::types::VarLenUnicode = value.parse().map_err(|e| hdf5::Error::from(format!("{name}: {e}")))?;
    group.new_dataset::<hdf5::types::VarLenUnicode>().shape(()).create(name)?.write_scalar(&v)
}

fn scalar<T: hdf5::H5Type>(group: &Group, name: &str, value: T, units: Option<&str>) -> hdf5::Result<hdf5::Dataset> {
    let ds = group.new_dataset::<T>().shape(()).create(name)?;
    ds.write_scalar(&value)?;
    if let Some(u) = units {
        attr_str(&ds, "units", u)?;
    }
    Ok(ds)
}

fn vector_u64(group: &Group, name: &str, values: &[u64]) -> hdf5::Result<()> {
    group.new_dataset::<u64>().shape(values.len()).create(name)?.write_raw(values)
}

/// Marks a data set as an NXtransformations step along `vector`, after `depends_on`.
fn transform(ds: &hdf5::Dataset, kind: &str, vector: [f64; 3], depends_on: &str) -> hdf5::Result<()> {
    attr_str(ds, "transformation_type", kind)?;
    attr_str(ds, "depends_on", depends_on)?;
    ds.new_attr::<f64>().shape(3).create("vector")?.write_raw(&vector)?;
    ds.new_attr::<f64>().shape(3).create("offset")?.write_raw(&[0.0f64; 3])
}
