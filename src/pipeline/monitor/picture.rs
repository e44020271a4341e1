//! Where the detector's pixels fall on the monitor's pictures and in resolution, and what a sampled
//! frame shows: its photons assembled with the gaps between modules, its background per shell of q,
//! and the picture of a kept frame, log-scaled with its spots circled.

use crate::calib::Photons;
use crate::codec::png;
use crate::detector::PanelImage;
use crate::sink::Experiment;

use super::Sample;

/// Resolution shells of the background profile.
pub const SHELLS: usize = 60;
/// The pictures' longer side stays within this many pixels: detector pixels are binned by the
/// smallest whole factor that fits.
const LONGEST_SIDE: usize = 1200;
/// The background is measured on about this many pixels of a frame (a regular subgrid).
const BACKGROUND_PIXELS: usize = 250_000;
/// A shell with fewer measured pixels has no background (the detector hardly covers it).
const SHELL_LEAST_PIXELS: usize = 16;
/// Palette indices: the gaps between modules, and the circles around spots.
const GAP: u8 = 0;
const CIRCLE: u8 = 255;
/// Circles' radius in picture pixels.
const CIRCLE_RADIUS: f32 = 6.0;

/// The detector as the monitor draws it.
pub struct Layout {
    pub(super) panel_image: PanelImage,
    pub(super) panel_origins: Vec<(usize, usize)>,
    pub(super) panel_raw_pixels: usize,
    /// The whole detector image (rows, columns), gaps included.
    pub(super) height: usize,
    pub(super) width: usize,
    /// Detector pixels per picture pixel along each side.
    pub scale: usize,
    pub(super) beam: (f64, f64),
    pub(super) distance_mm: f64,
    pub(super) pixel_mm: f64,
    pub(super) wavelength_angstrom: f64,
    pub modules: usize,
    pub packets_per_module: usize,
    pub(super) q_max: f64,
}

impl Layout {
    pub fn new(experiment: &Experiment) -> Layout {
        let g = &experiment.geometry;
        let (shape_rows, shape_cols) = experiment.panel_image.shape();
        let (raw_rows, raw_cols) = experiment.panel_image.raw_shape();
        let height = experiment.panel_origins.iter().map(|o| o.0 + shape_rows).max().unwrap_or(shape_rows);
        let width = experiment.panel_origins.iter().map(|o| o.1 + shape_cols).max().unwrap_or(shape_cols);
        let mut layout = Layout {
            panel_image: experiment.panel_image.clone(),
            panel_origins: experiment.panel_origins.clone(),
            panel_raw_pixels: raw_rows * raw_cols,
            height,
            width,
            scale: height.max(width).div_ceil(LONGEST_SIDE).max(1),
            beam: experiment.beam_center_px,
            distance_mm: experiment.distance_mm,
            pixel_mm: f64::from(g.model.pixel_size_um) / 1000.0,
            wavelength_angstrom: experiment.wavelength_angstrom(),
            modules: g.modules,
            packets_per_module: g.packets_per_frame() / g.modules.max(1),
            q_max: 0.0,
        };
        let corners = [(0.0, 0.0), (0.0, width as f64), (height as f64, 0.0), (height as f64, width as f64)];
        layout.q_max = corners.iter().map(|&(r, c)| layout.q(r, c)).fold(0.0, f64::max).max(1e-6);
        layout
    }

    /// The pictures' width and height.
    pub fn display_shape(&self) -> (usize, usize) {
        (self.width.div_ceil(self.scale), self.height.div_ceil(self.scale))
    }

    pub fn display_pixels(&self) -> usize {
        let (w, h) = self.display_shape();
        w * h
    }

    /// The picture pixel showing detector image position (`row`, `col`), if it lies on the picture.
    pub fn display_index(&self, row: f32, col: f32) -> Option<usize> {
        let (w, h) = self.display_shape();
        if !(row >= 0.0 && col >= 0.0) {
            return None;
        }
        let (r, c) = (row as usize / self.scale, col as usize / self.scale);
        (r < h && c < w).then_some(r * w + c)
    }

    /// The beam centre on the picture (row, column), which may lie outside it.
    pub fn beam_display(&self) -> (f64, f64) {
        (self.beam.0 / self.scale as f64, self.beam.1 / self.scale as f64)
    }

