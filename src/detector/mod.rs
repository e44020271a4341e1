//! Wire formats of the PSI detector family: the 48-byte `sls_detector_header` every UDP packet starts
//! with, and the geometry tables that say, per detector model, how many packets of which size make a
//! frame on each UDP port. A new detector of the family is a new table entry, not a new code path.
//! `[detector]` ([`DetectorSection`]) names the model, its ports and where its modules sit.

pub mod chips;
pub mod geometry;
pub mod header;
pub mod layout;
pub mod panel_image;
pub mod section;

pub use geometry::{DetectorGeometry, DetectorModel, GeometryError, MODELS, PortSlot};
pub use header::{DetectorType, HEADER_BYTES, HeaderError, SlsDetectorHeader};
pub use layout::ImageLayout;
pub use panel_image::PanelImage;
pub use section::{DetectorSection, GeometryUses, HC_KEV_ANGSTROM, ModuleImage, ModuleShare};
