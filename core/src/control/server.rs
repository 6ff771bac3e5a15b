//! The listener: one accept thread, one short-lived thread per connection (at most
//! [`MAX_CONNECTIONS`] at once), one request per connection, with a deadline for reading the
//! request and another for sending the reply.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::deadline::Deadline;
use super::http::{read_request, ReadError};
use super::response::Response;
use super::{routes, Control};

/// Connections handled at once; more get a 503 at once, so a flood of idle connections
/// cannot pile up threads.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a client has to send its whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long a client has to take the whole reply.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// How long the 503 to a connection over the limit may take (written by the accept thread).
const BUSY_DEADLINE: Duration = Duration::from_millis(200);

/// A running control endpoint. Dropping it (or [`ServerHandle::stop`]) stops accepting.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accept thread. Connections being answered finish on
    /// their own, within their deadlines.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Wake the blocking accept(); if even that fails, leave the thread rather than hang.
        if TcpStream::connect_timeout(&wake_address(self.addr), Duration::from_secs(1)).is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Listens on `addr:port` (a host name such as `localhost`, an IPv4 or IPv6 address, bare or
/// in brackets; port 0 picks a free one) and answers requests from a thread of its own.
/// Errors (address in use, no such host) come back here, so the caller can decide how bad
/// they are.
pub fn serve(addr: &str, port: u16, control: Arc<dyn Control>) -> io::Result<ServerHandle> {
    let host = addr
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(addr);
    let listener = TcpListener::bind((host, port))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}:{port}: {e}")))?;
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let accept_stop = stop.clone();
    let thread = thread::Builder::new()
        .name("control http".into())
        .spawn(move || accept_loop(&listener, &control, &accept_stop))?;
    Ok(ServerHandle {
        addr: local,
        stop,
        thread: Some(thread),
    })
}

/// Where to connect to reach a listener bound to `addr` (the loopback for a wildcard).
fn wake_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

fn accept_loop(listener: &TcpListener, control: &Arc<dyn Control>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for connection in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match connection {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::debug!("control endpoint: accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(slot) = Slot::take(&active) else {
            let busy = Response::text(503, "busy: too many connections");
            reply(&stream, &busy, BUSY_DEADLINE);
            continue;
        };
        let control = control.clone();
        let spawned = thread::Builder::new()
            .name("control conn".into())
            .spawn(move || {
                let _slot = slot;
                handle(stream, &*control);
            });
        if let Err(e) = spawned {
            tracing::warn!("control endpoint: cannot start a connection thread: {e}");
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] places, given back when dropped (even by a panic).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Option<Slot> {
        active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads one request from `stream`, answers it and closes.
fn handle(stream: TcpStream, control: &dyn Control) {
    let response = match read_request(&mut Deadline::new(&stream, REQUEST_DEADLINE)) {
        Ok(request) => routes::respond(&request, control),
        Err(ReadError::Silent) => return,
        Err(ReadError::Reply(response)) => response,
    };
    reply(&stream, &response, REPLY_DEADLINE);
}

/// Sends `response` within `budget` and closes the sending side; a client gone away is not
/// an error worth a log line.
fn reply(stream: &TcpStream, response: &Response, budget: Duration) {
    if let Err(e) = response.write_to(&mut Deadline::new(stream, budget)) {
        tracing::debug!("control endpoint: cannot send the reply: {e}");
    }
    let _ = stream.shutdown(Shutdown::Write);
}
