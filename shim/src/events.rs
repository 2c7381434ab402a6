//! Events to containerd, in order, through one queue and one publisher task. A failed
//! publish is retried before anything newer goes out (containerd may be restarting), so
//! `/tasks/exit` can never overtake `/tasks/start` or follow `/tasks/delete`.

use std::time::{Duration, SystemTime};

use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use protobuf::Message;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use tokio::sync::{mpsc, oneshot};

/// How long one event is retried while containerd is unreachable.
const RETRY_FOR: Duration = Duration::from_secs(60);

enum Item {
    Event(Envelope),
    /// Answered once every earlier event went out (or was given up on).
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Item>,
}

impl Publisher {
    /// The queue and its task, forwarding to containerd's ttrpc address.
    pub fn start(ttrpc_address: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(forward_all(rx, ttrpc_address));
        Publisher { tx }
    }

    /// Queues `event` (one of containerd's `containerd.events.*` messages) under `topic`
    /// (e.g. `/tasks/exit`).
    pub fn publish<E: Message>(&self, namespace: &str, topic: &str, event: &E) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(err) => {
                log::error!("encode {topic} event: {err}");
                return;
            }
        };
        let envelope = Envelope {
            timestamp: protobuf::MessageField::some(timestamp(SystemTime::now())),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
            event: protobuf::MessageField::some(Any {
                // The name without reflection: building descriptors costs ~100 KiB of heap
                // per daemon.
                type_url: format!("containerd.events.{}", E::NAME),
                value,
                ..Default::default()
            }),
            ..Default::default()
        };
        if self.tx.send(Item::Event(envelope)).is_err() {
            log::error!("event queue closed; dropped {topic}");
        }
    }
}

impl Publisher {
    /// Waits until the queue is empty (before the daemon exits).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// What a [`Publisher`] made by [`Publisher::captured`] queued, for unit tests.
#[cfg(test)]
pub struct Captured(mpsc::UnboundedReceiver<Item>);

#[cfg(test)]
impl Publisher {
    /// A publisher whose events stay in memory instead of going to containerd.
    pub fn captured() -> (Publisher, Captured) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Publisher { tx }, Captured(rx))
    }
}

#[cfg(test)]
impl Captured {
    /// The topic of the next event queued (waiting for it).
    pub async fn next_topic(&mut self) -> Option<String> {
        loop {
            match self.0.recv().await? {
                Item::Event(envelope) => return Some(envelope.topic),
                Item::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// The topics queued so far, without waiting.
    pub fn topics_so_far(&mut self) -> Vec<String> {
        let mut topics = Vec::new();
        while let Ok(item) = self.0.try_recv() {
            if let Item::Event(envelope) = item {
                topics.push(envelope.topic);
            }
        }
        topics
    }
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

async fn forward_all(mut rx: mpsc::UnboundedReceiver<Item>, address: String) {
    let address = if address.contains("://") {
        address
    } else {
        format!("unix://{address}")
    };
    let mut client: Option<EventsClient> = None;
    while let Some(item) = rx.recv().await {
        let envelope = match item {
            Item::Event(envelope) => envelope,
            Item::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let request = ForwardRequest {
            envelope: protobuf::MessageField::some(envelope),
            ..Default::default()
        };
        let topic = request.envelope.topic.clone();
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        let mut delay = Duration::from_millis(20);
        loop {
            if client.is_none() {
                client = Client::connect(&address).await.ok().map(EventsClient::new);
            }
            if let Some(c) = &client {
                let ctx = ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
                match c.forward(ctx, &request).await {
                    Ok(_) => break,
                    Err(err) => {
                        log::warn!("publish {topic}: {err}");
                        client = None;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                log::error!("dropped event {topic}: containerd unreachable at {address}");
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}
