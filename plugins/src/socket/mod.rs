//! The `socket` sink: tells TCP peers which paths changed.
//!
//! `format="path"` (the default, sersync 2.5.4's wire format): one connection per changed
//! path, carrying the absolute path's bytes and nothing else, then closed. `format="json"`: one
//! persistent connection per peer and lane, one JSON object per event and line. See
//! `docs/sinks/socket.md`.

mod config;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::common::changes::changed_paths;
use crate::common::net::{connect, io_error};
use crate::common::options::PerWatch;
use crate::common::{json, show};
use crate::SinkSpec;
use config::{DesHost, Format};

/// Reads `<plugin name="socket">` into a [`SinkSpec`].
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    Ok(Box::new(SocketSpec {
        lanes: config::parse(node)?,
    }))
}

/// The validated socket configuration, per watch.
#[derive(Debug)]
struct SocketSpec {
    lanes: PerWatch<Vec<DesHost>>,
}

impl SinkSpec for SocketSpec {
    fn name(&self) -> String {
        "socket".into()
    }

    fn own_watches(&self) -> Vec<PathBuf> {
        self.lanes.watches()
    }

    fn summary(&self) -> String {
        self.lanes.summary("socket", |hosts| {
            let hosts: Vec<String> = hosts
                .iter()
                .map(|h| format!("{} ({:?})", h.peer, h.format))
                .collect();
            format!("→ {}", hosts.join(", "))
        })
    }

    fn start(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let hosts = self.lanes.for_root(&ctx.root, "socket")?;
        Ok(Box::new(SocketSink {
            peers: hosts
                .iter()
                .map(|h| Peer {
                    host: h.clone(),
                    stream: None,
                })
                .collect(),
        }))
    }
}

/// One lane of the socket sink.
struct SocketSink {
    peers: Vec<Peer>,
}

/// One `<deshost>` and, in JSON mode, its open connection.
struct Peer {
    host: DesHost,
    stream: Option<TcpStream>,
}

impl Peer {
    /// What this peer is sent for `batch`: in path mode one message per connection, in JSON
    /// mode one line per event (all written to the one connection).
    fn messages(&self, batch: &Batch) -> Vec<Vec<u8>> {
        match self.host.format {
            Format::Path => changed_paths(batch)
                .map(|c| c.absolute(&batch.root).into_os_string().as_bytes().to_vec())
                .collect(),
            Format::Json => batch
                .events
                .iter()
                .map(|event| {
                    let mut line = json::event_json(event, &batch.root).into_bytes();
                    line.push(b'\n');
                    line
                })
                .collect(),
        }
    }

    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let peer = &self.host.peer;
        match self.host.format {
            Format::Path => self.messages(batch).iter().try_for_each(|path| {
                let fail = |doing: &str, e| io_error(peer, &format!("{doing} {}", show(path)), &e);
                let mut stream =
                    connect(peer, self.host.timeout).map_err(|e| fail("connect for", e))?;
                stream.write_all(path).map_err(|e| fail("send", e))?;
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .map_err(|e| fail("close after", e))
            }),
            Format::Json => {
                let lines = self.messages(batch).concat();
                if lines.is_empty() {
                    return Ok(());
                }
                let mut stream = match self.stream.take().filter(still_open) {
                    Some(stream) => stream,
                    None => connect(peer, self.host.timeout)
                        .map_err(|e| io_error(peer, "connect", &e))?,
                };
                stream
                    .write_all(&lines)
                    .and_then(|()| stream.flush())
                    .map_err(|e| io_error(peer, &format!("send {} events", batch.len()), &e))?;
                self.stream = Some(stream);
                Ok(())
            }
        }
    }
}

/// False when the peer has closed or reset the connection (checked without blocking before a
/// reuse, so that a restarted peer gets a new connection instead of the batch going into a dead
/// one). Bytes the peer sent are left unread.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_ok() && open
}

impl Sink for SocketSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.peers.iter_mut().try_for_each(|p| p.deliver(batch))
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        self.peers
            .iter()
            .flat_map(|p| {
                p.messages(batch).into_iter().map(move |m| {
                    format!(
                        "would send to {}: {}",
                        p.host.peer,
                        show(m.strip_suffix(b"\n").unwrap_or(&m))
                    )
                })
            })
            .collect()
    }
}
