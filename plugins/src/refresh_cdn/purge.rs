//! The generic purge mode: any HTTP purge API, from `<purge method url body maxUrls rps
//! timeout cafile>` and its `<header>` children.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use sersync_plugin_sdk::{ConfigError, ConfigNode, SinkError};

use crate::common::http::{client, header_names, headers, send};
use crate::common::percent::{encode, QUERY_KEEP};
use sersync_plugin_sdk::config::attrs::{attr_error, count, duration, TIMEOUT};

/// Bound of one request by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// URLs per request by default when a body template carries them.
const DEFAULT_MAX_URLS: usize = 30;

/// A validated `<purge>` element.
#[derive(Clone, Debug)]
pub(crate) struct Purge {
    method: Method,
    /// The request URL; `{url}` and `{url_encoded}` are replaced per URL when there is no body.
    url: String,
    /// JSON body template; `{urls}` is replaced by a JSON array of up to `max_urls` URLs.
    body: Option<String>,
    max_urls: usize,
    /// Least time between two requests (`rps`).
    interval: Option<Duration>,
    headers: HeaderMap,
    client: Client,
}

impl Purge {
    /// Reads and checks `<purge>`: the method is a valid token, the URL template gives a valid
    /// URL, the body template is valid JSON once `{urls}` is filled in.
    pub fn parse(node: &ConfigNode) -> Result<Self, ConfigError> {
        let method_text = node.attr("method").unwrap_or("PURGE");
        let method =
            Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()).map_err(|_| {
                attr_error(
                    node,
                    "method",
                    format!("<purge method=\"{method_text}\">: not an HTTP method"),
                )
            })?;
        let url = node.attr("url").unwrap_or("{url}").to_string();
        let body = node.attr("body").map(str::to_string);
        let sample = url
            .replace("{url_encoded}", "http%3A//example.com/a")
            .replace("{url}", "http://example.com/a");
        if Url::parse(&sample).is_err() {
            return Err(attr_error(
                node,
                "url",
                format!("<purge url=\"{url}\">: does not give a valid URL"),
            )
            .with_hint(
                "write the API endpoint, or {url} to send the request to the changed URL itself",
            ));
        }
        if let Some(body) = &body {
            if !body.contains("{urls}") {
                return Err(attr_error(
                    node,
                    "body",
                    "<purge body>: the template has no {urls}, where the JSON array of URLs goes",
                )
                .with_hint(r#"e.g. body='{"files": {urls}}'"#));
            }
            if url.contains("{url") {
                return Err(attr_error(node, "url", "<purge body> needs url= set to the fixed API endpoint (the URLs go in the body)")
                    .with_hint(r#"e.g. url="https://api.cloudflare.com/client/v4/zones/ZONE/purge_cache" body='{"files": {urls}}'"#));
            }
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&body.replace("{urls}", "[]"))
            {
                return Err(attr_error(
                    node,
                    "body",
                    format!("<purge body>: not valid JSON once {{urls}} is filled in: {e}"),
                )
                .with_hint(r#"write e.g. body='{"files": {urls}}'"#));
            }
        }
        let rps = node.parse_attr::<f64>("rps", "requests per second, e.g. 5 or 0.5")?;
        let interval = match rps {
            None => None,
            Some(r) if r > 0.0 && r.is_finite() => Some(Duration::from_secs_f64(1.0 / r)),
            Some(_) => {
                return Err(attr_error(node, "rps", "<purge rps>: must be above 0")
                    .with_hint("leave rps out for no limit"))
            }
        };
        let mut headers = headers(node)?;
        if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(Purge {
            method,
            url,
            max_urls: if body.is_some() {
                count(node, "maxurls")?.unwrap_or(DEFAULT_MAX_URLS)
            } else {
                1
            },
            body,
            interval,
            client: client(
                node,
                duration(node, "timeout", &TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
            )?,
            headers,
        })
    }

    /// One line: method, endpoint, grouping, header names (values are secret).
    pub fn summary(&self) -> String {
        let grouping = match &self.body {
            Some(_) => format!("up to {} URLs per request in a JSON body", self.max_urls),
            None => "one request per URL".into(),
        };
        format!(
            "{} {} ({grouping}){}",
            self.method,
            self.url,
            header_names(&self.headers)
        )
    }

    /// The requests `urls` make: (method, URL, body) each, in order.
    pub fn requests(&self, urls: &[String]) -> Vec<(String, Option<String>)> {
        urls.chunks(self.max_urls)
            .map(|chunk| match &self.body {
                Some(body) => (
                    self.url.clone(),
                    Some(body.replace(
                        "{urls}",
                        &serde_json::Value::from(chunk.to_vec()).to_string(),
                    )),
                ),
                None => (
                    self.url
                        .replace("{url_encoded}", &encode(chunk[0].as_bytes(), QUERY_KEEP))
                        .replace("{url}", &chunk[0]),
                    None,
                ),
            })
            .collect()
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Sends the requests for `urls`, stopping at the first failure. With `rps`, no request
    /// starts before `next` (the lane's own clock, kept across batches), which then moves on.
    pub fn purge(&self, urls: &[String], next: &mut Instant) -> Result<(), SinkError> {
        for (url, body) in self.requests(urls) {
            if let Some(interval) = self.interval {
                // Pacing to the configured rate, not a retry delay.
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                *next = Instant::now() + interval;
            }
            let mut request = self
                .client
                .request(self.method.clone(), url.as_str())
                .headers(self.headers.clone());
            if let Some(body) = body {
                request = request.body(body);
            }
            send(request, &format!("{} {url}", self.method))?;
        }
        Ok(())
    }
}
