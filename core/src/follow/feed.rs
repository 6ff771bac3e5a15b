//! The follower's durable consumer on the stream: its position is JetStream's (the consumer's
//! ack floor), so a restart needs no journal of its own.
//!
//! - **First start** (no consumer by that name): the consumer is made to deliver what is
//!   published from now on, then the tree is pulled whole once ([`Start::Fresh`]).
//! - **Restart**: delivery resumes after the last message acked. When the stream no longer
//!   holds the messages just after it (retention: `maxMsgs`, `maxAge`, `maxBytes`), the
//!   follower missed changes it can no longer read ([`Start::Resumed`] with `missed`), and pulls
//!   the tree whole once.
//! - **While running**: a message whose stream sequence jumps past the last one seen is
//!   checked the same way against the stream's first sequence ([`Group::missed`]).

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use sersync_plugins::stream::async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use sersync_plugins::stream::async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use sersync_plugins::stream::async_nats::Client;
use sersync_plugins::stream::wire::{self, Change};
use sersync_plugins::stream::Runtime;

use super::config::FollowConfig;

/// How a follower found its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Its consumer was just made: the tree must be pulled whole first.
    Fresh,
    /// Its consumer was there, acked up to stream sequence `acked`; `missed` when the stream's
    /// oldest message (`first`) is past the next one it needs.
    Resumed {
        /// The consumer's ack floor.
        acked: u64,
        /// The stream's first sequence now.
        first: u64,
        /// Messages it needs are gone.
        missed: bool,
    },
}

/// Messages read together, applied together, acked together.
pub struct Group {
    /// Their changes, in stream order.
    pub changes: Vec<Change>,
    /// When the oldest of them was published.
    pub oldest: SystemTime,
    /// When each was published.
    pub published: Vec<SystemTime>,
    /// The stream skipped messages before these that it no longer holds.
    pub missed: Option<String>,
    /// Messages left pending for this consumer after the newest of them.
    pub pending: u64,
    messages: Vec<jetstream::Message>,
}

