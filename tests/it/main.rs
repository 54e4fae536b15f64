//! End-to-end tests: the real `chimewatch` binary on embedded backends and against AWS emulators (moto).
//!
//! Tests that need moto read its address from `CHIMEWATCH_TEST_MOTO_URL`, which `scripts/test.sh` sets after
//! starting it; run that script (the README's test command) rather than bare `cargo test` for the whole suite.

// Test helpers outside `#[test]` functions unwrap too: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

mod aggregator;
mod archive;
mod cloudwatch_put;
mod console;
mod consumer;
mod crash;
mod embedded;
mod explain;
mod faults;
mod full_disk;
mod harness;
mod hostile;
mod house;
mod kinesis;
mod leases;
mod pipeline;
mod real_client;
mod simulate;
mod stack;
mod voice;
