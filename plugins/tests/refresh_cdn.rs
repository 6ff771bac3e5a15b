//! The refreshCDN sink against HTTP servers on loopback: ChinaCache's request byte for byte,
//! and the generic purge mode (per URL, and many URLs in a JSON body).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use sersync_plugin_sdk::{ConfigNode, EventKind, Sink};
use sersync_plugins::configure_plugin;
use support::compliance::{self, Lane, Probe, SinkUnderTest};
use support::decode::percent;
use support::peers::{dead_port, HttpPeer, Reply, Request};
use support::start;
use support::xml::{escape, plugin, plugin_xml};

const BASE: &str = "http://cdn.test/site";

/// A refreshCDN plugin for `root` whose `<localpath>` holds `inner`.
fn cdn(root: &Path, inner: &str) -> ConfigNode {
    plugin_xml(&format!(
        r#"<plugin name="refreshCDN"><localpath watch="{}">{inner}</localpath></plugin>"#,
        escape(&root.display().to_string())
    ))
}

fn chinacache(root: &Path, port: u16, extra: &str) -> ConfigNode {
    cdn(
        root,
        &format!(
            r#"<cdninfo domainname="127.0.0.1" port="{port}" username="u" passwd="p&amp;w" timeout="2s" {extra}/><sendurl base="{BASE}"/><regexurl regex="false" match="x"/>"#
        ),
    )
}

/// A URL under `base` back to the relative path it was made from.
fn path_of(url: &[u8], base: &str) -> Vec<u8> {
    let rest = url
        .strip_prefix(base.as_bytes())
        .unwrap_or_else(|| panic!("{} not under {base}", String::from_utf8_lossy(url)));
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    percent(rest.strip_suffix(b"/").unwrap_or(rest))
}

/// The `urls=`/`dirs=` value of a ChinaCache request, decoded.
fn chinacache_url(r: &Request) -> Vec<u8> {
    let query = r.target.split_once('?').unwrap().1;
    let value = query
        .split('&')
        .find_map(|kv| {
            kv.strip_prefix("urls=")
                .or_else(|| kv.strip_prefix("dirs="))
        })
        .expect("urls= or dirs=");
    percent(value.as_bytes())
}

/// How the generic-purge probes read a request.
#[derive(Clone, Copy)]
enum Mode {
    ChinaCache,
    PerUrl,
    JsonBody,
}

struct CdnProbe {
    peer: HttpPeer,
    mode: Mode,
}

impl Probe for CdnProbe {
    fn delivered(&self) -> Vec<Vec<u8>> {
        let base = format!("{}/site", self.peer.base_url());
        self.peer
            .requests()
            .iter()
            .flat_map(|r| match self.mode {
                Mode::ChinaCache => vec![path_of(&chinacache_url(r), BASE)],
                Mode::PerUrl => vec![path_of(
                    format!("{}{}", self.peer.base_url(), r.target).as_bytes(),
                    &base,
                )],
                Mode::JsonBody => {
                    let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    doc["files"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|u| path_of(u.as_str().unwrap().as_bytes(), BASE))
                        .collect()
                }
            })
            .collect()
    }
}

struct CdnSut(Mode);

impl CdnSut {
    fn node(&self, root: &Path, peer: &str, port: u16) -> ConfigNode {
        match self.0 {
            Mode::ChinaCache => chinacache(root, port, ""),
            Mode::PerUrl => cdn(
                root,
                &format!(r#"<sendurl base="{peer}/site"/><purge timeout="2s"/>"#),
            ),
            Mode::JsonBody => cdn(
                root,
                &format!(
                    r#"<sendurl base="{BASE}"/><purge method="POST" url="{peer}/purge" body='{{"files": {{urls}}}}' maxUrls="3" timeout="2s"/>"#
                ),
            ),
        }
    }
}

impl SinkUnderTest for CdnSut {
    fn live(&self, root: &Path) -> (Box<dyn Sink>, Box<dyn Probe>) {
        let peer = HttpPeer::start(Reply::Status(200));
        let sink = start(&self.node(root, &peer.base_url(), peer.port()), root);
        (sink, Box::new(CdnProbe { peer, mode: self.0 }))
    }

