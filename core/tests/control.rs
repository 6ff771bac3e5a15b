//! The control endpoint over real TCP: a test double stands in for the engine (which is wired
//! to the endpoint elsewhere) and returns non-trivial numbers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use sersync::control::{
    serve, Control, DaemonState, LaneStatus, ServerHandle, StatusReport, StatusSnapshot,
    WatchStatus, MAX_CONNECTIONS, MAX_RECEIVING, REQUEST_DEADLINE,
};
use sersync::dispatch::{Histogram, HistogramSnapshot};

/// Records every full-sync request and answers how many lanes match.
#[derive(Default)]
struct FakeEngine {
    syncs: Mutex<Vec<(Option<String>, Option<String>)>>,
    /// Still establishing its watches.
    starting: AtomicBool,
}

fn latency(millis: &[u64]) -> HistogramSnapshot {
    let h = Histogram::default();
    for &ms in millis {
        h.observe(Duration::from_millis(ms));
    }
    h.snapshot()
}

impl FakeEngine {
    fn lanes() -> Vec<LaneStatus> {
        let now = SystemTime::now();
        vec![
            LaneStatus {
                name: "rsync backup@10.0.0.2::www".into(),
                root: PathBuf::from("/data/www"),
                pending: 17,
                in_flight: 4,
                batches: 120,
                events: 4_321,
                failures: 3,
                retry_streak: 0,
                last_success: Some(now - Duration::from_secs(5)),
                oldest_pending: Some(now - Duration::from_secs(42)),
                last_error: Some((now - Duration::from_secs(600), "rsync exit 23".into())),
                journal_bytes: 2_048,
                latency: latency(&[3, 7, 40, 40, 120, 2_000]),
                audit_runs: 4,
                audit_differences: 1,
                order: None,
                held: None,
            },
            LaneStatus {
                name: "refresh \"CDN\"\\edge\nsecond".into(),
                root: PathBuf::from("/data/img"),
                pending: 0,
                in_flight: 0,
                batches: 9,
                events: 55,
                failures: 12,
                retry_streak: 4,
                last_success: None,
                oldest_pending: None,
                last_error: Some((now, "HTTP 503 from the purge API".into())),
                journal_bytes: 0,
                latency: latency(&[70_000]),
                audit_runs: 0,
                audit_differences: 0,
                order: Some(sersync::dispatch::OrderStatus {
                    after: vec!["rsync backup@10.0.0.2::www".into()],
                    rule: sersync::dispatch::OrderRule {
                        quorum: sersync::dispatch::Quorum::All,
                        max_wait: Duration::from_secs(60),
                        on_timeout: sersync::dispatch::OnTimeout::Send,
                    },
                    waiting: 3,
                    oldest_wait: Some(Duration::from_millis(1500)),
                    timeouts: 2,
                }),
                held: None,
            },
        ]
    }
}

impl Control for FakeEngine {
    fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            state: match self.starting.load(Ordering::Relaxed) {
                true => DaemonState::Starting,
                false => DaemonState::Running,
            },
            version: "0.1.0-test".into(),
            pid: 4242,
            uptime: Duration::from_secs(3_725),
            overflows: 2,
            events_seen: 987_654,
            directories: 4_096,
            watch_skipped: 1,
            watch_rewalks: 0,
            watches: vec![
                WatchStatus {
                    root: PathBuf::from("/data/www"),
                    lost: None,
                },
                WatchStatus {
                    root: PathBuf::from("/data/img"),
                    lost: None,
                },
            ],
            lanes: FakeEngine::lanes(),
            counters: Vec::new(),
        }
    }

    fn request_full_sync(&self, watch: Option<&str>, remote: Option<&str>) -> usize {
        self.syncs
            .lock()
            .unwrap()
            .push((watch.map(String::from), remote.map(String::from)));
        FakeEngine::lanes()
            .iter()
            .filter(|l| watch.is_none_or(|w| l.root == std::path::Path::new(w)))
            .filter(|l| remote.is_none_or(|r| l.name.contains(r)))
            .count()
    }
}

