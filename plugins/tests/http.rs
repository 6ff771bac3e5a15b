//! The http (webhook) sink against HTTP servers on loopback that record, fail, or hang.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use sersync_plugin_sdk::{ConfigNode, EventKind, Sink};
use sersync_plugins::configure_plugin;
use support::compliance::{self, Lane, Probe, SinkUnderTest};
use support::decode::{json_bytes, json_event_paths};
use support::peers::{dead_port, HttpPeer, Reply};
use support::start;
use support::xml::{escape, plugin_xml};

fn webhook(url: &str, extra: &str, headers: &str) -> ConfigNode {
    plugin_xml(&format!(
        r#"<plugin name="http"><endpoint url="{}" timeout="2s" {extra}>{headers}</endpoint></plugin>"#,
        escape(url)
    ))
}

/// The events the peer got, across all POSTs, in order.
fn events(peer: &HttpPeer) -> Vec<serde_json::Value> {
    peer.requests()
        .iter()
        .flat_map(|r| {
            let doc: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
            doc["events"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

struct HttpProbe(HttpPeer);

impl Probe for HttpProbe {
    fn delivered(&self) -> Vec<Vec<u8>> {
        events(&self.0).iter().flat_map(json_event_paths).collect()
    }
}

struct HttpSut;

impl SinkUnderTest for HttpSut {
    fn live(&self, root: &Path) -> (Box<dyn Sink>, Box<dyn Probe>) {
        let peer = HttpPeer::start(Reply::Status(200));
        let sink = start(&webhook(&format!("{}/hook", peer.base_url()), "", ""), root);
        (sink, Box::new(HttpProbe(peer)))
    }

    fn dead(&self, root: &Path) -> Box<dyn Sink> {
        start(
            &webhook(&format!("http://127.0.0.1:{}/hook", dead_port()), "", ""),
            root,
        )
    }
}

compliance::suite!(HttpSut);

#[test]
fn posts_one_json_document_per_batch_with_headers() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(204));
    let token_file = lane.beside("token");
    std::fs::write(&token_file, "file-secret\n").unwrap();
    // An env var every process has, so that the test need not set one (set_var races other
    // test threads).
    let from_env = std::env::var("PATH").unwrap();
    let headers = format!(
        r#"<header name="X-From-File" file="{}"/><header name="Authorization" prefix="Bearer " env="PATH"/><header name="X-Plain" value="v"/>"#,
        escape(&token_file.display().to_string())
    );
    let node = webhook(&format!("{}/hook?x=1", peer.base_url()), "", &headers);
    let spec = configure_plugin(&node).unwrap();
    let shown = format!("{} {spec:?}", spec.summary());
    assert!(
        !shown.contains("secret") && !shown.contains(&from_env),
        "secrets must not show: {shown}"
    );
    let mut sink = spec.start(&support::context(&lane.root)).unwrap();
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"a\xff", false)]);
    assert!(sink.describe(&batch).iter().all(|l| !l.contains("secret")));
    sink.deliver(&batch).unwrap();
    let requests = peer.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/hook?x=1")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {from_env}").as_str())
    );
    assert_eq!(r.header("x-from-file"), Some("file-secret"));
    assert_eq!(r.header("x-plain"), Some("v"));
    let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        json_bytes(&doc, "root").unwrap(),
        lane.root.as_os_str().as_encoded_bytes()
    );
    assert_eq!(doc["watch"], 0);
    assert_eq!(doc["events"][0]["kind"], "close_write");
    assert_eq!(json_bytes(&doc["events"][0], "path").unwrap(), b"a\xff");
}

#[test]
fn large_batches_go_as_several_posts_in_order() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(200));
    let mut sink = start(
        &webhook(&peer.base_url(), r#"maxEvents="2""#, ""),
        &lane.root,
    );
    let events_in = (0..5)
        .map(|i| lane.touch(EventKind::CloseWrite, format!("f{i}").as_bytes(), false))
        .collect();
    sink.deliver(&lane.batch(events_in)).unwrap();
    assert_eq!(peer.requests().len(), 3);
    let paths: Vec<String> = events(&peer)
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["f0", "f1", "f2", "f3", "f4"]);
}

