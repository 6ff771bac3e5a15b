//! The configuration module from the outside: the shipped 2.5.4 file, defaults, every
//! extension element, and a located, explained error for each kind of bad input.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sersync::config::{self, Config, DEFAULT_TEMP_PATTERNS};
use sersync_plugin_sdk::ConfigError;

const SHIPPED: &str = include_str!("fixtures/confxml-2.5.4.xml");

fn parse(xml: &str) -> Result<Config, ConfigError> {
    config::parse_str(xml, Path::new("conf.xml"))
}

fn ok(xml: &str) -> Config {
    parse(xml).unwrap_or_else(|e| panic!("{e}"))
}

fn err(xml: &str) -> ConfigError {
    match parse(xml) {
        Ok(_) => panic!("accepted:\n{xml}"),
        Err(e) => e,
    }
}

/// `(line, column)` of an error, which must have a place and name the file.
fn at(e: &ConfigError) -> (u32, u32) {
    assert_eq!(e.file.as_deref(), Some(Path::new("conf.xml")), "{e}");
    let p = e.position.unwrap_or_else(|| panic!("no position: {e}"));
    (p.line, p.column)
}

fn hint(e: &ConfigError) -> &str {
    e.hint.as_deref().unwrap_or_else(|| panic!("no hint: {e}"))
}

/// `<head>` around `<sersync>` around `body`, the sersync element starting on line 2.
fn in_sersync(body: &str) -> String {
    format!("<head>\n<sersync>\n{body}\n</sersync>\n</head>")
}

/// The `--check` lines under the `i`-th watch: where its changes go (the rsync sink's words).
fn destinations(c: &Config, i: usize) -> Vec<String> {
    c.sersync_sinks.describe_watch(i)
}

/// The `--check` line of how rsync runs: what it is really passed.
fn rsync_line(c: &Config) -> String {
    c.sersync_sinks.describe().join("\n")
}

/// What that line adds when `<commonParams>` holds `-u`, which is not passed.
const DROPS_UPDATE: &str = "; -u/--update from <commonParams> is not passed: it would keep remote files newer than the source's";

// ---- the shipped file ------------------------------------------------------------------

#[test]
fn shipped_file_loads_unchanged_with_its_values() {
    let c = ok(SHIPPED);
    assert_eq!(c.file, Path::new("conf.xml"));
    assert_eq!(
        (c.control.host.as_str(), c.control.port),
        ("localhost", 8008)
    );
    assert!(!c.debug);
    assert!(c.filter.excludes.is_empty(), "<filter start=\"false\">");
    assert_eq!(c.filter.temp_names.len(), DEFAULT_TEMP_PATTERNS.len());
    let e = c.events;
    assert!(e.delete && e.create_folder && e.close_write && e.move_from && e.move_to);
    assert!(!e.create_file && !e.attrib && !e.modify);

    assert_eq!(c.watches.len(), 1);
    assert_eq!(c.watches[0].root, Path::new("/opt/tongbu"));
    assert_eq!(destinations(&c, 0), ["rsync to 127.0.0.1::tongbu1"]);
    assert_eq!(
        (c.watches[0].position.line, c.watches[0].position.column),
        (24, 2)
    );

    // rsync, -artuz without its -u, no port, timeout, ssh nor password file, deletes on.
    assert_eq!(
        rsync_line(&c),
        format!("rsync: rsync -artz (deletes propagated{DROPS_UPDATE})")
    );
    assert_eq!(
        c.sersync_sinks.describe_full_syncs(),
        None,
        "<crontabfilter start=\"false\">"
    );

    assert_eq!(c.fail_log.path, Path::new("/tmp/rsync_fail_log.sh"));
    assert_eq!(c.fail_log.every, Duration::from_secs(3600));
    assert_eq!(c.crontab, None);
    assert!(c.enabled_plugins.is_empty(), "<plugin start=\"false\">");
    let names: Vec<&str> = c.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["command", "socket", "refreshCDN"]);
    let cdn = c
        .plugin_section("REFRESHcdn")
        .expect("case-insensitive lookup");
    assert_eq!(
        cdn.node.child("localpath").and_then(|l| l.attr("watch")),
        Some("/data0/htdocs/cms.xoyo.com/site/"),
        "plugin sections are kept raw"
    );
    assert_eq!(c.engine.state_dir, sersync::state_dir::default_path());
    assert!(c.require_watches().is_ok());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn shipped_file_bytes_parse_like_its_text() {
    let c = config::parse_bytes(SHIPPED.as_bytes(), Path::new("conf.xml")).unwrap();
    assert_eq!(c.watches[0].root, Path::new("/opt/tongbu"));
    assert_eq!(c.plugins.len(), 3);
}

#[test]
fn describe_shows_the_effective_configuration() {
    let text = ok(SHIPPED).describe();
    for expected in [
        "configuration conf.xml",
        "watch /opt/tongbu\n  rsync to 127.0.0.1::tongbu1\n",
        "rsync: rsync -artz (deletes propagated; -u/--update from <commonParams> is not passed: it would keep remote files newer than the source's)",
        "exclude: none",
        "temporary names (built-in): ",
        "events on: delete, createFolder, closeWrite, moveFrom, moveTo; off: createFile, attrib, modify",
        "fail log: /tmp/rsync_fail_log.sh, replayed every 60 min",
        "crontab: off",
        "plugins: none",
        "control: localhost:8008",
        "engine: settle 10 ms (2 ms when idle and finished), max delay 40 ms, max pending 100000 paths, retry 500 ms to 60000 ms, 2 transfers per remote (each keeping its next run connected), state in ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let state = format!("state in {}", sersync::state_dir::default_path().display());
    assert!(text.contains(&state), "missing {state:?} in:\n{text}");
}

#[test]
fn describe_says_what_the_start_makes_of_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let with = |state: &Path| {
        ok(&format!(
            "<head><engine stateDir=\"{}\"/></head>",
            state.display()
        ))
        .describe()
    };
    let missing = dir.path().join("new");
    assert!(
        with(&missing).contains(&format!(
            "state in {} (created at start, mode 0700)",
            missing.display()
        )),
        "{}",
        with(&missing)
    );
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let text = with(&shared);
    assert!(
        text.contains("(REFUSED at start: journals and heartbeat off: the state directory")
            && text.contains("chmod 700"),
        "{text}"
    );
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o700)).unwrap();
    assert!(with(&shared).contains(&format!("state in {}\n", shared.display())));
}

