//! Real `nats-server` processes with JetStream on loopback: one node, or a cluster of three
//! with routes between them, each with its store in a temporary directory. Nodes can be
//! killed and started again on the same ports and store (a node that crashed and came back).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::free_port;
use crate::http::http;
use crate::wait_for;

/// The `nats-server` program: `$SERSYNC_NATS_SERVER` when set (a path; one that is not a
/// file, e.g. `none`, stands for "not installed", to see the tests skip), else on `PATH`, or
/// Debian's `/usr/sbin/nats-server`; `None` when it is not installed (the tests that need it
/// then say SKIPPED).
pub fn nats_server_program() -> Option<PathBuf> {
    if let Some(chosen) = std::env::var_os("SERSYNC_NATS_SERVER") {
        return Some(PathBuf::from(chosen)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
}

/// One node's fixed identity: its ports and store survive a restart.
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A JetStream server or cluster; every node is killed when it is dropped.
pub struct NatsCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// One node with JetStream.
    pub fn single() -> NatsCluster {
        NatsCluster::start(1)
    }

    /// `size` nodes (1, or 3 for a cluster whose streams can have 3 replicas), each ready
    /// (`/healthz` answers ok, JetStream included) when this returns.
    pub fn start(size: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                store: dir.path().join(format!("store-{i}")),
                log: dir.path().join(format!("n{i}.log")),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster { dir, nodes };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let program = nats_server_program().expect("nats-server is installed");
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &self.nodes[i];
        let mut command = Command::new(program);
        command
            .args(["-a", "127.0.0.1", "-n", &node.name, "-js"])
            .args(["-p", &node.client_port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .arg("-sd")
            .arg(&node.store)
            .arg("-l")
            .arg(&node.log);
        if self.nodes.len() > 1 {
            command
                .args(["--cluster_name", "sersync-test"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", node.cluster_port),
                ])
                .args(["--routes", &routes.join(",")]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.nodes[i].child = Some(child);
    }

    fn wait_healthy(&self, i: usize) {
        let port = self.nodes[i].monitor_port;
        if let Err(e) = wait_for(Duration::from_secs(30), || {
            match http(port, "GET", "/healthz") {
                Ok((200, body)) if body.contains("ok") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }) {
            panic!("nats node {i} not healthy: {e}\n{}", self.log(i));
        }
    }

    /// `nats://127.0.0.1:P1,nats://127.0.0.1:P2,…`: every node, for `servers=`.
    pub fn servers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client port.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    /// Node `i`'s monitoring port (`/healthz`, `/jsz`).
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.nodes[i].monitor_port
    }

    /// SIGKILLs node `i` (its store stays).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its ports and store, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Node `i`'s log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The temporary directory holding the stores and logs.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// One change read back from a stored message, as a test prints it: `kind`, the path (and
/// the old name of a move), exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChange {
    /// The stream sequence of its message.
    pub sequence: u64,
    /// `create`, `delete`, `move`, …
    pub kind: String,
    /// The path, relative to the watch root.
    pub path: Vec<u8>,
    /// A move's old name.
    pub from: Option<Vec<u8>>,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl std::fmt::Display for StoredChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = if self.is_dir { " dir" } else { "" };
        write!(f, "#{} {}{dir} ", self.sequence, self.kind)?;
        if let Some(from) = &self.from {
            write!(f, "\"{}\" -> ", from.escape_ascii())?;
        }
        write!(f, "\"{}\"", self.path.escape_ascii())
    }
}

impl NatsCluster {
    /// Every change stored in `stream` (read from node `node` with JetStream's direct
    /// `MSG.GET` requests over a plain NATS connection), in stream order: what a master
    /// published, for a test's failure report.
    pub fn stored_changes(&self, node: usize, stream: &str) -> Result<Vec<StoredChange>, String> {
        let mut reader = RawClient::connect(self.nodes[node].client_port)?;
        let mut changes = Vec::new();
        let mut misses = 0;
        let mut sequence = 0u64;
        while misses < 3 {
            sequence += 1;
            let reply = reader.request(
                &format!("$JS.API.STREAM.MSG.GET.{stream}"),
                format!("{{\"seq\":{sequence}}}").as_bytes(),
            )?;
            let value: serde_json::Value =
                serde_json::from_slice(&reply).map_err(|e| format!("reply: {e}"))?;
            let Some(data) = value.pointer("/message/data").and_then(|d| d.as_str()) else {
                misses += 1;
                continue;
            };
            misses = 0;
            let payload = base64(data)?;
            for line in payload.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let event: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| format!("event: {e}"))?;
                let bytes = |key: &str| -> Option<Vec<u8>> {
                    if let Some(b) = event.get(format!("{key}_b64")).and_then(|v| v.as_str()) {
                        return base64(b).ok();
                    }
                    event.get(key)?.as_str().map(|s| s.as_bytes().to_vec())
                };
                changes.push(StoredChange {
                    sequence,
                    kind: event["kind"].as_str().unwrap_or("?").to_string(),
                    path: bytes("path").unwrap_or_default(),
                    from: bytes("from"),
                    is_dir: event["is_dir"].as_bool().unwrap_or(false),
                });
            }
        }
        Ok(changes)
    }
}

/// A NATS connection spoken by hand (the text protocol: `CONNECT`, `SUB`, `PUB`, `MSG`):
/// enough for requests, without a client library in the test harness.
struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    const INBOX: &'static str = "_INBOX.sersync-tests";

    fn connect(port: u16) -> Result<RawClient, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut client = RawClient {
            reader: BufReader::new(stream.try_clone().map_err(|e| e.to_string())?),
            writer: stream,
        };
        client.line()?; // INFO
        client.send(
            format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true}}\r\nSUB {} 1\r\nPING\r\n",
                Self::INBOX
            )
            .as_bytes(),
        )?;
        while client.line()? != "PONG" {}
        Ok(client)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer.write_all(bytes).map_err(|e| e.to_string())
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("reading from nats: {e}"))?;
        if line.is_empty() {
            return Err("nats closed the connection".into());
        }
        Ok(line.trim_end().to_string())
    }

    /// Publishes `payload` on `subject` with the inbox as reply subject; the reply's payload.
    fn request(&mut self, subject: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = format!("PUB {subject} {} {}\r\n", Self::INBOX, payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.send(&out)?;
        loop {
            let line = self.line()?;
            let words: Vec<&str> = line.split(' ').collect();
            match words.first().copied() {
                Some("PING") => self.send(b"PONG\r\n")?,
                // MSG subject sid [reply] bytes; HMSG subject sid [reply] header-bytes bytes.
                Some("MSG") | Some("HMSG") => {
                    let total: usize = words
                        .last()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| format!("bad line {line:?}"))?;
                    let headers: usize = if words[0] == "HMSG" {
                        words[words.len() - 2].parse().unwrap_or(0)
                    } else {
                        0
                    };
                    let mut body = vec![0; total + 2];
                    self.reader
                        .read_exact(&mut body)
                        .map_err(|e| e.to_string())?;
                    body.truncate(total);
                    return Ok(body.split_off(headers));
                }
                Some("-ERR") => return Err(line),
                _ => {}
            }
        }
    }
}

/// Standard padded base64, decoded.
fn base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("{text:?} is not base64: {e}"))
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