    /// Momentum transfer 4π sin θ / λ (Å⁻¹) at detector image position (`row`, `col`).
    pub(super) fn q(&self, row: f64, col: f64) -> f64 {
        let r_mm = (row - self.beam.0).hypot(col - self.beam.1) * self.pixel_mm;
        let two_theta = (r_mm / self.distance_mm.max(1e-6)).atan();
        4.0 * std::f64::consts::PI * (two_theta / 2.0).sin() / self.wavelength_angstrom.max(1e-9)
    }

    /// The centre of each shell, Å⁻¹: equal steps of q from the beam to the farthest corner.
    pub fn shell_q(&self) -> Vec<f64> {
        (0..SHELLS).map(|i| (i as f64 + 0.5) * self.q_max / SHELLS as f64).collect()
    }
}

/// The control plane's buffers for one sampled frame.
pub struct Scratch {
    /// One raw row of a panel in photons, on its way into the panel's image.
    row: Vec<f32>,
    panel_image: Vec<f32>,
    image: Vec<f32>,
    /// The subgrid the background is measured on: image index and shell of each of its pixels.
    subgrid: Vec<(u32, u8)>,
    shells: Vec<Vec<f32>>,
    all: Vec<f32>,
    picture: Vec<f32>,
    indices: Vec<u8>,
}

/// What one sampled frame showed.
pub struct Measured {
    /// The frame's median photons a pixel.
    pub background: Option<f64>,
    /// Median photons a pixel per shell; NaN where the detector hardly covers the shell.
    pub profile: Option<Vec<f64>>,
    /// The picture, for a kept frame.
    pub png: Option<Vec<u8>>,
}

impl Scratch {
    pub fn new(layout: &Layout) -> Scratch {
        let pixels = layout.height * layout.width;
        let step = ((pixels as f64 / BACKGROUND_PIXELS as f64).sqrt().floor() as usize).max(1);
        let mut subgrid = Vec::new();
        for r in (0..layout.height).step_by(step) {
            for c in (0..layout.width).step_by(step) {
                let shell = (layout.q(r as f64, c as f64) / layout.q_max * SHELLS as f64) as usize;
                subgrid.push(((r * layout.width + c) as u32, shell.min(SHELLS - 1) as u8));
            }
        }
        Scratch {
            row: vec![0.0; layout.panel_image.raw_shape().1],
            panel_image: vec![0.0; layout.panel_image.pixels()],
            image: vec![f32::NAN; pixels],
            shells: vec![Vec::new(); SHELLS],
            all: Vec::with_capacity(subgrid.len()),
            subgrid,
            picture: vec![0.0; layout.display_pixels()],
            indices: vec![0; layout.display_pixels()],
        }
    }

    /// Converts `sample` to photons and measures it; draws it when it was kept.
    pub fn measure(&mut self, layout: &Layout, photons: &Photons, sample: &Sample) -> Measured {
        self.assemble(layout, photons, &sample.raw);
        let (background, profile) = self.background();
        let png = sample.accepted.then(|| self.draw(layout, &sample.spots));
        Measured { background, profile, png }
    }

    fn assemble(&mut self, layout: &Layout, photons: &Photons, raw: &[u16]) {
        self.image.fill(f32::NAN);
        let converter = photons.current_converter();
        let (rows, cols) = layout.panel_image.shape();
        for (p, &(r0, c0)) in layout.panel_origins.iter().enumerate() {
            let first = p * layout.panel_raw_pixels;
            let Some(panel_raw) = raw.get(first..first + layout.panel_raw_pixels) else { break };
            let mut convert =
                |seg: &[u16], at: usize, out: &mut [f32]| photons.convert(converter.as_deref(), seg, first + at, out);
            layout.panel_image.convert_into(panel_raw, &mut convert, &mut self.row, &mut self.panel_image);
            for r in 0..rows {
                let at = (r0 + r) * layout.width + c0;
                if let Some(dest) = self.image.get_mut(at..at + cols) {
                    dest.copy_from_slice(&self.panel_image[r * cols..(r + 1) * cols]);
                }
            }
        }
    }

