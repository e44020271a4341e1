//! Detector geometry as data. [`MODELS`] is the table of module kinds the family sends (after
//! slsDetectorPackage's per-detector `GeneralData`); a [`DetectorGeometry`] is a model times a number of
//! modules plus the UDP port each module port sends to.
//!
//! Frame memory layout, fixed here for every later stage: a frame is the images of every port of every
//! module, module-major then port, each port image being its packets' payloads in packet-number order —
//! byte for byte what slsReceiver writes per port. For JUNGFRAU a module's ports stack rows, so a module
//! image is contiguous; EIGER's two ports of a half-module sit side by side and are stored one after the
//! other (see [`PortArrangement`]). An EIGER bottom half-module is mounted upside down and sends its rows
//! in that order; like slsReceiver, frame memory keeps them as sent, and turning them over belongs to
//! assembling the detector image, not to receiving.

use super::header::DetectorType;

/// How a module's ports tile the module image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortArrangement {
    /// Port `p` holds rows `p·port_rows ..`, full module width (JUNGFRAU with two interfaces).
    StackedRows,
    /// Port `p` holds columns `p·port_cols ..`, full module height (EIGER left / right).
    SideBySide,
}

/// One module kind of the family: what its packets look like and how many make a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorModel {
    /// Name used in configs, e.g. `jungfrau-2if`.
    pub name: &'static str,
    pub det_type: DetectorType,
    /// UDP ports (interfaces) one module sends on.
    pub ports_per_module: usize,
    /// Pixels of one port's image.
    pub port_rows: usize,
    pub port_cols: usize,
    pub bits_per_pixel: usize,
    /// Data bytes after the header in every packet.
    pub payload_bytes: usize,
    pub arrangement: PortArrangement,
    pub pixel_size_um: f32,
    /// What the table entry means for a person choosing it.
    pub summary: &'static str,
}

const fn jungfrau(name: &'static str, ports: usize, summary: &'static str) -> DetectorModel {
    DetectorModel {
        name,
        det_type: DetectorType::Jungfrau,
        ports_per_module: ports,
        port_rows: 512 / ports,
        port_cols: 1024,
        bits_per_pixel: 16,
        payload_bytes: 8192,
        arrangement: PortArrangement::StackedRows,
        pixel_size_um: 75.0,
        summary,
    }
}

const fn eiger(name: &'static str, ten_giga: bool, bits: usize, summary: &'static str) -> DetectorModel {
    DetectorModel {
        name,
        det_type: DetectorType::Eiger,
        ports_per_module: 2,
        port_rows: 256,
        port_cols: 512,
        bits_per_pixel: bits,
        payload_bytes: if ten_giga { 4096 } else { 1024 },
        arrangement: PortArrangement::SideBySide,
        pixel_size_um: 75.0,
        summary,
    }
}

/// Every module kind hitgate can assemble. EIGER entries describe one half-module (one beb, two ports),
/// which is what the vendor software counts as a module.
pub const MODELS: &[DetectorModel] = &[
    jungfrau("jungfrau-1if", 1, "JUNGFRAU module, one 10 GbE interface, 128 packets/frame"),
    jungfrau("jungfrau-2if", 2, "JUNGFRAU module, two 10 GbE interfaces, 64 packets/frame/port"),
    eiger("eiger-10g-4bit", true, 4, "EIGER half-module, 10 GbE, 4-bit"),
    eiger("eiger-10g-8bit", true, 8, "EIGER half-module, 10 GbE, 8-bit"),
    eiger("eiger-10g-12bit", true, 12, "EIGER half-module, 10 GbE, 12-bit"),
    eiger("eiger-10g-16bit", true, 16, "EIGER half-module, 10 GbE, 16-bit"),
    eiger("eiger-10g-32bit", true, 32, "EIGER half-module, 10 GbE, 32-bit"),
    eiger("eiger-1g-4bit", false, 4, "EIGER half-module, 1 GbE, 4-bit"),
    eiger("eiger-1g-8bit", false, 8, "EIGER half-module, 1 GbE, 8-bit"),
    eiger("eiger-1g-12bit", false, 12, "EIGER half-module, 1 GbE, 12-bit"),
    eiger("eiger-1g-16bit", false, 16, "EIGER half-module, 1 GbE, 16-bit"),
    eiger("eiger-1g-32bit", false, 32, "EIGER half-module, 1 GbE, 32-bit"),
];

