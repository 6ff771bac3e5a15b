//! The listener: one thread accepts connections and takes in their requests as the bytes
//! arrive (`poll(2)` over non-blocking sockets), so a client that sends slowly costs a socket
//! and a small buffer but no thread and no place; only a complete request takes one of the
//! [`MAX_CONNECTIONS`] places, each a short-lived thread that answers it within a deadline.
//!
//! Against a flood of slow clients (slowloris): at most [`MAX_RECEIVING`] connections are being
//! received at once; a new one beyond that closes the one that has been sending the longest,
//! so a client that sends its request at once always gets through; each has
//! [`REQUEST_DEADLINE`] for its whole request.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::auth::Access;
use super::deadline::Deadline;
use super::http::{Incoming, Received, Request};
use super::response::Response;
use super::{routes, Control};

/// Requests answered at once; a complete request beyond that gets a 503 at once.
pub const MAX_CONNECTIONS: usize = 32;

/// Connections whose request is still arriving; past it, the oldest of them is closed.
pub const MAX_RECEIVING: usize = 512;

/// How long a client has to send its whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long a client has to take the whole reply.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// How long an error reply written by the listening thread (a 503, a 408, a 400) may take;
/// it fits in any socket's send buffer, so this is only a bound.
const BUSY_DEADLINE: Duration = Duration::from_millis(200);

/// The longest the listening thread sleeps in `poll(2)`, so that a stop is seen.
const POLL_LIMIT: Duration = Duration::from_millis(500);

/// A running control endpoint. Dropping it (or [`ServerHandle::stop`]) stops accepting.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    access: SharedAccess,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What every request is held to, replaced as a whole by a reload.
type SharedAccess = Arc<RwLock<Arc<Access>>>;

