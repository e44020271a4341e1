//! The 11 × 11 photon patch around a spot, the learned localiser's input. A patch is centred on the
//! pixel nearest the spot's centre of mass; its photons are converted again from the raw panel (the spot
//! finders consume their photon image), row segment by row segment with the calibration's own routine,
//! so a patch holds exactly the photons the finder saw: in the panel's image (a JUNGFRAU module
//! assembled, a chip-border pixel's photons split between its halves). Pixels beyond the panel's edge
//! read 0.

use super::Spot;
use crate::detector::PanelImage;

/// Side of a patch, pixels.
pub const PATCH_SIDE: usize = 11;
/// Pixels of a patch.
pub const PATCH_PIXELS: usize = PATCH_SIDE * PATCH_SIDE;
const HALF: i64 = (PATCH_SIDE / 2) as i64;

/// The panel image pixel (row, column) a spot's patch is centred on.
pub fn patch_centre(spot: &Spot) -> (i64, i64) {
    (spot.row.round() as i64, spot.col.round() as i64)
}

/// Fills `out` (at least [`PATCH_PIXELS`] values, row-major) with the photons of the patch centred on
/// `centre` in the image (`image`) of a panel of raw pixels `raw_panel`. `convert(raw, first_pixel,
/// out)` turns a run of raw pixels starting at panel pixel `first_pixel` into photons, as the reducer's
/// calibration does.
pub fn extract_patch(
    raw_panel: &[u16],
    image: &PanelImage,
    centre: (i64, i64),
    convert: &mut impl FnMut(&[u16], usize, &mut [f32]),
    out: &mut [f32],
) {
    let out = &mut out[..PATCH_PIXELS];
    out.fill(0.0);
    let (rows, cols) = image.shape();
    let raw_cols = image.raw_shape().1;
    let (rows, cols) = (rows as i64, cols as i64);
    let first_col = (centre.1 - HALF).max(0);
    let last_col = (centre.1 + HALF).min(cols - 1);
    if first_col > last_col {
        return;
    }
    let (Some((raw_first, _)), Some((raw_last, _))) =
        (image.col_source(first_col as usize), image.col_source(last_col as usize))
    else {
        return;
    };
    let mut photons = [0f32; PATCH_SIDE];
    let len = raw_last - raw_first + 1;
    for (k, row) in (centre.0 - HALF..=centre.0 + HALF).enumerate() {
        if row < 0 || row >= rows {
            continue;
        }
        let Some((raw_row, row_share)) = image.row_source(row as usize) else { continue };
        let first_pixel = raw_row * raw_cols + raw_first;
        let Some(raw) = raw_panel.get(first_pixel..first_pixel + len) else { continue };
        convert(raw, first_pixel, &mut photons[..len]);
        let at = k * PATCH_SIDE + (first_col - (centre.1 - HALF)) as usize;
        for (o, col) in out[at..].iter_mut().zip(first_col as usize..=last_col as usize) {
            if let Some((c, col_share)) = image.col_source(col) {
                *o = photons[c - raw_first] * row_share * col_share;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_photons(raw: &[u16], _first: usize, out: &mut [f32]) {
        for (o, &r) in out.iter_mut().zip(raw) {
            *o = f32::from(r);
        }
    }

    #[test]
    fn patch_inside_the_panel_copies_its_pixels() {
        let (rows, cols) = (20usize, 30usize);
        let raw: Vec<u16> = (0..rows * cols).map(|i| i as u16).collect();
        let mut out = [0f32; PATCH_PIXELS];
        extract_patch(&raw, &PanelImage::new(rows, cols, false), (10, 12), &mut as_photons, &mut out);
        assert_eq!(out[0], (5 * cols + 7) as f32);
        assert_eq!(out[PATCH_SIDE * 5 + 5], (10 * cols + 12) as f32);
        assert_eq!(out[PATCH_PIXELS - 1], (15 * cols + 17) as f32);
    }

    #[test]
    fn pixels_beyond_the_edge_read_zero() {
        let (rows, cols) = (8usize, 8usize);
        let raw = vec![1u16; rows * cols];
        let mut out = [9f32; PATCH_PIXELS];
        let image = PanelImage::new(rows, cols, false);
        extract_patch(&raw, &image, (0, 7), &mut as_photons, &mut out);
        // Rows 0..=5 and columns 2..=7 of the panel land in the patch.
        let ones = out.iter().filter(|&&v| v == 1.0).count();
        assert_eq!(ones, 6 * 6);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[5 * PATCH_SIDE], 1.0);
        // A centre far outside leaves an empty patch, without panicking.
        extract_patch(&raw, &image, (-40, 500), &mut as_photons, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn the_converter_sees_panel_pixel_indices() {
        let (rows, cols) = (16usize, 16usize);
        let raw = vec![0u16; rows * cols];
        let mut firsts = Vec::new();
        let mut out = [0f32; PATCH_PIXELS];
        let image = PanelImage::new(rows, cols, false);
        extract_patch(&raw, &image, (3, 4), &mut |_: &[u16], first, _: &mut [f32]| firsts.push(first), &mut out);
        assert_eq!(firsts, (0..=8).map(|r| r * cols).collect::<Vec<_>>());
    }

    #[test]
    fn a_patch_of_an_assembled_module_holds_what_the_finder_saw() {
        let image = PanelImage::new(512, 1024, true);
        let raw: Vec<u16> = (0..512 * 1024).map(|i| (i % 1000) as u16).collect();
        let mut photons = vec![0f32; 512 * 1024];
        as_photons(&raw, 0, &mut photons);
        let mut assembled = vec![0f32; image.pixels()];
        image.assemble(&photons, &mut assembled);
        // Centred across the chip corner, so split rows, split columns and a quartered corner are in it.
        let centre = (256i64, 257i64);
        let mut out = [0f32; PATCH_PIXELS];
        extract_patch(&raw, &image, centre, &mut as_photons, &mut out);
        for (k, v) in out.iter().enumerate() {
            let (r, c) = (centre.0 - 5 + (k / PATCH_SIDE) as i64, centre.1 - 5 + (k % PATCH_SIDE) as i64);
            assert_eq!(*v, assembled[r as usize * 1030 + c as usize], "patch pixel {k}");
        }
    }
}
