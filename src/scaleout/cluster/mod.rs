//! Scale-out: several nodes share one detector. Each node assembles and reduces the modules it owns
//! and sends a contribution per frame to NATS JetStream; a trigger event builder (any node can run
//! one, several for failover) combines a frame's contributions into one verdict and publishes it;
//! each node holds its part of the frame until the verdict comes, then stores or drops it.

pub mod builder;
pub mod gate;
pub mod link;
pub mod messages;
pub mod node;
pub mod rule;
pub mod section;

pub use builder::{BuilderStats, EventBuilder};
pub use gate::{GateStats, VerdictGate};
pub use link::{ClusterError, LinkStats, NodeLink, run_builder};
pub use messages::{Contribution, NodeMessage, Subjects, Verdict};
pub use node::{ClusterNode, NodeReport};
pub use section::{ClusterMember, ClusterSection, VerdictRule};
