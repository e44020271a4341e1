//! The trigger event builder's bookkeeping, sans-IO: contributions come in, verdicts go out. A frame
//! is decided as soon as every node it waits for has contributed, or `wait` after its first
//! contribution on what has arrived. A node missing from a frame decided so is taken as down — later
//! frames no longer wait for it — until it is heard again; a node that said it ended is not waited
//! for either. Late contributions (for a frame already decided) are counted and change nothing.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::messages::{Contribution, NodeMessage, Verdict};
use super::rule::decide;
use super::section::ClusterSection;

/// Decided frames remembered, to recognise late contributions.
const REMEMBERED: usize = 1 << 20;

/// What the builder did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuilderStats {
    pub decided: u64,
    pub kept: u64,
    /// Frames decided without every node's contribution.
    pub incomplete: u64,
    /// Contributions that came after their frame was decided.
    pub late: u64,
    /// Contributions from a node the cluster does not list.
    pub unknown: u64,
    /// Times a node was taken as down.
    pub nodes_down: u64,
}

struct Pending {
    since: Instant,
    parts: Vec<Option<Contribution>>,
}

pub struct EventBuilder {
    name: String,
    section: ClusterSection,
    wait: Duration,
    pending: BTreeMap<u64, Pending>,
    decided: HashSet<u64>,
    decided_order: VecDeque<u64>,
    down: Vec<bool>,
    ended: Vec<bool>,
    stats: BuilderStats,
}

impl EventBuilder {
    pub fn new(name: &str, section: &ClusterSection) -> EventBuilder {
        let n = section.nodes.len();
        EventBuilder {
            name: name.to_string(),
            section: section.clone(),
            wait: Duration::from_millis(section.builder_wait_ms),
            pending: BTreeMap::new(),
            decided: HashSet::new(),
            decided_order: VecDeque::new(),
            down: vec![false; n],
            ended: vec![false; n],
            stats: BuilderStats::default(),
        }
    }

    pub fn stats(&self) -> &BuilderStats {
        &self.stats
    }

    /// Nodes taken as down now.
    pub fn down_nodes(&self) -> Vec<&str> {
        self.section.nodes.iter().zip(&self.down).filter(|(_, d)| **d).map(|(n, _)| n.name.as_str()).collect()
    }

    /// Every node ended (or is down) and every frame is decided.
    pub fn finished(&self) -> bool {
        self.pending.is_empty() && self.ended.iter().zip(&self.down).all(|(e, d)| *e || *d)
    }

    fn index_of(&self, node: &str) -> Option<usize> {
        self.section.nodes.iter().position(|n| n.name == node)
    }

    fn waits_for(&self, i: usize) -> bool {
        !self.down[i] && !self.ended[i]
    }

    /// Takes one message; returns the verdicts it made possible.
    pub fn add(&mut self, message: NodeMessage, now: Instant) -> Vec<Verdict> {
        match message {
            NodeMessage::Frame(c) => {
                let Some(i) = self.index_of(&c.node) else {
                    self.stats.unknown += 1;
                    return Vec::new();
                };
                self.down[i] = false;
                if self.decided.contains(&c.frame_number) {
                    self.stats.late += 1;
                    return Vec::new();
                }
                let n = self.section.nodes.len();
                let frame = c.frame_number;
                let entry = self.pending.entry(frame).or_insert_with(|| Pending { since: now, parts: vec![None; n] });
                entry.parts[i] = Some(c);
                if self.is_complete(frame) { vec![self.decide(frame)] } else { Vec::new() }
            }
            NodeMessage::End { node, .. } => match self.index_of(&node) {
                Some(i) => {
                    self.ended[i] = true;
                    self.decide_complete()
                }
                None => {
                    self.stats.unknown += 1;
                    Vec::new()
                }
            },
        }
    }

    /// Decides the frames that waited `wait` on what they have; nodes missing from them are taken
    /// as down.
    pub fn expire(&mut self, now: Instant) -> Vec<Verdict> {
        let due: Vec<u64> =
            self.pending.iter().filter(|(_, p)| now.duration_since(p.since) >= self.wait).map(|(f, _)| *f).collect();
        let mut verdicts = Vec::new();
        for frame in due {
            if let Some(p) = self.pending.get(&frame) {
                let missing: Vec<usize> = (0..p.parts.len()).filter(|&i| p.parts[i].is_none()).collect();
                for i in missing {
                    if self.waits_for(i) {
                        self.down[i] = true;
                        self.stats.nodes_down += 1;
                    }
                }
                verdicts.push(self.decide(frame));
            }
        }
        verdicts.extend(self.decide_complete());
        verdicts
    }

    /// Decides every frame still pending (the run is over).
    pub fn flush(&mut self) -> Vec<Verdict> {
        let frames: Vec<u64> = self.pending.keys().copied().collect();
        frames.into_iter().map(|f| self.decide(f)).collect()
    }

