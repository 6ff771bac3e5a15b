//! Peers on loopback that record what they receive. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 10 ms until it returns true, for at most `limit`; false on time-out.
pub fn poll(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `check` until it returns `Some`, for at most `limit`; panics with `what` otherwise.
pub fn wait_until<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    let ok = poll(limit, || {
        found = check();
        found.is_some()
    });
    assert!(ok, "timed out after {limit:?} waiting for {what}");
    found.unwrap()
}

/// How the HTTP peer answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// This status, empty body, connection closed.
    Status(u16),
    /// Records the request, then says nothing until the client gives up (or 60 s pass).
    Hang,
}

/// One request the HTTP peer received.
#[derive(Clone, Debug)]
pub struct Request {
    /// Request line and headers, exactly as received (up to and including the blank line).
    pub head: Vec<u8>,
    /// The request line's method.
    pub method: String,
    /// The request target, raw.
    pub target: String,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (by Content-Length).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.x server on loopback that records requests. Raw TCP on purpose: the tests
/// check request bytes exactly (2.5.4's `HEAD … HTTP/1.0`), and a peer that hangs or answers
/// any status is a few lines here.
pub struct HttpPeer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    reply: Arc<Mutex<Reply>>,
}

impl HttpPeer {
    /// Listens on `127.0.0.1`, port chosen by the system.
    pub fn start(reply: Reply) -> HttpPeer {
        HttpPeer::start_on("127.0.0.1:0", reply)
    }

    /// Listens on `127.0.0.1` and speaks HTTPS with the certificate in `tests/data` (issued
    /// by [`TEST_CA`] for `localhost` and `127.0.0.1`).
    pub fn start_tls(reply: Reply) -> HttpPeer {
        HttpPeer::listen("127.0.0.1:0", reply, Some(Arc::new(tls_config())))
    }

    /// Listens on `addr` (e.g. `[::1]:0`).
    pub fn start_on(addr: &str, reply: Reply) -> HttpPeer {
        HttpPeer::listen(addr, reply, None)
    }

    fn listen(addr: &str, reply: Reply, tls: Option<Arc<rustls::ServerConfig>>) -> HttpPeer {
        let listener = TcpListener::bind(addr).unwrap();
        let peer = HttpPeer {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            reply: Arc::new(Mutex::new(reply)),
        };
        let (requests, reply) = (peer.requests.clone(), peer.reply.clone());
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (requests, reply) = (requests.clone(), *reply.lock().unwrap());
                let tls = tls.clone();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                thread::spawn(move || match tls {
                    None => serve(stream, &requests, reply),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        serve(rustls::StreamOwned::new(conn, stream), &requests, reply)
                    }
                });
            }
        });
        peer
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` (or the IPv6 form).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the answer for connections accepted from now on.
    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// The server side of the test certificate.
/// The certificate authority that issued the test HTTPS peer's certificate (test only).
pub const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/test-ca.pem");

fn tls_config() -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
    let certs = CertificateDer::pem_file_iter(format!("{data}/test-server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{data}/test-server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// Reads one request from `stream`, records it and answers per `reply`.
fn serve(mut stream: impl Read + Write, requests: &Mutex<Vec<Request>>, reply: Reply) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = data[..head_end].to_vec();
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default().to_string(),
        first.next().unwrap_or_default().to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    requests.lock().unwrap().push(Request {
        head,
        method,
        target,
        headers,
        body,
    });
    match reply {
        Reply::Status(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Reply::Hang => {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

/// A TCP listener on loopback that records the bytes of each connection, open or closed, and
/// can go away and come back on the same port.
pub struct TcpPeer {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Vec<u8>>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
    stopping: Arc<Mutex<bool>>,
}

impl TcpPeer {
    /// Listens on `addr` (`127.0.0.1:0`, `[::1]:0`, or a port to come back on).
    pub fn start(addr: &str) -> TcpPeer {
        let listener = TcpListener::bind(addr).unwrap();
        let mut peer = TcpPeer {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            open: Arc::default(),
            accept: None,
            stopping: Arc::default(),
        };
        let (connections, open, stopping) = (
            peer.connections.clone(),
            peer.open.clone(),
            peer.stopping.clone(),
        );
        peer.accept = Some(thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                if *stopping.lock().unwrap() {
                    return;
                }
                open.lock().unwrap().push(stream.try_clone().unwrap());
                let index = {
                    let mut c = connections.lock().unwrap();
                    c.push(Vec::new());
                    c.len() - 1
                };
                let connections = connections.clone();
                thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        connections.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                    }
                });
            }
        }));
        peer
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bytes of each connection so far, in accept order.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.connections.lock().unwrap().clone()
    }

    /// Everything received, all connections concatenated in accept order.
    pub fn received(&self) -> Vec<u8> {
        self.connections().concat()
    }

    /// Stops listening and closes every open connection; the port is free when this returns.
    pub fn stop(mut self) -> SocketAddr {
        *self.stopping.lock().unwrap() = true;
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5));
        self.accept.take().unwrap().join().unwrap();
        self.addr
    }
}
