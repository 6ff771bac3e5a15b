//! A deadline for a whole reply on a socket, not just for each call: every write gets only
//! the time left, so a client taking the reply one byte at a time is cut off too. (Requests
//! are read without blocking, each against its own deadline: see `server.rs`.)

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `stream`, writable until `until`; past it, every call fails with `TimedOut`.
pub struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl<'a> Deadline<'a> {
    /// `stream` with `budget` from now.
    pub fn new(stream: &'a TcpStream, budget: Duration) -> Deadline<'a> {
        Deadline {
            stream,
            until: Instant::now() + budget,
        }
    }

    /// The time left, or `TimedOut` when none is.
    fn left(&self) -> io::Result<Duration> {
        match self.until.saturating_duration_since(Instant::now()) {
            left if left.is_zero() => Err(io::ErrorKind::TimedOut.into()),
            left => Ok(left),
        }
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
