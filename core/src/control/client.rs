//! `sersync status`: asks a running daemon for `/status` and prints one line per lane (or the
//! document itself), with a monitoring plugin's exit status.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use sersync_plugin_sdk::text::breaks_line;

use super::{DaemonState, StatusReport, Token};
use crate::cli::StatusArgs;
use crate::config;

/// How long connecting, and then each read or write, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The largest reply read (a status of thousands of lanes is far below it).
const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// The monitoring-plugin verdicts, in rising order; each is its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// 0: every threshold holds (or none was given).
    Ok = 0,
    /// 1: a `--warn-*` threshold is crossed, or the daemon is still establishing its watches.
    Warning = 1,
    /// 2: a `--crit-*` threshold is crossed.
    Critical = 2,
    /// 3: no usable answer: the configuration cannot be read, the daemon cannot be reached,
    /// or its reply is not a `/status` document.
    Unknown = 3,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

/// What the thresholds make of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The worst level reached.
    pub level: Level,
    /// Why, one phrase per crossed threshold.
    pub reasons: Vec<String>,
    /// The largest lag of any lane, seconds.
    pub max_lag: u64,
    /// The longest retry streak of any lane.
    pub max_streak: u32,
}

impl Verdict {
    /// The plugin's status line: `SERSYNC WARNING - why; why | perfdata`.
    pub fn line(&self, args: &StatusArgs) -> String {
        let why = match self.reasons.is_empty() {
            true => "every lane within its thresholds".to_string(),
            false => self.reasons.join("; "),
        };
        let secs = |d: Option<Duration>| d.map_or(String::new(), |d| d.as_secs().to_string());
        let count = |n: Option<u32>| n.map_or(String::new(), |n| n.to_string());
        format!(
            "SERSYNC {} - {why} | max_lag={}s;{};{} max_retry_streak={};{};{}",
            self.level.word(),
            self.max_lag,
            secs(args.warn_lag),
            secs(args.crit_lag),
            self.max_streak,
            count(args.warn_failing),
            count(args.crit_failing),
        )
    }
}

/// Holds `report` to the thresholds of `args`.
pub fn judge(report: &StatusReport, args: &StatusArgs) -> Verdict {
    let mut verdict = Verdict {
        level: Level::Ok,
        reasons: Vec::new(),
        max_lag: 0,
        max_streak: 0,
    };
    let raise = |verdict: &mut Verdict, level: Level, why: String| {
        verdict.level = verdict.level.max(level);
        verdict.reasons.push(why);
    };
    if report.state == DaemonState::Starting {
        raise(
            &mut verdict,
            Level::Warning,
            "starting: establishing watches".into(),
        );
    }
    for lane in &report.lanes {
        let name = printable(&lane.name, usize::MAX);
        let lag = lane
            .oldest_pending
            .map_or(0, |t| report.time.saturating_sub(t));
        verdict.max_lag = verdict.max_lag.max(lag);
        verdict.max_streak = verdict.max_streak.max(lane.retry_streak);
        let over = |limit: Option<Duration>| limit.is_some_and(|l| lag > l.as_secs());
        if over(args.crit_lag) {
            raise(
                &mut verdict,
                Level::Critical,
                format!("{name}: lag {}", duration(lag)),
            );
        } else if over(args.warn_lag) {
            raise(
                &mut verdict,
                Level::Warning,
                format!("{name}: lag {}", duration(lag)),
            );
        }
        let streak = lane.retry_streak;
        let failing = |limit: Option<u32>| limit.is_some_and(|n| streak >= n);
        if failing(args.crit_failing) {
            raise(
                &mut verdict,
                Level::Critical,
                format!("{name}: {streak} failures in a row"),
            );
        } else if failing(args.warn_failing) {
            raise(
                &mut verdict,
                Level::Warning,
                format!("{name}: {streak} failures in a row"),
            );
        }
    }
    verdict
}

/// Whether any threshold was given: then the first line of standard output is the verdict.
fn monitoring(args: &StatusArgs) -> bool {
    args.warn_lag.is_some()
        || args.crit_lag.is_some()
        || args.warn_failing.is_some()
        || args.crit_failing.is_some()
}

/// The longest last-error message shown in the table, in characters.
const ERROR_WIDTH: usize = 60;

