//! The `http` sink (webhook): POSTs each batch as one JSON document to a URL.
//!
//! Body: `{"root": "/watched", "watch": 0, "events": [EVENT, …]}` with each event as in
//! [`crate::common::json::event`]; a batch larger than `maxEvents` goes as several POSTs, in
//! order. 2xx is success; 429, 5xx, timeouts and connection failures are retryable; any other
//! status is fatal. See `docs/sinks/http.md`.

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use serde_json::{Map, Value};
use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::common::http::{client, header_names, headers, send};
use crate::common::json;
use crate::common::options::{attr_error, count_attr, duration_attr};
use crate::SinkSpec;

/// Bound of one request by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events per POST by default.
const DEFAULT_MAX_EVENTS: usize = 1000;

/// Reads `<plugin name="http">` (its `<endpoint url timeout maxEvents cafile>` and the
/// endpoint's `<header>` children) into a [`SinkSpec`].
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    let endpoint = node.child("endpoint").ok_or_else(|| {
        node.error("<plugin name=\"http\"> has no <endpoint url=\"…\">")
            .with_hint("add <endpoint url=\"https://hooks.example.com/sersync\" timeout=\"10s\"/>")
    })?;
    let url_text = endpoint.required_attr("url")?;
    let url = Url::parse(url_text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            attr_error(
                endpoint,
                "url",
                format!("<endpoint url=\"{url_text}\">: not an http:// or https:// URL"),
            )
            .with_hint("write the full URL, e.g. https://hooks.example.com/sersync")
        })?;
    let mut headers = headers(endpoint)?;
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(Box::new(HttpSpec {
        client: client(
            endpoint,
            duration_attr(endpoint, "timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        )?,
        max_events: count_attr(endpoint, "maxevents")?.unwrap_or(DEFAULT_MAX_EVENTS),
        url,
        headers,
    }))
}

/// The validated webhook configuration; serves every watch. Lanes share the client.
#[derive(Debug, Clone)]
struct HttpSpec {
    url: Url,
    headers: HeaderMap,
    max_events: usize,
    client: Client,
}

impl SinkSpec for HttpSpec {
    fn name(&self) -> String {
        "http".into()
    }

    fn summary(&self) -> String {
        format!(
            "http: POST batches as JSON to {} (up to {} events per request){}",
            self.url,
            self.max_events,
            header_names(&self.headers)
        )
    }

    fn start(&self, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(self.clone()))
    }
}

impl HttpSpec {
    /// The JSON documents `batch` is sent as.
    fn bodies(&self, batch: &Batch) -> Vec<String> {
        batch
            .events
            .chunks(self.max_events)
            .map(|chunk| {
                let mut doc = Map::new();
                json::put_bytes(&mut doc, "root", batch.root.as_os_str().as_bytes());
                doc.insert("watch".into(), batch.watch.0.into());
                let events = chunk.iter().map(|e| json::event(e, &batch.root)).collect();
                doc.insert("events".into(), Value::Array(events));
                Value::Object(doc).to_string()
            })
            .collect()
    }
}

impl Sink for HttpSpec {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let peer = format!("POST {}", self.url);
        self.bodies(batch).into_iter().try_for_each(|body| {
            let request = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(body);
            send(request, &peer)
        })
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        self.bodies(batch)
            .into_iter()
            .map(|body| format!("would POST {} {body}", self.url))
            .collect()
    }
}
