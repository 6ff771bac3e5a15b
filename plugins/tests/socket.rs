//! The socket sink against TCP listeners on loopback, in both wire formats.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sersync_plugin_sdk::{ConfigNode, EventKind, Sink};
use sersync_plugins::configure_plugin;
use support::compliance::{self, relative, Lane, Probe, SinkUnderTest};
use support::decode::{json_bytes, json_event_paths};
use support::peers::{dead_port, wait_until, TcpPeer};
use support::start;
use support::xml::{plugin, plugin_xml};

fn socket_node(root: &Path, ip: &str, port: u16, format: Option<&str>) -> ConfigNode {
    let format = format
        .map(|f| format!(r#" format="{f}""#))
        .unwrap_or_default();
    plugin_xml(&format!(
        r#"<plugin name="socket"><localpath watch="{}"><deshost ip="{ip}" port="{port}"{format} timeout="2s"/></localpath></plugin>"#,
        root.display()
    ))
}

/// What a peer got, read as bare paths (one per connection) or as JSON lines.
struct SocketProbe {
    peer: TcpPeer,
    root: PathBuf,
    json: bool,
}

/// The JSON objects in `bytes`, one per complete line.
fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    let complete = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
    complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("one JSON object per line"))
        .collect()
}

impl Probe for SocketProbe {
    fn delivered(&self) -> Vec<Vec<u8>> {
        if self.json {
            json_lines(&self.peer.received())
                .iter()
                .flat_map(json_event_paths)
                .collect()
        } else {
            self.peer
                .connections()
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| relative(&self.root, c))
                .collect()
        }
    }
}

struct SocketSut {
    format: Option<&'static str>,
}

impl SinkUnderTest for SocketSut {
    fn live(&self, root: &Path) -> (Box<dyn Sink>, Box<dyn Probe>) {
        let peer = TcpPeer::start("127.0.0.1:0");
        let sink = start(
            &socket_node(root, "127.0.0.1", peer.addr().port(), self.format),
            root,
        );
        let json = self.format == Some("json");
        (
            sink,
            Box::new(SocketProbe {
                peer,
                root: root.to_path_buf(),
                json,
            }),
        )
    }

    fn dead(&self, root: &Path) -> Box<dyn Sink> {
        start(
            &socket_node(root, "127.0.0.1", dead_port(), self.format),
            root,
        )
    }
}

mod path_format {
    use super::*;
    compliance::suite!(SocketSut { format: None });
}

mod json_format {
    use super::*;
    compliance::suite!(SocketSut {
        format: Some("json")
    });
}

#[test]
fn path_format_is_2_5_4_bytes_one_connection_per_path() {
    let lane = Lane::new();
    let peer = TcpPeer::start("127.0.0.1:0");
    let mut sink = start(
        &socket_node(&lane.root, "127.0.0.1", peer.addr().port(), Some("path")),
        &lane.root,
    );
    let mv = lane.moved(b"a", b"b", false);
    sink.deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"x y", false), mv]))
        .unwrap();
    let abs = |p: &str| lane.root.join(p).as_os_str().as_bytes().to_vec();
    let expected = vec![abs("x y"), abs("a"), abs("b")];
    wait_until(compliance::SHOW_LIMIT, "three closed connections", || {
        (peer.connections() == expected).then_some(())
    });
}

#[test]
fn json_lines_carry_every_field_and_exact_bytes() {
    let lane = Lane::new();
    let peer = TcpPeer::start("127.0.0.1:0");
    let mut sink = start(
        &socket_node(&lane.root, "127.0.0.1", peer.addr().port(), Some("json")),
        &lane.root,
    );
    let mv = lane.moved(b"old\ndir", b"dir\xff", true);
    sink.deliver(&lane.batch(vec![mv])).unwrap();
    sink.deliver(&lane.batch(vec![lane.touch(EventKind::Attrib, b"f", false)]))
        .unwrap();
    let lines = wait_until(compliance::SHOW_LIMIT, "two JSON lines", || {
        let lines = json_lines(&peer.received());
        (lines.len() == 2).then_some(lines)
    });
    assert_eq!(peer.connections().len(), 1, "one persistent connection");
    let first = &lines[0];
    assert_eq!(first["kind"], "move");
    assert_eq!(json_bytes(first, "path").unwrap(), b"dir\xff");
    assert_eq!(first["path"], "dir\u{fffd}");
    assert_eq!(first["from"], "old\ndir");
    assert_eq!(
        json_bytes(first, "root").unwrap(),
        lane.root.as_os_str().as_bytes()
    );
    assert_eq!(first["is_dir"], true);
    assert!(first["time"].as_f64().unwrap() > 1.7e9);
    assert_eq!(lines[1]["kind"], "attrib");
    assert_eq!(lines[1]["from"], serde_json::Value::Null);
}

