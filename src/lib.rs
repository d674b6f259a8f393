//! nuvyn-executor: catalogues a data lake. A job (payload, CLI or API) names data sources;
//! they are discovered (`discover`), profiled with DataFusion (`profile`), and written as
//! Delta Lake tables partitioned by `workflow_id` (`metastore`), which `query` answers SQL
//! over. The data's path: payload -> location -> discover -> profile -> metastore.

pub use deltalake;

pub mod app;
pub mod azure;
pub mod cli;
pub mod discover;
pub mod job;
pub mod location;
pub mod logging;
pub mod metastore;
pub mod migrate;
pub mod notebook;
pub mod payload;
pub mod profile;
pub mod query;
pub mod redact;
pub mod runs;
pub mod server;
pub mod store;

/// This build's version, recorded with every run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
