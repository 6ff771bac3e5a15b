//! Just enough HTTP/1.1 for the control endpoint, request side: one request per connection,
//! taken in as its bytes arrive (the server never waits on one client), within size limits,
//! its head checked.

use super::response::Response;

/// The longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// The longest request body accepted. No route takes a body; one is read and dropped only so
/// that the reply is not lost to a connection reset.
pub const MAX_BODY: usize = 64 * 1024;

/// A request whose head was read and checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The target's path, not decoded, e.g. `/status`.
    pub path: String,
    /// The target's query, not decoded, without the `?`.
    pub query: Option<String>,
    /// The body's length (its bytes are discarded).
    pub body_len: usize,
    /// The `Authorization` header's value, if it has one (and it is text).
    pub authorization: Option<String>,
}

/// One request being received, fed whatever bytes arrive, in any pieces. It never blocks and
/// holds at most [`MAX_HEAD`] bytes plus one read: a body is counted and dropped.
#[derive(Debug, Default)]
pub struct Incoming {
    head: Vec<u8>,
    /// The checked head, once complete, and how many body bytes are still to come.
    request: Option<(Request, usize)>,
}

/// What the bytes received so far make of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Not complete yet: wait for more.
    More,
    /// Complete, its body (if any) consumed.
    Request(Request),
    /// Unusable; send this and close.
    Reply(Response),
}

impl Incoming {
    /// Takes `bytes`, the next ones the client sent.
    pub fn feed(&mut self, bytes: &[u8]) -> Received {
        if let Some((_, left)) = &mut self.request {
            *left = left.saturating_sub(bytes.len());
            return self.finished();
        }
        self.head.extend_from_slice(bytes);
        let Some(head_len) = head_end(&self.head) else {
            return if self.head.len() > MAX_HEAD {
                Received::Reply(Response::text(
                    431,
                    format!("the request head is longer than {MAX_HEAD} bytes"),
                ))
            } else {
                Received::More
            };
        };
        let request = match parse_head(&self.head[..head_len]) {
            Ok(request) => request,
            Err(response) => return Received::Reply(response),
        };
        if request.body_len > MAX_BODY {
            return Received::Reply(Response::text(
                413,
                format!("the request body is longer than {MAX_BODY} bytes"),
            ));
        }
        let left = request.body_len.saturating_sub(self.head.len() - head_len);
        self.head = Vec::new();
        self.request = Some((request, left));
        self.finished()
    }

    fn finished(&mut self) -> Received {
        match self.request.take() {
            Some((request, 0)) => Received::Request(request),
            waiting => {
                self.request = waiting;
                Received::More
            }
        }
    }

    /// What a client that ran out of time gets: nothing when it sent nothing (an idle
    /// connection is closed without a word), else a 408.
    pub fn timed_out(&self) -> Option<Response> {
        (!self.head.is_empty() || self.request.is_some())
            .then(|| Response::text(408, "the request was not complete in time"))
    }
}

/// Where the head ends (just after its empty line) and the body starts, if the head is
/// complete. Bare `\n` line ends are accepted as well as `\r\n`.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match &buf[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

/// Checks a complete request head and pulls out what the routes need.
pub fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::text(400, format!("bad request: {why}"));
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip_while(|line| line.is_empty());
    let request_line = lines.next().ok_or_else(|| bad("no request line"))?;
    let request_line =
        std::str::from_utf8(request_line).map_err(|_| bad("the request line is not text"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("the request line is not METHOD TARGET HTTP/1.1"));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(bad("the method is not a token"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => {
            return Err(Response::text(505, "only HTTP/1.1 and HTTP/1.0 are spoken"))
        }
        _ => return Err(bad("the protocol is not HTTP")),
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the target is not an absolute path"));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    let mut body_len = None;
    let mut authorization = None;
    for line in lines.take_while(|line| !line.is_empty()) {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad("a header line has no colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().copied().all(is_token) {
            return Err(bad("a header name is not a token"));
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Response::text(
                501,
                "request bodies with Transfer-Encoding are not supported",
            ));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let length =
                content_length(value).ok_or_else(|| bad("Content-Length is not a number"))?;
            if body_len.is_some_and(|known| known != length) {
                return Err(bad("two different Content-Length headers"));
            }
            body_len = Some(length);
        }
        if name.eq_ignore_ascii_case(b"authorization") {
            if authorization.is_some() {
                return Err(bad("two Authorization headers"));
            }
            authorization = std::str::from_utf8(value)
                .ok()
                .map(|v| v.trim().to_string());
        }
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        body_len: body_len.unwrap_or(0),
        authorization,
    })
}

