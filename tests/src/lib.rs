//! Harness for sersync's end-to-end tests: real peers on loopback.
