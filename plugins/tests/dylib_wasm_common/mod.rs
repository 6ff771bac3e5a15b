//! Shared by the dylib and wasm tests: building the example and fixture plugins from source
//! the way their authors would, and making `<plugin>` elements and batches.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sersync_plugin_sdk::config::Attribute;
use sersync_plugin_sdk::sink::NoFilter;
use sersync_plugin_sdk::{
    Batch, ConfigError, ConfigNode, Event, EventKind, Position, RelPath, SinkContext, WatchId,
};
use sersync_plugins::{configure_plugin, SinkSpec};

pub use sersync_tests::build_example as build;

/// The native JSON-lines example.
pub fn native_example() -> PathBuf {
    build("native-plugin", None, "libsersync_jsonl_native.so")
}

/// An element with attributes and children, at line 1.
pub fn element(name: &str, attrs: &[(&str, &str)], children: Vec<ConfigNode>) -> ConfigNode {
    ConfigNode {
        name: name.to_string(),
        attributes: attrs
            .iter()
            .map(|(n, v)| Attribute {
                name: n.to_string(),
                value: v.to_string(),
                position: Position { line: 1, column: 1 },
            })
            .collect(),
        children,
        position: Position { line: 1, column: 1 },
    }
}

/// `<plugin name="NAME" type="KIND" path="PATH" EXTRA…>` with `<param>`s and `more` children.
pub fn plugin_node(
    kind: &str,
    path: &Path,
    extra: &[(&str, &str)],
    params: &[(&str, &str)],
    more: Vec<ConfigNode>,
) -> ConfigNode {
    let path = path.to_str().unwrap();
    let mut attrs = vec![("name", "under-test"), ("type", kind), ("path", path)];
    attrs.extend_from_slice(extra);
    let mut children: Vec<ConfigNode> = params
        .iter()
        .map(|(n, v)| element("param", &[("name", n), ("value", v)], vec![]))
        .collect();
    children.extend(more);
    element("plugin", &attrs, children)
}

/// Configures a plugin through the registry, as the engine does.
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    configure_plugin(node)
}

/// The error of configuring [`plugin_node`]`(kind, path, extra, params, more)`, which must fail.
pub fn config_error(
    kind: &str,
    path: &Path,
    extra: &[(&str, &str)],
    params: &[(&str, &str)],
    more: Vec<ConfigNode>,
) -> String {
    configure(&plugin_node(kind, path, extra, params, more))
        .expect_err("the plugin element must be refused")
        .to_string()
}

/// A lane context for watch 0 at `/srv/www`.
pub fn ctx() -> SinkContext {
    SinkContext {
        watch: WatchId(0),
        root: PathBuf::from("/srv/www"),
        filter: Arc::new(NoFilter),
    }
}

/// A batch of watch 0 at `/srv/www`, with a fixed time so outputs compare equal.
pub fn batch(events: Vec<Event>) -> Batch {
    Batch {
        watch: WatchId(0),
        root: PathBuf::from("/srv/www"),
        events,
    }
}

/// An event at a fixed time.
pub fn event(kind: EventKind, path: &[u8]) -> Event {
    Event {
        kind,
        path: RelPath::new(path),
        from: None,
        is_dir: false,
        watch: WatchId(0),
        time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001),
    }
}

/// A batch with one event on `path` (an order for the misbehaving fixture).
pub fn order(path: &str) -> Batch {
    batch(vec![event(EventKind::Modify, path.as_bytes())])
}

/// A batch naming awkward paths: a newline, invalid UTF-8, a quote, a directory, a move.
pub fn awkward_batch() -> Batch {
    let mut moved = event(EventKind::Move, b"dir/new name");
    moved.from = Some(RelPath::new(&b"dir/old\"name"[..]));
    let mut dir = event(EventKind::Create, b"dir");
    dir.is_dir = true;
    batch(vec![
        dir,
        event(EventKind::CloseWrite, b"line\nbreak.txt"),
        event(EventKind::Delete, b"bad\xffname"),
        moved,
    ])
}

/// The JSON lines the example plugins write for [`awkward_batch`]: the SDK's event format
/// (`sersync_plugin_sdk::json`), which the socket and http sinks send too.
pub const AWKWARD_LINES: &str = concat!(
    r#"{"from":null,"is_dir":true,"kind":"create","path":"dir","root":"/srv/www","time":1700000000.0}"#,
    "\n",
    r#"{"from":null,"is_dir":false,"kind":"close_write","path":"line\nbreak.txt","root":"/srv/www","time":1700000000.0}"#,
    "\n",
    r#"{"from":null,"is_dir":false,"kind":"delete","path":"bad�name","path_b64":"YmFk/25hbWU=","root":"/srv/www","time":1700000000.0}"#,
    "\n",
    r#"{"from":"dir/old\"name","is_dir":false,"kind":"move","path":"dir/new name","root":"/srv/www","time":1700000000.0}"#,
    "\n",
);

