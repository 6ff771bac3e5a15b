//! HTTP plumbing for the refreshCDN purge mode and the http sink: one way to build a client
//! (rustls, bundled Mozilla roots plus an optional CA file), one way to read `<header>`
//! options (values from the file, a file or an environment variable, never logged), and one
//! classification of outcomes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sersync_plugin_sdk::{ConfigError, ConfigNode, SinkError};

/// The outcome of an HTTP status: 2xx is success; 429 and 5xx are passing (retryable); every
/// other status (4xx, and 1xx/3xx that were not followed) will not change on a retry (fatal).
pub(crate) fn classify_status(status: u16, peer: &str) -> Result<(), SinkError> {
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(SinkError::retryable(format!(
            "{peer}: HTTP status {status}"
        ))),
        _ => Err(SinkError::fatal(format!("{peer}: HTTP status {status}"))),
    }
}

/// Sends `request` and classifies the result by [`classify_status`]; a failure to connect, a
/// timeout or a broken connection is retryable. `peer` names the target in messages (the URL
/// is left out of reqwest's own message so that nothing is printed twice).
pub(crate) fn send(request: RequestBuilder, peer: &str) -> Result<(), SinkError> {
    match request.send() {
        Ok(response) => classify_status(response.status().as_u16(), peer),
        Err(e) if e.is_builder() => Err(SinkError::fatal(format!("{peer}: {}", e.without_url()))),
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out".to_string()
            } else {
                error_chain(&e.without_url())
            };
            Err(SinkError::retryable(format!("{peer}: {what}")))
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own message says little alone).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A blocking client whose whole exchange is bounded by `timeout`. TLS trusts the bundled
/// Mozilla roots (a static binary works on a bare host) plus the PEM certificates of
/// `<… cafile="…">` when `node` has one.
pub(crate) fn client(node: &ConfigNode, timeout: Duration) -> Result<Client, ConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(attr) = node.attribute("cafile") {
        let bad = |why: String| {
            ConfigError::at(
                attr.position,
                format!("<{} cafile=\"{}\">: {why}", node.name, attr.value),
            )
            .with_hint("give a readable file of PEM certificates (BEGIN CERTIFICATE)")
        };
        let certs = CertificateDer::pem_file_iter(Path::new(&attr.value))
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| node.error(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("sersync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            node.error(format!(
                "the HTTP client cannot be built: {}",
                error_chain(&e)
            ))
        })
}

/// The `<header name="…">` children of `node`. The value is `value="…"`, or read from
/// `file="…"` (trailing newline dropped) or `env="…"` at load, optionally after
/// `prefix="…"` (e.g. `Bearer `). Every value is marked sensitive: it never shows in a log
/// line, a `Debug` print or an error.
pub(crate) fn headers(node: &ConfigNode) -> Result<HeaderMap, ConfigError> {
    let mut map = HeaderMap::new();
    for h in node.children_named("header") {
        let name_text = h.required_attr("name")?;
        let name = HeaderName::from_bytes(name_text.as_bytes()).map_err(|_| {
            h.error(format!(
                "<header name=\"{name_text}\">: not a valid HTTP header name"
            ))
        })?;
        let sources = ["value", "file", "env"]
            .into_iter()
            .filter(|s| h.attr(s).is_some())
            .count();
        if sources != 1 {
            return Err(h
                .error(format!("<header name=\"{name_text}\"> needs exactly one of value=, file=, env="))
                .with_hint("keep secrets out of the config file with file=\"/etc/sersync/token\" or env=\"VAR\""));
        }
        let secret = if let Some(v) = h.attr("value") {
            v.to_string()
        } else if let Some(file) = h.attr("file") {
            let text = std::fs::read_to_string(file).map_err(|e| {
                h.error(format!(
                    "<header name=\"{name_text}\" file=\"{file}\">: {e}"
                ))
            })?;
            text.trim_end_matches(['\r', '\n']).to_string()
        } else {
            let var = h.attr("env").unwrap_or_default();
            std::env::var(var).map_err(|_| {
                h.error(format!("<header name=\"{name_text}\" env=\"{var}\">: the environment variable is not set"))
                    .with_hint("export it in the service's environment (e.g. systemd Environment= or EnvironmentFile=)")
            })?
        };
        let full = format!("{}{secret}", h.attr("prefix").unwrap_or_default());
        let mut value = HeaderValue::from_str(&full).map_err(|_| {
            h.error(format!(
                "<header name=\"{name_text}\">: the value holds characters a header cannot carry"
            ))
        })?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// Header names only, for summaries and dry runs (values may be secrets).
pub(crate) fn header_names(headers: &HeaderMap) -> String {
    let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (headers: {})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert!(classify_status(204, "u").is_ok());
        assert!(classify_status(429, "u").unwrap_err().is_retryable());
        assert!(classify_status(503, "u").unwrap_err().is_retryable());
        assert!(!classify_status(404, "u").unwrap_err().is_retryable());
        assert!(!classify_status(301, "u").unwrap_err().is_retryable());
    }
}