impl Group {
    /// How many messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// The stream sequences of its messages, in the order read (`7,8,9`), for the debug log.
    pub fn sequences(&self) -> String {
        self.messages
            .iter()
            .filter_map(|m| m.info().ok().map(|i| i.stream_sequence.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The connection, the consumer and its message stream.
pub struct Feed {
    runtime: Runtime,
    client: Client,
    stream: jetstream::stream::Stream,
    consumer: PullConsumer,
    messages: Option<pull::Stream>,
    batch: usize,
    /// The newest stream sequence seen.
    last: u64,
    describe: String,
}

impl Feed {
    /// Connects, and binds or makes the durable consumer.
    pub fn open(config: &FollowConfig) -> Result<(Feed, Start), String> {
        let runtime = Runtime::new("sersync-follow").map_err(|e| format!("runtime: {e}"))?;
        let address = &config.stream;
        let describe = format!("consumer {} of {}", config.consumer, address.describe());
        let opened = runtime.block_on(async {
            let client = address.endpoint.connect("sersync-follow").await?;
            let mut js = jetstream::new(client.clone());
            js.set_timeout(address.endpoint.timeout);
            let mut stream = js
                .get_stream(&address.stream)
                .await
                .map_err(|e| format!("{}: {e}", address.describe()))?;
            let first = stream
                .info()
                .await
                .map_err(|e| format!("{}: {e}", address.describe()))?
                .state
                .first_sequence;
            use jetstream::context::ConsumerInfoErrorKind;
            let (consumer, start) = match stream.consumer_info(&config.consumer).await {
                Ok(info) => {
                    let acked = info.ack_floor.stream_sequence;
                    let consumer = stream
                        .get_consumer(&config.consumer)
                        .await
                        .map_err(|e| format!("{describe}: {e}"))?;
                    let missed = first > acked + 1;
                    (
                        consumer,
                        Start::Resumed {
                            acked,
                            first,
                            missed,
                        },
                    )
                }
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                    let consumer = stream
                        .create_consumer(pull::Config {
                            durable_name: Some(config.consumer.clone()),
                            deliver_policy: DeliverPolicy::New,
                            ack_policy: AckPolicy::Explicit,
                            ack_wait: config.ack_wait,
                            max_deliver: -1,
                            filter_subject: address.subject.clone(),
                            max_ack_pending: (config.batch * 4) as i64,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| format!("{describe}: cannot make it: {e}"))?;
                    (consumer, Start::Fresh)
                }
                Err(e) => return Err(format!("{describe}: {e}")),
            };
            Ok::<_, String>((client, stream, consumer, start))
        })?;
        let (client, stream, consumer, start) = opened;
        let last = match start {
            Start::Fresh => u64::MAX,
            Start::Resumed { acked, .. } => acked,
        };
        let feed = Feed {
            runtime,
            client,
            stream,
            consumer,
            messages: None,
            batch: config.batch,
            last,
            describe,
        };
        Ok((feed, start))
    }

    /// Waits up to `wait` for a message, then takes the ones already there with it (up to
    /// the batch size); `None` when none came.
    pub fn next(&mut self, wait: Duration) -> Result<Option<Group>, String> {
        let describe = self.describe.clone();
        let batch = self.batch;
        let Feed {
            runtime,
            consumer,
            messages,
            ..
        } = self;
        let received = runtime.block_on(async {
            if messages.is_none() {
                let stream = consumer
                    .stream()
                    .max_messages_per_batch(batch)
                    .heartbeat(Duration::from_secs(5))
                    .expires(Duration::from_secs(30))
                    .messages()
                    .await
                    .map_err(|e| format!("{describe}: {e}"))?;
                *messages = Some(stream);
            }
            let stream = messages.as_mut().expect("set above");
            let mut got = Vec::new();
            let first = match tokio_timeout(wait, stream.next()).await {
                None => return Ok(got),
                Some(None) => {
                    *messages = None;
                    return Ok(got);
                }
                Some(Some(m)) => m,
            };
            match first {
                Ok(m) => got.push(m),
                Err(e) => {
                    *messages = None;
                    return Err(format!("{describe}: {e}"));
                }
            }
            while got.len() < batch {
                match tokio_timeout(Duration::from_millis(2), stream.next()).await {
                    Some(Some(Ok(m))) => got.push(m),
                    _ => break,
                }
            }
            Ok::<_, String>(got)
        })?;
        if received.is_empty() {
            return Ok(None);
        }
        self.group(received).map(Some)
    }

    fn group(&mut self, messages: Vec<jetstream::Message>) -> Result<Group, String> {
        let mut changes = Vec::new();
        let mut published = Vec::new();
        let mut gap_after = None;
        let mut pending = 0;
        let mut kept = Vec::with_capacity(messages.len());
        for message in messages {
            let Ok(info) = message.info() else { continue };
            let (sequence, time) = (info.stream_sequence, info.published);
            pending = info.pending;
            let expected = self.last.wrapping_add(1);
            if self.last != u64::MAX && sequence > expected && gap_after.is_none() {
                gap_after = Some(self.last);
            }
            if self.last == u64::MAX || sequence > self.last {
                self.last = sequence;
            }
            match wire::decode(&message.payload) {
                Ok(decoded) => changes.extend(decoded),
                Err(e) => {
                    tracing::warn!(sequence, error = %e, "{}: a message not in sersync's format is skipped", self.describe);
                }
            }
            published.push(SystemTime::from(time));
            kept.push(message);
        }
        let missed = match gap_after {
            None => None,
            Some(last) => {
                let first = self.first_sequence()?;
                (first > last + 1).then(|| {
                    format!("the stream holds messages from {first} on, and this follower had read up to {last}")
                })
            }
        };
        Ok(Group {
            oldest: published
                .iter()
                .min()
                .copied()
                .unwrap_or_else(SystemTime::now),
            published,
            changes,
            missed,
            pending,
            messages: kept,
        })
    }

    fn first_sequence(&mut self) -> Result<u64, String> {
        let Feed {
            runtime,
            stream,
            describe,
            ..
        } = self;
        runtime.block_on(async {
            stream
                .info()
                .await
                .map(|i| i.state.first_sequence)
                .map_err(|e| format!("{describe}: {e}"))
        })
    }

    /// Acks every message of `group` and waits until the server has them.
    pub fn ack(&self, group: &Group) -> Result<(), String> {
        self.runtime.block_on(async {
            for m in &group.messages {
                m.ack()
                    .await
                    .map_err(|e| format!("{}: ack: {e}", self.describe))?;
            }
            self.client
                .flush()
                .await
                .map_err(|e| format!("{}: ack: {e}", self.describe))
        })
    }

    /// Asks for `group`'s messages again after `delay` (the pull failed).
    pub fn retry_later(&self, group: &Group, delay: Duration) {
        self.runtime.block_on(async {
            for m in &group.messages {
                let _ = m.ack_with(AckKind::Nak(Some(delay))).await;
            }
            let _ = self.client.flush().await;
        });
    }

    /// Messages the consumer still has to deliver, as the server counts them now.
    pub fn pending(&mut self) -> Option<u64> {
        let Feed {
            runtime, consumer, ..
        } = self;
        runtime
            .block_on_within(Duration::from_secs(2), async {
                consumer.info().await.map(|i| i.num_pending).ok()
            })
            .flatten()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.runtime.drop_within(self.messages.take());
    }
}

/// `future` or `None` after `limit`.
async fn tokio_timeout<F: std::future::Future>(limit: Duration, future: F) -> Option<F::Output> {
    sersync_plugins::stream::timeout(limit, future).await
}