    fn dead(&self, root: &Path) -> Box<dyn Sink> {
        let port = dead_port();
        start(
            &self.node(root, &format!("http://127.0.0.1:{port}"), port),
            root,
        )
    }
}

mod chinacache_mode {
    use super::*;
    compliance::suite!(CdnSut(Mode::ChinaCache));
}

mod purge_per_url {
    use super::*;
    compliance::suite!(CdnSut(Mode::PerUrl));
}

mod purge_json_body {
    use super::*;
    compliance::suite!(CdnSut(Mode::JsonBody));
}

#[test]
fn chinacache_request_is_2_5_4_bytes() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(200));
    let mut sink = start(&chinacache(&lane.root, peer.port(), ""), &lane.root);
    let batch = lane.batch(vec![
        lane.touch(EventKind::CloseWrite, b"a/b.jpg", false),
        lane.touch(EventKind::Create, b"img", true),
        lane.touch(EventKind::CloseWrite, b"x y&z=1.jpg", false),
    ]);
    sink.deliver(&batch).unwrap();
    let heads: Vec<String> = peer
        .requests()
        .iter()
        .map(|r| String::from_utf8(r.head.clone()).unwrap())
        .collect();
    assert_eq!(
        heads,
        [
            "HEAD /index.jsp?user=u&pswd=p%26w&ok=ok&urls=http://cdn.test/site/a/b.jpg HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
            "HEAD /index.jsp?user=u&pswd=p%26w&ok=ok&dirs=http://cdn.test/site/img/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
            "HEAD /index.jsp?user=u&pswd=p%26w&ok=ok&urls=http://cdn.test/site/x%2520y%26z%3D1.jpg HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        ]
    );
}

#[test]
fn regexurl_takes_group_one_and_the_rest_and_skips_non_matching_paths() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(200));
    let node = cdn(
        &lane.root,
        &format!(
            r#"<cdninfo domainname="127.0.0.1" port="{}" username="u" passwd="p"/><sendurl base="http://pic.test/cms"/><regexurl regex="true" match="root([/a-zA-Z0-9]*).xoyo.com/images"/>"#,
            peer.port()
        ),
    );
    let mut sink = start(&node, &lane.root);
    sink.deliver(&lane.batch(vec![
        lane.touch(EventKind::CloseWrite, b"www.xoyo.com/images/1.jpg", false),
        lane.touch(EventKind::CloseWrite, b"elsewhere/2.jpg", false),
    ]))
    .unwrap();
    let urls: Vec<Vec<u8>> = peer.requests().iter().map(chinacache_url).collect();
    assert_eq!(urls, [b"http://pic.test/cms/www/1.jpg".to_vec()]);
}

#[test]
fn chinacache_statuses_and_silence_are_classified_and_password_stays_secret() {
    let lane = Lane::new();
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]);
    for (reply, retryable) in [
        (Reply::Status(500), true),
        (Reply::Status(429), true),
        (Reply::Status(404), false),
        (Reply::Hang, true),
    ] {
        let peer = HttpPeer::start(reply);
        let node = chinacache(&lane.root, peer.port(), "").clone();
        let spec = configure_plugin(&node).unwrap();
        let mut sink = spec.start(&support::context(&lane.root)).unwrap();
        let started = Instant::now();
        let err = sink.deliver(&batch).unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{reply:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            err.message.contains(&format!("127.0.0.1:{}", peer.port())),
            "{err}"
        );
        let everything = format!(
            "{err} {} {spec:?} {:?}",
            spec.summary(),
            sink.describe(&batch)
        );
        assert!(
            !everything.contains("p&w") && !everything.contains("p%26w"),
            "password shown: {everything}"
        );
    }
}

#[test]
fn purge_sends_secret_headers_and_paces_requests() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(200));
    let token = lane.beside("token");
    std::fs::write(&token, "tok\n").unwrap();
    let node = cdn(
        &lane.root,
        &format!(
            r#"<sendurl base="{}/site"/><purge method="purge" rps="20"><header name="Authorization" prefix="Bearer " file="{}"/></purge>"#,
            peer.base_url(),
            escape(&token.display().to_string())
        ),
    );
    let mut sink = start(&node, &lane.root);
    let mv = lane.moved(b"old", b"new", false);
    let started = Instant::now();
    sink.deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"one", false), mv]))
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "3 requests at 20/s take at least 2 intervals"
    );
    let requests = peer.requests();
    let lines: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        lines,
        ["PURGE /site/one", "PURGE /site/old", "PURGE /site/new"]
    );
    assert!(requests
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer tok")));
}

#[test]
fn purge_statuses_are_classified() {
    let lane = Lane::new();
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]);
    for (status, retryable) in [(502, true), (429, true), (403, false)] {
        let peer = HttpPeer::start(Reply::Status(status));
        let node = cdn(
            &lane.root,
            &format!(r#"<sendurl base="{}/site"/><purge/>"#, peer.base_url()),
        );
        let err = start(&node, &lane.root).deliver(&batch).unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{status}: {err}");
        assert!(err.message.contains("/site/f"), "{err}");
    }
}

