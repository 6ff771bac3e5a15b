//! The command sink against real programs: a script recording its argv, one that fails, one
//! that hangs.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sersync_plugin_sdk::{ConfigNode, EventKind, Sink};
use sersync_plugins::configure_plugin;
use support::compliance::{self, relative, Lane, Probe, SinkUnderTest};
use support::start;
use support::xml::{escape, plugin, plugin_xml};

/// Records each argument NUL-terminated into `$1`, and one line per run into `$1.runs`.
const RECORDER: &str = r#"out=$1; shift; echo run >> "$out.runs"; for a in "$@"; do printf '%s\0' "$a" >> "$out"; done"#;

/// Writes `body` as a shell script `name` beside the lane's root and returns
/// `/bin/sh 'SCRIPT'`, escaped for an attribute.
fn script(root: &Path, name: &str, body: &str) -> String {
    let path = compliance::beside(root, name);
    std::fs::write(&path, body).unwrap();
    escape(&format!("/bin/sh '{}'", path.display()))
}

/// The recorder's output file for the lane rooted at `root`.
fn argv_out(root: &Path) -> PathBuf {
    compliance::beside(root, "argv.out")
}

/// `<plugin name="command">` running the recorder into [`argv_out`], plus `param_extra`
/// attributes on `<param>` and `children` after it.
fn recorder(root: &Path, param_extra: &str, children: &str) -> ConfigNode {
    let out = escape(&argv_out(root).display().to_string());
    let prefix = format!("{} '{out}'", script(root, "recorder.sh", RECORDER));
    plugin_xml(&format!(
        r#"<plugin name="command"><param prefix="{prefix}" suffix="" ignoreError="false" timeout="20s" {param_extra}/>{children}</plugin>"#
    ))
}

struct ArgvProbe {
    out: PathBuf,
    root: PathBuf,
}

impl ArgvProbe {
    fn args(&self) -> Vec<Vec<u8>> {
        let data = std::fs::read(&self.out).unwrap_or_default();
        data.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(self.out.with_extension("out.runs"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Probe for ArgvProbe {
    fn delivered(&self) -> Vec<Vec<u8>> {
        self.args()
            .iter()
            .map(|a| relative(&self.root, a))
            .collect()
    }
}

/// The command sink, one run per path or batched.
struct CommandSut {
    batch: bool,
}

impl SinkUnderTest for CommandSut {
    fn live(&self, root: &Path) -> (Box<dyn Sink>, Box<dyn Probe>) {
        let extra = if self.batch {
            r#"batch="true" maxArgs="3""#
        } else {
            ""
        };
        let sink = start(&recorder(root, extra, ""), root);
        (
            sink,
            Box::new(ArgvProbe {
                out: argv_out(root),
                root: root.to_path_buf(),
            }),
        )
    }

    fn dead(&self, root: &Path) -> Box<dyn Sink> {
        let node = plugin_xml(
            r#"<plugin name="command"><param prefix="/bin/sh -c 'sleep 30' hang" timeout="300ms"/></plugin>"#,
        );
        start(&node, root)
    }
}

compliance::suite!(CommandSut { batch: false });

mod batched {
    use super::*;
    compliance::suite!(CommandSut { batch: true });
}

fn probe_for(lane: &Lane) -> ArgvProbe {
    ArgvProbe {
        out: argv_out(&lane.root),
        root: lane.root.clone(),
    }
}

#[test]
fn environment_names_event_path_root_and_move_source() {
    let lane = Lane::new();
    let out = lane.beside("env.out");
    let body = r#"printf '%s\0' "$SERSYNC_EVENT" "$SERSYNC_PATH" "$SERSYNC_ROOT" "${SERSYNC_FROM-unset}" "${SERSYNC_TO-unset}" "$SERSYNC_IS_DIR" >> "$1""#;
    let prefix = format!(
        "{} '{}'",
        script(&lane.root, "env.sh", body),
        escape(&out.display().to_string())
    );
    let node = plugin_xml(&format!(
        r#"<plugin name="command"><param prefix="{prefix}"/></plugin>"#
    ));
    let mut sink = start(&node, &lane.root);
    let mv = lane.moved(b"old name", b"new\nname", false);
    sink.deliver(&lane.batch(vec![mv])).unwrap();
    let data = std::fs::read(&out).unwrap();
    let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let root = lane.root.as_os_str().as_bytes();
    assert_eq!(
        fields[..12],
        [
            &b"move_from"[..],
            b"old name",
            root,
            b"unset",
            b"new\nname",
            b"0",
            b"move",
            b"new\nname",
            root,
            b"old name",
            b"unset",
            b"0"
        ]
    );
}

/// Set in the copy of this test binary that [`children_get_a_minimal_environment`] starts.
const CHILD_MARK: &str = "SERSYNC_TEST_ENVIRONMENT_CHILD";

#[test]
fn children_get_a_minimal_environment() {
    // sersync's environment is read when a lane starts; this test process must not change its
    // own (other tests run beside it), so it runs itself again with the variables set.
    if std::env::var_os(CHILD_MARK).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "children_get_a_minimal_environment",
                "--nocapture",
            ])
            .env(CHILD_MARK, "1")
            .env("SERSYNC_CDN_TOKEN", "cdn-secret")
            .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
            .env("LD_PRELOAD", "")
            .env("SITE_ID", "main")
            .env("LC_TIME", "C")
            .env("TZ", "UTC")
            .status()
            .unwrap();
        assert!(status.success(), "the test's child run failed");
        return;
    }
    let lane = Lane::new();
    let out = lane.beside("env.out");
    let body = r#"env -0 > "$1""#;
    let prefix = format!(
        "{} '{}'",
        script(&lane.root, "env.sh", body),
        escape(&out.display().to_string())
    );
    let node = plugin_xml(&format!(
        r#"<plugin name="command"><param prefix="{prefix}" passEnv="SITE_ID NOT_SET"/></plugin>"#
    ));
    let mut sink = start(&node, &lane.root);
    sink.deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]))
        .unwrap();
    let data = std::fs::read(&out).unwrap();
    let mut names: Vec<String> = data
        .split(|&b| b == 0)
        .filter_map(|pair| pair.splitn(2, |&b| b == b'=').next())
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    // What /bin/sh itself adds to what it exports.
    names.retain(|n| !matches!(n.as_str(), "PWD" | "OLDPWD" | "SHLVL" | "_"));
    names.sort();
    // Kept when sersync has them: the fixed names, every LC_*.
    let mut expected: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("LC_") || ["PATH", "HOME", "LANG", "LANGUAGE", "TZ"].contains(&n.as_str())
        })
        .chain(
            [
                "SERSYNC_EVENT",
                "SERSYNC_IS_DIR",
                "SERSYNC_PATH",
                "SERSYNC_ROOT",
                "SITE_ID",
            ]
            .map(String::from),
        )
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn include_filter_matches_whole_absolute_path() {
    let lane = Lane::new();
    let node = recorder(
        &lane.root,
        "",
        r#"<filter start="true"><include expression="(.*)\.php"/><include expression="(.*)\.sh"/></filter>"#,
    );
    let mut sink = start(&node, &lane.root);
    let events = ["a.php", "b.sh", "c.php.bak", "d.txt", "e.sh"]
        .iter()
        .map(|n| lane.touch(EventKind::CloseWrite, n.as_bytes(), false))
        .collect();
    sink.deliver(&lane.batch(events)).unwrap();
    assert_eq!(
        probe_for(&lane).delivered(),
        [b"a.php".to_vec(), b"b.sh".to_vec(), b"e.sh".to_vec()]
    );
}