/// Mean time of `f` over `n` runs, after one warm-up run.
pub fn mean_time(n: u32, mut f: impl FnMut()) -> Duration {
    f();
    let started = std::time::Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed() / n
}

/// A batch of `n` modify events on distinct paths.
pub fn many(n: usize) -> Batch {
    batch(
        (0..n)
            .map(|i| event(EventKind::Modify, format!("dir/file-{i}.txt").as_bytes()))
            .collect(),
    )
}

/// Runs `f` with a tracing subscriber that records sersync's events (target `sersync…`) on
/// this thread as `LEVEL target field=value…`, and returns those lines.
pub fn capture_logs(f: impl FnOnce()) -> Vec<String> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::with_default(Capture(lines.clone()), f);
    let lines = lines.lock().unwrap().clone();
    lines
}

/// The subscriber of [`capture_logs`].
struct Capture(Arc<Mutex<Vec<String>>>);

/// Formats an event's fields as ` name=value`.
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    /// "Ask me each time": tests run in parallel threads, some without any subscriber, and a
    /// callsite first met there would otherwise be cached as never enabled, so the capture
    /// would miss the plugin's line now and then.
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target().starts_with("sersync")
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields(format!("{} {}", meta.level(), meta.target()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// `<plugin type="KIND">` for the hostile plugin at `path`, with `extra` attributes and the
/// parameters `attack` and (when given) `size`, and `more` children.
pub fn hostile_node(
    kind: &str,
    path: &Path,
    extra: &[(&str, &str)],
    attack: &str,
    size: Option<&str>,
    more: Vec<ConfigNode>,
) -> ConfigNode {
    let mut params = vec![("attack", attack)];
    params.extend(size.map(|s| ("size", s)));
    plugin_node(kind, path, extra, &params, more)
}

/// Longest error message a plugin can put into the host's log and `/status`: the documented
/// cut (4 KiB) plus the host's own words around it.
const ERROR_BOUND: usize = 4096 + 256;

/// Fails unless `text` is a single line without terminal escapes.
pub fn assert_one_clean_line(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control()),
        "control characters reached the host: {text:?}"
    );
}

/// A 40 MiB error message with newlines and escapes comes back cut, on one line, and says so.
pub fn huge_error_is_cut(kind: &str, path: &Path) {
    let spec = configure(&hostile_node(kind, path, &[], "huge_error", None, vec![])).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    let err = sink.deliver(&order("x")).unwrap_err();
    assert_eq!(
        err.class,
        sersync_plugin_sdk::ErrorClass::Retryable,
        "{err}"
    );
    assert!(
        err.message.len() < ERROR_BOUND,
        "an error of {} bytes reached the host",
        err.message.len()
    );
    assert!(
        err.message
            .starts_with("plugin under-test: all good\\n2030-"),
        "{err}"
    );
    assert!(err.message.ends_with(" bytes cut)"), "{err}");
    assert_one_clean_line(&err.message);
}

/// A message holding a newline and escape sequences becomes one escaped line, both as a log
/// line and as an error.
pub fn forged_log_lines_are_escaped(kind: &str, path: &Path) {
    let spec = configure(&hostile_node(kind, path, &[], "forged_log", None, vec![])).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    let mut err = None;
    let logs = capture_logs(|| err = sink.deliver(&order("x")).err());
    let err = err.expect("the plugin fails");
    assert_one_clean_line(&err.message);
    assert!(err.message.contains("all good\\n2030-01-01"), "{err}");
    assert!(err.message.contains("\\u{1b}[2K"), "{err}");
    let line = logs
        .iter()
        .find(|l| l.contains("plugin=under-test"))
        .expect("the plugin's line is logged");
    assert_one_clean_line(line);
}

/// A plugin logging 2,000 lines of 8 KiB (16 MB) gets a bounded share of the log, and a line
/// saying how many were dropped once it may log again.
pub fn log_floods_are_rate_limited(kind: &str, path: &Path) {
    let node = hostile_node(kind, path, &[], "log_flood", Some("2000"), vec![]);
    let spec = configure(&node).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    let logs = capture_logs(|| sink.deliver(&order("x")).unwrap());
    let bytes: usize = logs.iter().map(String::len).sum();
    assert!(
        bytes < 1 << 20,
        "{} lines, {bytes} bytes of log",
        logs.len()
    );
    std::thread::sleep(Duration::from_secs(1));
    let logs = capture_logs(|| sink.deliver(&order("x")).unwrap());
    assert!(
        logs.first()
            .is_some_and(|l| l.contains("log lines dropped")),
        "{:?}",
        logs.first()
    );
}
