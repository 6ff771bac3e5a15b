//! Support shared by the sink tests: the compliance harness every sink passes, peers on
//! loopback that record what they receive, and a small confxml reader.
//!
//! Each test binary uses a different part of it, hence the crate-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod compliance;
pub mod decode;
pub mod peers;
pub mod xml;
