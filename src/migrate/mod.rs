//! Versioned schema migrations of the warehouse. The files `sql/migrations/V<n>__<what>.sql`
//! (Spark SQL, embedded in the binary) are parsed with sqlparser's Databricks dialect into
//! steps, checked against a model of the tables before anything runs, and applied one step at
//! a time as delta-rs operations:
//!
//! | SQL | delta-rs |
//! | --- | --- |
//! | `CREATE TABLE [IF NOT EXISTS] t (...) USING DELTA [PARTITIONED BY (...)]` | create |
//! | `ALTER TABLE t ADD COLUMN c T [, ADD COLUMN ...]` | add columns |
//! | `ALTER TABLE t SET TBLPROPERTIES ('k' = 'v')` | set table properties |
//! | `UPDATE t SET c = expr [WHERE ...]` | update |
//! | `DELETE FROM t [WHERE ...]` | delete |
//! | `CREATE OR REPLACE TABLE t USING DELTA PARTITIONED BY (...) AS SELECT ...` | overwrite with the new schema and partitioning (a full rewrite; time travel keeps the old versions) |
//! | `OPTIMIZE t [ZORDER BY (...)]` | optimize (compact, Z-order) |
//!
//! Every step is idempotent (creating an existing table, adding an existing column, a rewrite
//! that already happened are no-ops; UPDATEs are written to be re-runnable), so a failed or
//! interrupted migration is resumed by applying again. History is the Delta table
//! `_executor_metadata/_schema_history` (like Flyway's); a lock object created with a
//! conditional write, whose lease its holder renews, serialises concurrent `apply` runs.

mod error;
mod history;
mod lock;
mod migrator;
mod model;
mod parse;
mod readiness;

pub use error::MigrateError;
pub use history::{Applied, ApplyReport, HistoryRow, MigrationStatus, State, Status};
pub use lock::{DEFAULT_LEASE, LockBody};
pub use migrator::Migrator;
pub use model::ModelTable;
pub use parse::{
    Col, EMBEDDED, Migration, Op, Step, binary_version, embedded, export, load, parse_script,
    read_dir,
};
pub use readiness::{
    MigratePolicy, Readiness, bring_current, ensure_current, readiness, readiness_of,
    validate_tables,
};
