//! `[cluster]`: several nodes share one detector. The detector is described once; each node owns
//! some of its modules, assembles and reduces them, and sends a contribution per frame to a trigger
//! event builder over NATS JetStream; the builder's verdict tells every node to store or drop its
//! part of the frame.

use serde::{Deserialize, Serialize};

use crate::section::{Problems, key};

/// The scale-out of one run over several nodes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// NATS servers, any of one cluster (`nats://127.0.0.1:4222`); empty: no scale-out.
    pub nats: Vec<String>,
    /// The run's name: its JetStream streams are `HITGATE_<run>_…`, its subjects `hitgate.<run>.…`.
    pub run: String,
    /// This node, one of `nodes` (or `--node` on the command line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Every node and the modules it owns; together they own every module once.
    pub nodes: Vec<ClusterMember>,
    /// How the builder combines a frame's contributions into one verdict.
    pub rule: VerdictRule,
    /// `sum_spots`: a frame is kept when the nodes together found this many spots.
    pub min_spots: u32,
    /// `max_score`: a frame is kept when a node's score reaches this.
    pub threshold: f32,
    /// A node holds a frame this long for its verdict; then it keeps the frame, flagged, and counts it.
    pub verdict_timeout_ms: u64,
    /// The builder waits this long for a frame's missing contributions, then decides on those it
    /// has; a node missing from a frame it decided so is taken as down until it is heard again.
    pub builder_wait_ms: u64,
    /// Copies JetStream keeps of the run's streams: 1, or 3 on a three-server cluster.
    pub replicas: usize,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            nats: Vec::new(),
            run: "run".into(),
            node: None,
            nodes: Vec::new(),
            rule: VerdictRule::SumSpots,
            min_spots: 8,
            threshold: 0.5,
            verdict_timeout_ms: 5_000,
            builder_wait_ms: 1_000,
            replicas: 1,
        }
    }
}

/// One member of the cluster: a node by name, and the modules it owns.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterMember {
    pub name: String,
    /// Indices of the detector's modules this node receives (0-based, as `detector.udp_ports` orders them).
    pub modules: Vec<usize>,
}

/// How contributions become a verdict.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerdictRule {
    /// Spots found on every node's modules, summed, against `min_spots`: the whole detector's
    /// spot count, as one node with every module would count it.
    #[default]
    SumSpots,
    /// Kept when any node's own trigger accepted its part.
    Any,
    /// Kept when the highest node score reaches `threshold`.
    MaxScore,
}

impl ClusterSection {
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }

    /// The modules `node` owns.
    pub fn modules_of(&self, node: &str) -> Option<&[usize]> {
        self.nodes.iter().find(|n| n.name == node).map(|n| n.modules.as_slice())
    }

    /// Every problem of the section for a detector of `modules` modules, with its key path under
    /// `path`.
    pub fn validate(&self, path: &str, modules: usize, problems: &mut Problems) {
        if !self.enabled() {
            return;
        }
        let k = |name: &str| key(path, name);
        let mut bad = |key: String, reason: String| problems.bad(key, reason);
        for (i, url) in self.nats.iter().enumerate() {
            if !url.starts_with("nats://") && !url.starts_with("tls://") {
                bad(format!("{path}.nats[{i}]"), format!("{url:?}: nats://HOST:PORT"));
            }
        }
        if self.run.is_empty() || !self.run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bad(k("run"), format!("{:?}: letters, digits, '-' and '_' only (it names streams)", self.run));
        }
        if self.nodes.is_empty() {
            bad(k("nodes"), "no node: list every node and the modules it owns".into());
        }
        let mut owner: Vec<Option<&str>> = vec![None; modules];
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.is_empty() || !node.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                bad(format!("{path}.nodes[{i}].name"), format!("{:?}: letters, digits, '-' and '_' only", node.name));
            }
            if self.nodes[..i].iter().any(|n| n.name == node.name) {
                bad(format!("{path}.nodes[{i}].name"), format!("{:?} is named twice", node.name));
            }
            if node.modules.is_empty() {
                bad(format!("{path}.nodes[{i}].modules"), "owns no module".into());
            }
            for (j, &m) in node.modules.iter().enumerate() {
                let key = format!("{path}.nodes[{i}].modules[{j}]");
                match owner.get_mut(m) {
                    None => bad(key.clone(), format!("module {m} is not in a {modules}-module detector")),
                    Some(Some(other)) => bad(key.clone(), format!("module {m} is already owned by node {other:?}")),
                    Some(slot) => *slot = Some(&node.name),
                }
            }
        }
        let unowned: Vec<String> =
            owner.iter().enumerate().filter(|(_, o)| o.is_none()).map(|(m, _)| m.to_string()).collect();
        if !self.nodes.is_empty() && !unowned.is_empty() {
            bad(k("nodes"), format!("modules {} belong to no node", unowned.join(", ")));
        }
        if let Some(node) = &self.node
            && self.modules_of(node).is_none()
        {
            bad(k("node"), format!("{node:?} is not one of cluster.nodes"));
        }
        if !(1..=600_000).contains(&self.verdict_timeout_ms) {
            bad(k("verdict_timeout_ms"), format!("{} is outside 1..=600000", self.verdict_timeout_ms));
        }
        if !(1..=600_000).contains(&self.builder_wait_ms) {
            bad(k("builder_wait_ms"), format!("{} is outside 1..=600000", self.builder_wait_ms));
        }
        if !(1..=5).contains(&self.replicas) {
            bad(k("replicas"), format!("{} is outside 1..=5", self.replicas));
        }
        if !self.threshold.is_finite() {
            bad(k("threshold"), format!("{} is not a number", self.threshold));
        }
    }
}
