//! A panel's image as the detector is built, from its pixels as the detector sends them. A JUNGFRAU
//! chip's border pixels are twice as wide (the corner ones twice as wide and high), so PSI's tools show
//! a module as 514 × 1030 pixels of one size: each border pixel becomes two (a corner pixel four), its
//! photons divided evenly between them. Spots, summaries and stored photons all live in that image;
//! calibration, masks and raw values stay in the detector's own 512 × 1024.

use super::{DetectorGeometry, DetectorType};

/// Pixels a side of a JUNGFRAU chip.
pub const CHIP_PX: usize = 256;
/// Extra pixels in space between neighbouring chips (the two half-pixels of their double border pixels).
pub const CHIP_GAP_PX: usize = 2;

/// One axis of a panel: which raw line each image line shows, and runs copied as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Axis {
    /// For each image line, the raw line it shows.
    source: Vec<u32>,
    /// Raw lines shown twice (the chips' double-size border lines), in order.
    doubled: Vec<usize>,
    /// Runs of raw lines shown once: (first raw line, first image line, length).
    runs: Vec<(usize, usize, usize)>,
}

impl Axis {
    fn new(raw: usize, split: bool) -> Axis {
        let doubled: Vec<usize> = if split && raw.is_multiple_of(CHIP_PX) {
            (1..raw / CHIP_PX).flat_map(|k| [k * CHIP_PX - 1, k * CHIP_PX]).collect()
        } else {
            Vec::new()
        };
        let mut source = Vec::with_capacity(raw + doubled.len());
        let mut runs = Vec::new();
        let mut run_start: Option<(usize, usize)> = None;
        for r in 0..raw {
            let twice = doubled.binary_search(&r).is_ok();
            if twice {
                if let Some((first, at)) = run_start.take() {
                    runs.push((first, at, r - first));
                }
            } else if run_start.is_none() {
                run_start = Some((r, source.len()));
            }
            source.push(r as u32);
            if twice {
                source.push(r as u32);
            }
        }
        if let Some((first, at)) = run_start {
            runs.push((first, at, raw - first));
        }
        Axis { source, doubled, runs }
    }

    fn len(&self) -> usize {
        self.source.len()
    }

    /// The first image line of raw line `r`, and how many image lines show it.
    fn image_lines(&self, r: usize) -> (usize, usize) {
        let before = self.doubled.partition_point(|&d| d < r);
        let twice = self.doubled.get(before) == Some(&r);
        (r + before, if twice { 2 } else { 1 })
    }
}

/// How one panel's raw pixels make its image (a JUNGFRAU module's 514 × 1030 with split border
/// pixels, or the raw pixels as they are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanelImage {
    raw_rows: usize,
    raw_cols: usize,
    rows: Axis,
    cols: Axis,
}

impl PanelImage {
    /// The image of a panel of `raw_rows × raw_cols`, its chip-border pixels split when `split`.
    pub fn new(raw_rows: usize, raw_cols: usize, split: bool) -> PanelImage {
        PanelImage { raw_rows, raw_cols, rows: Axis::new(raw_rows, split), cols: Axis::new(raw_cols, split) }
    }

    /// The image of `geometry`'s panels: a JUNGFRAU's chips with their border pixels split when
    /// `split_chip_borders`, any other panel as it is.
    pub fn for_geometry(geometry: &DetectorGeometry, split_chip_borders: bool) -> PanelImage {
        let (_, rows, cols) = geometry.panels();
        PanelImage::new(rows, cols, split_chip_borders && geometry.model.det_type == DetectorType::Jungfrau)
    }

    /// The same panel's raw pixels as they are.
    pub fn unsplit(&self) -> PanelImage {
        PanelImage::new(self.raw_rows, self.raw_cols, false)
    }

    /// Whether the image differs from the raw pixels.
    pub fn is_split(&self) -> bool {
        !self.rows.doubled.is_empty() || !self.cols.doubled.is_empty()
    }