#[test]
fn json_body_groups_urls() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(200));
    let mut sink = start(
        &CdnSut(Mode::JsonBody).node(&lane.root, &peer.base_url(), 0),
        &lane.root,
    );
    let events = (0..7)
        .map(|i| lane.touch(EventKind::CloseWrite, format!("f{i}").as_bytes(), false))
        .collect();
    sink.deliver(&lane.batch(events)).unwrap();
    let requests = peer.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r.method == "POST" && r.target == "/purge"));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    let first: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"files": ["http://cdn.test/site/f0", "http://cdn.test/site/f1", "http://cdn.test/site/f2"]})
    );
}

#[test]
fn the_2_5_4_section_configures_unchanged() {
    let spec = configure_plugin(&plugin(
        include_str!("data/confxml-2.5.4.xml"),
        "refreshCDN",
    ))
    .unwrap();
    assert_eq!(spec.name(), "refreshCDN");
    assert_eq!(
        spec.own_watches(),
        [Path::new("/data0/htdocs/cms.xoyo.com/site")]
    );
    assert!(
        spec.summary().contains("ccms.chinacache.com:80"),
        "{}",
        spec.summary()
    );
}

#[test]
fn config_errors_are_located_and_explained() {
    let lp = |inner: &str| {
        format!(r#"<plugin name="refreshCDN"><localpath watch="/a">{inner}</localpath></plugin>"#)
    };
    let cc = r#"<cdninfo domainname="h" port="80" username="u" passwd="p"/>"#;
    let cases = [
        (
            lp(r#"<sendurl base="http://x"/>"#),
            "neither <cdninfo> nor <purge>",
        ),
        (lp(cc), "no <sendurl"),
        (
            lp(&format!(r#"{cc}<sendurl base="x.com"/>"#)),
            "not an http",
        ),
        (
            lp(&format!(
                r#"{cc}<sendurl base="http://x"/><regexurl regex="true" match="(a"/>"#
            )),
            "regular expression",
        ),
        (
            lp(&format!(
                r#"{cc}<sendurl base="http://x"/><regexurl regex="true" match="a"/>"#
            )),
            "capture group",
        ),
        (
            lp(
                r#"<cdninfo domainname="h" port="x" username="u" passwd="p"/><sendurl base="http://x"/>"#,
            ),
            "<cdninfo port=\"x\">: \"x\" is not a whole number",
        ),
        (
            lp(r#"<cdninfo domainname="h" username="u"/><sendurl base="http://x"/>"#),
            "passwd",
        ),
        (
            lp(r#"<sendurl base="http://x"/><purge method="BAD METHOD"/>"#),
            "not an HTTP method",
        ),
        (
            lp(r#"<sendurl base="http://x"/><purge url="relative/{url}"/>"#),
            "valid URL",
        ),
        (
            lp(r#"<sendurl base="http://x"/><purge url="http://api/purge" body='{"files": []}'/>"#),
            "{urls}",
        ),
        (
            lp(r#"<sendurl base="http://x"/><purge body='{"files": {urls}}'/>"#),
            "fixed API endpoint",
        ),
        (
            lp(
                r#"<sendurl base="http://x"/><purge url="http://api/purge" body='{"files": {urls}'/>"#,
            ),
            "not valid JSON",
        ),
        (
            lp(r#"<sendurl base="http://x"/><purge rps="0"/>"#),
            "above 0",
        ),
        (
            lp(r#"<sendurl base="http://x"/><purge timeout="-1"/>"#),
            "duration",
        ),
    ];
    support::assert_config_errors(&cases);
}

#[test]
fn chinacache_over_ipv6_brackets_the_host_header() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let lane = Lane::new();
    let peer = HttpPeer::start_on("[::1]:0", Reply::Status(200));
    let node = cdn(
        &lane.root,
        &format!(
            r#"<cdninfo domainname="::1" port="{}" username="u" passwd="p"/><sendurl base="{BASE}"/>"#,
            peer.port()
        ),
    );
    start(&node, &lane.root)
        .deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"v6", false)]))
        .unwrap();
    assert_eq!(peer.requests()[0].header("host"), Some("[::1]"));
}

#[test]
fn config_errors_point_at_the_attribute() {
    support::assert_error_at(
        r#"<plugin name="refreshCDN"><localpath watch="/a"><sendurl base="http://x"/><purge url="relative/{url}"/></localpath></plugin>"#,
        r#"url=""#,
    );
    support::assert_error_at(
        r#"<plugin name="refreshCDN"><localpath watch="/a"><sendurl base="http://x"/><purge timeout="2s" rps="0"/></localpath></plugin>"#,
        r#"rps=""#,
    );
    support::assert_error_at(
        r#"<plugin name="refreshCDN"><localpath watch="/a"><cdninfo domainname="h" username="u" passwd="p"/><sendurl base="http://x"/><regexurl regex="true" match="(a"/></localpath></plugin>"#,
        r#"match=""#,
    );
}