fn start() -> (ServerHandle, Arc<FakeEngine>) {
    let engine = Arc::new(FakeEngine::default());
    let server = serve("127.0.0.1", 0, engine.clone()).expect("binding 127.0.0.1:0");
    (server, engine)
}

/// A reply: status code, head, body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// Sends `raw` and reads the reply to the end (the server closes after one).
fn send(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete reply");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn request(addr: SocketAddr, method: &str, target: &str) -> Reply {
    send(
        addr,
        format!("{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

#[test]
fn status_is_json_with_the_engine_numbers() {
    let (server, _) = start();
    let reply = request(server.local_addr(), "GET", "/status");
    assert_eq!(reply.status, 200);
    assert!(reply.head.contains("Content-Type: application/json"));
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["version"], "0.1.0-test");
    assert_eq!(json["uptime_seconds"], 3_725);
    assert_eq!(json["overflows"], 2);
    assert_eq!(json["directories"], 4_096);
    assert_eq!(json["events_seen"], 987_654);
    assert_eq!(json["watches"][1]["root"], "/data/img");
    let lane = &json["lanes"][0];
    assert_eq!(lane["name"], "rsync backup@10.0.0.2::www");
    assert_eq!(lane["root"], "/data/www");
    for (key, value) in [
        ("pending", 17),
        ("in_flight", 4),
        ("batches", 120),
        ("events", 4_321),
        ("failures", 3),
        ("retry_streak", 0),
        ("journal_bytes", 2_048),
    ] {
        assert_eq!(lane[key], value, "{key}");
    }
    let time = json["time"].as_u64().unwrap();
    assert_eq!(time - lane["last_success"].as_u64().unwrap(), 5);
    assert_eq!(time - lane["last_error"]["time"].as_u64().unwrap(), 600);
    assert_eq!(lane["last_error"]["message"], "rsync exit 23");
    assert_eq!(lane["latency"]["count"], 6);
    assert!((lane["latency"]["sum"].as_f64().unwrap() - 2.21).abs() < 1e-9);
    // Only an ordered lane says what it waits for.
    assert!(lane.get("order").is_none());
    let order = &json["lanes"][1]["order"];
    assert_eq!(order["after"][0], "rsync backup@10.0.0.2::www");
    assert_eq!(order["quorum"], "all");
    assert_eq!(order["on_timeout"], "send");
    assert_eq!(order["max_wait_seconds"], 60.0);
    assert_eq!(order["waiting"], 3);
    assert_eq!(order["oldest_wait_seconds"], 1.5);
    assert_eq!(order["timeouts"], 2);
    let p50 = lane["latency"]["p50"].as_f64().unwrap();
    let p99 = lane["latency"]["p99"].as_f64().unwrap();
    assert!((0.025..=0.05).contains(&p50), "p50 {p50}");
    assert!((1.0..=2.5).contains(&p99), "p99 {p99}");
    let other = &json["lanes"][1];
    assert_eq!(other["last_success"], serde_json::Value::Null);
    assert_eq!(other["retry_streak"], 4);
    assert_eq!(other["latency"]["p99"], 60.0);
    // The document reads back into the type `sersync status` uses.
    let report: StatusReport = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(report.lanes.len(), 2);
}

#[test]
fn a_daemon_still_establishing_its_watches_answers_status_with_503_and_says_so() {
    let (server, engine) = start();
    engine.starting.store(true, Ordering::Relaxed);
    let reply = request(server.local_addr(), "GET", "/status");
    assert_eq!(reply.status, 503, "{}", reply.body);
    let report: StatusReport = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(report.state, DaemonState::Starting);
    // `sersync status` reads it and says so instead of failing.
    let fetched = sersync::control::client::fetch_status("127.0.0.1", server.local_addr().port())
        .expect("a starting daemon's report is usable");
    assert!(sersync::control::client::render_table(&fetched)
        .contains("(starting: establishing watches)"));
    engine.starting.store(false, Ordering::Relaxed);
    assert_eq!(request(server.local_addr(), "GET", "/status").status, 200);
}

/// One parsed sample line.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses a sample line of the text format, or explains why it is not one.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find("=\"").ok_or("label without =\"")?;
            let key = &rest[..eq];
            if key.is_empty()
                || key.starts_with(|c: char| c.is_ascii_digit())
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!("bad label name {key:?}"));
            }
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("raw newline in a label value".into()),
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            rest = &rest[eq + 2 + end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = match fields.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[test]
fn metrics_are_valid_exposition_text() {
    let (server, _) = start();
    let reply = request(server.local_addr(), "GET", "/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply
        .head
        .contains("Content-Type: text/plain; version=0.0.4"));
    let mut help = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in reply.body.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("HELP name text");
            assert!(!text.is_empty(), "line {n}: empty help");
            assert!(help.insert(name.to_string()), "line {n}: second HELP");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "line {n}: type {kind}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "line {n}: second TYPE"
            );
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "line {n}: {line:?}"
            );
            let sample = parse_sample(line).unwrap_or_else(|e| panic!("line {n} {line:?}: {e}"));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| sample.name.strip_suffix(s))
                .find(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(&sample.name)
                .to_string();
            assert!(types.contains_key(&family), "line {n}: no TYPE before it");
            assert!(help.contains(&family), "line {n}: no HELP before it");
            if types[&family] == "counter" {
                assert!(sample.name.ends_with("_total"), "line {n}");
            }
            samples.push(sample);
        }
    }
    let value = |name: &str, lane: Option<&str>| {
        samples
            .iter()
            .find(|s| s.name == name && lane.is_none_or(|l| s.labels["lane"] == l))
            .unwrap_or_else(|| panic!("no {name}"))
            .value
    };
    assert_eq!(value("sersync_events_seen_total", None), 987_654.0);
    assert_eq!(value("sersync_kernel_overflows_total", None), 2.0);
    assert_eq!(value("sersync_watched_directories", None), 4_096.0);
    let www = Some("rsync backup@10.0.0.2::www");
    let cdn = Some("refresh \"CDN\"\\edge\nsecond");
    assert_eq!(value("sersync_lane_pending_paths", www), 17.0);
    assert_eq!(value("sersync_lane_in_flight_events", www), 4.0);
    assert_eq!(value("sersync_lane_batches_total", www), 120.0);
    assert_eq!(value("sersync_lane_events_total", www), 4_321.0);
    assert_eq!(value("sersync_lane_failures_total", cdn), 12.0);
    assert_eq!(value("sersync_lane_retry_streak", cdn), 4.0);
    assert_eq!(value("sersync_lane_journal_bytes", www), 2_048.0);
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value("sersync_lane_last_success_timestamp_seconds", www);
    assert!((now - 7.0..=now - 4.0).contains(&last), "{last} vs {now}");
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "sersync_lane_last_success_timestamp_seconds"
                && cdn == Some(s.labels["lane"].as_str())),
        "a lane that never delivered has no last success"
    );
    let lag = value("sersync_lane_oldest_pending_seconds", www);
    assert!((42.0..45.0).contains(&lag), "{lag}");
    assert_eq!(value("sersync_lane_oldest_pending_seconds", cdn), 0.0);
    let started = value("process_start_time_seconds", None);
    assert!(started <= now && started > now - 3_600.0, "{started}");
    assert!(value("process_resident_memory_bytes", None) > 0.0);
    assert!(value("process_open_fds", None) > 0.0);

    // Each lane's histogram: buckets ascending in `le`, cumulative, ending in +Inf = _count.
    for lane in [www, cdn] {
        let lane = lane.unwrap();
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == "sersync_lane_sync_latency_seconds_bucket")
            .filter(|s| s.labels["lane"] == lane)
            .collect();
        assert_eq!(buckets.len(), 14);
        let les: Vec<f64> = buckets
            .iter()
            .map(|b| match b.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap(),
            })
            .collect();
        assert!(les.windows(2).all(|w| w[0] < w[1]), "{les:?}");
        assert_eq!(*les.last().unwrap(), f64::INFINITY);
        assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
        let count = value("sersync_lane_sync_latency_seconds_count", Some(lane));
        assert_eq!(buckets.last().unwrap().value, count);
    }
    assert_eq!(value("sersync_lane_sync_latency_seconds_count", www), 6.0);
    assert!((value("sersync_lane_sync_latency_seconds_sum", www) - 2.21).abs() < 1e-9);
    // The ordering between sinks: only the ordered lane has these samples.
    assert_eq!(value("sersync_lane_order_waiting", cdn), 3.0);
    assert_eq!(value("sersync_lane_order_oldest_wait_seconds", cdn), 1.5);
    assert_eq!(value("sersync_lane_order_timeouts_total", cdn), 2.0);
    assert!(!samples
        .iter()
        .any(|s| s.name.starts_with("sersync_lane_order_")
            && s.labels.get("lane").map(String::as_str) == www));
}

