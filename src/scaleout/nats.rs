//! What every NATS JetStream role shares: connecting to a cluster's servers, making sure a stream
//! exists, and publishing with acknowledgements that survives a server of the cluster going away
//! (a message whose publish or acknowledgement fails is sent again, with its message id, so the
//! stream's duplicate window keeps one copy).

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage, stream};

/// The NATS client's own error, kept whole (its kind, its message, what caused it), and shareable so a
/// failure can be told to every thread that waits on it.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// `e` as a [`Cause`].
pub fn cause(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
    Arc::new(e)
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot reach NATS at {urls}: {cause}")]
    Connect { urls: String, cause: Cause },
    #[error("JetStream stream {stream}: {cause}")]
    Stream { stream: String, cause: Cause },
    #[error("publishing to {subject}: {cause}")]
    Publish { subject: String, cause: Cause },
    #[error("JetStream consumer {consumer}: {cause}")]
    Consumer { consumer: String, cause: Cause },
    #[error("encoding a message for {subject}: {cause}")]
    Encode { subject: String, cause: Cause },
    #[error("cannot start the NATS client's runtime: {0}")]
    Runtime(Arc<std::io::Error>),
    /// The thread that runs the client stopped before it could say why.
    #[error("{0}")]
    ThreadGone(&'static str),
}

/// Acknowledgements awaited at once: enough to keep the link busy, few enough to bound what a
/// failure can leave unconfirmed.
pub const ACK_WINDOW: usize = 256;
/// How long a request (a publish's acknowledgement, an API call) waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// A publish that fails (a server of the cluster going away) is tried again for this long: a
/// JetStream cluster elects a stream's new leader in seconds, longer on a loaded node (a run on two
/// shared cores still had no leader after 7 s).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(30);

/// The single-threaded runtime each role's NATS thread runs.
///
/// # Errors
/// The runtime cannot be made (no threads, no epoll).
pub fn runtime() -> Result<tokio::runtime::Runtime, NatsError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| NatsError::Runtime(Arc::new(e)))
}

/// Connects to any of `urls` (the client moves to another when its server goes away).
///
/// # Errors
/// A URL is malformed, or no server answered within 5 s.
pub async fn connect(urls: &[String], name: &str) -> Result<async_nats::Client, NatsError> {
    let joined = urls.join(",");
    let refused = |cause: Cause| NatsError::Connect { urls: joined.clone(), cause };
    let addrs = urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refused(cause(e)))?;
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        // Requests (acknowledgements included) wait this long: one lost while a cluster elects a
        // stream leader is sent again within seconds, not after the default 10 s.
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(addrs)
        .await
        .map_err(|e| refused(cause(e)))
}

/// Gets the stream `config` names, creating it when it does not exist yet.
///
/// # Errors
/// The stream could not be had within 15 s (a cluster that has just started may not have elected
/// its JetStream leader yet, so failures are tried again until then).
pub async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<stream::Stream, NatsError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(NatsError::Stream { stream: config.name.clone(), cause: cause(e) }),
        }
    }
}

/// One message for a stream.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub subject: String,
    pub payload: bytes::Bytes,
    pub headers: Option<HeaderMap>,
    /// `Nats-Msg-Id`: a message sent again within the stream's duplicate window is stored once.
    pub id: Option<String>,
}

impl Outgoing {
    pub fn new(subject: String, payload: bytes::Bytes) -> Outgoing {
        Outgoing { subject, payload, headers: None, id: None }
    }
}

/// Sends one message to its stream; the acknowledgement is to be awaited.
async fn send_once(js: &jetstream::Context, m: &Outgoing) -> Result<jetstream::context::PublishAckFuture, Cause> {
    let mut message = PublishMessage::build().payload(m.payload.clone());
    if let Some(headers) = &m.headers {
        message = message.headers(headers.clone());
    }
    if let Some(id) = &m.id {
        message = message.message_id(id);
    }
    js.send_publish(m.subject.clone(), message).await.map_err(cause)
}

/// The pause before the `tries`th attempt: longer each time, at most half a second.
async fn back_off(tries: u32) {
    tokio::time::sleep(Duration::from_millis(50 * u64::from(tries.min(10)))).await;
}

type AckFuture = std::pin::Pin<
    Box<dyn Future<Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>> + Send>,
>;

/// A message sent and not yet acknowledged, kept to be sent again if the acknowledgement fails.
struct Unconfirmed {
    ack: AckFuture,
    message: Outgoing,
}

/// Sends `message` again until it is acknowledged, within the time a send has, when `result`
/// says its first acknowledgement failed.
async fn confirm(js: &jetstream::Context, message: Outgoing, mut result: Result<(), Cause>) -> Result<(), NatsError> {
    let give_up = Instant::now() + PUBLISH_PATIENCE;
    let mut tries = 1;
    while let Err(last) = result {
        if Instant::now() >= give_up {
            return Err(NatsError::Publish { subject: message.subject, cause: last });
        }
        back_off(tries).await;
        tries += 1;
        result = match send_once(js, &message).await {
            Ok(ack) => ack.await.map(drop).map_err(cause),
            Err(e) => Err(e),
        };
    }
    Ok(())
}

/// Publishes messages in order, awaiting their acknowledgements a window behind.
#[derive(Default)]
pub struct Publisher {
    acks: VecDeque<Unconfirmed>,
}

impl Publisher {
    /// Sends a message, trying again while the cluster fails over, and queues its acknowledgement.
    ///
    /// # Errors
    /// No try succeeded in time.
    pub async fn send(&mut self, js: &jetstream::Context, message: Outgoing) -> Result<(), NatsError> {
        let give_up = Instant::now() + PUBLISH_PATIENCE;
        let mut tries = 1;
        let ack = loop {
            match send_once(js, &message).await {
                Ok(ack) => break ack,
                Err(last) if Instant::now() >= give_up => {
                    return Err(NatsError::Publish { subject: message.subject, cause: last });
                }
                Err(_) => {
                    back_off(tries).await;
                    tries += 1;
                }
            }
        };
        self.acks.push_back(Unconfirmed { ack: ack.into_future(), message });
        Ok(())
    }

    /// Takes the acknowledgements that have already come, oldest first, without waiting; a message
    /// refused (no stream leader while a cluster fails over) is sent again now rather than when the
    /// window fills, which on a quiet link could be the end of the run.
    ///
    /// # Errors
    /// A refused message could not be stored in time.
    pub async fn settle_ready(&mut self, js: &jetstream::Context) -> Result<(), NatsError> {
        while let Some(front) = self.acks.front_mut() {
            match futures_util::FutureExt::now_or_never(front.ack.as_mut()) {
                None => break,
                Some(Ok(_)) => {
                    self.acks.pop_front();
                }
                Some(Err(e)) => {
                    let Some(u) = self.acks.pop_front() else { break };
                    confirm(js, u.message, Err(cause(e))).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits for the oldest acknowledgements until at most `keep` are outstanding; a message whose
    /// acknowledgement fails (a server gone, a stream leader moving) is sent again, for as long as a
    /// send tries.
    ///
    /// # Errors
    /// A message could not be stored in time.
    pub async fn settle(&mut self, js: &jetstream::Context, keep: usize) -> Result<(), NatsError> {
        while self.acks.len() > keep {
            let Some(u) = self.acks.pop_front() else { break };
            let result = u.ack.await.map(drop).map_err(cause);
            confirm(js, u.message, result).await?;
        }
        Ok(())
    }

    /// Messages sent and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.acks.len()
    }
}