    fn background(&mut self) -> (Option<f64>, Option<Vec<f64>>) {
        self.shells.iter_mut().for_each(Vec::clear);
        self.all.clear();
        for &(at, shell) in &self.subgrid {
            let v = self.image[at as usize];
            if v.is_finite() {
                self.shells[usize::from(shell)].push(v);
                self.all.push(v);
            }
        }
        if self.all.is_empty() {
            return (None, None);
        }
        let profile =
            self.shells.iter_mut().map(|s| if s.len() < SHELL_LEAST_PIXELS { f64::NAN } else { median(s) }).collect();
        (Some(median(&mut self.all)), Some(profile))
    }

    /// The picture: detector pixels binned by their brightest, log-scaled to the 99.5th percentile,
    /// gaps in the gap colour, spots circled.
    fn draw(&mut self, layout: &Layout, spots: &[(f32, f32)]) -> Vec<u8> {
        let (w, h) = layout.display_shape();
        let s = layout.scale;
        self.picture.fill(f32::NAN);
        for r in 0..layout.height {
            let row = &self.image[r * layout.width..(r + 1) * layout.width];
            let out = &mut self.picture[(r / s) * w..(r / s + 1) * w];
            for (c, &v) in row.iter().enumerate() {
                let o = &mut out[c / s];
                // A bin still NaN takes the first finite value.
                if v.is_finite() && (o.is_nan() || *o < v) {
                    *o = v;
                }
            }
        }
        self.all.clear();
        self.all.extend(self.picture.iter().copied().filter(|v| v.is_finite()));
        let top = if self.all.is_empty() {
            1.0
        } else {
            let at = ((self.all.len() as f64 * 0.995) as usize).min(self.all.len() - 1);
            f64::from(*self.all.select_nth_unstable_by(at, f32::total_cmp).1).max(1.0)
        };
        let log_top = top.ln_1p();
        for (index, &v) in self.indices.iter_mut().zip(&self.picture) {
            *index = if v.is_finite() {
                let level = f64::from(v.max(0.0)).ln_1p() / log_top;
                1 + (level.min(1.0) * 253.0).round() as u8
            } else {
                GAP
            };
        }
        for &(row, col) in spots {
            circle(&mut self.indices, w, h, row / s as f32, col / s as f32);
        }
        png::indexed(w, h, &self.indices, &palette())
    }
}

#[cfg(test)]
impl Scratch {
    /// The last picture's palette indices.
    pub fn indices(&self) -> &[u8] {
        &self.indices
    }
}

/// The median of `values` (reordered).
fn median(values: &mut [f32]) -> f64 {
    let mid = values.len() / 2;
    f64::from(*values.select_nth_unstable_by(mid, f32::total_cmp).1)
}

fn circle(indices: &mut [u8], w: usize, h: usize, row: f32, col: f32) {
    let steps = 48;
    for i in 0..steps {
        let a = i as f32 * std::f32::consts::TAU / steps as f32;
        let (r, c) = (row + CIRCLE_RADIUS * a.sin(), col + CIRCLE_RADIUS * a.cos());
        if r >= 0.0 && c >= 0.0 && (r as usize) < h && (c as usize) < w {
            indices[r as usize * w + c as usize] = CIRCLE;
        }
    }
}

/// Dark grey for gaps, black through purple and orange to pale yellow for photons, green circles.
fn palette() -> Vec<[u8; 3]> {
    let stops: [(f32, [f32; 3]); 5] = [
        (0.0, [0.0, 0.0, 4.0]),
        (0.3, [87.0, 16.0, 110.0]),
        (0.6, [188.0, 55.0, 84.0]),
        (0.85, [249.0, 142.0, 9.0]),
        (1.0, [252.0, 255.0, 164.0]),
    ];
    let mut colours = vec![[48, 48, 56]];
    for i in 0..254 {
        let x = i as f32 / 253.0;
        let k = stops.windows(2).position(|w| x <= w[1].0).unwrap_or(stops.len() - 2);
        let ((x0, a), (x1, b)) = (stops[k], stops[k + 1]);
        let t = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0);
        colours.push(std::array::from_fn(|j| (a[j] + (b[j] - a[j]) * t).round() as u8));
    }
    colours.push([0, 255, 120]);
    colours
}
