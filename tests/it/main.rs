//! The integration tests: one binary, a module per area, helpers in `common`. Tests that
//! need Azurite use the emulator `ci/test.sh` starts (see `common::azurite`).

mod common;

mod azure;
mod changes;
mod cli;
mod conformance;
mod databricks;
mod migrations;
mod notebooks;
mod pipeline;
mod profiles;
mod security;
mod server;
mod shards;
