//! `<plugin name="http">` options: `<endpoint url timeout maxEvents cafile>` and its
//! `<header>` children.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use sersync_plugin_sdk::{ConfigError, ConfigNode};

use crate::common::http::{client, headers};
use sersync_plugin_sdk::config::attrs::{attr_error, count, duration, TIMEOUT};

/// Bound of one request by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events per POST by default.
const DEFAULT_MAX_EVENTS: usize = 1000;

/// The webhook's validated options.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    /// Where batches are POSTed.
    pub url: Url,
    /// Headers of every request (values sensitive), `Content-Type: application/json` included.
    pub headers: HeaderMap,
    /// Events per POST.
    pub max_events: usize,
    /// The client (timeout and TLS roots applied); lanes share it.
    pub client: Client,
}

impl HttpOptions {
    /// Reads and checks `<plugin name="http">`.
    pub fn parse(node: &ConfigNode) -> Result<Self, ConfigError> {
        let endpoint = node.child("endpoint").ok_or_else(|| {
            node.error("<plugin name=\"http\"> has no <endpoint url=\"…\">")
                .with_hint(
                    "add <endpoint url=\"https://hooks.example.com/sersync\" timeout=\"10s\"/>",
                )
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
        Ok(HttpOptions {
            client: client(
                endpoint,
                duration(endpoint, "timeout", &TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
            )?,
            max_events: count(endpoint, "maxevents")?.unwrap_or(DEFAULT_MAX_EVENTS),
            url,
            headers,
        })
    }
}
