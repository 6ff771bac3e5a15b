//! The `http` sink (webhook): POSTs each batch as one JSON document to a URL.
//!
//! Body: `{"events":[EVENT, …],"root":"/watched","watch":0}` with each event as in
//! [`sersync_plugin_sdk::json`] (see [`crate::common::json::batch_document`]); a batch larger than `maxEvents` goes as several POSTs, in
//! order. 2xx is success; 429, 5xx, timeouts and connection failures are retryable; any other
//! status is fatal. See `docs/sinks/http.md`.

mod config;
mod signing;

use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::common::http::{header_names, send};
use crate::common::json;
use crate::SinkSpec;
use config::HttpOptions;

/// Reads `<plugin name="http">` (its `<endpoint url timeout maxEvents cafile>` and the
/// endpoint's `<header>` children) into a [`SinkSpec`].
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    Ok(Box::new(HttpSink {
        options: HttpOptions::parse(node)?,
    }))
}

/// The webhook: its spec serves every watch, and each lane is a clone (sharing the client).
#[derive(Debug, Clone)]
struct HttpSink {
    options: HttpOptions,
}

impl SinkSpec for HttpSink {
    fn name(&self) -> String {
        "http".into()
    }

    fn summary(&self) -> String {
        format!(
            "http: POST batches as JSON to {} (up to {} events per request){}{}",
            self.options.url,
            self.options.max_events,
            header_names(&self.options.headers),
            match self.options.signing_key {
                Some(_) => ", signed (X-Sersync-Signature: sha256=…)",
                None => "",
            }
        )
    }

    fn start(&self, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(self.clone()))
    }
}

impl HttpSink {
    /// The JSON documents `batch` is sent as.
    fn bodies(&self, batch: &Batch) -> Vec<String> {
        batch
            .events
            .chunks(self.options.max_events)
            .map(|chunk| json::batch_document(&batch.root, batch.watch, chunk))
            .collect()
    }
}

impl Sink for HttpSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let peer = format!("POST {}", self.options.url);
        let o = &self.options;
        self.bodies(batch).into_iter().try_for_each(|body| {
            let request = o
                .client
                .post(o.url.clone())
                .headers(o.headers.clone())
                .headers(signing::headers(
                    &body,
                    o.signing_key.as_ref(),
                    std::time::SystemTime::now(),
                ))
                .body(body);
            send(request, &peer)
        })
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        self.bodies(batch)
            .into_iter()
            .map(|body| format!("would POST {} {body}", self.options.url))
            .collect()
    }
}