    /// The image's rows and columns.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows.len(), self.cols.len())
    }

    /// Pixels of the image.
    pub fn pixels(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    /// The raw panel's rows and columns.
    pub fn raw_shape(&self) -> (usize, usize) {
        (self.raw_rows, self.raw_cols)
    }

    /// The raw row an image row shows, and the share of that row's photons it holds (1 or ½).
    pub fn row_source(&self, row: usize) -> Option<(usize, f32)> {
        let r = *self.rows.source.get(row)? as usize;
        Some((r, 1.0 / self.rows.image_lines(r).1 as f32))
    }

    /// The raw column an image column shows, and its share (1 or ½).
    pub fn col_source(&self, col: usize) -> Option<(usize, f32)> {
        let c = *self.cols.source.get(col)? as usize;
        Some((c, 1.0 / self.cols.image_lines(c).1 as f32))
    }

    /// The raw pixel (index in the panel) an image pixel shows, and the share of its photons it holds
    /// (1, ½, or ¼ at a chip corner).
    pub fn source(&self, row: usize, col: usize) -> Option<(usize, f32)> {
        let r = *self.rows.source.get(row)? as usize;
        let c = *self.cols.source.get(col)? as usize;
        let (_, nr) = self.rows.image_lines(r);
        let (_, nc) = self.cols.image_lines(c);
        Some((r * self.raw_cols + c, 1.0 / (nr * nc) as f32))
    }

    /// The image position (row, column) of the centre of raw pixel (`row`, `col`), in the image's
    /// pixel units with pixel (0, 0)'s centre at (0, 0).
    pub fn image_position(&self, row: f64, col: f64) -> (f64, f64) {
        let along = |axis: &Axis, x: f64| {
            let r = (x.round().max(0.0) as usize).min(axis.source.last().map_or(0, |&s| s as usize));
            let (first, n) = axis.image_lines(r);
            first as f64 + (n as f64 - 1.0) / 2.0 + (x - r as f64) * n as f64
        };
        (along(&self.rows, row), along(&self.cols, col))
    }

    /// The raw pixel position (row, column, pixel centres at whole numbers) that an image position
    /// falls on: the inverse of [`PanelImage::image_position`]. Beyond the panel, positions keep their
    /// distance from its edge.
    pub fn raw_position(&self, row: f64, col: f64) -> (f64, f64) {
        let along = |axis: &Axis, x: f64| {
            let n = axis.source.len();
            if n == 0 {
                return x;
            }
            if x < -0.5 {
                return x;
            }
            let last_image = (n - 1) as f64;
            let last_raw = f64::from(*axis.source.last().unwrap_or(&0));
            if x > last_image + 0.5 {
                return x - last_image + last_raw;
            }
            let i = (x + 0.5).floor().clamp(0.0, last_image) as usize;
            let r = axis.source[i] as usize;
            let (first, lines) = axis.image_lines(r);
            // Where in its raw pixel the position is, from -0.5 to 0.5.
            let within = (x + 0.5 - first as f64) / lines as f64 - 0.5;
            r as f64 + within
        };
        (along(&self.rows, row), along(&self.cols, col))
    }

    /// Writes the image of a panel's photons `raw` (`raw_rows × raw_cols`) into `image` (`shape()`):
    /// every pixel in its place, a border pixel's photons split evenly between its halves.
    pub fn assemble(&self, raw: &[f32], image: &mut [f32]) {
        if !self.is_split() {
            let n = self.pixels().min(raw.len()).min(image.len());
            image[..n].copy_from_slice(&raw[..n]);
            return;
        }
        for (r, src) in raw.chunks_exact(self.raw_cols).take(self.raw_rows).enumerate() {
            self.place_row(r, src, image);
        }
    }

    /// Converts a panel's raw values `raw` row by row into a scratch row (`row`, `raw_cols` long,
    /// which stays in cache) with `convert(raw values, their first pixel in the panel, out)`, and
    /// places each row in `image`: one pass over memory instead of converting, then assembling.
    /// Returns the sum of what `convert` returns (the pixels it flagged).
    pub fn convert_into(
        &self,
        raw: &[u16],
        convert: &mut impl FnMut(&[u16], usize, &mut [f32]) -> usize,
        row: &mut [f32],
        image: &mut [f32],
    ) -> usize {
        let row = &mut row[..self.raw_cols];
        let mut flagged = 0;
        for (r, src) in raw.chunks_exact(self.raw_cols).take(self.raw_rows).enumerate() {
            flagged += convert(src, r * self.raw_cols, row);
            self.place_row(r, row, image);
        }
        flagged
    }

    /// Writes raw row `r`'s photons (`src`) into the image rows that show it.
    fn place_row(&self, r: usize, src: &[f32], image: &mut [f32]) {
        let cols = self.cols.len();
        let (first, lines) = self.rows.image_lines(r);
        let Some(out) = image.get_mut(first * cols..(first + lines) * cols) else { return };
        let (top, rest) = out.split_at_mut(cols);
        for &(from, at, len) in &self.cols.runs {
            top[at..at + len].copy_from_slice(&src[from..from + len]);
        }
        for &c in &self.cols.doubled {
            let (at, _) = self.cols.image_lines(c);
            let half = src[c] * 0.5;
            top[at] = half;
            top[at + 1] = half;
        }
        if lines == 2 {
            top.iter_mut().for_each(|v| *v *= 0.5);
            rest.copy_from_slice(top);
        }
    }

    /// Adds the photons of an image (`shape()`) into the raw pixels that show them (`raw_rows ×
    /// raw_cols`): a border pixel collects both its halves, as the detector itself does.
    pub fn fold(&self, image: &[f32], raw: &mut [f32]) {
        let cols = self.cols.len();
        for (row, &r) in image.chunks_exact(cols).zip(&self.rows.source) {
            let Some(dst) = raw.get_mut(r as usize * self.raw_cols..(r as usize + 1) * self.raw_cols) else { return };
            for (&v, &c) in row.iter().zip(&self.cols.source) {
                dst[c as usize] += v;
            }
        }
    }

    /// The image of per-pixel values that are not shared out (mask flags), for panels stacked one
    /// after the other: each image pixel takes its raw pixel's value.
    pub fn spread<T: Copy>(&self, raw: &[T], image: &mut [T]) {
        let cols = self.cols.len();
        let raw_panel = (self.raw_rows * self.raw_cols).max(1);
        for (raw, image) in raw.chunks_exact(raw_panel).zip(image.chunks_exact_mut(self.pixels().max(1))) {
            for (out, &r) in image.chunks_exact_mut(cols).zip(&self.rows.source) {
                let src = &raw[r as usize * self.raw_cols..(r as usize + 1) * self.raw_cols];
                for (o, &c) in out.iter_mut().zip(&self.cols.source) {
                    *o = src[c as usize];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jungfrau_module_is_514_by_1030_and_keeps_every_photon() {
        let p = PanelImage::new(512, 1024, true);
        assert_eq!(p.shape(), (514, 1030));
        let raw: Vec<f32> = (0..512 * 1024).map(|i| (i % 977) as f32).collect();
        let mut image = vec![f32::NAN; p.pixels()];
        p.assemble(&raw, &mut image);
        let (a, b): (f64, f64) = (raw.iter().map(|&v| f64::from(v)).sum(), image.iter().map(|&v| f64::from(v)).sum());
        assert!((a - b).abs() < 1e-3 * a, "{a} vs {b}");
        let at = |r: usize, c: usize| image[r * 1030 + c];
        let raw_at = |r: usize, c: usize| raw[r * 1024 + c];
        // An inner pixel of chip (1, 2) moves by the two gaps before it on each axis.
        assert_eq!(at(300 + 2, 600 + 4), raw_at(300, 600));
        // The double column between chips 0 and 1: raw 255 → 255 and 256, raw 256 → 257 and 258.
        assert_eq!((at(10, 255), at(10, 256)), (raw_at(10, 255) / 2.0, raw_at(10, 255) / 2.0));
        assert_eq!((at(10, 257), at(10, 258)), (raw_at(10, 256) / 2.0, raw_at(10, 256) / 2.0));
        assert_eq!(at(10, 259), raw_at(10, 257));
        // A corner pixel is a quarter in each of its four.
        for (r, c) in [(255, 255), (255, 256), (256, 255), (256, 256)] {
            assert_eq!(at(r, c), raw_at(255, 255) / 4.0);
        }
        assert_eq!(at(513, 1029), raw_at(511, 1023));
        assert_eq!(p.source(513, 1029), Some((512 * 1024 - 1, 1.0)));
        assert_eq!(p.source(256, 257), Some((255 * 1024 + 256, 0.25)));
    }

    #[test]
    fn folding_an_image_gives_each_raw_pixel_its_halves() {
        let p = PanelImage::new(512, 1024, true);
        let image = vec![1.0f32; p.pixels()];
        let mut raw = vec![0.0f32; 512 * 1024];
        p.fold(&image, &mut raw);
        assert_eq!(raw[0], 1.0);
        assert_eq!(raw[10 * 1024 + 255], 2.0);
        assert_eq!(raw[256 * 1024 + 768], 4.0);
        let mut back = vec![0.0f32; p.pixels()];
        p.assemble(&raw, &mut back);
        assert!(back.iter().all(|&v| v == 1.0), "assembling undoes folding");
        // Converting row by row into place gives the same image as converting, then assembling.
        let words: Vec<u16> = (0..512 * 1024).map(|i| (i % 4093) as u16).collect();
        let mut convert = |w: &[u16], _: usize, o: &mut [f32]| {
            o.iter_mut().zip(w).for_each(|(o, &w)| *o = f32::from(w) * 0.25);
            1
        };
        let mut photons = vec![0.0f32; 512 * 1024];
        convert(&words, 0, &mut photons);
        p.assemble(&photons, &mut back);
        let (mut fused, mut row) = (vec![0.0f32; p.pixels()], vec![0.0f32; 1024]);
        assert_eq!(p.convert_into(&words, &mut convert, &mut row, &mut fused), 512);
        assert_eq!(fused, back);
        let mut flags = vec![0u8; p.pixels()];
        let mut mask = vec![0u8; 512 * 1024];
        mask[255 * 1024 + 3] = 7;
        p.spread(&mask, &mut flags);
        assert_eq!(flags.iter().filter(|&&f| f == 7).count(), 2, "a double pixel's flag covers both halves");
    }

    #[test]
    fn positions_move_to_the_centre_of_what_the_pixel_covers() {
        let p = PanelImage::new(512, 1024, true);
        assert_eq!(p.image_position(0.0, 0.0), (0.0, 0.0));
        assert_eq!(p.image_position(10.0, 255.0), (10.0, 255.5));
        assert_eq!(p.image_position(10.0, 256.0), (10.0, 257.5));
        assert_eq!(p.image_position(300.0, 600.0), (302.0, 604.0));
        for (r, c) in [(0.0, 0.0), (10.0, 255.0), (10.25, 256.0), (300.0, 600.0), (511.0, 1023.4), (255.3, 767.8)] {
            let (ir, ic) = p.image_position(r, c);
            let (br, bc) = p.raw_position(ir, ic);
            assert!((br - r).abs() < 1e-9 && (bc - c).abs() < 1e-9, "({r}, {c}) → ({ir}, {ic}) → ({br}, {bc})");
        }
        assert_eq!(p.raw_position(-28.5, 1040.0), (-28.5, 1034.0), "off the module, the gaps are behind");
        let whole = PanelImage::new(256, 1024, false);
        assert!(!whole.is_split());
        assert_eq!(whole.shape(), (256, 1024));
        assert_eq!(whole.image_position(3.25, 7.5), (3.25, 7.5));
    }
}