#[test]
fn describe_shows_auth_port_timeout_ssh_and_crontab() {
    let c = ok(&in_sersync(
        r#"<localpath watch="/w"><remote ip="::1" name="/srv/w"/></localpath>
<rsync><commonParams params="-az --chmod='u=rwX go=rX'"/><userDefinedPort start="true" port="874"/>
<timeout start="true" time="1m"/><ssh start="true"/></rsync>
<crontab start="true" schedule="5"><crontabfilter start="true"><exclude expression="*.php"/></crontabfilter></crontab>
<plugin start="true" name="socket"/>"#,
    ));
    let text = c.describe();
    for expected in [
        "rsync to [::1]:/srv/w",
        "rsync: rsync -az '--chmod=u=rwX go=rX' --port=874 --timeout=60 -e ssh (deletes propagated)",
        "crontab: full sync every 5 min, full syncs exclude *.php",
        "plugins: socket",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let daemon = ok(&in_sersync(
        r#"<localpath watch="/w"><remote ip="h" name="m"/></localpath>
<rsync><auth start="true" users="backup" passwordfile="/etc/rsync.pas"/></rsync>"#,
    ));
    assert!(daemon.describe().contains("rsync to backup@h::m\n"));
    assert!(daemon.describe().contains("--password-file=/etc/rsync.pas"));
}

// ---- names, switches, defaults ---------------------------------------------------------

#[test]
fn element_and_attribute_names_are_case_insensitive() {
    let c = ok(
        r#"<HEAD><Sersync><LocalPath WATCH="/a/"><Remote IP="h" NAME="m"/></LocalPath>
<RSYNC><SSH START="true"/><CommonParams PARAMS="-a"/></RSYNC></SERSYNC>
<INOTIFY><Delete Start="false"/><CREATEFILE start="true"/></inotify><FileSystem XFS="true"/></Head>"#,
    );
    assert_eq!(c.watches[0].root, Path::new("/a"));
    assert_eq!(destinations(&c, 0), ["rsync to h:m"]);
    assert_eq!(
        rsync_line(&c),
        "rsync: rsync -a -e ssh (deletes not propagated)"
    );
    assert!(!c.events.delete && c.events.create_file);
    let w = warning_texts(&c);
    assert!(
        w.iter()
            .any(|w| w.contains("<fileSystem xfs=\"true\"> is accepted and ignored")),
        "{w:#?}"
    );
}

#[test]
fn a_switch_is_on_only_when_exactly_true() {
    let c = ok(
        r#"<head><debug start="True"/><inotify><delete start="yes"/><modify start="true"/>
<attrib start=" true"/></inotify></head>"#,
    );
    assert!(!c.debug && !c.events.delete && c.events.modify && !c.events.attrib);
}

#[test]
fn an_almost_empty_head_takes_every_default() {
    let c = ok("<head/>");
    assert_eq!(
        (c.control.host.as_str(), c.control.port),
        ("localhost", 8008)
    );
    assert!(!c.debug && c.filter.excludes.is_empty() && c.watches.is_empty());
    assert_eq!(c.filter.temp_names.len(), DEFAULT_TEMP_PATTERNS.len());
    let e = c.events;
    assert!(e.delete && e.create_folder && e.close_write && e.move_from && e.move_to);
    assert!(!e.create_file && !e.attrib && !e.modify);
    assert_eq!(
        rsync_line(&c),
        format!("rsync: rsync -artz (deletes propagated{DROPS_UPDATE})")
    );
    assert_eq!(c.fail_log.path, Path::new("/tmp/rsync_fail_log.sh"));
    assert_eq!(c.fail_log.every, Duration::from_secs(3600));
    assert!(c.crontab.is_none() && c.enabled_plugins.is_empty() && c.plugins.is_empty());
    let g = &c.engine;
    assert_eq!(
        (g.settle, g.max_delay, g.max_pending),
        (
            Duration::from_millis(10),
            Duration::from_millis(40),
            100_000
        )
    );
    assert_eq!(
        (g.retry_initial, g.retry_max),
        (Duration::from_millis(500), Duration::from_secs(60))
    );
    assert_eq!(g.state_dir, sersync::state_dir::default_path());
}

#[test]
fn no_localpath_is_an_error_only_when_the_caller_requires_one() {
    let c = ok("<head><sersync/></head>");
    let e = c.require_watches().unwrap_err();
    assert_eq!(e.file.as_deref(), Some(Path::new("conf.xml")));
    assert!(e.message.contains("no <sersync><localpath>"), "{e}");
    assert!(hint(&e).contains("<localpath watch="), "{e}");
}

#[test]
fn every_localpath_is_honoured() {
    let c = ok(&in_sersync(
        r#"<localpath watch="/srv/a/"><remote ip="h1" name="a"/><remote ip="h2" name="a2"/></localpath>
<localpath watch="/srv/b//"><remote ip="h3" name="b"/></localpath>
<localpath watch="/"/>"#,
    ));
    let roots: Vec<&Path> = c.watches.iter().map(|w| w.root.as_path()).collect();
    assert_eq!(
        roots,
        [Path::new("/srv/a"), Path::new("/srv/b"), Path::new("/")]
    );
    assert_eq!(destinations(&c, 0), ["rsync to h1::a", "rsync to h2::a2"]);
    assert_eq!(destinations(&c, 1), ["rsync to h3::b"]);
    assert_eq!(destinations(&c, 2), ["no remote"]);
    assert_eq!(c.watches[1].position.line, 4);
}

#[test]
fn latin1_and_utf8_files_give_the_same_names() {
    let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<head><sersync>\
<localpath watch=\"/srv/caf\xe9\"/></sersync><plugin name=\"n\xfc\"/></head>";
    let c = config::parse_bytes(latin1, Path::new("conf.xml")).unwrap();
    assert_eq!(c.watches[0].root, Path::new("/srv/café"));
    assert_eq!(c.plugins[0].name, "nü");
    let utf8 = "<head><sersync><localpath watch=\"/srv/café\"/></sersync></head>";
    let c = config::parse_bytes(utf8.as_bytes(), Path::new("conf.xml")).unwrap();
    assert_eq!(c.watches[0].root, Path::new("/srv/café"));
}

#[test]
fn entities_are_decoded_in_values() {
    let c = ok(&in_sersync(
        r#"<localpath watch="/a&amp;b"><remote ip="h" name="&#x6d;"/></localpath>"#,
    ));
    assert_eq!(c.watches[0].root, Path::new("/a&b"));
    assert_eq!(destinations(&c, 0), ["rsync to h::m"]);
}

// ---- warnings ------------------------------------------------------------------------

fn warning_texts(c: &Config) -> Vec<String> {
    c.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn typos_are_warned_about_with_a_suggestion() {
    let c = ok("<head>\n<filter start=\"true\"><exlude expression=\"x\"/></filter>\n<inotify><delete strat=\"false\"/></inotify>\n<sersync><whatever/></sersync></head>");
    let w = warning_texts(&c);
    assert_eq!(w.len(), 3, "{w:#?}");
    assert_eq!(
        w[0],
        "conf.xml:2:22: <exlude> is not read inside <filter>; it is ignored\n  hint: did you mean exclude?"
    );
    assert!(w[1].starts_with("conf.xml:3:18: <delete> has no attribute strat; it is ignored\n  hint: did you mean start?"), "{w:#?}");
    assert!(
        w[2].ends_with("hint: the elements read here: localpath, rsync, failLog, crontab, plugin"),
        "{w:#?}"
    );
    assert!(c.events.delete, "the misspelt attribute is ignored");
    assert!(c.describe().contains("\nwarning: conf.xml:2:22: <exlude>"));
}

#[test]
fn switch_values_other_than_true_or_false_are_warned_about() {
    let c = ok("<head><debug start=\"True\"/><fileSystem xfs=\"1\"/></head>");
    let w = warning_texts(&c);
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].starts_with("conf.xml:1:14: <debug start=\"True\"> is read as off"),
        "{w:#?}"
    );
    assert!(
        w[1].contains("<fileSystem xfs=\"1\"> is read as off"),
        "{w:#?}"
    );
    assert!(
        w[1].ends_with("a switch is on only when written xfs=\"true\""),
        "{w:#?}"
    );
}

