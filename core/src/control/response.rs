//! The response side of the control endpoint's HTTP: status, a few headers, a body, and the
//! connection closed after it.

use std::io::{self, Write};

use serde::Serialize;

/// A response, always sent with `Connection: close`.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// The `WWW-Authenticate` header of a 401.
    pub challenge: Option<&'static str>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response carrying `body` as it is.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            allow: None,
            challenge: None,
            body,
        }
    }

    /// A plain text message; a newline is appended.
    pub fn text(status: u16, message: impl Into<String>) -> Response {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
            format!("{{\"error\":\"cannot encode the reply: {e}\"}}").into_bytes()
        });
        body.push(b'\n');
        Response::new(status, "application/json", body)
    }

    /// A 405 naming the one method `path` takes.
    pub fn method_not_allowed(path: &str, allow: &'static str) -> Response {
        Response {
            allow: Some(allow),
            ..Response::text(405, format!("{path} takes {allow} only"))
        }
    }

    /// Writes the status line, headers and body.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        if let Some(challenge) = self.challenge {
            head.push_str(&format!("WWW-Authenticate: {challenge}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

/// The reason phrase of each status this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_complete_response() {
        let mut out = Vec::new();
        Response::method_not_allowed("/sync", "POST")
            .write_to(&mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Allow: POST\r\n"));
        assert!(text.contains("Content-Length: 22\r\n"));
        assert!(text.ends_with("\r\n\r\n/sync takes POST only\n"));
    }
}
