//! The `nats` sink: publishes every batch to a NATS JetStream stream, a durable change stream
//! that `sersync follow` edges (and any other consumer) read.
//!
//! One message per batch, split into parts below the server's `max_payload`, each part with a
//! deterministic `Nats-Msg-Id` derived from the batch (a retry of an unchanged batch is
//! deduplicated by JetStream); the payload is the SDK's JSON event lines
//! ([`crate::stream::wire`]). A batch counts as delivered only when JetStream acked every part;
//! a server down, a lost ack or a timeout is a retryable error. See `docs/sinks/nats.md`.

mod config;
mod publisher;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::stream::wire;
use crate::SinkSpec;
use config::NatsOptions;
use publisher::Publisher;

/// Reads `<plugin name="…" type="nats" …>` into a [`SinkSpec`].
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    Ok(Box::new(NatsSpec {
        options: NatsOptions::parse(node)?,
        publisher: Arc::new(OnceLock::new()),
    }))
}

/// The spec; its lanes share one publisher (one connection, one runtime thread), made when
/// the first lane starts, so `--check` connects to nothing.
#[derive(Clone)]
struct NatsSpec {
    options: NatsOptions,
    publisher: Arc<OnceLock<Arc<Publisher>>>,
}

impl std::fmt::Debug for NatsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSpec")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SinkSpec for NatsSpec {
    fn name(&self) -> String {
        self.options.name.clone()
    }

    fn own_watches(&self) -> Vec<PathBuf> {
        self.options.watches.clone()
    }

    fn summary(&self) -> String {
        let c = &self.options.create;
        format!(
            "{}: publish batches as JSON event lines to {}, acks awaited (if missing, the stream is made with {} replica(s))",
            self.options.name,
            self.options.address.describe(),
            c.replicas
        )
    }

    /// Followers pull what a message names, and new directories whole, from the source.
    fn consumers_read_the_tree(&self) -> bool {
        true
    }

    fn start(&self, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let publisher = match self.publisher.get() {
            Some(p) => p.clone(),
            None => {
                let made = Publisher::new(self.options.clone()).map_err(|e| {
                    SinkError::fatal(format!(
                        "{}: cannot start its runtime: {e}",
                        self.options.name
                    ))
                })?;
                let publisher = self.publisher.get_or_init(|| Arc::new(made)).clone();
                publisher.warm_up();
                publisher
            }
        };
        Ok(Box::new(NatsLane {
            publisher,
            subject: self.options.address.subject.clone(),
        }))
    }
}

/// One lane's instance.
struct NatsLane {
    publisher: Arc<Publisher>,
    subject: String,
}

impl Sink for NatsLane {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.publisher.publish(batch)
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        match wire::parts(batch, &self.subject, 1 << 20) {
            Ok(parts) => parts
                .iter()
                .map(|p| {
                    format!(
                        "would publish to {} message {} ({} events)",
                        self.subject,
                        p.message_id(),
                        p.events
                    )
                })
                .collect(),
            Err(e) => vec![format!("would fail: {e}")],
        }
    }
}
