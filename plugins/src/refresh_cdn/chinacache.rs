//! The request sersync 2.5.4 sent to ChinaCache's purge API, byte for byte (with the query
//! values percent-encoded), over a plain TCP connection per URL.

use std::io::{Read, Write};
use std::time::Duration;

use sersync_plugin_sdk::{ConfigError, ConfigNode, SinkError};

use crate::common::http::classify_status;
use crate::common::net::{connect, io_error};
use crate::common::options::HostPort;
use crate::common::percent::{encode, QUERY_KEEP};
use sersync_plugin_sdk::config::attrs::{duration, TIMEOUT};

/// Per-connection bound by default (2.5.4 used 300 ms, which a loaded API often missed).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `Host:` value for `host`: as written (2.5.4 sent `domainname` verbatim), an IPv6
/// address in brackets.
fn host_header(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `<cdninfo domainname port username passwd timeout>`.
#[derive(Clone)]
pub(crate) struct ChinaCache {
    /// Where to connect; `host` is also the `Host:` header.
    peer: HostPort,
    user: String,
    password: String,
    timeout: Duration,
}

/// The password never shows in a log line or a `Debug` print.
impl std::fmt::Debug for ChinaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChinaCache")
            .field("peer", &self.peer)
            .field("user", &self.user)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ChinaCache {
    /// Reads `<cdninfo>`; `port` defaults to 80, `timeout` to [`DEFAULT_TIMEOUT`].
    pub fn parse(cdninfo: &ConfigNode) -> Result<Self, ConfigError> {
        Ok(ChinaCache {
            peer: HostPort::parse(cdninfo, "domainname", "port", Some(80))?,
            user: cdninfo.required_attr("username")?.to_string(),
            password: cdninfo.required_attr("passwd")?.to_string(),
            timeout: duration(cdninfo, "timeout", &TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// `host:port`, for summaries.
    pub fn peer(&self) -> &HostPort {
        &self.peer
    }

    /// The request for one URL: `HEAD /index.jsp?user=U&pswd=P&ok=ok&urls=URL HTTP/1.0`, with
    /// `dirs=` instead of `urls=` for a directory.
    fn request(&self, url: &str, is_dir: bool) -> String {
        format!(
            "HEAD /index.jsp?user={}&pswd={}&ok=ok&{}={} HTTP/1.0\r\nHost: {}\r\n\r\n",
            encode(self.user.as_bytes(), QUERY_KEEP),
            encode(self.password.as_bytes(), QUERY_KEEP),
            if is_dir { "dirs" } else { "urls" },
            encode(url.as_bytes(), QUERY_KEEP),
            host_header(&self.peer.host),
        )
    }

    /// Sends the request for `url` on a connection of its own and reads the status line.
    /// I/O failures and 5xx/429 are retryable; other non-2xx statuses and replies that are not
    /// HTTP are fatal.
    pub fn purge(&self, url: &str, is_dir: bool) -> Result<(), SinkError> {
        let peer = &self.peer;
        let fail =
            |doing: &str, e: std::io::Error| io_error(peer, &format!("{doing} for {url}"), &e);
        let mut stream = connect(peer, self.timeout).map_err(|e| fail("connect", e))?;
        stream
            .write_all(self.request(url, is_dir).as_bytes())
            .map_err(|e| fail("send", e))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.contains(&b'\n') && head.len() < 4096 {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return Err(fail("read the reply", e)),
            }
        }
        if head.is_empty() {
            return Err(SinkError::retryable(format!(
                "{peer}: closed the connection without a reply for {url}"
            )));
        }
        let status = head
            .strip_prefix(b"HTTP/")
            .and_then(|rest| rest.split(|&b| b == b' ').nth(1))
            .and_then(|code| std::str::from_utf8(code).ok()?.trim().parse::<u16>().ok());
        match status {
            Some(status) => classify_status(status, &format!("{peer} for {url}")),
            None => Err(SinkError::fatal(format!(
                "{peer}: the reply for {url} is not HTTP"
            ))),
        }
    }
}