impl ServerHandle {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds every request from now on to `access` (a reload's token); requests already
    /// being answered keep the one they were checked against.
    pub fn set_access(&self, access: Access) {
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(access);
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
    serve_with(addr, port, control, Access::default())
}

/// [`serve`], each request first held to `access` (a `401` for one without the token it
/// needs).
pub fn serve_with(
    addr: &str,
    port: u16,
    control: Arc<dyn Control>,
    access: Access,
) -> io::Result<ServerHandle> {
    let host = addr
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(addr);
    let listener = TcpListener::bind((host, port))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}:{port}: {e}")))?;
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let accept_stop = stop.clone();
    let access: SharedAccess = Arc::new(RwLock::new(Arc::new(access)));
    let accept_access = access.clone();
    let thread = thread::Builder::new()
        .name("control http".into())
        .spawn(move || accept_loop(&listener, &control, &accept_access, &accept_stop))?;
    Ok(ServerHandle {
        addr: local,
        access,
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

/// A connection whose request is still arriving.
struct Receiving {
    stream: TcpStream,
    since: Instant,
    incoming: Incoming,
}

/// What became of a connection after its socket was read.
enum Outcome {
    /// Still arriving: keep it.
    Waiting,
    /// Closed or failed before a request: drop it without a word.
    Gone,
    /// A complete request, to answer.
    Answer(Request),
    /// An unusable request: send this and close.
    Refuse(Response),
}

fn accept_loop(
    listener: &TcpListener,
    control: &Arc<dyn Control>,
    access: &SharedAccess,
    stop: &AtomicBool,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut receiving: VecDeque<Receiving> = VecDeque::new();
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!("control endpoint: cannot make the listener non-blocking: {e}");
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        let (listener_ready, ready) = wait(listener, &receiving);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Read the ready ones first (newest last), then drop what ended or ran out of time.
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(receiving.len());
        for (mut conn, is_ready) in receiving.drain(..).zip(ready) {
            let outcome = if is_ready {
                read_ready(&mut conn)
            } else {
                Outcome::Waiting
            };
            match outcome {
                Outcome::Waiting if now.duration_since(conn.since) < REQUEST_DEADLINE => {
                    kept.push_back(conn)
                }
                Outcome::Waiting => {
                    if let Some(late) = conn.incoming.timed_out() {
                        reply(&conn.stream, &late, BUSY_DEADLINE);
                    }
                }
                Outcome::Gone => {}
                Outcome::Answer(request) => answer(conn.stream, request, control, access, &active),
                Outcome::Refuse(response) => reply(&conn.stream, &response, BUSY_DEADLINE),
            }
        }
        receiving = kept;
        if listener_ready {
            accept_all(listener, &mut receiving);
        }
    }
}

/// Sleeps in `poll(2)` until the listener or a receiving connection is readable, or the
/// earliest request deadline (at most [`POLL_LIMIT`]). Returns whether the listener is
/// readable and, per connection, whether it is.
fn wait(listener: &TcpListener, receiving: &VecDeque<Receiving>) -> (bool, Vec<bool>) {
    let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
        .chain(receiving.iter().map(|c| c.stream.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let earliest = receiving
        .iter()
        .map(|c| (c.since + REQUEST_DEADLINE).saturating_duration_since(Instant::now()))
        .min()
        .unwrap_or(POLL_LIMIT)
        .min(POLL_LIMIT);
    // Rounded up, so that a deadline is past when poll returns.
    let timeout = earliest.as_millis() as libc::c_int + 1;
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the whole call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if n < 0 {
        // EINTR: look again; anything else would repeat, so do not spin on it.
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            thread::sleep(Duration::from_millis(50));
        }
        return (false, vec![false; receiving.len()]);
    }
    let ready = |fd: &libc::pollfd| fd.revents != 0;
    (ready(&fds[0]), fds[1..].iter().map(ready).collect())
}

/// Reads what `conn` has sent until its socket has no more for now.
fn read_ready(conn: &mut Receiving) -> Outcome {
    let mut chunk = [0u8; 4096];
    loop {
        match (&conn.stream).read(&mut chunk) {
            Ok(0) => return Outcome::Gone,
            Ok(n) => match conn.incoming.feed(&chunk[..n]) {
                Received::More => {}
                Received::Request(request) => return Outcome::Answer(request),
                Received::Reply(response) => return Outcome::Refuse(response),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Waiting,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Outcome::Gone,
        }
    }
}

/// Accepts every pending connection. Past [`MAX_RECEIVING`] the one that has been sending
/// the longest is closed with a 503: slow clients make room for new ones, not the reverse.
fn accept_all(listener: &TcpListener, receiving: &mut VecDeque<Receiving>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::debug!("control endpoint: accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        if receiving.len() >= MAX_RECEIVING {
            if let Some(oldest) = receiving.pop_front() {
                reply(&oldest.stream, &busy(), BUSY_DEADLINE);
            }
        }
        receiving.push_back(Receiving {
            stream,
            since: Instant::now(),
            incoming: Incoming::default(),
        });
    }
}

fn busy() -> Response {
    Response::text(503, "busy: too many connections")
}

/// Answers `request` from a thread of its own when a place is free, else with a 503.
fn answer(
    stream: TcpStream,
    request: Request,
    control: &Arc<dyn Control>,
    access: &SharedAccess,
    active: &Arc<AtomicUsize>,
) {
    let Some(slot) = Slot::take(active) else {
        reply(&stream, &busy(), BUSY_DEADLINE);
        return;
    };
    let control = control.clone();
    let access = access.read().unwrap_or_else(|e| e.into_inner()).clone();
    let spawned = thread::Builder::new()
        .name("control conn".into())
        .spawn(move || {
            let _slot = slot;
            let response = access
                .refuse(&request)
                .unwrap_or_else(|| routes::respond(&request, &*control));
            reply(&stream, &response, REPLY_DEADLINE);
        });
    if let Err(e) = spawned {
        tracing::warn!("control endpoint: cannot start a connection thread: {e}");
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

/// Sends `response` within `budget` and closes the sending side; a client gone away is not
/// an error worth a log line.
fn reply(stream: &TcpStream, response: &Response, budget: Duration) {
    // Written with a deadline, not in pieces as the socket takes them.
    let _ = stream.set_nonblocking(false);
    if let Err(e) = response.write_to(&mut Deadline::new(stream, budget)) {
        tracing::debug!("control endpoint: cannot send the reply: {e}");
    }
    let _ = stream.shutdown(Shutdown::Write);
}