#[test]
fn prefix_and_suffix_are_split_like_a_shell_but_never_expanded() {
    let lane = Lane::new();
    let out = escape(&argv_out(&lane.root).display().to_string());
    let prefix = format!(
        "{} '{out}' 'two words' $HOME",
        script(&lane.root, "recorder.sh", RECORDER)
    );
    let node = plugin_xml(&format!(
        r#"<plugin name="command"><param prefix="{prefix}" suffix="--end 'x y' `id`"/></plugin>"#
    ));
    let mut sink = start(&node, &lane.root);
    sink.deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]))
        .unwrap();
    let abs = lane.root.join("f");
    let expected: Vec<Vec<u8>> = vec![
        b"two words".to_vec(),
        b"$HOME".to_vec(),
        abs.as_os_str().as_bytes().to_vec(),
        b"--end".to_vec(),
        b"x y".to_vec(),
        b"`id`".to_vec(),
    ];
    assert_eq!(probe_for(&lane).args(), expected);
}

#[test]
fn batch_mode_bounds_arguments_per_run() {
    let lane = Lane::new();
    let mut sink = start(
        &recorder(&lane.root, r#"batch="true" maxArgs="2""#, ""),
        &lane.root,
    );
    let events = (0..5)
        .map(|i| lane.touch(EventKind::CloseWrite, format!("f{i}").as_bytes(), false))
        .collect();
    sink.deliver(&lane.batch(events)).unwrap();
    let probe = probe_for(&lane);
    assert_eq!(probe.runs(), 3);
    assert_eq!(probe.delivered().len(), 5);
}

#[test]
fn failing_command_is_retryable_unless_errors_are_ignored() {
    let lane = Lane::new();
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]);
    let failing = |ignore: &str| {
        plugin_xml(&format!(
            r#"<plugin name="command"><param prefix="/bin/sh -c 'exit 3' fail" ignoreError="{ignore}"/></plugin>"#
        ))
    };
    let err = start(&failing("false"), &lane.root)
        .deliver(&batch)
        .unwrap_err();
    assert!(err.is_retryable());
    assert!(
        err.message.contains("/bin/sh") && err.message.contains("exit status: 3"),
        "{err}"
    );
    assert!(err.message.contains("/root/f"), "names the path: {err}");
    start(&failing("true"), &lane.root)
        .deliver(&batch)
        .expect("ignoreError");
}

