//! Real `nats-server` processes with JetStream on loopback: one node, or a cluster of three
//! with routes between them, each with its store in a temporary directory. Nodes can be
//! killed and started again on the same ports and store (a node that crashed and came back).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::free_port;
use crate::http::http;
use crate::wait_for;

/// The `nats-server` program: on `PATH`, or Debian's `/usr/sbin/nats-server`; `None` when it
/// is not installed (the tests that need it then say SKIPPED).
pub fn nats_server_program() -> Option<PathBuf> {
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

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