/// Runs `sersync status`: reads `<host>` from `config_file` (and the token it names),
/// fetches `/status`, prints the table (or, with `--json`, the document) and returns the
/// [`Level`] the thresholds of `args` give as the exit status.
pub fn status_command(config_file: &Path, args: &StatusArgs) -> ExitCode {
    let unknown = |why: String| {
        if monitoring(args) {
            println!("SERSYNC UNKNOWN - {}", printable(&why, usize::MAX));
        }
        eprintln!("sersync: {why}");
        ExitCode::from(Level::Unknown as u8)
    };
    let config = match config::read(config_file) {
        Ok(config) => config,
        Err(e) => return unknown(e.to_string()),
    };
    let token = match config.control.token() {
        Ok(token) => token,
        Err(e) => return unknown(e.in_file(config_file).to_string()),
    };
    let (host, port) = (&config.control.host, config.control.port);
    let fetched = fetch_document(host, port, token.as_ref()).and_then(|body| {
        let report = parse_report(&body)?;
        Ok((body, report))
    });
    let (body, report) = match fetched {
        Ok(fetched) => fetched,
        Err(e) => {
            return unknown(format!(
                "cannot get the status from {host}:{port} (<host> in {}): {e}",
                config_file.display()
            ))
        }
    };
    let verdict = judge(&report, args);
    if args.json {
        let mut out = io::stdout().lock();
        let _ = out.write_all(&body);
        if !body.ends_with(b"\n") {
            let _ = out.write_all(b"\n");
        }
        if monitoring(args) {
            eprintln!("{}", verdict.line(args));
        }
    } else {
        if monitoring(args) {
            println!("{}", verdict.line(args));
        }
        print!("{}", render_table(&report));
    }
    ExitCode::from(verdict.level as u8)
}

/// Why the status could not be fetched.
#[derive(Debug)]
pub enum FetchError {
    /// No connection, or it broke.
    Io(io::Error),
    /// The daemon answered, but not with a usable `/status`.
    Reply(String),
    /// The daemon wants a token (`401`): none was configured, or it is not the daemon's.
    Unauthorized(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                write!(f, "{e} (is sersync running?)")
            }
            FetchError::Io(e) => write!(f, "{e}"),
            FetchError::Reply(why) => write!(f, "unexpected reply: {why}"),
            FetchError::Unauthorized(why) => write!(
                f,
                "refused: {why} (the token of <host tokenFile> or ${} must be the daemon's)",
                config::TOKEN_ENV
            ),
        }
    }
}

impl std::error::Error for FetchError {}

impl From<io::Error> for FetchError {
    fn from(e: io::Error) -> Self {
        FetchError::Io(e)
    }
}

/// `GET /status` from the daemon at `host:port` (each address `host` resolves to is tried).
pub fn fetch_status(host: &str, port: u16) -> Result<StatusReport, FetchError> {
    parse_report(&fetch_document(host, port, None)?)
}

/// A `/status` body as a report.
fn parse_report(body: &[u8]) -> Result<StatusReport, FetchError> {
    serde_json::from_slice(body).map_err(|e| FetchError::Reply(format!("bad JSON: {e}")))
}

/// The body of `GET /status` from the daemon at `host:port`, sent with `token` as a bearer
/// token when there is one.
pub fn fetch_document(host: &str, port: u16, token: Option<&Token>) -> Result<Vec<u8>, FetchError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut stream = connect(bare, port)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let authority = match bare.contains(':') {
        true => format!("[{bare}]:{port}"),
        false => format!("{bare}:{port}"),
    };
    let authorization = token.map_or(String::new(), |t| {
        format!("Authorization: Bearer {}\r\n", t.secret())
    });
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.take(MAX_REPLY).read_to_end(&mut reply)?;
    match ok_body(&reply) {
        Ok(body) => Ok(body.to_vec()),
        Err(why) if why.starts_with("HTTP/1.1 401") => Err(FetchError::Unauthorized(why)),
        Err(why) => Err(FetchError::Reply(why)),
    }
}

/// The first address of `host` that accepts a connection.
fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to nothing");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The body of a `200` reply, or of the `503` a starting daemon answers with its report
/// (the server always closes after it, so it runs to the end).
fn ok_body(reply: &[u8]) -> Result<&[u8], String> {
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP reply")?;
    let (head, body) = (&reply[..split], &reply[split + 4..]);
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    match status_line.split(' ').nth(1) {
        Some("200") => Ok(body),
        Some("503") if body.starts_with(b"{") => Ok(body),
        Some(_) => Err(format!(
            "{} {}",
            status_line.trim_end(),
            String::from_utf8_lossy(body).trim_end()
        )),
        None => Err(format!("not HTTP: {status_line:?}")),
    }
}