impl DetectorModel {
    /// Looks a model up by its config name.
    pub fn by_name(name: &str) -> Option<&'static DetectorModel> {
        MODELS.iter().find(|m| m.name == name)
    }

    /// Bytes of one port's image.
    pub const fn port_image_bytes(&self) -> usize {
        self.port_rows * self.port_cols * self.bits_per_pixel / 8
    }

    /// Packets one port sends per frame.
    pub const fn packets_per_port(&self) -> usize {
        self.port_image_bytes() / self.payload_bytes
    }

    /// Size of a whole UDP payload: header plus data.
    pub const fn packet_bytes(&self) -> usize {
        super::header::HEADER_BYTES + self.payload_bytes
    }

    pub const fn module_rows(&self) -> usize {
        match self.arrangement {
            PortArrangement::StackedRows => self.port_rows * self.ports_per_module,
            PortArrangement::SideBySide => self.port_rows,
        }
    }

    pub const fn module_cols(&self) -> usize {
        match self.arrangement {
            PortArrangement::StackedRows => self.port_cols,
            PortArrangement::SideBySide => self.port_cols * self.ports_per_module,
        }
    }
}

/// Errors in putting a geometry together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GeometryError {
    #[error("unknown detector model {0:?}; known models: {known}", known = model_names())]
    UnknownModel(String),
    #[error("a detector needs at least one module")]
    NoModules,
    #[error("{modules} modules × {ports} ports need {need} UDP ports, {given} given")]
    PortCount { modules: usize, ports: usize, need: usize, given: usize },
    #[error("UDP port {0} is claimed twice")]
    DuplicatePort(u16),
    #[error("{packets} packets per frame exceed the 1 << 20 packet mask limit")]
    TooManyPackets { packets: usize },
}

fn model_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// Where one UDP port's packets land: which module and which of its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSlot {
    pub module: usize,
    pub port_in_module: usize,
    /// Index of this port over the whole detector (module-major).
    pub port_index: usize,
}

/// A whole detector: a model, its modules, and the UDP port of every module port.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorGeometry {
    pub model: &'static DetectorModel,
    pub modules: usize,
    /// Destination UDP port of each module port, module-major.
    pub udp_ports: Vec<u16>,
}

impl DetectorGeometry {
    /// Builds a geometry from a model name, a module count and the UDP port of every module port.
    ///
    /// # Errors
    /// An unknown model, zero modules, a port count that does not match, or a port claimed twice.
    pub fn new(model: &str, modules: usize, udp_ports: Vec<u16>) -> Result<Self, GeometryError> {
        let model = DetectorModel::by_name(model).ok_or_else(|| GeometryError::UnknownModel(model.into()))?;
        if modules == 0 {
            return Err(GeometryError::NoModules);
        }
        let need = modules * model.ports_per_module;
        if udp_ports.len() != need {
            return Err(GeometryError::PortCount {
                modules,
                ports: model.ports_per_module,
                need,
                given: udp_ports.len(),
            });
        }
        for (i, p) in udp_ports.iter().enumerate() {
            if udp_ports[..i].contains(p) {
                return Err(GeometryError::DuplicatePort(*p));
            }
        }
        let geometry = DetectorGeometry { model, modules, udp_ports };
        if geometry.packets_per_frame() > 1 << 20 {
            return Err(GeometryError::TooManyPackets { packets: geometry.packets_per_frame() });
        }
        Ok(geometry)
    }

    /// Consecutive UDP ports starting at `first`, as detector setups usually configure them.
    ///
    /// # Errors
    /// As [`DetectorGeometry::new`], and when the ports would run past 65535.
    pub fn with_consecutive_ports(model: &str, modules: usize, first: u16) -> Result<Self, GeometryError> {
        let per =
            DetectorModel::by_name(model).ok_or_else(|| GeometryError::UnknownModel(model.into()))?.ports_per_module;
        let need = modules * per;
        let ports: Vec<u16> = (0..need).map_while(|i| first.checked_add(i as u16)).collect();
        if ports.len() != need || need > u16::MAX as usize {
            return Err(GeometryError::PortCount { modules, ports: per, need, given: ports.len() });
        }
        Self::new(model, modules, ports)
    }

    pub fn ports(&self) -> usize {
        self.udp_ports.len()
    }

    pub fn packets_per_frame(&self) -> usize {
        self.ports() * self.model.packets_per_port()
    }

    /// Bytes of one whole frame (every port of every module).
    pub fn frame_bytes(&self) -> usize {
        self.ports() * self.model.port_image_bytes()
    }

    /// Which module port a UDP destination port belongs to, if any.
    pub fn slot_of_udp_port(&self, udp_port: u16) -> Option<PortSlot> {
        let port_index = self.udp_ports.iter().position(|&p| p == udp_port)?;
        Some(PortSlot {
            module: port_index / self.model.ports_per_module,
            port_in_module: port_index % self.model.ports_per_module,
            port_index,
        })
    }

    /// Byte range in the frame buffer of packet `packet_number` of port `port_index`.
    pub fn packet_range(&self, port_index: usize, packet_number: usize) -> std::ops::Range<usize> {
        let start = (port_index * self.model.packets_per_port() + packet_number) * self.model.payload_bytes;
        start..start + self.model.payload_bytes
    }

