//! One HTTP/1.1 request over a plain TCP connection to a loopback port: what the tests ask
//! the control endpoint, an origin or Varnish.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request to 127.0.0.1:`port` (`Connection: close`, an empty body): the status and the
/// body's bytes.
pub fn http_bytes(port: u16, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    http_with_headers(port, method, path, &[])
}

/// [`http_bytes`] with extra header lines (`("Authorization", "Bearer …")`).
pub fn http_with_headers(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}Content-Length: 0\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&reply[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, reply[end + 4..].to_vec()))
}

/// As [`http_bytes`], the body as text and any error as its message (for `wait_for`).
pub fn http(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    http_bytes(port, method, path)
        .map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()))
        .map_err(|e| e.to_string())
}
