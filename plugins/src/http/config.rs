//! `<plugin name="http">` options: `<endpoint url timeout maxEvents cafile>`, its `<header>`
//! children and its `<signature>`.

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
    /// `<signature file|env>`: the secret the body is signed with (`X-Sersync-Signature`).
    pub signing_key: Option<Secret>,
}

/// A signing secret. Never printed.
#[derive(Clone)]
pub(crate) struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `<endpoint><signature file="…"/>` or `<signature env="…"/>`: exactly one source, read at
/// load, not empty (a file's trailing line ends dropped).
fn secret(endpoint: &ConfigNode) -> Result<Option<Secret>, ConfigError> {
    let mut nodes = endpoint.children_named("signature");
    let Some(node) = nodes.next() else {
        return Ok(None);
    };
    if let Some(second) = nodes.next() {
        return Err(
            second.error("<endpoint> has a second <signature>: one secret signs every request")
        );
    }
    let hint = "<signature file=\"/etc/sersync/webhook.secret\"/> (its first line is the secret) or <signature env=\"VAR\"/>";
    let text = match (node.attr("file"), node.attr("env")) {
        (Some(file), None) => std::fs::read_to_string(file)
            .map_err(|e| node.error(format!("<signature file=\"{file}\">: {e}")))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            node.error(format!("<signature env=\"{var}\">: the environment variable is not set"))
                .with_hint("export it in the service's environment (e.g. systemd Environment= or EnvironmentFile=)")
        })?,
        _ => {
            return Err(node
                .error("<signature> needs exactly one of file=, env=")
                .with_hint(hint))
        }
    };
    if text.is_empty() {
        return Err(node
            .error("<signature>: the secret is empty")
            .with_hint(hint));
    }
    Ok(Some(Secret(text.into_bytes())))
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
            signing_key: secret(endpoint)?,
        })
    }
}
