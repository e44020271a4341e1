//! Modules into one detector image: each panel of the frame copied to its place in the assembled
//! image (module layout and gaps from the config), gaps filled with a value that says "no pixel".

use crate::detector::{DetectorGeometry, ImageLayout};

/// Copies panel-major `pixels` (as the frame stores them, one value per pixel) into `image`, of
/// `layout.image_rows() × layout.image_cols()`, writing `gap` where no pixel is.
pub fn assemble_image<T: Copy>(
    pixels: &[T],
    geometry: &DetectorGeometry,
    layout: &ImageLayout,
    gap: T,
    image: &mut [T],
) {
    let (panels, rows, cols) = geometry.panels();
    let image_cols = layout.image_cols();
    image.fill(gap);
    for panel in 0..panels {
        let (r0, c0) = geometry.panel_origin(panel, layout);
        for r in 0..rows {
            let from = (panel * rows + r) * cols;
            let to = (r0 + r) * image_cols + c0;
            if let (Some(src), Some(dst)) = (pixels.get(from..from + cols), image.get_mut(to..to + cols)) {
                dst.copy_from_slice(src);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2x1_jungfrau_and_an_eiger_half_module_land_where_they_belong() {
        let g = DetectorGeometry::with_consecutive_ports("jungfrau-1if", 2, 50001).unwrap();
        let layout = ImageLayout {
            modules: 2,
            module_rows: 512,
            module_cols: 1024,
            modules_per_row: 1,
            gap_rows_px: 36,
            gap_cols_px: 0,
        };
        let pixels: Vec<u32> = (0..2 * 512 * 1024).collect();
        let mut image = vec![0u32; layout.image_rows() * layout.image_cols()];
        assemble_image(&pixels, &g, &layout, u32::MAX, &mut image);
        assert_eq!(image[0], 0);
        assert_eq!(image[511 * 1024 + 1023], 512 * 1024 - 1);
        assert!(image[512 * 1024..548 * 1024].iter().all(|&v| v == u32::MAX), "the gap");
        assert_eq!(image[548 * 1024], 512 * 1024, "module 1 starts below the gap");
        // EIGER: the two ports of a half-module sit side by side.
        let e = DetectorGeometry::new("eiger-10g-16bit", 1, vec![1, 2]).unwrap();
        let el = ImageLayout {
            modules: 1,
            module_rows: 256,
            module_cols: 1024,
            modules_per_row: 1,
            gap_rows_px: 0,
            gap_cols_px: 0,
        };
        let pixels: Vec<u32> = (0..256 * 1024).collect();
        let mut image = vec![0u32; 256 * 1024];
        assemble_image(&pixels, &e, &el, u32::MAX, &mut image);
        assert_eq!(image[512], 256 * 512, "port 1's first pixel is at column 512 of row 0");
        assert_eq!(image[1024], 512, "row 1 of port 0");
    }
}
