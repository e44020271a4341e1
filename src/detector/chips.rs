//! A JUNGFRAU module's chips: 2 × 4 chips of 256 × 256 pixels, whose border pixels are double size
//! (the corner ones quadruple), so in space each chip sits two pixels further from its neighbour than
//! the detector's 512 × 1024 words suggest: PSI's assembled module is 514 × 1030. Here each chip is
//! placed where it is (its data in the frame, its first pixel in that assembled image), as CrystFEL
//! geometries of raw JUNGFRAU data describe it, and exported as a CrystFEL `.geom` file.

use super::geometry::PortArrangement;
use super::{DetectorGeometry, DetectorType};

pub use super::panel_image::{CHIP_GAP_PX, CHIP_PX};

/// A rectangle of the frame's data placed on the detector: a chip of a JUNGFRAU, or a whole panel of
/// another model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacedPanel {
    /// Module, and the panel's index within the whole detector's panels.
    pub module: usize,
    pub name_index: usize,
    /// First row and column in the frame's data (panels stacked, as stored), and size.
    pub data_row: usize,
    pub data_col: usize,
    pub rows: usize,
    pub cols: usize,
    /// Its first pixel's corner in the assembled image (rows down, columns right).
    pub image_row: usize,
    pub image_col: usize,
}

/// Every panel of the detector placed: a JUNGFRAU's chips with their gaps; another model's panels as
/// they are. `origins` are the panels' first pixels in the assembled image (the configured layout).
pub fn placed_panels(geometry: &DetectorGeometry, origins: &[(usize, usize)]) -> Vec<PlacedPanel> {
    let (panels, rows, cols) = geometry.panels();
    let m = geometry.model;
    let chips = m.det_type == DetectorType::Jungfrau
        && m.arrangement == PortArrangement::StackedRows
        && rows.is_multiple_of(CHIP_PX)
        && cols.is_multiple_of(CHIP_PX);
    let mut placed = Vec::new();
    for (p, &(r0, c0)) in origins.iter().enumerate().take(panels) {
        let module = p / m.ports_per_module;
        if !chips {
            let panel = PlacedPanel {
                module,
                name_index: placed.len(),
                data_row: p * rows,
                data_col: 0,
                rows,
                cols,
                image_row: r0,
                image_col: c0,
            };
            placed.push(panel);
            continue;
        }
        // A panel of a module with two interfaces holds the lower or upper chips of its module.
        let first_chip_row = (p % m.ports_per_module) * (rows / CHIP_PX);
        for i in 0..rows / CHIP_PX {
            for j in 0..cols / CHIP_PX {
                let panel = PlacedPanel {
                    module,
                    name_index: placed.len(),
                    data_row: p * rows + i * CHIP_PX,
                    data_col: j * CHIP_PX,
                    rows: CHIP_PX,
                    cols: CHIP_PX,
                    image_row: r0 + i * CHIP_PX + CHIP_GAP_PX * (first_chip_row + i),
                    image_col: c0 + j * CHIP_PX + CHIP_GAP_PX * j,
                };
                placed.push(panel);
            }
        }
    }
    placed
}

/// What a CrystFEL geometry needs beyond the panels.
pub struct CrystfelBeam {
    /// The beam centre in the assembled image (row, column), the corner of pixel (0, 0) at (0, 0).
    pub beam_center_px: (f64, f64),
    pub distance_mm: f64,
    pub photon_energy_kev: f64,
    /// The value a pixel flagged in its frame is stored as (whole photons), if any.
    pub flagged_value: Option<u32>,
}

