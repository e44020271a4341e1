//! The durable forward over NATS JetStream: the `jetstream` sink ([`sink`], configured by
//! [`ForwardSection`]), what it publishes ([`protocol`]), frames rebuilt from it ([`reassemble`]),
//! and the consumer that writes them on another machine ([`consume`]).

pub mod consume;
pub mod protocol;
pub mod reassemble;
pub mod sink;

pub use sink::{ForwardSection, JetstreamSink};

use std::time::Duration;

use async_nats::jetstream::stream;

/// The forward's stream: file storage, `replicas` copies, the oldest messages dropped past
/// `max_gib`, a duplicate window long enough for any publish tried again.
pub fn stream_config(section: &ForwardSection) -> stream::Config {
    stream::Config {
        name: section.stream.clone(),
        subjects: vec![format!("{}.>", section.subject)],
        storage: stream::StorageType::File,
        num_replicas: section.replicas,
        duplicate_window: Duration::from_secs(120),
        max_bytes: if section.max_gib == 0 { -1 } else { i64::try_from(section.max_gib << 30).unwrap_or(i64::MAX) },
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}