    fn is_complete(&self, frame: u64) -> bool {
        self.pending
            .get(&frame)
            .is_some_and(|p| p.parts.iter().enumerate().all(|(i, part)| part.is_some() || !self.waits_for(i)))
    }

    fn decide_complete(&mut self) -> Vec<Verdict> {
        let complete: Vec<u64> = self.pending.keys().copied().filter(|&f| self.is_complete(f)).collect();
        complete.into_iter().map(|f| self.decide(f)).collect()
    }

    fn decide(&mut self, frame: u64) -> Verdict {
        let parts = self.pending.remove(&frame).map(|p| p.parts).unwrap_or_default();
        let heard: Vec<&Contribution> = parts.iter().flatten().collect();
        let s = &self.section;
        let (keep, score) = decide(s.rule, s.min_spots, s.threshold, &heard);
        let complete = heard.len() == parts.len();
        self.stats.decided += 1;
        self.stats.kept += u64::from(keep);
        self.stats.incomplete += u64::from(!complete);
        self.decided.insert(frame);
        self.decided_order.push_back(frame);
        if self.decided_order.len() > REMEMBERED
            && let Some(old) = self.decided_order.pop_front()
        {
            self.decided.remove(&old);
        }
        Verdict { frame_number: frame, keep, score, nodes: heard.len() as u32, complete, builder: self.name.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaleout::cluster::section::{ClusterMember, VerdictRule};

    fn section() -> ClusterSection {
        ClusterSection {
            nats: vec!["nats://127.0.0.1:4222".into()],
            nodes: ["a", "b", "c"].iter().map(|n| ClusterMember { name: n.to_string(), modules: vec![] }).collect(),
            rule: VerdictRule::SumSpots,
            min_spots: 10,
            builder_wait_ms: 100,
            ..ClusterSection::default()
        }
    }

    fn frame(node: &str, frame_number: u64, spots: u32) -> NodeMessage {
        NodeMessage::Frame(Contribution {
            node: node.into(),
            frame_number,
            spots_found: spots,
            score: spots as f32,
            accepted: false,
            packets_received: 1,
            packets_expected: 1,
        })
    }

    #[test]
    fn a_frame_is_decided_once_every_node_has_contributed() {
        let mut b = EventBuilder::new("b1", &section());
        let t = Instant::now();
        assert!(b.add(frame("a", 1, 4), t).is_empty());
        assert!(b.add(frame("b", 1, 4), t).is_empty());
        let v = b.add(frame("c", 1, 2), t);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].keep, v[0].score, v[0].nodes, v[0].complete), (true, 10.0, 3, true));
        // A contribution after the verdict changes nothing.
        assert!(b.add(frame("a", 1, 100), t).is_empty());
        assert_eq!(b.stats().late, 1);
    }

    #[test]
    fn a_silent_node_is_waited_for_once_then_taken_as_down_until_heard_again() {
        let mut b = EventBuilder::new("b1", &section());
        let t = Instant::now();
        b.add(frame("a", 1, 20), t);
        b.add(frame("b", 1, 0), t);
        assert!(b.expire(t + Duration::from_millis(50)).is_empty());
        let v = b.expire(t + Duration::from_millis(100));
        assert_eq!((v.len(), v[0].keep, v[0].complete, v[0].nodes), (1, true, false, 2));
        assert_eq!(b.down_nodes(), ["c"]);
        // Frame 2 no longer waits for c.
        b.add(frame("a", 2, 1), t);
        let v = b.add(frame("b", 2, 1), t);
        assert_eq!((v.len(), v[0].keep), (1, false));
        // c is back: it is waited for again.
        b.add(frame("c", 3, 5), t);
        assert!(b.down_nodes().is_empty());
        b.add(frame("a", 3, 5), t);
        assert_eq!(b.add(frame("b", 3, 0), t).len(), 1);
        assert_eq!(b.stats().incomplete, 2);
        assert_eq!(b.stats().nodes_down, 1);
    }

    #[test]
    fn an_ended_node_is_not_waited_for_and_the_run_finishes_when_all_have_ended() {
        let mut b = EventBuilder::new("b1", &section());
        let t = Instant::now();
        b.add(frame("a", 7, 5), t);
        b.add(frame("b", 7, 5), t);
        let v = b.add(NodeMessage::End { node: "c".into(), frames: 6 }, t);
        assert_eq!((v.len(), v[0].keep, v[0].complete), (1, true, false));
        assert!(!b.finished());
        b.add(NodeMessage::End { node: "a".into(), frames: 7 }, t);
        b.add(NodeMessage::End { node: "b".into(), frames: 7 }, t);
        assert!(b.finished());
        assert_eq!(b.add(frame("zz", 8, 1), t).len(), 0);
        assert_eq!(b.stats().unknown, 1);
    }
}
