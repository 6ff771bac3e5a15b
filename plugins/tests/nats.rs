//! The `nats` sink against a real `nats-server` with JetStream on loopback: the compliance
//! suite (the probe is a plain NATS subscriber on the subject: what the sink *told* the
//! server, duplicates included), then what JetStream itself keeps: one copy of a batch
//! published twice, parts below `maxPayload`, the stream made with its settings.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sersync_plugin_sdk::{ConfigNode, EventKind, Sink};
use sersync_plugins::stream::async_nats::{self, jetstream};
use sersync_plugins::stream::{wire, Runtime};
use sersync_tests::nats::{nats_server_program, NatsCluster};
use support::compliance::{self, Lane, Probe, SinkUnderTest};
use support::peers::{dead_port, poll};
use support::start;
use support::xml::plugin_xml;

/// `<plugin name="stream" type="nats" …>` for the watch `root`, stream `stream` on subject
/// `sersync.STREAM`, with more attributes and children.
fn nats_node(root: &Path, servers: &str, stream: &str, attrs: &str, children: &str) -> ConfigNode {
    plugin_xml(&format!(
        r#"<plugin name="stream" type="nats" servers="{servers}" stream="{stream}" subject="sersync.{stream}" timeout="3s" {attrs}><localpath watch="{}"/>{children}</plugin>"#,
        root.display()
    ))
}

/// A subscriber on the subject, recording every message's payload.
struct Subscriber {
    _server: Arc<NatsCluster>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Subscriber {
    /// Subscribed when this returns; a thread of its own records what comes.
    fn start(server: Arc<NatsCluster>, subject: &str) -> Subscriber {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let url = format!("nats://127.0.0.1:{}", server.port(0));
        let (subject, sink) = (subject.to_string(), messages.clone());
        let (ready, subscribed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            Runtime::new("probe").unwrap().block_on(async move {
                use futures_util::StreamExt as _;
                let client = async_nats::connect(url).await.unwrap();
                let mut subscription = client.subscribe(subject).await.unwrap();
                client.flush().await.unwrap();
                ready.send(()).unwrap();
                while let Some(m) = subscription.next().await {
                    sink.lock().unwrap().push(m.payload.to_vec());
                }
            })
        });
        subscribed
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed");
        Subscriber {
            _server: server,
            messages,
        }
    }
}

impl Probe for Subscriber {
    fn delivered(&self) -> Vec<Vec<u8>> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .flat_map(|payload| wire::decode(payload).expect("sersync's format"))
            .flat_map(|c| {
                let mut names = vec![c.event.path.as_bytes().to_vec()];
                names.extend(c.event.from.map(|f| f.as_bytes().to_vec()));
                names
            })
            .collect()
    }
}

struct NatsSut;

impl SinkUnderTest for NatsSut {
    fn live(&self, root: &Path) -> (Box<dyn Sink>, Box<dyn Probe>) {
        let server = Arc::new(NatsCluster::single());
        let servers = format!("nats://127.0.0.1:{}", server.port(0));
        let probe = Subscriber::start(server, "sersync.S");
        let sink = start(&nats_node(root, &servers, "S", "", ""), root);
        (sink, Box::new(probe))
    }

    fn dead(&self, root: &Path) -> Box<dyn Sink> {
        let servers = format!("nats://127.0.0.1:{}", dead_port());
        start(&nats_node(root, &servers, "S", "", ""), root)
    }
}

/// Without the server, the suite cannot run: say so instead of failing (CI installs it).
fn installed() -> bool {
    let found = nats_server_program().is_some();
    if !found {
        println!("SKIPPED: nats-server is not installed (Debian package `nats-server`)");
    }
    found
}

/// The compliance suite (`compliance::suite!`'s tests, one by one), each that needs a live
/// server saying SKIPPED without one instead of failing.
mod compliance_suite {
    use super::*;

    macro_rules! with_a_server {
        ($($test:ident),* $(,)?) => {
            $(
                #[test]
                fn $test() {
                    if installed() {
                        compliance::$test(&NatsSut);
                    }
                }
            )*
        };
    }

    with_a_server!(
        weird_names_delivered_intact,
        every_kind_delivered,
        same_batch_twice_is_harmless,
        empty_batch_is_harmless,
        describe_has_no_side_effects,
    );

    /// A dead peer needs no server.
    #[test]
    fn dead_peer_is_retryable() {
        compliance::dead_peer_is_retryable(&NatsSut);
    }
}

/// Every message the stream holds, in order: (headers' message id, payload).
fn stored(servers: &str, stream: &str) -> Vec<(String, Vec<u8>)> {
    let runtime = Runtime::new("reader").unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(servers).await.unwrap();
        let js = jetstream::new(client);
        let mut s = js.get_stream(stream).await.unwrap();
        let info = s.info().await.unwrap().clone();
        let mut out = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            if let Ok(m) = s.get_raw_message(seq).await {
                let id = m
                    .headers
                    .get(wire::MESSAGE_ID)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                out.push((id, m.payload.to_vec()));
            }
        }
        out
    })
}

#[test]
fn a_batch_published_twice_is_stored_once_and_large_ones_in_parts() {
    if !installed() {
        return;
    }
    let server = NatsCluster::single();
    let servers = format!("nats://127.0.0.1:{}", server.port(0));
    let lane = Lane::new();
    let mut sink = start(
        &nats_node(&lane.root, &servers, "D", r#"maxPayload="8192""#, ""),
        &lane.root,
    );
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"once", false)]);
    sink.deliver(&batch).unwrap();
    sink.deliver(&batch).unwrap();
    assert_eq!(stored(&servers, "D").len(), 1, "the retry is deduplicated");

    let big = lane.batch(
        (0..600)
            .map(|i| {
                lane.touch(
                    EventKind::CloseWrite,
                    format!("many/f{i}").as_bytes(),
                    false,
                )
            })
            .collect(),
    );
    sink.deliver(&big).unwrap();
    let messages = stored(&servers, "D");
    assert!(messages.len() > 3, "{} messages", messages.len());
    let events: usize = messages[1..]
        .iter()
        .map(|(id, payload)| {
            assert!(payload.len() <= 8192, "{id}: {} bytes", payload.len());
            wire::decode(payload).unwrap().len()
        })
        .sum();
    assert_eq!(events, 600);
}

#[test]
fn the_stream_is_made_with_its_settings_and_a_dead_server_is_retryable() {
    if !installed() {
        return;
    }
    let mut server = NatsCluster::single();
    let servers = format!("nats://127.0.0.1:{}", server.port(0));
    let lane = Lane::new();
    let mut sink = start(
        &nats_node(
            &lane.root,
            &servers,
            "M",
            "",
            r#"<create maxMsgs="5" duplicateWindow="30s"/>"#,
        ),
        &lane.root,
    );
    for i in 0..8 {
        let b = lane.batch(vec![lane.touch(
            EventKind::CloseWrite,
            format!("f{i}").as_bytes(),
            false,
        )]);
        sink.deliver(&b).unwrap();
    }
    assert_eq!(stored(&servers, "M").len(), 5, "maxMsgs keeps the newest 5");
    server.kill(0);
    let b = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"down", false)]);
    let started = std::time::Instant::now();
    let e = sink.deliver(&b).unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains("stream M"), "{e}");
    server.restart(0);
    let ok = poll(Duration::from_secs(20), || sink.deliver(&b).is_ok());
    assert!(ok, "delivers again once the server is back");
}