#[test]
fn missing_program_is_fatal() {
    let lane = Lane::new();
    let node = plugin_xml(r#"<plugin name="command"><param prefix="/nonexistent/hook"/></plugin>"#);
    let err = start(&node, &lane.root)
        .deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]))
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.message.contains("/nonexistent/hook"), "{err}");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let lane = Lane::new();
    let pidfile = lane.beside("child.pid");
    let node = plugin_xml(&format!(
        r#"<plugin name="command"><param prefix="/bin/sh -c 'sleep 30 &amp; echo $! > {}; wait' hang" timeout="500ms"/></plugin>"#,
        pidfile.display()
    ));
    let started = Instant::now();
    let err = start(&node, &lane.root)
        .deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]))
        .unwrap_err();
    assert!(
        err.is_retryable() && err.message.contains("timeout"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    support::peers::wait_until(
        Duration::from_secs(10),
        "the background sleep to die",
        || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for a reaper: either way no longer running.
            (stat.is_empty() || stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')))
                .then_some(())
        },
    );
}

#[test]
fn config_errors_are_located_and_explained() {
    let cases = [
        (
            r#"<plugin name="command"><param prefix="/bin/x 'unbalanced"/></plugin>"#,
            "prefix",
        ),
        (
            r#"<plugin name="command"><param prefix=""/></plugin>"#,
            "empty",
        ),
        (r#"<plugin name="command"></plugin>"#, "<param"),
        (
            r#"<plugin name="command"><param prefix="/bin/x"/><filter start="true"><include expression="(unclosed"/></filter></plugin>"#,
            "regular expression",
        ),
        (
            r#"<plugin name="command"><param prefix="/bin/x" timeout="soon"/></plugin>"#,
            "duration",
        ),
        (
            r#"<plugin name="command"><param prefix="/bin/x" batch="true" maxArgs="0"/></plugin>"#,
            "0 is out of range",
        ),
        (
            r#"<plugin name="command"><param prefix="/bin/x" passEnv="OK BAD-NAME"/></plugin>"#,
            "\"BAD-NAME\" is not a variable name",
        ),
    ];
    support::assert_config_errors(&cases);
}

#[test]
fn the_2_5_4_section_configures_unchanged() {
    let node = plugin(include_str!("data/confxml-2.5.4.xml"), "command");
    let spec = configure_plugin(&node).expect("2.5.4 command section");
    assert_eq!(spec.name(), "command");
    assert!(spec.own_watches().is_empty());
    assert!(spec.summary().contains("/bin/sh"), "{}", spec.summary());
}

/// Collects every tracing event of this test binary as `LEVEL field=value …`.
mod log_capture {
    use std::fmt::Write;
    use std::sync::{Mutex, Once};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata};

    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line(event.metadata().level().to_string());
            event.record(&mut line);
            LINES.lock().unwrap().push(line.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Installs the capture (once per process) and returns the lines so far.
    pub fn lines() -> Vec<String> {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| tracing::subscriber::set_global_default(Capture).unwrap());
        LINES.lock().unwrap().clone()
    }
}

#[test]
fn stdout_and_stderr_go_to_the_log_escaped() {
    log_capture::lines();
    let lane = Lane::new();
    let body = r#"printf 'out line\n'; printf 'err \033 line\n' >&2"#;
    let node = plugin_xml(&format!(
        r#"<plugin name="command"><param prefix="{}"/></plugin>"#,
        script(&lane.root, "talk.sh", body)
    ));
    start(&node, &lane.root)
        .deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]))
        .unwrap();
    support::peers::wait_until(Duration::from_secs(10), "both lines in the log", || {
        let lines = log_capture::lines();
        let has = |level: &str, text: &str| {
            lines
                .iter()
                .any(|l| l.starts_with(level) && l.contains(text))
        };
        (has("INFO", "stdout: out line") && has("WARN", r"stderr: err \x1b line")).then_some(())
    });
}

#[test]
fn config_errors_point_at_the_attribute() {
    support::assert_error_at(
        r#"<plugin name="command"><param prefix="/bin/x" timeout="soon"/></plugin>"#,
        r#"timeout=""#,
    );
    support::assert_error_at(
        r#"<plugin name="command"><param suffix="" prefix=""/></plugin>"#,
        r#"prefix=""#,
    );
    support::assert_error_at(
        r#"<plugin name="command"><param prefix="/bin/x" passEnv="1X"/></plugin>"#,
        r#"passEnv=""#,
    );
}
