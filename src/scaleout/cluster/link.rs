//! The cluster's JetStream side. Each role runs its NATS client on a thread of its own with a
//! single-threaded tokio runtime, so the pipeline's threads never run async code: a node's ordering
//! thread hands contributions to a bounded channel and reads verdicts from another.
//!
//! Streams (created by whoever comes first, file storage, `cluster.replicas` copies):
//! `HITGATE_<RUN>_CONTRIB` on `hitgate.<run>.contrib.<node>` and `HITGATE_<RUN>_VERDICT` on
//! `hitgate.<run>.verdict`. Verdicts carry the message id `<run>-verdict-<frame>`: JetStream keeps
//! the first and drops the rest within its duplicate window, so with several builders each frame
//! still has one stored verdict, and every node, reading the stream in order, applies that one.
//! Contributions carry `<run>-<node>-<nonce>-<frame>`, so one published again after a lost
//! acknowledgement is stored once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use super::builder::{BuilderStats, EventBuilder};
use super::messages::{NodeMessage, Subjects, Verdict};
use super::section::ClusterSection;
use crate::scaleout::nats::{self, ACK_WINDOW, NatsError, Outgoing, Publisher};

pub use crate::scaleout::nats::NatsError as ClusterError;

/// Pull requests of the ordered consumers expire this soon (heartbeats at half of it): a consumer
/// whose server went away is noticed within about this long, not the client's default 30 s.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// A reader that has had nothing for this long checks whether the stream holds more.
const QUIET: Duration = Duration::from_secs(1);
/// A JetStream API call (stream, consumer) not answered within this long is made again.
const API_WAIT: Duration = Duration::from_secs(2);
/// A quiet link looks at its acknowledgements this often, so a refused message is sent again soon.
const SETTLE_EVERY: Duration = Duration::from_millis(20);

/// Connects to the cluster's servers and makes sure the run's streams exist.
async fn connect(section: &ClusterSection, name: &str) -> Result<jetstream::Context, ClusterError> {
    let js = jetstream::new(nats::connect(&section.nats, name).await?);
    let subjects = Subjects::new(&section.run);
    for (name, subject) in [
        (&subjects.contributions_stream, subjects.all_contributions()),
        (&subjects.verdicts_stream, subjects.verdicts()),
    ] {
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![subject],
            storage: stream::StorageType::File,
            num_replicas: section.replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        nats::ensure_stream(&js, config).await?;
    }
    Ok(js)
}

/// What a node's link did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub contributions: u64,
}

/// A node's link to the cluster: contributions out, verdicts in.
pub struct NodeLink {
    outgoing: Option<tokio::sync::mpsc::Sender<NodeMessage>>,
    verdicts: crossbeam::channel::Receiver<Verdict>,
    thread: Option<JoinHandle<Result<LinkStats, ClusterError>>>,
}

impl NodeLink {
    /// Connects `node` to the cluster (waiting until it is connected and the streams exist).
    ///
    /// # Errors
    /// No server could be reached, or the streams could not be made.
    pub fn start(section: &ClusterSection, node: &str) -> Result<NodeLink, ClusterError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<NodeMessage>(4096);
        let (verdict_tx, verdict_rx) = crossbeam::channel::unbounded();
        let (section, node) = (section.clone(), node.to_string());
        let thread = std::thread::Builder::new()
            .name("hg-cluster".into())
            .spawn(move || -> Result<LinkStats, ClusterError> {
                let rt = nats::runtime()?;
                rt.block_on(async move {
                    let js = match connect(&section, &format!("hitgate-node-{node}")).await {
                        Ok(js) => {
                            let _ = ready_tx.send(Ok(()));
                            js
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.clone()));
                            return Err(e);
                        }
                    };
                    let subjects = Subjects::new(&section.run);
                    let reader = tokio::spawn(forward_verdicts(js.clone(), subjects.clone(), verdict_tx));
                    let subject = subjects.contributions_of(&node);
                    let mut publisher = Publisher::default();
                    // Names this process's messages: one sent again after a lost acknowledgement
                    // is stored once, and a node started again is not taken for its earlier self.
                    let nonce = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos();
                    let mut stats = LinkStats::default();
                    let mut tick = tokio::time::interval(SETTLE_EVERY);
                    loop {
                        let mut message = tokio::select! {
                            message = out_rx.recv() => match message {
                                Some(message) => message,
                                None => break,
                            },
                            _ = tick.tick() => {
                                publisher.settle_ready(&js).await?;
                                continue;
                            }
                        };
                        // The ordering thread leaves the node's name to this thread.
                        let id = match &mut message {
                            NodeMessage::Frame(c) => {
                                c.node.clone_from(&node);
                                stats.contributions += 1;
                                format!("{}-{node}-{nonce}-{}", section.run, c.frame_number)
                            }
                            NodeMessage::End { node: name, .. } => {
                                name.clone_from(&node);
                                format!("{}-{node}-{nonce}-end", section.run)
                            }
                        };
                        let payload = serde_json::to_vec(&message)
                            .map_err(|e| NatsError::Encode { subject: subject.clone(), cause: nats::cause(e) })?;
                        let message = Outgoing { id: Some(id), ..Outgoing::new(subject.clone(), payload.into()) };
                        publisher.send(&js, message).await?;
                        publisher.settle_ready(&js).await?;
                        publisher.settle(&js, ACK_WINDOW).await?;
                    }
                    publisher.settle(&js, 0).await?;
                    reader.abort();
                    Ok(stats)
                })
            })
            .map_err(|e| ClusterError::Runtime(std::sync::Arc::new(e)))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(NodeLink { outgoing: Some(out_tx), verdicts: verdict_rx, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(thread
                .join()
                .ok()
                .and_then(Result::err)
                .unwrap_or(ClusterError::ThreadGone("the cluster thread ended before connecting"))),
        }
    }

    /// Sends a message (waiting while 4096 are queued); false once the link has failed.
    pub fn send(&self, message: NodeMessage) -> bool {
        self.outgoing.as_ref().is_some_and(|o| o.blocking_send(message).is_ok())
    }

    /// Verdicts, in the order the stream holds them.
    pub fn verdicts(&self) -> &crossbeam::channel::Receiver<Verdict> {
        &self.verdicts
    }

    /// Waits until everything sent is acknowledged, then closes.
    ///
    /// # Errors
    /// A publish failed for good.
    pub fn finish(mut self) -> Result<LinkStats, ClusterError> {
        self.outgoing = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ClusterError::ThreadGone("the cluster thread panicked")),
            None => Ok(LinkStats::default()),
        }
    }
}