#[test]
fn sync_passes_the_filters_through() {
    let (server, engine) = start();
    let addr = server.local_addr();
    let reply = request(addr, "POST", "/sync?watch=%2Fdata/www&remote=backup@");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["lanes"], 1);

    let reply = request(addr, "POST", "/sync");
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("\"lanes\": 2"));

    let reply = request(addr, "POST", "/sync?remote=nowhere");
    assert_eq!(reply.status, 404);
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["lanes"], 0);
    assert!(json["error"].as_str().unwrap().contains("nowhere"));

    assert_eq!(
        *engine.syncs.lock().unwrap(),
        vec![
            (Some("/data/www".into()), Some("backup@".into())),
            (None, None),
            (None, Some("nowhere".into())),
        ]
    );

    // Refused before the engine is asked.
    assert_eq!(request(addr, "POST", "/sync?path=/x").status, 400);
    assert_eq!(request(addr, "POST", "/sync?watch=%zz").status, 400);
    let with_body = send(
        addr,
        b"POST /sync HTTP/1.1\r\nContent-Length: 12\r\n\r\nwatch=/data\n",
    );
    assert_eq!(with_body.status, 400);
    assert_eq!(engine.syncs.lock().unwrap().len(), 3);
}

#[test]
fn wrong_methods_and_paths_get_short_answers() {
    let (server, _) = start();
    let addr = server.local_addr();
    let reply = request(addr, "GET", "/sync");
    assert_eq!(reply.status, 405);
    assert!(reply.head.contains("Allow: POST"));
    let reply = request(addr, "DELETE", "/status");
    assert_eq!(reply.status, 405);
    assert!(reply.head.contains("Allow: GET"));
    assert_eq!(request(addr, "GET", "/").status, 404);
    assert_eq!(request(addr, "GET", "/status/../etc").status, 404);
}

