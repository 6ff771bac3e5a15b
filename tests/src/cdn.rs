//! A CDN in front of a slave, on loopback: [`Origin`], a static HTTP server serving a
//! directory (the rsync slave's module), and [`Varnish`], a real `varnishd` caching it that
//! accepts `PURGE` from 127.0.0.1. [`http`] is the one-request client the tests read them
//! with.

use crate::http::http_bytes;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A static file server on 127.0.0.1: `GET /REL` answers the file `root/REL` (200, with a
/// long `Cache-Control` so that a cache keeps what it got) or 404. One thread per
/// connection, `Connection: close`.
pub struct Origin {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Origin {
    /// Serves `root`.
    pub fn start(root: &Path) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the origin");
        let port = listener.local_addr().expect("address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let (root, flag) = (root.to_path_buf(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let root = root.clone();
                    thread::spawn(move || serve(stream, &root));
                }
            }
        });
        Origin { port, stop }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, root: &Path) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("/");
    let rel = target.trim_start_matches('/');
    let file = root.join(rel);
    let reply = match (rel.contains(".."), fs::read(&file)) {
        (false, Ok(body)) => {
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=3600\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            head.extend_from_slice(&body);
            head
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nCache-Control: max-age=3600\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&reply);
}

/// The VCL the test runs Varnish with (and `docs/sinks/refresh-cdn.md` shows): the origin as
/// backend, `PURGE` allowed from 127.0.0.1 and refused from anywhere else.
pub fn vcl(origin_port: u16) -> String {
    format!(
        r#"vcl 4.1;

backend origin {{
    .host = "127.0.0.1";
    .port = "{origin_port}";
}}

acl purgers {{
    "127.0.0.1";
}}

sub vcl_recv {{
    if (req.method == "PURGE") {{
        if (!client.ip ~ purgers) {{
            return (synth(405, "PURGE not allowed from " + client.ip));
        }}
        return (purge);
    }}
}}
"#
    )
}

/// A real `varnishd` in the foreground on a loopback port, caching an [`Origin`]; killed
/// when dropped.
pub struct Varnish {
    child: Child,
    port: u16,
    _dir: TempDir,
    log: PathBuf,
}

impl Varnish {
    /// The `varnishd` program, if installed (Debian's `varnish` package).
    pub fn program() -> Option<PathBuf> {
        ["/usr/sbin/varnishd", "/usr/bin/varnishd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    }

    /// Starts Varnish in front of 127.0.0.1:`origin_port` and waits until it answers;
    /// `None` when `varnishd` is not installed. `-j none`: no privilege separation jail, so
    /// that it runs as whoever runs the test (root in CI, where the default `unix` jail
    /// would switch to the package's `varnish`/`vcache` users and need them to reach the
    /// working directory).
    pub fn start(origin_port: u16) -> Option<Varnish> {
        let program = Varnish::program()?;
        let dir = tempfile::tempdir().expect("varnish dir");
        let vcl_file = dir.path().join("test.vcl");
        fs::write(&vcl_file, vcl(origin_port)).expect("write the VCL");
        let port = crate::free_port();
        let log = dir.path().join("varnishd.log");
        let out = fs::File::create(&log).expect("log");
        let child = Command::new(program)
            .args(["-F", "-j", "none", "-a"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-f")
            .arg(&vcl_file)
            .arg("-n")
            .arg(dir.path().join("work"))
            .args(["-s", "malloc,16m", "-p", "default_ttl=3600"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start varnishd");
        let mut varnish = Varnish {
            child,
            port,
            _dir: dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_bytes(port, "GET", "/").is_err() {
            if let Ok(Some(status)) = varnish.child.try_wait() {
                panic!("varnishd exited with {status}:\n{}", varnish.log());
            }
            assert!(
                Instant::now() < deadline,
                "varnishd did not answer:\n{}",
                varnish.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Some(varnish)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its base URL, as refreshCDN's `<sendurl base>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET path` through it: the body, or `None` for anything but a 200.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        match http_bytes(self.port, "GET", path) {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// `PURGE path`, as the test's own (resetting between trials).
    pub fn purge(&self, path: &str) -> u16 {
        http_bytes(self.port, "PURGE", path).map_or(0, |(status, _)| status)
    }

    /// What varnishd printed.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        // SIGTERM: the manager stops its cache process too (SIGKILL would orphan it).
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