/// A `Content-Length` value: decimal digits, surrounding blanks allowed. Huge values saturate
/// (and are refused as too large).
fn content_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// A `tchar` of RFC 9110 (method and header names).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> u16 {
        parse_head(head.as_bytes()).map_or_else(|r| r.status, |_| 200)
    }

    #[test]
    fn parses_a_plain_request() {
        let request =
            parse_head(b"POST /sync?watch=/data HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        assert_eq!(
            request,
            Request {
                method: "POST".into(),
                path: "/sync".into(),
                query: Some("watch=/data".into()),
                body_len: 0,
                authorization: None,
            }
        );
    }

    #[test]
    fn accepts_bare_newlines_and_leading_blank_lines() {
        assert_eq!(status("\r\nGET /status HTTP/1.0\nHost: x\n\n"), 200);
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn refuses_malformed_heads() {
        assert_eq!(status(""), 400);
        assert_eq!(status("GET /status\r\n\r\n"), 400);
        assert_eq!(status("GET  /status HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET status HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("G(T /status HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /status SPDY/3\r\n\r\n"), 400);
        assert_eq!(status("GET /status HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("GET /status HTTP/1.1\r\nno colon\r\n\r\n"), 400);
        assert_eq!(status("GET /status HTTP/1.1\r\n : x\r\n\r\n"), 400);
        assert_eq!(
            status("GET /status HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET /s HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST /sync HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            parse_head(b"GET /\xff HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn huge_content_length_saturates() {
        assert_eq!(
            content_length(b" 99999999999999999999999999 "),
            Some(usize::MAX)
        );
        assert_eq!(content_length(b"12"), Some(12));
        assert_eq!(content_length(b""), None);
    }

    /// Feeds `chunks` one at a time; the outcome of the last.
    fn feed(chunks: &[&[u8]]) -> (Incoming, Received) {
        let mut incoming = Incoming::default();
        let mut last = Received::More;
        for chunk in chunks {
            last = incoming.feed(chunk);
        }
        (incoming, last)
    }

    fn reply_status(received: Received) -> Option<u16> {
        match received {
            Received::Reply(response) => Some(response.status),
            _ => None,
        }
    }

    proptest::proptest! {
        #[test]
        fn no_bytes_make_the_reader_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8),
            prefix in proptest::sample::select(vec!["", "GET /status HTTP/1.1\r\n", "POST /sync?"]),
        ) {
            let mut bytes = prefix.as_bytes().to_vec();
            for chunk in &chunks {
                bytes.extend_from_slice(chunk);
            }
            let _ = parse_head(&bytes);
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let _ = feed(&[&[prefix.as_bytes()], chunks.as_slice()].concat());
        }
    }

    #[test]
    fn a_request_may_arrive_in_pieces_with_its_body() {
        let pieces: [&[u8]; 4] = [
            b"POST /sync HT",
            b"TP/1.1\r\nContent-Length: 5\r\n\r\nab",
            b"c",
            b"de",
        ];
        assert_eq!(feed(&pieces[..3]).1, Received::More);
        let Received::Request(request) = feed(&pieces).1 else {
            panic!("not complete");
        };
        assert_eq!((request.path.as_str(), request.body_len), ("/sync", 5));
        let (_, whole) = feed(&[b"GET /status HTTP/1.1\r\n\r\n"]);
        assert!(matches!(whole, Received::Request(r) if r.path == "/status"));
    }

    #[test]
    fn silence_gets_no_reply_and_a_started_request_a_408() {
        assert_eq!(Incoming::default().timed_out(), None);
        assert_eq!(feed(&[b""]).0.timed_out(), None);
        let (started, _) = feed(&[b"GET /status HTTP/1.1\r\n"]);
        assert_eq!(started.timed_out().map(|r| r.status), Some(408));
        let (short_body, _) = feed(&[b"POST /sync HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"]);
        assert_eq!(short_body.timed_out().map(|r| r.status), Some(408));
    }

    #[test]
    fn oversized_and_huge_requests_get_an_error_reply() {
        let endless: Vec<&[u8]> = vec![&[b'a'; 4096][..]; 4];
        assert_eq!(reply_status(feed(&endless).1), Some(431));
        let huge: &[u8] = b"POST /sync HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
        assert_eq!(reply_status(feed(&[huge]).1), Some(413));
        assert_eq!(
            reply_status(feed(&[b"GET status HTTP/1.1\r\n\r\n"]).1),
            Some(400)
        );
    }
}
