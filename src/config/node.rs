//! A cluster node's view of the config: one file describes the whole detector and every node; a node
//! runs with the detector narrowed to the modules it owns.

use super::{Config, SinkSection};
use crate::detector::ModuleShare;

impl Config {
    /// The config `node` runs with: the detector narrowed to the modules it owns (their ports, in
    /// the order the cluster lists them, stacked one under the other; their share of the
    /// calibration and mask files), `{node}` in sink paths replaced by its name, `cluster.node`
    /// set, the rest as given. `None` when `node` is not one of `cluster.nodes`.
    pub fn for_node(&self, node: &str) -> Option<Config> {
        let owned = self.cluster.modules_of(node)?;
        let geometry = self.geometry().ok()?;
        let per_module = geometry.model.ports_per_module;
        let ports: Option<Vec<u16>> = owned
            .iter()
            .map(|&m| geometry.udp_ports.get(m * per_module..(m + 1) * per_module).map(<[u16]>::to_vec))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        let mut config = self.clone();
        let d = &mut config.detector;
        d.modules = owned.len();
        d.udp_ports = Some(ports?);
        d.first_udp_port = None;
        d.modules_per_row = 1;
        (d.module_gap_rows_px, d.module_gap_cols_px) = (0, 0);
        (d.beam_center_row_px, d.beam_center_col_px) = (None, None);
        // One config serves every node: `{node}` in a sink's path becomes the node's name.
        for path in config.sinks.iter_mut().filter_map(|s| s.config_mut().output_mut()) {
            *path = path.to_string_lossy().replace("{node}", node).into();
        }
        for sink in &mut config.sinks {
            if let SinkSection::Jetstream(f) = sink
                && f.source.is_empty()
            {
                f.source = node.to_string();
            }
        }
        // Its panels keep their places in the whole detector's image: spot positions, the radial
        // features and the NeXus geometry are the whole detector's.
        let whole_origins = self.panel_origins(&geometry);
        let panels_per_module = whole_origins.len() / self.detector.modules.max(1);
        let panel_origins = owned
            .iter()
            .flat_map(|&m| whole_origins.iter().skip(m * panels_per_module).take(panels_per_module).copied())
            .collect();
        config.calibration.share = Some(ModuleShare {
            modules: owned.to_vec(),
            of: self.detector.modules,
            panel_origins,
            beam_center_px: self.beam_center_px(),
        });
        config.cluster.node = Some(node.to_string());
        Some(config)
    }
}
