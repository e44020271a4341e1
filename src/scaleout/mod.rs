//! Several nodes, one detector, and the durable forward: the NATS JetStream client the two share
//! ([`nats`]), the trigger event builder and the nodes' side of it ([`cluster`]), and the forward of
//! every frame's record and kept chunk to a JetStream stream with the consumer that writes it on
//! another machine ([`forward`], the `jetstream` sink among it).

pub mod cluster;
pub mod forward;
pub mod nats;
