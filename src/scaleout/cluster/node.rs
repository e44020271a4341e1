//! A node's side of the cluster, on the ordering thread: each ordered frame's contribution goes out
//! and the frame waits in the gate; verdicts coming back free frames, in order, for the sinks.

use std::time::{Duration, Instant};

use super::gate::{GateStats, VerdictGate};
use super::link::{ClusterError, LinkStats, NodeLink};
use super::messages::{Contribution, NodeMessage};
use super::section::ClusterSection;
use crate::frame::FrameHandle;

/// A cluster node's part of the run.
#[derive(Clone, Debug, Default)]
pub struct NodeReport {
    pub node: String,
    pub gate: GateStats,
    pub link: LinkStats,
    /// From the contribution sent to the verdict applied, median and p99.
    pub verdict_p50_us: Option<u64>,
    pub verdict_p99_us: Option<u64>,
}

pub struct ClusterNode {
    node: String,
    link: NodeLink,
    gate: VerdictGate,
}

impl ClusterNode {
    /// Connects `node` to the cluster; its gate holds up to `pool_frames` frames.
    ///
    /// # Errors
    /// As [`NodeLink::start`].
    pub fn start(section: &ClusterSection, node: &str, pool_frames: usize) -> Result<ClusterNode, ClusterError> {
        Ok(ClusterNode {
            node: node.to_string(),
            link: NodeLink::start(section, node)?,
            gate: VerdictGate::new(Duration::from_millis(section.verdict_timeout_ms), pool_frames),
        })
    }

    /// Sends the frame's contribution and holds it for its verdict (a dark frame, this node's own
    /// business, goes on at once), handing on what the gate frees.
    pub fn judge(&mut self, frame: FrameHandle, mut deliver: impl FnMut(FrameHandle)) {
        if frame.features().dark {
            deliver(frame);
            return;
        }
        let (meta, f) = (frame.meta(), frame.features());
        self.link.send(NodeMessage::Frame(Contribution {
            // Named by the link's thread: no allocation here.
            node: String::new(),
            frame_number: meta.frame_number,
            spots_found: f.spots_found,
            score: f.score,
            accepted: f.accepted,
            packets_received: meta.packets_received,
            packets_expected: meta.packets_expected,
        }));
        self.gate.hold(frame, Instant::now());
        self.wait(Duration::ZERO, deliver);
    }

    /// Takes the verdicts that have come (waiting up to `wait` for the first) and hands on, in
    /// order, the frames they and the timeout free.
    pub fn wait(&mut self, wait: Duration, deliver: impl FnMut(FrameHandle)) {
        let verdicts = self.link.verdicts();
        if let Ok(v) = verdicts.recv_timeout(wait) {
            self.gate.verdict(v);
        }
        while let Ok(v) = verdicts.try_recv() {
            self.gate.verdict(v);
        }
        self.gate.release(Instant::now(), deliver);
    }

    /// Says every contribution of the node's `frames` is out, hands on every held frame (each
    /// within its timeout) and closes the link once everything sent is acknowledged.
    pub fn finish(mut self, frames: u64, mut deliver: impl FnMut(FrameHandle)) -> (NodeReport, Option<ClusterError>) {
        self.link.send(NodeMessage::End { node: String::new(), frames });
        while !self.gate.is_empty() {
            self.wait(Duration::from_millis(1), &mut deliver);
        }
        let mut report = NodeReport {
            node: self.node,
            gate: self.gate.stats().clone(),
            link: LinkStats::default(),
            verdict_p50_us: self.gate.wait_quantile_us(0.5),
            verdict_p99_us: self.gate.wait_quantile_us(0.99),
        };
        match self.link.finish() {
            Ok(stats) => {
                report.link = stats;
                (report, None)
            }
            Err(e) => (report, Some(e)),
        }
    }
}