    /// Index of a packet in the frame's packet mask.
    pub fn packet_index(&self, port_index: usize, packet_number: usize) -> usize {
        port_index * self.model.packets_per_port() + packet_number
    }

    /// The frame as equal panels laid one after the other: `(panels, rows, cols)`. A panel is a module
    /// where ports stack rows, a port where they sit side by side; spots never cross a panel edge.
    pub fn panels(&self) -> (usize, usize, usize) {
        let m = self.model;
        match m.arrangement {
            PortArrangement::StackedRows => (self.modules, m.module_rows(), m.module_cols()),
            PortArrangement::SideBySide => (self.ports(), m.port_rows, m.port_cols),
        }
    }

    /// Image row and column of panel `panel`'s first pixel, modules placed by `layout`.
    pub fn panel_origin(&self, panel: usize, layout: &super::ImageLayout) -> (usize, usize) {
        let m = self.model;
        match m.arrangement {
            PortArrangement::StackedRows => layout.module_origin(panel),
            PortArrangement::SideBySide => {
                let (module, port) = (panel / m.ports_per_module, panel % m.ports_per_module);
                let (row, col) = layout.module_origin(module);
                (row, col + port * m.port_cols)
            }
        }
    }

    /// The pixels each packet carries, by the packet's index in the frame's packet mask; empty for
    /// a model whose pixels are not 16-bit words (packed, or wider).
    pub fn packet_pixels(&self) -> Vec<std::ops::Range<usize>> {
        if self.model.bits_per_pixel != 16 {
            return Vec::new();
        }
        let mut pixels = vec![0..0; self.packets_per_frame()];
        for port in 0..self.ports() {
            for n in 0..self.model.packets_per_port() {
                let bytes = self.packet_range(port, n);
                pixels[self.packet_index(port, n)] = bytes.start / 2..bytes.end / 2;
            }
        }
        pixels
    }

    /// Byte range of one port's image in the frame buffer.
    pub fn port_range(&self, port_index: usize) -> std::ops::Range<usize> {
        let n = self.model.port_image_bytes();
        port_index * n..(port_index + 1) * n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_divides_its_image_into_whole_packets() {
        for m in MODELS {
            assert_eq!(m.port_image_bytes() % m.payload_bytes, 0, "{}", m.name);
            assert!(m.packets_per_port() <= 512, "{}: mask of 64 bytes per port", m.name);
        }
    }

    #[test]
    fn table_matches_the_vendor_packet_counts() {
        let jf1 = DetectorModel::by_name("jungfrau-1if").unwrap();
        assert_eq!((jf1.packets_per_port(), jf1.packet_bytes()), (128, 8240));
        let jf2 = DetectorModel::by_name("jungfrau-2if").unwrap();
        assert_eq!((jf2.packets_per_port(), jf2.module_rows(), jf2.module_cols()), (64, 512, 1024));
        for bits in [4, 8, 12, 16, 32] {
            let ten = DetectorModel::by_name(&format!("eiger-10g-{bits}bit")).unwrap();
            assert_eq!(ten.packets_per_port(), 4 * bits);
            let one = DetectorModel::by_name(&format!("eiger-1g-{bits}bit")).unwrap();
            assert_eq!(one.packets_per_port(), 16 * bits);
        }
        let e16 = DetectorModel::by_name("eiger-10g-16bit").unwrap();
        assert_eq!((e16.packet_bytes(), e16.module_rows(), e16.module_cols()), (4144, 256, 1024));
    }

    #[test]
    fn a_4m_is_eight_modules_of_the_same_table_entry() {
        let g = DetectorGeometry::with_consecutive_ports("jungfrau-1if", 8, 50001).unwrap();
        assert_eq!(g.packets_per_frame(), 1024);
        assert_eq!(g.frame_bytes(), 8 << 20);
        let s = g.slot_of_udp_port(50008).unwrap();
        assert_eq!((s.module, s.port_in_module, s.port_index), (7, 0, 7));
        assert_eq!(g.packet_range(7, 127).end, g.frame_bytes());
        assert!(g.slot_of_udp_port(50009).is_none());
    }

    #[test]
    fn bad_geometries_say_why() {
        assert!(matches!(DetectorGeometry::new("jungfrau-9if", 1, vec![1]), Err(GeometryError::UnknownModel(_))));
        assert_eq!(
            DetectorGeometry::new("jungfrau-2if", 1, vec![1]),
            Err(GeometryError::PortCount { modules: 1, ports: 2, need: 2, given: 1 })
        );
        assert_eq!(DetectorGeometry::new("jungfrau-2if", 1, vec![7, 7]), Err(GeometryError::DuplicatePort(7)));
        assert!(DetectorGeometry::with_consecutive_ports("jungfrau-1if", 2, 65535).is_err());
        assert_eq!(DetectorGeometry::new("eiger-10g-16bit", 0, vec![]), Err(GeometryError::NoModules));
    }
}