/// The human view of `report`: a summary line, then one line per lane.
pub fn render_table(report: &StatusReport) -> String {
    let starting = match report.state {
        DaemonState::Starting => " (starting: establishing watches)",
        DaemonState::Running => "",
    };
    let mut out = format!(
        "sersync {}{starting}, up {}, {} watch(es), {} directories, {} events seen, {} kernel overflows\n",
        report.version,
        duration(report.uptime_seconds),
        report.watches.len(),
        report.directories,
        report.events_seen,
        report.overflows
    );
    for watch in report.watches.iter() {
        if let Some(lost) = &watch.lost {
            out.push_str(&format!(
                "watch root {} LOST: {}\n",
                printable(&watch.root, usize::MAX),
                printable(lost, ERROR_WIDTH)
            ));
        }
    }
    let header = [
        "LANE",
        "ROOT",
        "PENDING",
        "IN FLIGHT",
        "DELIVERED",
        "FAILURES",
        "LAST SUCCESS",
        "LAST ERROR",
    ];
    let ago = |t: u64| format!("{} ago", duration(report.time.saturating_sub(t)));
    let rows: Vec<[String; 8]> = report
        .lanes
        .iter()
        .map(|lane| {
            [
                printable(&lane.name, usize::MAX),
                printable(&lane.root, usize::MAX),
                lane.pending.to_string(),
                lane.in_flight.to_string(),
                lane.events.to_string(),
                match lane.retry_streak {
                    0 => lane.failures.to_string(),
                    streak => format!("{} ({streak} in a row)", lane.failures),
                },
                lane.last_success.map_or_else(|| "never".into(), ago),
                match &lane.held {
                    Some(held) => format!("HELD: {}", printable(held, ERROR_WIDTH)),
                    None => lane.last_error.as_ref().map_or_else(
                        || "-".into(),
                        |e| format!("{}: {}", ago(e.time), printable(&e.message, ERROR_WIDTH)),
                    ),
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(String::from);
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no lanes)\n");
    }
    out
}

/// The first line of `text`, every character that breaks or reorders a line
/// ([`breaks_line`], the SDK's one rule) replaced by `?`, cut to `max` characters. A table
/// cell, unlike a log line ([`sersync_plugin_sdk::text::one_line`]), keeps one column per
/// character, so nothing is spelled out.
fn printable(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut out: String = line
        .chars()
        .map(|c| if breaks_line(c) { '?' } else { c })
        .take(max)
        .collect();
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// `42s`, `3m07s`, `5h02m`, `12d03h`.
fn duration(seconds: u64) -> String {
    let (m, h, d) = (seconds / 60, seconds / 3600, seconds / 86_400);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{m}m{:02}s", seconds % 60),
        3600..86_400 => format!("{h}h{:02}m", m % 60),
        _ => format!("{d}d{:02}h", h % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{ErrorReport, LaneReport, LatencyReport};

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(187), "3m07s");
        assert_eq!(duration(5 * 3600 + 120), "5h02m");
        assert_eq!(duration(12 * 86_400 + 3 * 3600 + 59), "12d03h");
    }

    #[test]
    fn messages_are_one_printable_line() {
        assert_eq!(printable("a\tb", 10), "a?b");
        assert_eq!(printable("first\nsecond", 10), "first…");
        assert_eq!(printable("abcdef", 3), "abc…");
    }

    #[test]
    fn only_a_200_or_a_starting_503_reply_has_a_usable_body() {
        assert_eq!(
            ok_body(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n{}").unwrap(),
            b"{}"
        );
        assert_eq!(
            ok_body(b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"state\": \"starting\"}").unwrap(),
            b"{\"state\": \"starting\"}"
        );
        let busy = ok_body(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy\n").unwrap_err();
        assert_eq!(busy, "HTTP/1.1 503 Service Unavailable busy");
        let err = ok_body(b"HTTP/1.1 404 Not Found\r\n\r\nnope\n").unwrap_err();
        assert_eq!(err, "HTTP/1.1 404 Not Found nope");
        assert!(ok_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn the_table_has_one_line_per_lane() {
        let lane = |name: &str, last_error| LaneReport {
            name: name.into(),
            root: "/data".into(),
            pending: 3,
            in_flight: 0,
            batches: 2,
            events: 40,
            failures: 1,
            retry_streak: 0,
            last_success: Some(1_000),
            oldest_pending: None,
            last_error,
            journal_bytes: 0,
            latency: LatencyReport {
                p50: None,
                p99: None,
                count: 0,
                sum: 0.0,
            },
            order: None,
            held: None,
        };
        let report = StatusReport {
            state: DaemonState::Running,
            version: "0.1.0".into(),
            time: 1_100,
            pid: 4242,
            uptime_seconds: 3_700,
            overflows: 0,
            directories: 12,
            events_seen: 99,
            watches: vec![],
            lanes: vec![
                lane("rsync a::m", None),
                lane(
                    "refreshCDN",
                    Some(ErrorReport {
                        time: 1_090,
                        message: "HTTP 500\nbody".into(),
                    }),
                ),
            ],
        };
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("up 1h01m"));
        assert!(lines[1].starts_with("LANE"));
        assert!(lines[2].starts_with("rsync a::m "));
        assert!(lines[2].contains("1m40s ago"));
        assert!(lines[2].ends_with('-'));
        assert!(lines[3].ends_with("10s ago: HTTP 500…"), "{table}");
    }
}
