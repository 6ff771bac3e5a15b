//! `<plugin name="…" type="nats" servers stream subject [credentials] [timeout] [maxPayload]>`
//! with an optional `<create replicas maxMsgs maxBytes maxAge duplicateWindow/>` (how to make
//! the stream when it does not exist) and `<localpath watch>` children.

use std::path::PathBuf;
use std::time::Duration;

use sersync_plugin_sdk::config::attrs::{duration_or, number, number_or, Bounds, Span, Unit};
use sersync_plugin_sdk::{ConfigError, ConfigNode};

use crate::stream::StreamAddress;

/// JetStream's own default duplicate window.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The sink's validated options.
#[derive(Clone, Debug)]
pub(crate) struct NatsOptions {
    /// The `name` attribute: the lanes' name.
    pub name: String,
    /// Servers, stream, subject.
    pub address: StreamAddress,
    /// `maxPayload`: the most bytes one message may carry; the server's `max_payload` when
    /// absent (and never more than it).
    pub max_payload: Option<usize>,
    /// How the stream is made when it is missing.
    pub create: StreamSettings,
    /// `<localpath watch>`: the watches served (empty: all).
    pub watches: Vec<PathBuf>,
}

/// `<create>`: the stream the sink makes when there is none by that name. An existing stream
/// is used as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamSettings {
    /// `replicas` (1–5): copies in a JetStream cluster.
    pub replicas: usize,
    /// `maxMsgs`: messages kept (0: no limit); the oldest go first.
    pub max_messages: i64,
    /// `maxBytes`: bytes kept (0: no limit).
    pub max_bytes: i64,
    /// `maxAge`: how long a message is kept (0: for ever).
    pub max_age: Duration,
    /// `duplicateWindow`: how long JetStream remembers message ids.
    pub duplicate_window: Duration,
}

const REPLICAS: Bounds = Bounds {
    meaning: "a number of stream replicas",
    min: 1,
    max: 5,
};

const LIMIT: Bounds = Bounds {
    meaning: "a limit (0: none)",
    min: 0,
    max: i64::MAX as u64,
};

const PAYLOAD: Bounds = Bounds {
    meaning: "a message size in bytes",
    min: 4096,
    max: 64 << 20,
};

const AGE: Span = Span {
    meaning: "how long messages are kept (0: for ever)",
    unit: Unit::Seconds,
    min: Duration::ZERO,
    max: Duration::from_secs(10 * 365 * 86_400),
};

const WINDOW: Span = Span {
    meaning: "how long message ids are remembered",
    unit: Unit::Seconds,
    min: Duration::from_millis(100),
    max: Duration::from_secs(7 * 86_400),
};

impl NatsOptions {
    /// Reads and checks the element.
    pub fn parse(node: &ConfigNode) -> Result<NatsOptions, ConfigError> {
        let create = node.child("create");
        let create = StreamSettings {
            replicas: number_or(create, "replicas", &REPLICAS, 1)? as usize,
            max_messages: number_or(create, "maxmsgs", &LIMIT, 0)? as i64,
            max_bytes: number_or(create, "maxbytes", &LIMIT, 0)? as i64,
            max_age: duration_or(create, "maxage", &AGE, Duration::ZERO)?,
            duplicate_window: duration_or(
                create,
                "duplicatewindow",
                &WINDOW,
                DEFAULT_DUPLICATE_WINDOW,
            )?,
        };
        Ok(NatsOptions {
            name: node.required_attr("name")?.to_string(),
            address: StreamAddress::parse(node)?,
            max_payload: number(node, "maxpayload", &PAYLOAD)?.map(|n| n as usize),
            create,
            watches: node
                .children_named("localpath")
                .map(|w| w.required_attr("watch").map(PathBuf::from))
                .collect::<Result<_, _>>()?,
        })
    }
}
