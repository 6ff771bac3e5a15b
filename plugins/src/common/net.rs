//! Plain TCP with bounded waits, for the peers that speak raw bytes (ChinaCache, socket).

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use sersync_plugin_sdk::SinkError;

use super::options::HostPort;

/// Connects to `peer`, trying each address its name resolves to, each within `timeout`; the
/// stream's reads and writes are bounded by `timeout` too.
pub(crate) fn connect(peer: &HostPort, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (peer.host.as_str(), peer.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address")))
}

/// A failed exchange with a TCP peer. Every I/O failure is worth a retry: refused, reset,
/// timed out, unreachable, a name that does not resolve right now.
pub(crate) fn io_error(peer: &HostPort, doing: &str, e: &io::Error) -> SinkError {
    let what = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".to_string(),
        _ => e.to_string(),
    };
    SinkError::retryable(format!("{peer}: {doing}: {what}"))
}