#[test]
fn garbage_gets_400_and_the_server_keeps_serving() {
    let (server, _) = start();
    let addr = server.local_addr();
    for garbage in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /status HTTP/1.1\r\nbroken header\r\n\r\n",
        b"\xff\xfe\xfd\n\n",
        b"GET http://example.com/status HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(send(addr, garbage).status, 400, "{garbage:?}");
    }
    let mut huge = b"GET /status HTTP/1.1\r\nX: ".to_vec();
    huge.resize(20_000, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    // The server may reset the connection after its 431 since it does not read the rest.
    if let Ok(mut stream) = TcpStream::connect(addr) {
        let _ = stream.write_all(&huge);
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
            "{reply}"
        );
    }
    // A client that sends half a request and hangs up.
    TcpStream::connect(addr)
        .unwrap()
        .write_all(b"GET /sta")
        .unwrap();
    assert_eq!(request(addr, "GET", "/status").status, 200);
}

#[test]
fn a_silent_client_does_not_block_others() {
    let (server, _) = start();
    let addr = server.local_addr();
    let silent = TcpStream::connect(addr).unwrap();
    let mut trickle = TcpStream::connect(addr).unwrap();
    trickle.write_all(b"GET /status HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    assert_eq!(request(addr, "GET", "/status").status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The deadline closes the silent one without a word, and the trickling one with a 408.
    silent
        .set_read_timeout(Some(REQUEST_DEADLINE + Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!((&silent).read_to_end(&mut buf).unwrap(), 0);
    let mut reply = String::new();
    trickle.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
}

/// Raises this process's soft descriptor limit to the hard one: the tests below hold more
/// than a thousand sockets (both ends in this process).
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[test]
fn idle_connections_take_no_place_and_past_the_limit_the_oldest_goes() {
    raise_descriptor_limit();
    let (server, _) = start();
    let addr = server.local_addr();
    let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS * 2)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    assert_eq!(request(addr, "GET", "/status").status, 200);
    idle.extend((idle.len()..MAX_RECEIVING).map(|_| TcpStream::connect(addr).unwrap()));
    // One more than the server receives at once: the oldest is closed with a 503, and a
    // client that sends its request at once still gets an answer.
    let oldest = &idle[0];
    let newest = TcpStream::connect(addr).unwrap();
    oldest
        .set_read_timeout(Some(REQUEST_DEADLINE + Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    (&*oldest).read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    assert_eq!(request(addr, "GET", "/status").status, 200);
    drop((idle, newest));
}

/// Keeps `clients` connections sending one byte a second of a request head that never ends,
/// reconnecting each as soon as the server closes it (slowloris), until `stop` is set.
fn slowloris(addr: SocketAddr, clients: usize, stop: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let connect = || {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_nonblocking(true).ok()?;
        Some(stream)
    };
    let mut attackers: Vec<Option<TcpStream>> = (0..clients).map(|_| connect()).collect();
    let head = b"GET /status HTTP/1.1\r\nX-Slow: ";
    let mut sent = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        for slot in &mut attackers {
            let alive = slot
                .as_mut()
                .is_some_and(|s| s.write(&[byte]).is_ok_and(|n| n == 1));
            if !alive {
                *slot = connect();
            }
        }
        sent += 1;
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn status_keeps_answering_under_200_slow_clients() {
    raise_descriptor_limit();
    let (server, _) = start();
    let addr = server.local_addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = {
        let stop = stop.clone();
        thread::spawn(move || slowloris(addr, 200, stop))
    };
    // Let every slow client connect and start its head, then ask while they trickle on,
    // across more than one request deadline (so they are cut off and come back meanwhile).
    thread::sleep(Duration::from_millis(1500));
    let attempts = 80;
    let mut answered = 0;
    let mut statuses = BTreeMap::new();
    for _ in 0..attempts {
        let status = try_status(addr);
        *statuses.entry(status).or_insert(0) += 1;
        if status == Some(200) {
            answered += 1;
        }
        thread::sleep(REQUEST_DEADLINE * 2 / attempts);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    attack.join().unwrap();
    assert!(
        answered * 100 >= attempts * 95,
        "{answered} of {attempts} /status requests answered 200 under 200 slow clients: {statuses:?}"
    );
}

/// One `GET /status`; its status code, `None` when there was no complete reply.
fn try_status(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /status HTTP/1.1\r\nHost: test\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split(' ').nth(1)?.parse().ok()
}

#[test]
fn binding_errors_are_returned_and_localhost_resolves() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = serve("127.0.0.1", port, Arc::new(FakeEngine::default())).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
    assert!(serve("no-such-host.invalid", 0, Arc::new(FakeEngine::default())).is_err());

    let server = serve("localhost", 0, Arc::new(FakeEngine::default())).unwrap();
    assert!(server.local_addr().ip().is_loopback());
    assert_eq!(request(server.local_addr(), "GET", "/status").status, 200);
    let addr = server.local_addr();
    server.stop();
    assert!(TcpStream::connect(addr).is_err());
}

/// A configuration whose `<host>` points at `addr`.
fn config_for(dir: &tempfile::TempDir, addr: SocketAddr) -> PathBuf {
    let path = dir.path().join("confxml.xml");
    std::fs::write(
        &path,
        format!(
            "<head version=\"2.5\"><host hostip=\"{}\" port=\"{}\"/></head>\n",
            addr.ip(),
            addr.port()
        ),
    )
    .unwrap();
    path
}

#[test]
fn sersync_status_prints_one_line_per_lane() {
    let (server, _) = start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&dir, server.local_addr());
    for args in [["status", "-o"], ["-o", "status"]] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sersync"));
        let cmd = if args[0] == "status" {
            cmd.arg("status").arg("-o").arg(&config)
        } else {
            cmd.arg("-o").arg(&config).arg("status")
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{stdout}");
        assert!(
            lines[0].contains("sersync 0.1.0-test, up 1h02m"),
            "{stdout}"
        );
        assert!(lines[1].starts_with("LANE "));
        assert!(lines[2].starts_with("rsync backup@10.0.0.2::www  /data/www  17 "));
        assert!(lines[2].contains("5s ago"), "{stdout}");
        assert!(lines[2].contains("10m00s ago: rsync exit 23"), "{stdout}");
        assert!(lines[3].contains("12 (4 in a row)"), "{stdout}");
        assert!(lines[3].contains("never"), "{stdout}");
    }
}

#[test]
fn sersync_status_without_a_daemon_fails_clearly() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&dir, addr);
    let out = Command::new(env!("CARGO_BIN_EXE_sersync"))
        .arg("status")
        .arg("-o")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "UNKNOWN");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("is sersync running?"), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
}

#[test]
fn the_status_command_leaves_the_254_command_lines_alone() {
    use clap::Parser;
    use sersync::cli::{Cli, Command as Sub, StatusArgs};
    let cli = Cli::try_parse_from(["sersync", "-d", "-r", "-o", "/etc/c.xml"]).unwrap();
    assert!(cli.daemon && cli.full_sync && cli.command.is_none());
    assert_eq!(cli.config, PathBuf::from("/etc/c.xml"));
    for args in [
        &["sersync", "status", "-o", "/etc/c.xml"][..],
        &["sersync", "-o", "/etc/c.xml", "status"],
        &["sersync", "status", "--config", "/etc/c.xml"],
    ] {
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(
            cli.command,
            Some(Sub::Status(StatusArgs::default())),
            "{args:?}"
        );
        assert_eq!(cli.config, PathBuf::from("/etc/c.xml"), "{args:?}");
    }
    assert!(Cli::try_parse_from(["sersync", "stauts"]).is_err());
}

/// Runs `promtool ARGS…` with `stdin` on its standard input; `None` (after saying so) when
/// promtool is not installed (`apt-get install prometheus`; CI installs it).
fn promtool(args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    use std::process::Stdio;
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool is NOT installed: not run (apt-get install prometheus)");
        return None;
    };
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn promtool_finds_nothing_to_say_about_the_metrics() {
    let (server, _) = start();
    let reply = request(server.local_addr(), "GET", "/metrics");
    let Some(out) = promtool(&["check", "metrics"], reply.body.as_bytes()) else {
        return;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

/// `sersync status ARGS… -o config`: exit status, standard output, standard error.
fn sersync_status(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sersync"))
        .arg("status")
        .args(args)
        .arg("-o")
        .arg(config)
        .env_remove("SERSYNC_CONTROL_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn sersync_status_json_prints_the_document() {
    let (server, _) = start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&dir, server.local_addr());
    let (code, stdout, stderr) = sersync_status(&config, &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: StatusReport = serde_json::from_str(&stdout).expect("only the document");
    assert_eq!(report.lanes.len(), 2);
    assert!(report.time - report.lanes[0].oldest_pending.unwrap() >= 42);
    assert_eq!(report.lanes[1].oldest_pending, None);

    // With a threshold, the verdict goes to standard error: standard output stays JSON.
    let (code, stdout, stderr) = sersync_status(&config, &["--json", "--crit-failing", "3"]);
    assert_eq!(code, 2, "{stderr}");
    serde_json::from_str::<StatusReport>(&stdout).unwrap();
    assert!(stderr.starts_with("SERSYNC CRITICAL - "), "{stderr}");
}

#[test]
fn sersync_status_exits_as_a_monitoring_plugin() {
    let (server, engine) = start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&dir, server.local_addr());
    // The fake's lanes: www lags 42 s, the CDN lane has failed 4 times in a row.
    for (args, code, says) in [
        (&[][..], 0, "sersync 0.1.0-test"),
        (
            &["--warn-lag", "5m", "--warn-failing", "5"],
            0,
            "SERSYNC OK - ",
        ),
        (
            &["--warn-lag", "30s", "--crit-lag", "2m"],
            1,
            "SERSYNC WARNING - rsync backup@10.0.0.2::www: lag 4",
        ),
        (
            &["--warn-lag", "30", "--crit-lag", "40s"],
            2,
            "SERSYNC CRITICAL - ",
        ),
        (&["--warn-failing", "3"], 1, "SERSYNC WARNING - refresh"),
        (
            &["--warn-failing", "2", "--crit-failing", "4"],
            2,
            "4 failures in a row",
        ),
    ] {
        let (got, stdout, stderr) = sersync_status(&config, args);
        assert_eq!(got, code, "{args:?}: {stdout}{stderr}");
        let first = stdout.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{args:?}: {stdout}");
        if !args.is_empty() {
            assert!(first.contains(" | max_lag=4"), "{first}");
            assert!(stdout
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("sersync 0.1.0-test"));
        }
    }
    engine.starting.store(true, Ordering::Relaxed);
    let (code, stdout, _) = sersync_status(&config, &["--warn-lag", "1h"]);
    assert_eq!(code, 1, "a daemon still starting is a warning: {stdout}");
    assert!(stdout.starts_with("SERSYNC WARNING - starting"), "{stdout}");

    let (code, _, stderr) = sersync_status(&config, &["--warn-lag", "soon"]);
    assert_eq!(code, 1, "a usage error is clap's: {stderr}");
    assert!(stderr.contains("not a duration"), "{stderr}");

    drop(server);
    let (code, stdout, _) = sersync_status(&config, &["--crit-lag", "1m"]);
    assert_eq!(code, 3);
    assert!(
        stdout.starts_with("SERSYNC UNKNOWN - cannot get the status"),
        "{stdout}"
    );
    let (code, stdout, _) = sersync_status(&dir.path().join("missing.xml"), &["--crit-lag", "1m"]);
    assert_eq!(code, 3, "an unreadable configuration is UNKNOWN too");
    assert!(stdout.starts_with("SERSYNC UNKNOWN - "), "{stdout}");
}

const TOKEN: &str = "0123456789abcdef-token";

fn start_guarded(reads_need_token: bool) -> (ServerHandle, Arc<FakeEngine>) {
    let engine = Arc::new(FakeEngine::default());
    let access = sersync::control::Access {
        token: sersync::control::Token::new(TOKEN),
        reads_need_token,
    };
    let server = sersync::control::serve_with("127.0.0.1", 0, engine.clone(), access).unwrap();
    (server, engine)
}

fn request_with(addr: SocketAddr, method: &str, target: &str, authorization: &str) -> Reply {
    send(
        addr,
        format!(
            "{method} {target} HTTP/1.1\r\nHost: test\r\nAuthorization: {authorization}\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn with_a_token_changes_need_it_and_reads_only_when_configured() {
    let (server, engine) = start_guarded(false);
    let addr = server.local_addr();
    let refused = request(addr, "POST", "/sync");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused.head.contains("WWW-Authenticate: Bearer"),
        "{}",
        refused.head
    );
    assert!(
        refused.body.contains("Authorization: Bearer"),
        "{}",
        refused.body
    );
    let wrong = request_with(addr, "POST", "/sync", "Bearer 0123456789abcdef-tokem");
    assert_eq!(wrong.status, 401);
    assert!(
        engine.syncs.lock().unwrap().is_empty(),
        "no sync without the token"
    );
    let right = request_with(addr, "POST", "/sync", &format!("Bearer {TOKEN}"));
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(engine.syncs.lock().unwrap().len(), 1);
    assert_eq!(
        request(addr, "GET", "/status").status,
        200,
        "reads stay open"
    );
    assert_eq!(request(addr, "GET", "/metrics").status, 200);

    let (server, _) = start_guarded(true);
    let addr = server.local_addr();
    for path in ["/status", "/metrics"] {
        assert_eq!(request(addr, "GET", path).status, 401, "{path}");
        assert_eq!(request_with(addr, "GET", path, "Bearer nope").status, 401);
        let right = request_with(addr, "GET", path, &format!("Bearer {TOKEN}"));
        assert_eq!(right.status, 200, "{path}");
    }
}

/// A configuration listening on `host:port` with `extra` attributes on `<host>`, watching
/// `dir`.
fn guarded_config(dir: &tempfile::TempDir, host: &str, port: u16, extra: &str) -> PathBuf {
    let path = dir.path().join("guarded.xml");
    std::fs::write(
        &path,
        format!(
            "<head version=\"2.5\">\n  <host hostip=\"{host}\" port=\"{port}\" {extra}/>\n  <sersync><localpath watch=\"{}\"/></sersync>\n</head>\n",
            dir.path().display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn sersync_status_sends_the_configured_token() {
    use std::os::unix::fs::PermissionsExt;
    let (server, _) = start_guarded(true);
    let port = server.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let extra = format!(
        "tokenFile=\"{}\" readsNeedToken=\"true\"",
        token_file.display()
    );
    let config = guarded_config(&dir, "127.0.0.1", port, &extra);
    let (code, stdout, stderr) = sersync_status(&config, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("rsync backup@10.0.0.2::www"), "{stdout}");

    let open = config_for(&dir, server.local_addr());
    let (code, _, stderr) = sersync_status(&open, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("SERSYNC_CONTROL_TOKEN"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sersync"))
        .args(["status", "-o"])
        .arg(&open)
        .env("SERSYNC_CONTROL_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "the token from the environment");

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = sersync_status(&config, &[]);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("every user can read the token file"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_a_control_endpoint_open_to_other_hosts_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let check = |config: &std::path::Path, token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sersync"));
        cmd.arg("--check").arg("-o").arg(config);
        match token {
            Some(token) => cmd.env("SERSYNC_CONTROL_TOKEN", token),
            None => cmd.env_remove("SERSYNC_CONTROL_TOKEN"),
        };
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap(), text)
    };
    let open = guarded_config(&dir, "0.0.0.0", 8008, "");
    let (code, text) = check(&open, None);
    assert_eq!(code, 255, "{text}");
    assert!(text.contains("guarded.xml:2:3"), "located: {text}");
    assert!(
        text.contains("reachable from other hosts without a token"),
        "{text}"
    );
    assert!(text.contains("tokenFile="), "a hint: {text}");
    let (code, text) = check(&open, Some(TOKEN));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("control: 0.0.0.0:8008, token from $SERSYNC_CONTROL_TOKEN"),
        "{text}"
    );
    for loopback in ["localhost", "127.0.0.1", "[::1]"] {
        let config = guarded_config(&dir, loopback, 8008, "");
        let (code, text) = check(&config, None);
        assert_eq!(code, 0, "{loopback}: {text}");
        assert!(text.contains("no token (every request open)"), "{text}");
    }
    let strict = guarded_config(&dir, "localhost", 8008, "readsNeedToken=\"true\"");
    let (code, text) = check(&strict, None);
    assert_eq!(code, 255, "{text}");
    assert!(text.contains("needs a token"), "{text}");
}

/// `examples/monitoring/FILE`.
fn monitoring_file(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/monitoring"
    ))
    .join(name)
}

#[test]
fn the_example_alerts_and_dashboard_use_metrics_that_exist() {
    let (server, _) = start();
    let exposed = request(server.local_addr(), "GET", "/metrics").body;
    let families: HashSet<&str> = exposed
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let name = regex::Regex::new(r"\b(?:sersync|process)_[a-z_]+\b").unwrap();
    for file in ["alerts.yml", "alerts_test.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(monitoring_file(file)).unwrap();
        let mut used = 0;
        for found in name.find_iter(&text) {
            let metric = found.as_str();
            let family = metric
                .strip_suffix("_bucket")
                .filter(|f| families.contains(f))
                .unwrap_or(metric);
            assert!(
                families.contains(family),
                "{file} uses {metric}, not in /metrics"
            );
            used += 1;
        }
        assert!(used > 5, "{file}: {used} metric names");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_file("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.iter().all(|p| p["targets"][0]["expr"].is_string()));
}

#[test]
fn promtool_checks_the_example_alert_rules_and_their_unit_tests() {
    let rules = monitoring_file("alerts.yml");
    let Some(out) = promtool(&["check", "rules", rules.to_str().unwrap()], b"") else {
        return;
    };
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules: {said}");
    assert!(said.contains("SUCCESS: 7 rules found"), "{said}");
    let tests = monitoring_file("alerts_test.yml");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()], b"").unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool test rules: {said}");
}
