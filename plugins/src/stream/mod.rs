//! The change stream on NATS JetStream: what the `nats` sink publishes and what
//! `sersync follow` (and any other consumer) reads. One place for both sides of the contract:
//! the address of a stream ([`StreamAddress`], [`Endpoint`]), the messages
//! ([`wire`]: parts, ids, headers, decoding) and a small runtime ([`Runtime`]) the blocking
//! callers drive the async client on.
//!
//! The format is documented for other consumers in `docs/scale.md` ("The message format").

mod address;
mod runtime;
pub mod wire;

pub use address::{Endpoint, StreamAddress};
pub use runtime::{timeout, Runtime};

/// The async NATS client the stream is reached with (re-exported so that the follower and
/// the sink use the very same crate and version).
pub use async_nats;