#[test]
fn a_watch_whose_changes_go_nowhere_is_warned_about() {
    let c = ok(&in_sersync("<localpath watch=\"/w\"/>"));
    assert!(warning_texts(&c)[0].contains("changes under /w go nowhere"));
    let c = ok(&in_sersync(
        "<localpath watch=\"/w\"/><plugin start=\"true\" name=\"command\"/>",
    ));
    assert!(c.warnings.is_empty(), "a plugin takes the changes");
}

#[test]
fn a_repeated_single_element_is_warned_about() {
    let c = ok("<head><sersync><rsync/>\n<rsync><ssh start=\"true\"/></rsync><localpath watch=\"/a\"/><localpath watch=\"/b\"/></sersync></head>");
    assert!(!rsync_line(&c).contains("ssh"), "the first <rsync> is read");
    let w = warning_texts(&c);
    assert_eq!(w.len(), 3, "{w:#?}");
    assert_eq!(w[0], "conf.xml:2:1: a second <rsync> in <sersync> is ignored\n  hint: only the first, at 1:16, is read; merge the two");
}

#[test]
fn plugin_sections_are_not_linted() {
    let c = ok("<head><plugin name=\"x\" type=\"dylib\" path=\"/p\"><anything goes=\"here\"/></plugin></head>");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

// ---- filters ---------------------------------------------------------------------------

#[test]
fn excludes_are_anchored_byte_regexes_when_the_filter_is_on() {
    let c = ok(
        r#"<head><filter start="true"><exclude expression="(.*)\.svn"/>
<exclude expression="^static/*"/></filter></head>"#,
    );
    let [svn, stat] = &c.filter.excludes[..] else {
        panic!("{:?}", c.filter.excludes)
    };
    assert_eq!(svn.source, r"(.*)\.svn");
    assert_eq!(svn.position.map(|p| p.line), Some(1));
    assert!(svn.is_match(b"a/b/.svn") && !svn.is_match(b"a/.svn/x"));
    assert!(svn.is_match(b"\xff\xfe.svn"), "non-UTF-8 names match too");
    assert!(stat.is_match(b"static") && !stat.is_match(b"static/x"));
}

/// A `<filter>` of `n` excludes as generated lists hold them: exact paths, `(.*)` suffixes,
/// `(.*)` prefixes, and one real regex in ten thousand; an invalid one last when `broken`.
fn many_excludes(n: usize, broken: bool) -> String {
    let mut xml = String::from("<head>\n<filter start=\"true\">\n");
    for i in 0..n {
        let expression = match i % 10_000 {
            0 => format!("(a|b)/r{i}"),
            k if k % 3 == 0 => format!("site/{i}/cache"),
            k if k % 3 == 1 => format!("(.*)\\.ext{i}"),
            _ => format!("tmp{i}/(.*)"),
        };
        xml.push_str(&format!("<exclude expression=\"{expression}\"/>\n"));
    }
    if broken {
        xml.push_str("<exclude expression=\"((\"/>\n");
    }
    xml.push_str("</filter>\n</head>\n");
    xml
}

#[test]
fn a_million_excludes_load_in_bounded_time_and_still_match() {
    const N: usize = 1_000_000;
    // Was well over 20 minutes (a regex compiled twice per exclude, ~13 KB each). In a
    // thread, so that a regression fails at the bound instead of hanging the suite.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let xml = many_excludes(N, false);
        let started = std::time::Instant::now();
        let loaded = parse(&xml).map(|c| {
            let filter = sersync::filter::Filter::new(&c.filter);
            (c, filter, started.elapsed())
        });
        let _ = tx.send(loaded);
    });
    let bound = Duration::from_secs(60);
    let (c, filter, took) = rx
        .recv_timeout(bound)
        .unwrap_or_else(|_| panic!("{N} excludes did not load within {bound:?}"))
        .unwrap();
    eprintln!("{N} excludes loaded and indexed in {took:?}");
    assert_eq!(c.filter.excludes.len(), N);
    let rule = |path: &str| {
        filter
            .excluding_rule(&sersync_plugin_sdk::RelPath::from(path))
            .map(|p| p.source.clone())
    };
    assert_eq!(rule("site/999003/cache"), Some("site/999003/cache".into()));
    assert_eq!(rule("site/999003/cache/x"), None);
    assert_eq!(rule("a/b/f.ext999004"), Some(r"(.*)\.ext999004".into()));
    assert_eq!(rule("tmp999005/x/y"), Some("tmp999005/(.*)".into()));
    assert_eq!(rule("b/r990000"), Some("(a|b)/r990000".into()));
    assert_eq!(rule("c/r990000"), None);

    // An invalid expression among them is still found and located.
    let e = err(&many_excludes(10_000, true));
    assert_eq!(at(&e).0, 10_003, "{e}");
    assert!(e.message.contains("not a valid regular expression"), "{e}");
}

