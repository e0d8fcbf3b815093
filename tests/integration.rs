//! Every integration test, in one binary: one link instead of one per file,
//! the test bed (`support`) compiled once, and the tests of all files run
//! side by side. One file per area; run one with its module path, e.g.
//! `cargo test --test integration controller::` or
//! `cargo test --test integration scenarios::`.

mod support;

mod agent;
mod apiserver;
mod aws;
mod aws_push;
mod bad_input;
mod bad_input_controller;
mod bench;
mod bitnami;
mod bitnami_controller;
mod cli;
mod cluster_external_secret;
mod controller;
mod csi_provider;
mod deploy;
mod fuzz_regressions;
mod generators;
mod image;
mod push_secret;
mod readme;
mod reload;
mod scenarios;
mod sealed;
mod template_limits;
mod templates;