#[test]
fn statuses_are_classified() {
    let lane = Lane::new();
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]);
    for (status, retryable) in [
        (500, true),
        (503, true),
        (429, true),
        (404, false),
        (401, false),
        (400, false),
    ] {
        let peer = HttpPeer::start(Reply::Status(status));
        let url = format!("{}/hook", peer.base_url());
        let err = start(&webhook(&url, "", ""), &lane.root)
            .deliver(&batch)
            .unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{status}: {err}");
        assert!(
            err.message.contains(&url) && err.message.contains(&status.to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_hanging_server_times_out_as_retryable() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Hang);
    let node = plugin_xml(&format!(
        r#"<plugin name="http"><endpoint url="{}/hook" timeout="500ms"/></plugin>"#,
        peer.base_url()
    ));
    let started = Instant::now();
    let err = start(&node, &lane.root)
        .deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]))
        .unwrap_err();
    assert!(
        err.is_retryable() && err.message.contains("timed out"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn config_errors_are_located_and_explained() {
    let cases = [
        (r#"<plugin name="http"></plugin>"#, "no <endpoint"),
        (
            r#"<plugin name="http"><endpoint url="not a url"/></plugin>"#,
            "not an http",
        ),
        (
            r#"<plugin name="http"><endpoint url="ftp://h/x"/></plugin>"#,
            "not an http",
        ),
        (
            r#"<plugin name="http"><endpoint url="http://h/" maxEvents="0"/></plugin>"#,
            "0 is out of range",
        ),
        (
            r#"<plugin name="http"><endpoint url="http://h/" cafile="/nonexistent.pem"/></plugin>"#,
            "cafile",
        ),
        (
            r#"<plugin name="http"><endpoint url="http://h/"><header name="A" value="1" env="B"/></endpoint></plugin>"#,
            "exactly one",
        ),
        (
            r#"<plugin name="http"><endpoint url="http://h/"><header name="A" env="SERSYNC_TEST_UNSET_VAR"/></endpoint></plugin>"#,
            "not set",
        ),
        (
            r#"<plugin name="http"><endpoint url="http://h/"><header name="bad name" value="1"/></endpoint></plugin>"#,
            "header name",
        ),
    ];
    support::assert_config_errors(&cases);
}

#[test]
fn https_with_a_private_ca_and_refusal_without_it() {
    let lane = Lane::new();
    let peer = HttpPeer::start_tls(Reply::Status(200));
    let url = format!("https://localhost:{}/hook", peer.port());
    let ca = support::peers::TEST_CA;
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"tls", false)]);
    start(&webhook(&url, &format!(r#"cafile="{ca}""#), ""), &lane.root)
        .deliver(&batch)
        .expect("the private CA is trusted");
    assert_eq!(events(&peer)[0]["path"], "tls");
    let err = start(&webhook(&url, "", ""), &lane.root)
        .deliver(&batch)
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.message.contains("certificate"), "says why: {err}");
    assert_eq!(
        peer.requests().len(),
        1,
        "nothing sent over an untrusted connection"
    );
}

#[test]
fn config_errors_point_at_the_attribute() {
    support::assert_error_at(
        r#"<plugin name="http"><endpoint timeout="1s" url="ftp://h/"/></plugin>"#,
        r#"url=""#,
    );
    support::assert_error_at(
        r#"<plugin name="http"><endpoint url="http://h/" cafile="/nonexistent.pem"/></plugin>"#,
        r#"cafile=""#,
    );
}

/// The receiver of docs/sinks/http.md, run by Python: exit 0 when the timestamped signature
/// is the body's and the timestamp is within the window.
const PYTHON_VERIFY: &str = r#"
import hashlib, hmac, sys, time

def verified(secret: bytes, body: bytes, headers, window: int = 300) -> bool:
    timestamp = headers.get("X-Sersync-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > window:
        return False
    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Sersync-Signature-Timestamped", ""))

body = open(sys.argv[1], "rb").read()
headers = {"X-Sersync-Timestamp": sys.argv[3], "X-Sersync-Signature-Timestamped": sys.argv[4]}
sys.exit(0 if verified(sys.argv[2].encode(), body, headers) else 1)
"#;

/// HMAC-SHA256 of the concatenated `parts`, in hex: what a receiver computes.
fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn posts_are_signed_and_carry_a_delivery_id_that_a_resend_keeps() {
    use sha2::{Digest, Sha256};
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(200));
    let secret_file = lane.beside("webhook.secret");
    std::fs::write(&secret_file, "s3cret-for-hooks\n").unwrap();
    let signature = format!(
        r#"<signature file="{}"/>"#,
        escape(&secret_file.display().to_string())
    );
    let node = webhook(&peer.base_url(), r#"maxEvents="2""#, &signature);
    let spec = configure_plugin(&node).unwrap();
    let shown = format!("{} {spec:?}", spec.summary());
    assert!(
        !shown.contains("s3cret"),
        "the secret must not show: {shown}"
    );
    assert!(shown.contains("signed"), "{shown}");
    let mut sink = spec.start(&support::context(&lane.root)).unwrap();
    let batch = lane.batch(
        (0..3)
            .map(|i| lane.touch(EventKind::CloseWrite, format!("f{i}").as_bytes(), false))
            .collect(),
    );
    sink.deliver(&batch).unwrap();
    sink.deliver(&batch).unwrap();
    let requests = peer.requests();
    assert_eq!(requests.len(), 4, "two POSTs per delivery");
    for r in &requests {
        let header = r.header("x-sersync-signature").expect("signed");
        assert_eq!(
            header,
            format!("sha256={}", hmac_hex(b"s3cret-for-hooks", &[&r.body]))
        );
        let timestamp = r.header("x-sersync-timestamp").expect("a timestamp");
        let stamped = hmac_hex(b"s3cret-for-hooks", &[timestamp.as_bytes(), b".", &r.body]);
        assert_eq!(
            r.header("x-sersync-signature-timestamped"),
            Some(format!("sha256={stamped}").as_str())
        );
        let id: String = Sha256::digest(&r.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(r.header("x-sersync-delivery"), Some(id.as_str()));
    }
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| r.header("x-sersync-delivery").unwrap())
        .collect();
    assert_ne!(ids[0], ids[1], "each document its own id");
    assert_eq!(ids[..2], ids[2..], "sent again, the same ids");

    // The documented receiver agrees, and refuses a body that was changed.
    let body = lane.beside("body.json");
    let python = |body_bytes: &[u8], timestamp: &str, signature: &str| {
        std::fs::write(&body, body_bytes).unwrap();
        std::process::Command::new("python3")
            .args(["-c", PYTHON_VERIFY])
            .arg(&body)
            .args(["s3cret-for-hooks", timestamp, signature])
            .status()
            .ok()
            .map(|s| s.success())
    };
    let timestamp = requests[0].header("x-sersync-timestamp").unwrap();
    let signature = requests[0]
        .header("x-sersync-signature-timestamped")
        .unwrap();
    match python(&requests[0].body, timestamp, signature) {
        Some(verified) => {
            assert!(verified, "the Python receiver refused a real signature");
            let mut forged = requests[0].body.clone();
            forged.push(b' ');
            assert_eq!(python(&forged, timestamp, signature), Some(false));
            // A recorded POST played again an hour later, with its timestamp moved on to
            // pass the window: the signature no longer matches.
            let moved = (timestamp.parse::<u64>().unwrap() + 3600).to_string();
            assert_eq!(python(&requests[0].body, &moved, signature), Some(false));
            // The same POST with its own timestamp, an hour late, is out of the window.
            let old = (timestamp.parse::<u64>().unwrap() - 3600).to_string();
            let old_signature = format!(
                "sha256={}",
                hmac_hex(
                    b"s3cret-for-hooks",
                    &[old.as_bytes(), b".", &requests[0].body]
                )
            );
            assert_eq!(python(&requests[0].body, &old, &old_signature), Some(false));
        }
        None => eprintln!("python3 is NOT installed: the documented receiver not run"),
    }
}

#[test]
fn unsigned_posts_still_carry_the_delivery_id_and_bad_secrets_are_refused() {
    let lane = Lane::new();
    let peer = HttpPeer::start(Reply::Status(200));
    let mut sink = start(&webhook(&peer.base_url(), "", ""), &lane.root);
    sink.deliver(&lane.batch(vec![lane.touch(EventKind::CloseWrite, b"f", false)]))
        .unwrap();
    let r = &peer.requests()[0];
    assert_eq!(r.header("x-sersync-delivery").map(str::len), Some(64));
    assert_eq!(r.header("x-sersync-signature"), None);

    let empty = lane.beside("empty.secret");
    std::fs::write(&empty, "\n").unwrap();
    let empty = format!(
        r#"<signature file="{}"/>"#,
        escape(&empty.display().to_string())
    );
    for (signature, says) in [
        (empty.as_str(), "the secret is empty"),
        (r#"<signature/>"#, "exactly one of file=, env="),
        (
            r#"<signature env="SERSYNC_NO_SUCH_VARIABLE_SET"/>"#,
            "not set",
        ),
        (
            r#"<signature file="/nonexistent/secret"/>"#,
            "/nonexistent/secret",
        ),
        (
            r#"<signature env="PATH"/><signature env="PATH"/>"#,
            "second <signature>",
        ),
    ] {
        let err = configure_plugin(&webhook("http://127.0.0.1:1/", "", signature)).unwrap_err();
        assert!(err.to_string().contains(says), "{signature}: {err}");
    }
}