#[test]
fn a_filter_that_is_off_is_not_compiled() {
    let c = ok(r#"<head><filter start="false"><exclude expression="(("/></filter></head>"#);
    assert!(c.filter.excludes.is_empty());
}

#[test]
fn tempfiles_can_be_replaced_or_switched_off() {
    let c = ok(
        r#"<head><filter><tempfiles><pattern expression=".*\.tmp"/></tempfiles></filter></head>"#,
    );
    assert_eq!(c.filter.temp_names.len(), 1);
    assert!(c.filter.temp_names[0].is_match(b"x.tmp"));
    assert!(c
        .describe()
        .contains("temporary names (from the file): .*\\.tmp"));
    let c = ok(
        r#"<head><filter><tempfiles start="false"><pattern expression="x"/></tempfiles></filter></head>"#,
    );
    assert!(c.filter.temp_names.is_empty());
    assert!(c.describe().contains("temporary names: not filtered"));
    let c = ok(r#"<head><filter><tempfiles start="true"/></filter></head>"#);
    assert_eq!(c.filter.temp_names.len(), DEFAULT_TEMP_PATTERNS.len());
}

#[test]
fn crontab_and_its_filter_shape_full_syncs() {
    let c = ok(&in_sersync(
        r#"<crontab start="true" schedule="30"><crontabfilter start="true">
<exclude expression="*.php"/><exclude expression="info/*"/></crontabfilter></crontab>"#,
    ));
    let crontab = c.crontab.as_ref().unwrap();
    assert_eq!(crontab.every, Duration::from_secs(30 * 60));
    assert_eq!(
        c.sersync_sinks.describe_full_syncs().as_deref(),
        Some("full syncs exclude *.php info/*")
    );

    let c = ok(&in_sersync(
        r#"<crontab start="false"><crontabfilter start="true"><exclude expression="*.o"/></crontabfilter></crontab>"#,
    ));
    assert_eq!(c.crontab, None);
    assert_eq!(
        c.sersync_sinks.describe_full_syncs().as_deref(),
        Some("full syncs exclude *.o"),
        "-r full syncs use them too"
    );
    let c = ok(&in_sersync(r#"<crontab start="true"/>"#));
    assert_eq!(c.crontab.unwrap().every, Duration::from_secs(600 * 60));
}

// ---- rsync -----------------------------------------------------------------------------

#[test]
fn rsync_options_are_read_when_switched_on() {
    let c = ok(&in_sersync(
        r#"<rsync><commonParams params="-artuz --exclude 'a b' \&quot;q\&quot;"/>
<auth start="true" users="root" passwordfile="/etc/rsync.pas"/>
<userDefinedPort start="true" port="874"/><timeout start="true" time="0"/>
<program path="/opt/rsync/bin/rsync"/></rsync>
<localpath watch="/w"><remote ip="h" name="m"/></localpath>"#,
    ));
    assert_eq!(
        rsync_line(&c),
        format!(
            "rsync: /opt/rsync/bin/rsync -artz --exclude 'a b' '\"q\"' --port=874 --timeout=0 \
             --password-file=/etc/rsync.pas (deletes propagated{DROPS_UPDATE})"
        )
    );
    assert_eq!(destinations(&c, 0), ["rsync to root@h::m"]);
}

#[test]
fn switched_off_rsync_options_are_ignored_even_when_invalid() {
    let c = ok(&in_sersync(
        r#"<rsync><auth start="false"/><userDefinedPort start="false" port="x"/><timeout start="false" time="y"/></rsync>"#,
    ));
    assert_eq!(
        rsync_line(&c),
        format!("rsync: rsync -artz (deletes propagated{DROPS_UPDATE})")
    );
}

#[test]
fn unbalanced_quote_in_common_params_is_located() {
    let e = err(&in_sersync(
        "<rsync>\n  <commonParams params=\"-a 'x\"/></rsync>",
    ));
    assert_eq!(at(&e), (4, 17));
    assert!(
        e.message.starts_with("<commonParams params=\"-a 'x\">: "),
        "{e}"
    );
    assert!(hint(&e).contains("close every quote"), "{e}");
}

#[test]
fn auth_over_ssh_is_refused() {
    let e = err(&in_sersync(
        "<rsync><ssh start=\"true\"/>\n<auth start=\"true\" users=\"u\" passwordfile=\"/p\"/></rsync>",
    ));
    assert_eq!(at(&e), (4, 1));
    assert!(
        e.message
            .contains("cannot be used with <ssh start=\"true\">"),
        "{e}"
    );
}

#[test]
fn auth_needs_users_and_passwordfile() {
    let e = err(&in_sersync(
        "<rsync><auth start=\"true\" users=\"u\"/></rsync>",
    ));
    assert_eq!(at(&e), (3, 8));
    assert_eq!(e.message, "<auth> needs the attribute passwordfile=\"…\"");
    assert!(hint(&e).contains("passwordfile=\"/etc/rsync.pas\""));
}

// ---- bad values, each located and explained --------------------------------------------

#[test]
fn remote_hosts_and_modules_rsync_could_misread_are_refused_where_they_stand() {
    let watch =
        |remote: &str| in_sersync(&format!("<localpath watch=\"/w\">\n  {remote}</localpath>"));
    for (remote, attr, problem) in [
        (
            r#"<remote ip="-e touch x" name="m"/>"#,
            "ip",
            "starts with '-'",
        ),
        (
            r#"<remote ip="--rsh=sh" name="m"/>"#,
            "ip",
            "starts with '-'",
        ),
        (r#"<remote ip="h" name="-e"/>"#, "name", "starts with '-'"),
        (r#"<remote ip="a b" name="m"/>"#, "ip", "holds whitespace"),
        (
            r#"<remote ip="h" name="www&#9;x"/>"#,
            "name",
            "holds whitespace",
        ),
        (
            r#"<remote ip="h&#27;[2J" name="m"/>"#,
            "ip",
            "holds a control character",
        ),
        (r#"<remote ip="h" name=" "/>"#, "name", "is empty"),
        (r#"<remote ip="" name="m"/>"#, "ip", "is empty"),
    ] {
        let e = err(&watch(remote));
        // Two spaces of indent, then the remote: the attribute's column on line 4.
        let column = 2 + remote.find(&format!(" {attr}=")).unwrap() + 2;
        assert_eq!(at(&e), (4, column as u32), "{remote}: {e}");
        assert!(
            e.message.contains(&format!("{attr} {problem}")),
            "{remote}: {e}"
        );
        assert!(
            !e.message.contains(['\n', '\t', '\u{1b}']),
            "one line: {e:?}"
        );
        assert!(hint(&e).contains("<remote ip="), "{e}");
    }
    let c = ok(&watch(r#"<remote ip="::1" name="backup/www-1.2"/>"#));
    assert_eq!(destinations(&c, 0), ["rsync to [::1]::backup/www-1.2"]);
}

#[test]
fn a_port_out_of_range_or_not_a_number_is_located() {
    let e = err(&in_sersync(
        "<rsync><userDefinedPort start=\"true\" port=\"70000\"/></rsync>",
    ));
    assert_eq!(at(&e), (3, 38));
    assert_eq!(
        e.message,
        "<userDefinedPort port=\"70000\">: 70000 is out of range"
    );
    assert_eq!(
        hint(&e),
        "port is a TCP port: a whole number from 1 to 65535"
    );

    let e = err("<head>\n  <host hostip=\"localhost\" port=\"80x\"/>\n</head>");
    assert_eq!(at(&e), (2, 28));
    assert_eq!(
        e.message,
        "<host port=\"80x\">: \"80x\" is not a whole number"
    );
    let e = err("<head><host port=\"0\"/></head>");
    assert!(e.message.ends_with("0 is out of range"), "{e}");
    let e = err(&in_sersync(
        "<rsync><userDefinedPort start=\"true\"/></rsync>",
    ));
    assert!(e.message.contains("needs the attribute port="), "{e}");
}

#[test]
fn non_numeric_timeout_schedule_and_time_to_execute_are_located() {
    let e = err(&in_sersync(
        "<rsync><timeout start=\"true\" time=\"soon\"/></rsync>",
    ));
    assert_eq!(at(&e), (3, 30));
    assert_eq!(
        e.message,
        "<timeout time=\"soon\">: \"soon\" is not a duration"
    );
    assert!(
        hint(&e).contains("a whole number of seconds, or one with a unit"),
        "{e}"
    );

    let e = err(&in_sersync("<crontab start=\"true\" schedule=\"daily\"/>"));
    assert_eq!(at(&e), (3, 23));
    assert_eq!(
        hint(&e),
        "schedule is a period: a whole number of minutes, or one with a unit (500ms, 5s, 2m, \
         1h), from 1m to 87600h"
    );
    let e = err(&in_sersync("<crontab start=\"true\" schedule=\"0\"/>"));
    assert!(e.message.ends_with("0 is out of range"), "{e}");

    let e = err(&in_sersync("<failLog path=\"/f\" timeToExecute=\"soon\"/>"));
    assert_eq!(at(&e), (3, 20));
    assert_eq!(
        e.message,
        "<failLog timeToExecute=\"soon\">: \"soon\" is not a duration"
    );
    let e = err(&in_sersync("<failLog path=\"/f\" timeToExecute=\"30s\"/>"));
    assert!(e.message.ends_with(": 30s is out of range"), "{e}");
}

#[test]
fn periods_in_minutes_take_a_unit_too() {
    let c = ok(&in_sersync(
        "<failLog path=\"/f\" timeToExecute=\"2h\"/><crontab start=\"true\" schedule=\"90\"/>",
    ));
    assert_eq!(c.fail_log.every, Duration::from_secs(7200));
    assert_eq!(c.crontab.unwrap().every, Duration::from_secs(90 * 60));
}

#[test]
fn a_remote_without_ip_or_name_is_located() {
    let e = err(&in_sersync(
        "<localpath watch=\"/w\">\n    <remote name=\"m\"/>\n</localpath>",
    ));
    assert_eq!(at(&e), (4, 5));
    assert_eq!(e.message, "<remote> needs the attribute ip=\"…\"");
    assert_eq!(
        hint(&e),
        "for example <remote ip=\"192.168.0.2\" name=\"module\"/>"
    );
    let e = err(&in_sersync(
        "<localpath watch=\"/w\"><remote ip=\"h\" name=\"\"/></localpath>",
    ));
    assert_eq!(at(&e), (3, 38));
    assert_eq!(e.message, "<remote name=\"\">: name is empty");
}

#[test]
fn a_localpath_without_watch_or_watched_twice_is_located() {
    let e = err(&in_sersync("<localpath/>"));
    assert_eq!(at(&e), (3, 1));
    assert!(e.message.contains("needs the attribute watch="), "{e}");
    let e = err(&in_sersync(
        "<localpath watch=\"/w\"/>\n<localpath watch=\"/w/\"/>",
    ));
    assert_eq!(at(&e), (4, 1));
    assert_eq!(e.message, "/w is watched twice (first at 3:1)");
}

#[test]
fn two_watch_roots_that_are_one_directory_through_a_symlink_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let file = dir.path().join("confxml.xml");
    std::fs::write(
        &file,
        format!(
            "<head><sersync>\n<localpath watch=\"{}\"/>\n<localpath watch=\"{}\"/>\n</sersync></head>",
            real.display(),
            link.display()
        ),
    )
    .unwrap();
    let e = sersync::config::load(&file).unwrap_err();
    let position = e.position.expect("located");
    assert_eq!((position.line, position.column), (3, 1), "{e}");
    assert!(e.message.contains("are the same directory"), "{e}");
    // One root through a link is followed to the real directory, the link remembered.
    std::fs::write(
        &file,
        format!(
            "<head><sersync><localpath watch=\"{}\"/></sersync></head>",
            link.display()
        ),
    )
    .unwrap();
    let config = sersync::config::load(&file).unwrap();
    assert_eq!(config.watches[0].root, real.canonicalize().unwrap());
    assert_eq!(
        config.watches[0].configured_as.as_deref(),
        Some(link.as_path())
    );
}

#[test]
fn a_bad_regex_shows_the_regex_error_at_the_expression() {
    let e = err(
        "<head>\n<filter start=\"true\">\n\t<exclude expression=\"(.*\\.svn\"/>\n</filter></head>",
    );
    assert_eq!(at(&e), (3, 11));
    assert!(
        e.message
            .starts_with("<exclude expression=\"(.*\\.svn\">: not a valid regular expression:"),
        "{e}"
    );
    assert!(e.message.contains("unclosed group"), "{e}");
    let e = err("<head><filter><tempfiles><pattern expression=\"[\"/></tempfiles></filter></head>");
    assert!(e.message.contains("unclosed character class"), "{e}");
}

#[test]
fn unknown_plugin_names_list_the_valid_ones() {
    let e = err(&in_sersync(
        "<plugin start=\"true\"\n        name=\"refreshCDNs\"/>",
    ));
    assert_eq!(at(&e), (4, 9));
    assert_eq!(e.message, "unknown plugin \"refreshCDNs\"");
    assert!(
        hint(&e).starts_with("valid names: command, refreshCDN, socket, http, nats;"),
        "{e}"
    );

    let with_sections = r#"<head><sersync><plugin start="true" name="x"/></sersync>
<plugin name="mine" type="dylib" path="/p.so"/><plugin name="x"/></head>"#;
    let e = err(with_sections);
    assert!(hint(&e).contains("section at 2:48"), "{e}");
    assert!(hint(&e).contains("type=\"dylib\""), "{e}");
    let e = err(&with_sections.replace("name=\"x\"/></sersync>", "name=\"y\"/></sersync>"));
    assert!(
        hint(&e).contains("command, refreshCDN, socket, http, nats, mine;"),
        "{e}"
    );
}

#[test]
fn enabled_plugins_resolve_case_insensitively() {
    let c = ok(
        r#"<head><sersync><plugin start="true" name="REFRESHcdn"/><plugin start="true" name="MINE"/>
<plugin start="true" name="refreshCDN"/><plugin start="false" name="nonsense"/></sersync>
<plugin name="Mine" type="wasm" path="/m.wasm"/></head>"#,
    );
    assert_eq!(c.enabled_plugins, ["refreshCDN", "Mine"]);
    assert_eq!(
        c.plugin_section("mine").map(|p| p.name.as_str()),
        Some("Mine")
    );
    assert!(c.plugin_section("refreshCDN").is_none());
}

#[test]
fn two_plugin_sections_with_one_name_are_refused() {
    let e = err("<head><plugin name=\"socket\"/>\n<plugin name=\"SOCKET\"/></head>");
    assert_eq!(at(&e), (2, 1));
    assert!(e.message.contains("(the first is at 1:7)"), "{e}");
}

// ---- XML-level errors ------------------------------------------------------------------

#[test]
fn malformed_xml_names_file_line_column_and_the_parser_message() {
    let e = err("<head>\n  <sersync>\n  </sersynk>\n</head>");
    assert_eq!(at(&e).0, 3);
    assert!(e.message.starts_with("malformed XML: "), "{e}");
    assert!(e.to_string().starts_with("conf.xml:3:"), "{e}");
    assert!(e.to_string().contains("\n  hint: "), "{e}");

    let e = err("<head>\n<debug start=\"true\">\n</head>");
    assert!(at(&e).0 >= 2, "{e}");
    let e = err("<head><debug start=true/></head>");
    assert_eq!(at(&e), (1, 20), "the unquoted value");
}

#[test]
fn the_root_must_be_head() {
    let e = err("<?xml version=\"1.0\"?>\n<config><sersync/></config>");
    assert_eq!(at(&e), (2, 1));
    assert_eq!(e.message, "the root element is <config>, expected <head>");
}

#[test]
fn engine_tuning_is_read_and_checked() {
    let c = ok(&format!(
        "<head><engine settleMs=\"5\" maxDelayMs=\"1000\" maxPending=\"10\" retryInitialMs=\"100\" \
         retryMaxMs=\"2000\" transfersPerRemote=\"4\" warmTransfers=\"false\" \
         stateDir=\"/var/lib/sersync\"/>{}</head>",
        "<sersync><failLog path=\"/var/log/f.sh\"/></sersync>"
    ));
    let g = &c.engine;
    assert_eq!(
        (g.settle, g.max_delay),
        (Duration::from_millis(5), Duration::from_secs(1))
    );
    assert_eq!(
        (g.max_pending, g.retry_initial),
        (10, Duration::from_millis(100))
    );
    assert_eq!(
        (g.retry_max, g.state_dir.as_path()),
        (Duration::from_secs(2), Path::new("/var/lib/sersync"))
    );
    assert_eq!(g.transfers_per_remote, 4);
    assert!(!g.warm_transfers);

    let c = ok("<head><sersync><failLog path=\"/var/log/f.sh\"/></sersync></head>");
    assert_eq!(
        c.engine.state_dir,
        sersync::state_dir::default_path(),
        "no longer beside the failLog script"
    );
    assert_eq!(c.engine.transfers_per_remote, 2);
    assert!(c.engine.warm_transfers, "warm transfers are on by default");

    let e = err("<head><engine\n settleMs=\"500\"/></head>");
    assert_eq!(at(&e), (2, 2));
    assert_eq!(
        e.message,
        "<engine>: settleMs (500 ms) is more than maxDelayMs (40 ms)"
    );
    let c = ok("<head><engine settleMs=\"1\" maxDelayMs=\"2s\"/></head>");
    assert_eq!(
        (c.engine.idle_settle, c.engine.busy_max_delay),
        (Duration::from_millis(1), Duration::from_secs(2)),
        "the defaults give way to the windows they sit beside"
    );
    let c = ok("<head><engine idleSettleMs=\"0\" busyMaxDelayMs=\"1s\"/></head>");
    assert_eq!(
        (c.engine.idle_settle, c.engine.busy_max_delay),
        (Duration::ZERO, Duration::from_secs(1))
    );
    let e = err("<head><engine idleSettleMs=\"20\"/></head>");
    assert_eq!(
        e.message,
        "<engine>: idleSettleMs (20 ms) is more than settleMs (10 ms)"
    );
    let e = err("<head><engine busyMaxDelayMs=\"30\"/></head>");
    assert_eq!(
        e.message,
        "<engine>: maxDelayMs (40 ms) is more than busyMaxDelayMs (30 ms)"
    );
    let e = err("<head><engine retryInitialMs=\"0\"/></head>");
    assert!(e.message.ends_with("0 is out of range"), "{e}");
    let e = err("<head><engine transfersPerRemote=\"17\"/></head>");
    assert!(e.message.ends_with("17 is out of range"), "{e}");
    let e = err("<head><engine maxPending=\"many\"/></head>");
    assert_eq!(
        e.message,
        "<engine maxPending=\"many\">: \"many\" is not a whole number"
    );
}

#[test]
fn engine_times_take_a_unit_or_the_one_their_name_says() {
    let c = ok(
        "<head><engine settleMs=\"0\" maxDelayMs=\"1s\" retryInitialMs=\"2s\" \
                retryMaxMs=\"5m\" auditSeconds=\"1h\"/></head>",
    );
    let g = &c.engine;
    assert_eq!(
        (g.settle, g.max_delay, g.retry_initial, g.retry_max),
        (
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(300)
        )
    );
    assert_eq!(g.audit, Some(Duration::from_secs(3600)));
    let c =
        ok("<head><engine settleMs=\" 250ms \" maxDelayMs=\"500\" auditSeconds=\"90\"/></head>");
    assert_eq!(
        (c.engine.settle, c.engine.max_delay, c.engine.audit),
        (
            Duration::from_millis(250),
            Duration::from_millis(500),
            Some(Duration::from_secs(90))
        )
    );
    assert_eq!(
        ok("<head><engine auditSeconds=\"0s\"/></head>")
            .engine
            .audit,
        None
    );

    let e = err("<head><engine settleMs=\"soon\"/></head>");
    assert_eq!(
        e.message,
        "<engine settleMs=\"soon\">: \"soon\" is not a duration"
    );
    assert_eq!(
        hint(&e),
        "settleMs is a time: a whole number of milliseconds, or one with a unit (500ms, 5s, 2m, \
         1h), from 0 to 24h"
    );
    for bad in ["1.5s", "1m30s", "-1", "5 sec", "1d"] {
        let e = err(&format!("<head><engine retryMaxMs=\"{bad}\"/></head>"));
        assert!(e.message.ends_with("is not a duration"), "{bad}: {e}");
    }
    let e = err("<head><engine maxDelayMs=\"25h\"/></head>");
    assert!(e.message.ends_with(": 25h is out of range"), "{e}");
    let e = err("<head><engine auditSeconds=\"366d\"/></head>");
    assert!(e.message.ends_with("is not a duration"), "{e}");
    let e = err("<head><engine auditSeconds=\"8761h\"/></head>");
    assert!(e.message.ends_with(": 8761h is out of range"), "{e}");
    // The ordering check compares the durations, whatever units they were written in.
    let e = err("<head><engine settleMs=\"1s\" maxDelayMs=\"999\"/></head>");
    assert_eq!(
        e.message,
        "<engine>: settleMs (1000 ms) is more than maxDelayMs (999 ms)"
    );
}

// ---- the file system: load() and read() ------------------------------------------------

struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the config file with `body` inside `<sersync>`; `{d}` stands for the temp dir.
    fn config(&self, body: &str) -> PathBuf {
        let file = self.path("confxml.xml");
        let body = body.replace("{d}", &self.dir.path().display().to_string());
        fs::write(&file, in_sersync(&body)).unwrap();
        file
    }

    fn password_file(&self, mode: u32) -> PathBuf {
        let file = self.path("rsync.pas");
        fs::write(&file, "secret\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        file
    }
}

fn load_err(file: &Path) -> ConfigError {
    let e = config::load(file).map(|_| ()).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(file), "{e}");
    e
}

const AUTH: &str = r#"<localpath watch="{d}"/>
<rsync><auth start="true" users="u" passwordfile="{d}/rsync.pas"/></rsync>"#;

#[test]
fn a_missing_config_file_is_explained() {
    let tree = Tree::new();
    let e = load_err(&tree.path("nope.xml"));
    assert!(
        e.message
            .starts_with("cannot read the configuration file: "),
        "{e}"
    );
    assert!(hint(&e).contains("-o FILE"), "{e}");
    assert_eq!(e.position, None);
}

#[test]
fn a_missing_or_non_directory_watch_is_located() {
    let tree = Tree::new();
    let e = load_err(&tree.config("<localpath watch=\"{d}/gone\"/>"));
    assert_eq!(e.position.map(|p| (p.line, p.column)), Some((3, 1)));
    assert!(e.message.ends_with("/gone does not exist"), "{e}");
    assert!(hint(&e).starts_with("create it (mkdir -p "), "{e}");

    fs::write(tree.path("file"), "").unwrap();
    let e = load_err(&tree.config("<localpath watch=\"{d}\"/>\n<localpath watch=\"{d}/file\"/>"));
    assert_eq!(e.position.map(|p| p.line), Some(4));
    assert!(e.message.ends_with("/file is not a directory"), "{e}");
}

#[test]
fn the_password_file_must_exist_and_be_private() {
    let tree = Tree::new();
    let file = tree.config(AUTH);
    let e = load_err(&file);
    assert_eq!(e.position.map(|p| (p.line, p.column)), Some((4, 37)));
    assert!(e.message.ends_with("rsync.pas does not exist"), "{e}");

    let pas = tree.password_file(0o644);
    let e = load_err(&file);
    assert!(
        e.message.contains("accessible by other users (mode 0644)"),
        "{e}"
    );
    assert_eq!(hint(&e), format!("chmod 600 {}", pas.display()));

    tree.password_file(0o600);
    let c = config::load(&file).unwrap();
    assert!(
        rsync_line(&c).contains(&format!(" --password-file={} ", pas.display())),
        "{}",
        rsync_line(&c)
    );
}

#[test]
fn as_root_the_password_file_must_be_owned_by_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give a file away, and the rule applies only to root
    }
    let tree = Tree::new();
    let file = tree.config(AUTH);
    let pas = tree.password_file(0o600);
    std::os::unix::fs::chown(&pas, Some(1000), None).unwrap();
    let e = load_err(&file);
    assert!(
        e.message
            .ends_with("is not owned by root; rsync run as root refuses it"),
        "{e}"
    );
    assert_eq!(hint(&e), format!("chown root {}", pas.display()));
}

#[test]
fn the_password_file_is_checked_only_by_load() {
    let tree = Tree::new();
    let file = tree.config(AUTH);
    assert!(
        config::read(&file).is_ok(),
        "read() looks at nothing but the file"
    );
}

#[test]
fn read_makes_relative_paths_absolute() {
    let tree = Tree::new();
    let file = tree.config(
        r#"<localpath watch="rel/dir/"/><rsync><program path="bin/rsync"/></rsync><failLog path="f.sh"/>"#,
    );
    let c = config::read(&file).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(c.watches[0].root, cwd.join("rel/dir"));
    assert!(
        rsync_line(&c).starts_with(&format!(
            "rsync: {} -artz ",
            cwd.join("bin/rsync").display()
        )),
        "{}",
        rsync_line(&c)
    );
    assert_eq!(c.fail_log.path, cwd.join("f.sh"));
    let c = config::read(&tree.config("")).unwrap();
    assert!(
        rsync_line(&c).starts_with("rsync: rsync -artz "),
        "a bare name is looked up in PATH: {}",
        rsync_line(&c)
    );
}

#[test]
fn the_shipped_file_loads_from_disk_when_its_watch_exists() {
    let tree = Tree::new();
    let file = tree.path("confxml.xml");
    fs::write(
        &file,
        SHIPPED.replace("/opt/tongbu\"", &format!("{}\"", tree.dir.path().display())),
    )
    .unwrap();
    let c = config::load(&file).unwrap();
    assert_eq!(c.watches[0].root, tree.dir.path());
    assert_eq!(c.file, file);
}

/// `<sersync><plugin after quorum maxWait onTimeout>`: refreshCDN runs after rsync unless told
/// otherwise; the attributes are checked.
#[test]
fn plugin_ordering_defaults_and_mistakes() {
    use sersync::dispatch::{OnTimeout, Quorum};
    let file = std::path::Path::new("/etc/sersync/confxml.xml");
    let with = |switches: &str| {
        sersync::config::parse_str(
            &format!(
                "<head><sersync><localpath watch=\"/data\"><remote ip=\"h\" name=\"m\"/></localpath>{switches}</sersync></head>"
            ),
            file,
        )
    };
    let config = with(
        "<plugin start=\"true\" name=\"refreshCDN\"/><plugin start=\"true\" name=\"command\"/>",
    )
    .unwrap();
    assert_eq!(config.plugin_order.len(), 1);
    let order = &config.plugin_order[0];
    assert_eq!(
        (order.plugin.as_str(), order.after.clone()),
        ("refreshCDN", vec!["rsync".to_string()])
    );
    assert_eq!(order.rule.quorum, Quorum::All);
    assert_eq!(order.rule.max_wait, std::time::Duration::from_secs(60));
    assert_eq!(order.rule.on_timeout, OnTimeout::Send);

    let off = with("<plugin start=\"true\" name=\"refreshCDN\" after=\"\"/>").unwrap();
    assert!(off.plugin_order.is_empty());
    let custom = with("<plugin start=\"true\" name=\"command\" after=\"rsync, refreshCDN\" quorum=\"2\" maxWait=\"1500ms\" onTimeout=\"wait\"/><plugin start=\"true\" name=\"refreshCDN\"/>").unwrap();
    let command = custom
        .plugin_order
        .iter()
        .find(|o| o.plugin == "command")
        .unwrap();
    assert_eq!(command.after, ["rsync", "refreshCDN"]);
    assert_eq!(command.rule.quorum, Quorum::AtLeast(2));
    assert_eq!(
        command.rule.max_wait,
        std::time::Duration::from_millis(1500)
    );
    assert_eq!(command.rule.on_timeout, OnTimeout::Wait);
    assert!(custom.warnings.is_empty(), "{:?}", custom.warnings);

    for (switches, says) in [
        ("<plugin start=\"true\" name=\"refreshCDN\" after=\"http\"/>", "neither rsync nor an enabled plugin"),
        ("<plugin start=\"true\" name=\"refreshCDN\" after=\"refreshCDN\"/>", "cannot run after itself"),
        ("<plugin start=\"true\" name=\"refreshCDN\" after=\"command\"/><plugin start=\"true\" name=\"command\" after=\"refreshCDN\"/>", "in a loop"),
        ("<plugin start=\"true\" name=\"refreshCDN\" quorum=\"most\"/>", "not all, any or a count"),
        ("<plugin start=\"true\" name=\"refreshCDN\" onTimeout=\"drop\"/>", "not send or wait"),
        ("<plugin start=\"true\" name=\"refreshCDN\" maxWait=\"soon\"/>", "not a duration"),
    ] {
        let error = with(switches).unwrap_err().to_string();
        assert!(error.contains(says), "{switches}: {error}");
    }
}