impl Drop for NodeLink {
    fn drop(&mut self) {
        self.outgoing = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Follows a stream from its start, in order, handing each message's payload on. Nothing is
/// skipped and nothing is handed on twice: whenever the reading stops — an error the client could
/// not mend, or a quiet second while the stream holds messages not yet read (the client's own
/// recovery waits for its requests to time out, tens of seconds while a cluster elects new
/// leaders) — a new ordered consumer starts from the message after the last one handed on. Ends
/// when the receiver is dropped.
fn follow(js: jetstream::Context, stream_name: String, filter: String) -> tokio::sync::mpsc::Receiver<bytes::Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::spawn(async move {
        let mut next = 1u64;
        while !tx.is_closed() {
            if let Ok(Ok(mut stream)) = tokio::time::timeout(API_WAIT, js.get_stream(&stream_name)).await {
                let config = consumer::pull::OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
                    max_expires: PULL_EXPIRES,
                    ..Default::default()
                };
                let messages = tokio::time::timeout(API_WAIT, async {
                    let consumer = stream.create_consumer(config).await.ok()?;
                    consumer.messages().await.ok()
                });
                if let Ok(Some(mut messages)) = messages.await {
                    loop {
                        match tokio::time::timeout(QUIET, messages.next()).await {
                            Ok(Some(Ok(message))) => {
                                if let Ok(info) = message.info() {
                                    next = info.stream_sequence + 1;
                                }
                                if tx.send(message.payload.clone()).await.is_err() {
                                    return;
                                }
                            }
                            Ok(Some(Err(_)) | None) => break,
                            Err(_) => {
                                let behind = match tokio::time::timeout(API_WAIT, stream.info()).await {
                                    Ok(Ok(info)) => info.state.last_sequence >= next,
                                    // No stream leader to answer: read again once there is one.
                                    _ => true,
                                };
                                if behind {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    rx
}

/// Reads the verdict stream in order into `out`.
async fn forward_verdicts(js: jetstream::Context, subjects: Subjects, out: crossbeam::channel::Sender<Verdict>) {
    let mut payloads = follow(js, subjects.verdicts_stream.clone(), subjects.verdicts());
    while let Some(payload) = payloads.recv().await {
        if let Ok(verdict) = serde_json::from_slice::<Verdict>(&payload)
            && out.send(verdict).is_err()
        {
            break;
        }
    }
}

/// Runs a trigger event builder until every node has ended (or is down) and every frame is
/// decided, or until `stop`.
///
/// # Errors
/// The cluster cannot be reached, or a verdict cannot be published.
pub fn run_builder(section: &ClusterSection, name: &str, stop: &AtomicBool) -> Result<BuilderStats, ClusterError> {
    let rt = nats::runtime()?;
    rt.block_on(async {
        let js = connect(section, &format!("hitgate-builder-{name}")).await?;
        let subjects = Subjects::new(&section.run);
        let mut messages = follow(js.clone(), subjects.contributions_stream.clone(), subjects.all_contributions());
        let mut builder = EventBuilder::new(name, section);
        let mut publisher = Publisher::default();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let subject = subjects.verdicts();
        let mut heard_end = false;
        while !stop.load(Ordering::Relaxed) {
            let verdicts = tokio::select! {
                payload = messages.recv() => match payload {
                    Some(payload) => match serde_json::from_slice::<NodeMessage>(&payload) {
                        Ok(m) => {
                            heard_end |= matches!(m, NodeMessage::End { .. });
                            builder.add(m, Instant::now())
                        }
                        Err(_) => Vec::new(),
                    },
                    None => break,
                },
                _ = tick.tick() => {
                    publisher.settle_ready(&js).await?;
                    builder.expire(Instant::now())
                }
            };
            for verdict in verdicts {
                let payload = serde_json::to_vec(&verdict)
                    .map_err(|e| NatsError::Encode { subject: subject.clone(), cause: nats::cause(e) })?;
                let id = subjects.verdict_id(verdict.frame_number);
                let message = Outgoing { id: Some(id), ..Outgoing::new(subject.clone(), payload.into()) };
                publisher.send(&js, message).await?;
            }
            publisher.settle(&js, ACK_WINDOW).await?;
            if heard_end && builder.finished() {
                break;
            }
        }
        publisher.settle(&js, 0).await?;
        Ok(builder.stats().clone())
    })
}