#[test]
fn json_peer_that_goes_away_and_comes_back() {
    let lane = Lane::new();
    let peer = TcpPeer::start("127.0.0.1:0");
    let port = peer.addr().port();
    let mut sink = start(
        &socket_node(&lane.root, "127.0.0.1", port, Some("json")),
        &lane.root,
    );
    let batch = |name: &[u8]| lane.batch(vec![lane.touch(EventKind::CloseWrite, name, false)]);
    sink.deliver(&batch(b"before")).unwrap();
    wait_until(compliance::SHOW_LIMIT, "the first line", || {
        (!json_lines(&peer.received()).is_empty()).then_some(())
    });
    let addr = peer.stop();
    let err = sink.deliver(&batch(b"while-down")).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.message.contains(&format!("127.0.0.1:{port}")),
        "names the peer: {err}"
    );
    let peer = TcpPeer::start(&addr.to_string());
    sink.deliver(&batch(b"while-down"))
        .expect("reconnects on the next delivery");
    let probe = SocketProbe {
        peer,
        root: lane.root.clone(),
        json: true,
    };
    compliance::wait_delivered(&probe, &[b"while-down".to_vec()], 1);
}

#[test]
fn hostnames_and_ipv6_are_accepted() {
    let lane = Lane::new();
    let v4 = TcpPeer::start("127.0.0.1:0");
    let mut sink = start(
        &socket_node(&lane.root, "localhost", v4.addr().port(), Some("json")),
        &lane.root,
    );
    sink.deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"via-name", false)]))
        .unwrap();
    let probe = SocketProbe {
        peer: v4,
        root: lane.root.clone(),
        json: true,
    };
    compliance::wait_delivered(&probe, &[b"via-name".to_vec()], 1);

    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: IPv6 part skipped");
        return;
    }
    let v6 = TcpPeer::start("[::1]:0");
    for ip in ["::1", "[::1]"] {
        let mut sink = start(
            &socket_node(&lane.root, ip, v6.addr().port(), None),
            &lane.root,
        );
        sink.deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"via-v6", false)]))
            .unwrap();
    }
    let probe = SocketProbe {
        peer: v6,
        root: lane.root.clone(),
        json: false,
    };
    compliance::wait_delivered(&probe, &[b"via-v6".to_vec()], 2);
}

#[test]
fn the_2_5_4_section_configures_unchanged_in_path_format() {
    let spec = configure_plugin(&plugin(include_str!("data/confxml-2.5.4.xml"), "socket")).unwrap();
    assert_eq!(spec.own_watches(), [PathBuf::from("/opt/tongbu")]);
    assert!(
        spec.summary().contains("192.168.138.20:8009 (Path)"),
        "{}",
        spec.summary()
    );
}

#[test]
fn a_lane_without_its_localpath_is_refused() {
    let node = socket_node(Path::new("/srv/a"), "127.0.0.1", 9, None);
    let err = configure_plugin(&node)
        .unwrap()
        .start(&support::context(Path::new("/srv/b")))
        .err()
        .expect("no localpath for /srv/b");
    assert!(
        !err.is_retryable() && err.message.contains("/srv/b"),
        "{err}"
    );
}

#[test]
fn config_errors_are_located_and_explained() {
    let cases = [
        (
            r#"<plugin name="socket"><localpath watch="/a"><deshost ip="h" port="70000"/></localpath></plugin>"#,
            "70000 is out of range",
        ),
        (
            r#"<plugin name="socket"><localpath watch="/a"><deshost ip="h"/></localpath></plugin>"#,
            "port",
        ),
        (
            r#"<plugin name="socket"><localpath watch="/a"><deshost ip="h" port="1" format="xml"/></localpath></plugin>"#,
            "unknown format",
        ),
        (
            r#"<plugin name="socket"><localpath watch="/a"></localpath></plugin>"#,
            "no <deshost",
        ),
        (
            r#"<plugin name="socket"><localpath watch="a"><deshost ip="h" port="1"/></localpath></plugin>"#,
            "absolute",
        ),
        (r#"<plugin name="socket"></plugin>"#, "no <localpath"),
        (
            r#"<plugin name="socket"><localpath watch="/a"><deshost ip="a b" port="1"/></localpath></plugin>"#,
            "not a host",
        ),
    ];
    support::assert_config_errors(&cases);
}

#[test]
fn config_errors_point_at_the_attribute() {
    support::assert_error_at(
        r#"<plugin name="socket"><localpath watch="/a"><deshost ip="h" port="70000"/></localpath></plugin>"#,
        r#"port=""#,
    );
    support::assert_error_at(
        r#"<plugin name="socket"><localpath watch="/a"><deshost ip="h" port="1" format="xml"/></localpath></plugin>"#,
        r#"format=""#,
    );
    support::assert_error_at(
        r#"<plugin name="socket"><localpath watch="a"><deshost ip="h" port="1"/></localpath></plugin>"#,
        r#"watch=""#,
    );
}
