//! Where each module sits in the assembled detector image: modules in rows of `modules_per_row`, with
//! blank gaps between them. Frame memory stays module by module (see `geometry`); this only maps.

/// Placement of modules in the assembled image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    pub modules: usize,
    pub module_rows: usize,
    pub module_cols: usize,
    pub modules_per_row: usize,
    pub gap_rows_px: usize,
    pub gap_cols_px: usize,
}

impl ImageLayout {
    pub fn image_rows(&self) -> usize {
        let bands = self.modules.div_ceil(self.modules_per_row.max(1));
        bands * self.module_rows + bands.saturating_sub(1) * self.gap_rows_px
    }

    pub fn image_cols(&self) -> usize {
        let across = self.modules_per_row.min(self.modules).max(1);
        across * self.module_cols + (across - 1) * self.gap_cols_px
    }

    /// Image row and column of module `m`'s first pixel.
    pub fn module_origin(&self, m: usize) -> (usize, usize) {
        let per = self.modules_per_row.max(1);
        ((m / per) * (self.module_rows + self.gap_rows_px), (m % per) * (self.module_cols + self.gap_cols_px))
    }

    /// The module and pixel index inside it (row-major) of an image position, or `None` in a gap.
    pub fn locate(&self, row: usize, col: usize) -> Option<(usize, usize)> {
        let per = self.modules_per_row.max(1);
        let (band, r) = (row / (self.module_rows + self.gap_rows_px), row % (self.module_rows + self.gap_rows_px));
        let (across, c) = (col / (self.module_cols + self.gap_cols_px), col % (self.module_cols + self.gap_cols_px));
        let m = band * per + across;
        (r < self.module_rows && c < self.module_cols && across < per && m < self.modules)
            .then_some((m, r * self.module_cols + c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_4m_has_gaps_between_its_eight_modules() {
        let l = ImageLayout {
            modules: 8,
            module_rows: 512,
            module_cols: 1024,
            modules_per_row: 2,
            gap_rows_px: 36,
            gap_cols_px: 8,
        };
        assert_eq!((l.image_rows(), l.image_cols()), (4 * 512 + 3 * 36, 2048 + 8));
        assert_eq!(l.module_origin(3), (548, 1032));
        assert_eq!(l.locate(548, 1032), Some((3, 0)));
        assert_eq!(l.locate(548 + 511, 1032 + 1023), Some((3, 511 * 1024 + 1023)));
        assert_eq!(l.locate(520, 0), None, "vertical gap");
        assert_eq!(l.locate(0, 1030), None, "horizontal gap");
    }
}
