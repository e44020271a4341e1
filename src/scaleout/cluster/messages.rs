//! What nodes and builders say to each other, as JSON on JetStream subjects: a node's contribution
//! for each frame (a few hundred bytes), a node's end of run, and the builder's verdict.

use serde::{Deserialize, Serialize};

/// A node's part of a frame, as its own modules saw it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Contribution {
    pub node: String,
    pub frame_number: u64,
    pub spots_found: u32,
    pub score: f32,
    /// The node's own trigger kept its part.
    pub accepted: bool,
    pub packets_received: u32,
    pub packets_expected: u32,
}

/// What a node publishes on its contribution subject.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeMessage {
    Frame(Contribution),
    /// The node has sent every contribution of its run.
    End {
        node: String,
        frames: u64,
    },
}

/// The builder's decision on one frame, the same for every node.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Verdict {
    pub frame_number: u64,
    pub keep: bool,
    /// What the rule weighed: summed spots, or the highest score.
    pub score: f32,
    /// Contributions the decision was made on, and whether every node the builder waited for sent one.
    pub nodes: u32,
    pub complete: bool,
    /// The builder that decided (with several running, the first verdict stored wins).
    pub builder: String,
}

/// The run's JetStream names.
#[derive(Clone, Debug)]
pub struct Subjects {
    pub contributions_stream: String,
    pub verdicts_stream: String,
    run: String,
}

impl Subjects {
    pub fn new(run: &str) -> Subjects {
        let upper = run.to_ascii_uppercase().replace('-', "_");
        Subjects {
            contributions_stream: format!("HITGATE_{upper}_CONTRIB"),
            verdicts_stream: format!("HITGATE_{upper}_VERDICT"),
            run: run.to_string(),
        }
    }

    /// Where `node` publishes its contributions.
    pub fn contributions_of(&self, node: &str) -> String {
        format!("hitgate.{}.contrib.{node}", self.run)
    }

    /// Every node's contributions.
    pub fn all_contributions(&self) -> String {
        format!("hitgate.{}.contrib.*", self.run)
    }

    pub fn verdicts(&self) -> String {
        format!("hitgate.{}.verdict", self.run)
    }

    /// The message id JetStream deduplicates verdicts by: one stored verdict per frame, whichever
    /// builder sent it first.
    pub fn verdict_id(&self, frame_number: u64) -> String {
        format!("{}-verdict-{frame_number}", self.run)
    }
}
