//! nuvyn-executor: catalogues a data lake. A job (payload, CLI or API) names data sources;
//! they are discovered, profiled with DataFusion, and written as Delta Lake tables
//! partitioned by `workflow_id`, which `query` answers SQL over.
//!
//! The modules, in the order the data flows (each imports only the ones below it):
//!
//! | module | owns |
//! | --- | --- |
//! | [`cli`] | clap types -> validated `Config` (no I/O), the runner that prints results, logging |
//! | [`server`] | the HTTP API: router, state (admission, queue, drain), journal, handlers |
//! | [`job`] | one extraction job: payload, orchestration, writing a run |
//! | [`notebook`] | versioned notebooks and cell <-> operator mappings, and their store |
//! | [`migrate`] | versioned schema migrations: parse, model check, history, migrator, readiness |
//! | [`query`] | the SQL session over the warehouse and the nested workflow view |
//! | [`profile`] | statistics of one table, in one streaming pass |
//! | [`discover`] | listing a source and grouping its files into tables |
//! | [`warehouse`] | the Delta tables: the one catalogue of definitions, open/create/replace, rows, `select` |
//! | [`storage`] | where bytes live: locations, Azure, request counting |
//! | [`redact`] | keeping secrets out of everything shown |

pub use deltalake;

pub mod cli;
pub mod server;

pub mod job;
pub mod notebook;

pub mod migrate;

pub mod discover;
pub mod profile;
pub mod query;

pub mod warehouse;

pub mod storage;

pub mod redact;

/// This build's version, recorded with every run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
