//! The connection a `nats` spec's lanes share: connected on first use, the stream made if it
//! is missing, and every batch published as its parts with their acks awaited.

use std::sync::Mutex;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use sersync_plugin_sdk::SinkError;

use super::config::NatsOptions;
use crate::stream::wire::{self, Part};
use crate::stream::Runtime;

/// A live connection and what it learnt at connect time.
#[derive(Clone)]
struct Connection {
    js: jetstream::Context,
    /// The most bytes a message may carry: the server's, or less when configured.
    max_payload: usize,
}

/// The lanes' shared publisher: the runtime, and the connection while it works.
pub(crate) struct Publisher {
    options: NatsOptions,
    runtime: Runtime,
    connection: Mutex<Option<Connection>>,
}

impl Publisher {
    pub fn new(options: NatsOptions) -> std::io::Result<Publisher> {
        Ok(Publisher {
            runtime: Runtime::new("sersync-nats")?,
            options,
            connection: Mutex::new(None),
        })
    }

    /// Publishes every part of `batch` and waits for all their acks. A failure drops the
    /// connection, so the next attempt connects (and checks the stream) again.
    pub fn publish(&self, batch: &sersync_plugin_sdk::Batch) -> Result<(), SinkError> {
        let connection = self.connection()?;
        let address = &self.options.address;
        let parts = wire::parts(batch, &address.subject, connection.max_payload)
            .map_err(|e| SinkError::fatal(format!("{}: {e}", address.describe())))?;
        let limit = address.endpoint.timeout * 2;
        let outcome = self
            .runtime
            .block_on_within(limit, publish_all(&connection.js, &address.subject, &parts))
            .unwrap_or_else(|| Err(format!("no ack within {limit:?}")));
        outcome.map_err(|e| {
            let old = self.connection.lock().unwrap().take();
            // The client's handles may spawn tasks when dropped: inside its runtime.
            self.runtime.drop_within(old);
            SinkError::retryable(format!("{}: {e}", address.describe()))
        })
    }

    /// Connects (and makes the stream) in the background, so that followers find the stream
    /// as soon as the master runs, before its first batch. A failure is only logged: the
    /// first delivery tries again and reports it.
    pub fn warm_up(self: &std::sync::Arc<Self>) {
        let publisher = self.clone();
        let _ = std::thread::Builder::new()
            .name("sersync-nats-connect".into())
            .spawn(move || {
                if let Err(e) = publisher.connection() {
                    tracing::debug!(error = %e, "nats: not connected yet");
                }
            });
    }

    fn connection(&self) -> Result<Connection, SinkError> {
        let mut slot = self.connection.lock().unwrap();
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self
            .runtime
            .block_on(connect(&self.options))
            .map_err(SinkError::retryable)?;
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// Connects, and makes the stream when there is none by that name (an existing one is used
/// as it is: its subjects, limits and replicas are the operator's).
async fn connect(options: &NatsOptions) -> Result<Connection, String> {
    let address = &options.address;
    let client = address.endpoint.connect("sersync").await?;
    let server_max = client.server_info().max_payload;
    let max_payload = options
        .max_payload
        .map_or(server_max, |m| m.min(server_max));
    let mut js = jetstream::new(client);
    js.set_timeout(address.endpoint.timeout);
    let settings = &options.create;
    let config = stream::Config {
        name: address.stream.clone(),
        subjects: vec![address.subject.clone()],
        num_replicas: settings.replicas,
        max_messages: if settings.max_messages == 0 {
            -1
        } else {
            settings.max_messages
        },
        max_bytes: if settings.max_bytes == 0 {
            -1
        } else {
            settings.max_bytes
        },
        max_age: settings.max_age,
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| format!("stream {}: {e}", address.stream))?;
    Ok(Connection { js, max_payload })
}

/// Sends every part, then awaits every ack (pipelined: one round trip for the batch).
async fn publish_all(js: &jetstream::Context, subject: &str, parts: &[Part]) -> Result<(), String> {
    let mut acks = Vec::with_capacity(parts.len());
    for part in parts {
        let message = PublishMessage::build()
            .payload(part.payload.clone().into())
            .message_id(part.message_id())
            .header(wire::BATCH, part.batch.as_str())
            .header(wire::PART, part.part_header())
            .header(wire::EVENTS, part.events.to_string());
        let ack = js
            .send_publish(subject.to_string(), message)
            .await
            .map_err(|e| format!("publish of {}: {e}", part.message_id()))?;
        acks.push((part, ack));
    }
    for (part, ack) in acks {
        ack.await
            .map_err(|e| format!("ack of {}: {e}", part.message_id()))?;
    }
    Ok(())
}