/// The CrystFEL `.geom` text for hitgate's NeXus files of `geometry` in photons, whose panels' image
/// is `image`: assembled, one panel a module of its image; raw, one panel a chip (JUNGFRAU) or a
/// panel placed with its gaps. Fast scan along −x and slow scan along −y as the NXmx master says,
/// corners relative to the beam.
pub fn crystfel_geometry(
    geometry: &DetectorGeometry,
    image: &super::PanelImage,
    origins: &[(usize, usize)],
    beam: &CrystfelBeam,
) -> String {
    use std::fmt::Write;
    let m = geometry.model;
    let mut g = String::new();
    let _ = writeln!(g, "; CrystFEL geometry written by hitgate for {} × {}", geometry.modules, m.name);
    let _ = writeln!(g, "; for its NeXus files in photons (pixels = \"photons_u32\" or \"photons_f32\")");
    if image.is_split() {
        let (rows, cols) = image.shape();
        let _ =
            writeln!(g, "; one panel a module, assembled as PSI's tools show it: {rows} × {cols}, border pixels split");
    } else {
        let _ = writeln!(g, "; one panel a chip of 256 × 256 pixels placed with the 2-pixel gaps of the double-size");
        let _ = writeln!(g, "; border pixels (the detector's image kept raw)");
    }
    let _ = writeln!(g, "adu_per_photon = 1");
    let _ = writeln!(g, "photon_energy = {:.1}", beam.photon_energy_kev * 1000.0);
    let _ = writeln!(g, "clen = {:.6}", beam.distance_mm / 1000.0);
    let _ = writeln!(g, "res = {:.4}", 1e6 / f64::from(m.pixel_size_um));
    let _ = writeln!(g, "data = /entry/data/data");
    let _ = writeln!(g, "dim0 = %\ndim1 = ss\ndim2 = fs");
    if let Some(flagged) = beam.flagged_value {
        let _ = writeln!(g, "flag_morethan = {}", u64::from(flagged) - 1);
    }
    let (bc_row, bc_col) = beam.beam_center_px;
    let panels = if image.is_split() {
        let (rows, cols) = image.shape();
        let modules = origins.iter().enumerate().map(|(m, &(image_row, image_col))| PlacedPanel {
            module: m,
            name_index: m,
            data_row: m * rows,
            data_col: 0,
            rows,
            cols,
            image_row,
            image_col,
        });
        modules.collect()
    } else {
        placed_panels(geometry, origins)
    };
    for p in panels {
        let name = format!("m{}p{}", p.module, p.name_index);
        let _ = writeln!(g, "\n{name}/min_fs = {}", p.data_col);
        let _ = writeln!(g, "{name}/max_fs = {}", p.data_col + p.cols - 1);
        let _ = writeln!(g, "{name}/min_ss = {}", p.data_row);
        let _ = writeln!(g, "{name}/max_ss = {}", p.data_row + p.rows - 1);
        let _ = writeln!(g, "{name}/fs = -1.000000x +0.000000y");
        let _ = writeln!(g, "{name}/ss = +0.000000x -1.000000y");
        let _ = writeln!(g, "{name}/corner_x = {:.3}", bc_col - p.image_col as f64);
        let _ = writeln!(g, "{name}/corner_y = {:.3}", bc_row - p.image_row as f64);
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_is_eight_chips_in_514_by_1030() {
        let g = DetectorGeometry::with_consecutive_ports("jungfrau-1if", 1, 50001).unwrap();
        let chips = placed_panels(&g, &[(0, 0)]);
        assert_eq!(chips.len(), 8);
        let last = chips[7];
        assert_eq!((last.data_row, last.data_col), (256, 768));
        assert_eq!((last.image_row, last.image_col), (258, 774));
        assert_eq!((last.image_row + 256, last.image_col + 256), (514, 1030));
        // Two interfaces: the same chips, each port's data where it is stored.
        let two = DetectorGeometry::with_consecutive_ports("jungfrau-2if", 1, 50001).unwrap();
        let (_, rows, _) = two.panels();
        let origins: Vec<(usize, usize)> = (0..2).map(|p| (p * rows, 0)).collect();
        let placed: Vec<_> = placed_panels(&two, &origins).iter().map(|c| (c.image_row, c.image_col)).collect();
        let one: Vec<_> = chips.iter().map(|c| (c.image_row, c.image_col)).collect();
        assert_eq!(placed, one);
    }

    #[test]
    fn the_crystfel_file_puts_the_beam_where_the_config_does() {
        let g = DetectorGeometry::with_consecutive_ports("jungfrau-1if", 2, 50001).unwrap();
        let beam = CrystfelBeam {
            beam_center_px: (-15.0, 79.0),
            distance_mm: 120.0,
            photon_energy_kev: 12.4,
            flagged_value: Some(u32::MAX),
        };
        let raw = super::super::PanelImage::new(512, 1024, false);
        let text = crystfel_geometry(&g, &raw, &[(0, 0), (550, 0)], &beam);
        for line in [
            "clen = 0.120000",
            "photon_energy = 12400.0",
            "res = 13333.3333",
            "flag_morethan = 4294967294",
            "m0p0/corner_x = 79.000",
            "m0p0/corner_y = -15.000",
            "m0p7/corner_x = -695.000",
            "m1p8/min_ss = 512",
            "m1p8/corner_y = -565.000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert_eq!(text.matches("/min_fs").count(), 16);
        // The assembled image (the default): one panel a module, 514 × 1030.
        let assembled = super::super::PanelImage::new(512, 1024, true);
        let text = crystfel_geometry(&g, &assembled, &[(0, 0), (550, 0)], &beam);
        for line in ["m1p1/min_ss = 514", "m1p1/max_ss = 1027", "m1p1/max_fs = 1029", "m1p1/corner_y = -565.000"] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert_eq!(text.matches("/min_fs").count(), 2);
    }
}
