//! The Delta metastore: the schemas of the `_executor_metadata` tables (defined once, used
//! by the writer, schema validation and queries), their creation under
//! `<warehouse>/_executor_metadata/<table>`, and the job's writes: one commit per table per
//! job, replacing exactly the rows of the `(workflow_id, source_id)` pairs the job
//! processed, so other workflows and sources are never touched.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::TableProperty;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType as DeltaType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::location::Location;

/// The schema (database) the tables live in, as Databricks names it.
pub const SCHEMA_NAME: &str = "_executor_metadata";
/// Every table is partitioned by this column.
pub const PARTITION_COLUMN: &str = "workflow_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    String,
    Timestamp,
    Int,
    BigInt,
    Boolean,
}

impl SqlType {
    pub fn spark_name(self) -> &'static str {
        match self {
            Self::String => "STRING",
            Self::Timestamp => "TIMESTAMP",
            Self::Int => "INT",
            Self::BigInt => "BIGINT",
            Self::Boolean => "BOOLEAN",
        }
    }

    pub fn arrow(self) -> ArrowType {
        match self {
            Self::String => ArrowType::Utf8,
            // Delta's TIMESTAMP is UTC microseconds; TIMESTAMP_NTZ would need writer 7.
            Self::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Int => ArrowType::Int32,
            Self::BigInt => ArrowType::Int64,
            Self::Boolean => ArrowType::Boolean,
        }
    }

    pub fn delta(self) -> DeltaType {
        match self {
            Self::String => DeltaType::STRING,
            Self::Timestamp => DeltaType::TIMESTAMP,
            Self::Int => DeltaType::INTEGER,
            Self::BigInt => DeltaType::LONG,
            Self::Boolean => DeltaType::BOOLEAN,
        }
    }
}

#[derive(Debug)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: SqlType,
}

#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [ColumnDef],
    pub partition_by: &'static [&'static str],
}

macro_rules! cols {
    ($($name:ident : $ty:ident),* $(,)?) => {
        &[$(ColumnDef { name: stringify!($name), ty: SqlType::$ty }),*]
    };
}

/// v2.0 `sources`, plus `run_id`.
pub const SOURCES: TableDef = TableDef {
    name: "sources",
    columns: cols!(
        id: BigInt, workflow_id: String, source_id: String, source_path: String,
        source_type: String, extraction_timestamp: Timestamp, files_found: Int,
        total_size_bytes: BigInt, run_id: String,
    ),
    partition_by: &[PARTITION_COLUMN],
};

/// v2.0 `tables`, plus `run_id` and the table's own status.
pub const TABLES: TableDef = TableDef {
    name: "tables",
    columns: cols!(
        id: BigInt, workflow_id: String, source_id: String, table_name: String,
        file_path: String, file_type: String, row_count: BigInt, column_count: Int,
        size_bytes: BigInt, run_id: String, status: String, error_message: String,
    ),
    partition_by: &[PARTITION_COLUMN],
};

/// v2.0 `columns`, plus `run_id` and the statistics columns.
pub const COLUMNS: TableDef = TableDef {
    name: "columns",
    columns: cols!(
        id: BigInt, workflow_id: String, source_id: String, table_name: String,
        column_name: String, data_type: String, position: Int, is_nullable: Boolean,
        sample_values: String, run_id: String, null_count: BigInt, distinct_count: BigInt,
        min_value: String, max_value: String,
    ),
    partition_by: &[PARTITION_COLUMN],
};

/// v2.0 `executor_runs`.
pub const EXECUTOR_RUNS: TableDef = TableDef {
    name: "executor_runs",
    columns: cols!(
        id: BigInt, run_id: String, executor_version: String, workflow_id: String,
        source_id: String, run_mode: String, status: String, error_message: String,
        started_at: Timestamp, finished_at: Timestamp,
    ),
    partition_by: &[PARTITION_COLUMN],
};

pub const ALL_TABLES: [&TableDef; 4] = [&SOURCES, &TABLES, &COLUMNS, &EXECUTOR_RUNS];

impl TableDef {
    pub fn arrow_schema(&self) -> SchemaRef {
        // Every column is nullable, as `CREATE TABLE` in Spark makes them and as the v1.0 ->
        // v2.0 migration (ADD COLUMN) leaves them; `workflow_id` is enforced by the writer.
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.arrow(), true))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn delta_fields(&self) -> Vec<StructField> {
        self.columns
            .iter()
            .map(|c| StructField::new(c.name, c.ty.delta(), true))
            .collect()
    }

    /// The Spark DDL registering this table at `location`.
    pub fn create_ddl(&self, full_name: &str, location: &str) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("  {} {}", c.name, c.ty.spark_name()))
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {full_name} (\n{}\n) USING DELTA PARTITIONED BY ({}) LOCATION '{location}'",
            cols.join(",\n"),
            self.partition_by.join(", ")
        )
    }
}

/// Spark DDL registering every table as an external Delta table under `catalog`, with
/// `${warehouse}` standing for the warehouse location. `sql/create_tables.sql` is this text.
pub fn registration_ddl(catalog: &str) -> String {
    let mut out = String::from(
        "-- Registers the nuvyn-executor metadata and notebook tables as external Delta tables.\n\
         -- Generated from src/metastore.rs (tests keep this file in step); replace ${warehouse}\n\
         -- with the warehouse location, e.g. abfss://lake@account.dfs.core.windows.net/warehouse.\n",
    );
    out.push_str(&format!(
        "CREATE SCHEMA IF NOT EXISTS {catalog}.{SCHEMA_NAME};\n"
    ));
    let notebook_tables = [&crate::notebook::SOURCE, &crate::notebook::MAPPING];
    for def in ALL_TABLES.iter().copied().chain(notebook_tables) {
        out.push('\n');
        out.push_str(&def.create_ddl(
            &format!("{catalog}.{SCHEMA_NAME}.{}", def.name),
            &format!("${{warehouse}}/{SCHEMA_NAME}/{}", def.name),
        ));
        out.push_str(";\n");
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum MetastoreError {
    #[error("warehouse table {table} at {location}: {message}")]
    Delta {
        table: String,
        location: String,
        message: String,
    },
    #[error(
        "warehouse table {table} at {location} does not match the expected schema: {problems}. Run `nuvyn-executor schema_validation` to see details"
    )]
    SchemaMismatch {
        table: &'static str,
        location: String,
        problems: String,
    },
    #[error(transparent)]
    Location(#[from] crate::location::LocationError),
    #[error("cannot build rows for {table}: {message}")]
    Batch {
        table: &'static str,
        message: String,
    },
}

/// What `schema_validation` found for one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableCheck {
    pub table: String,
    pub location: String,
    pub existed: bool,
    pub created: bool,
    pub version: Option<u64>,
    pub problems: Vec<String>,
}

/// The warehouse: where the metadata tables live.
#[derive(Debug, Clone)]
pub struct Warehouse {
    pub root: Location,
}

impl Warehouse {
    pub fn new(root: Location) -> Self {
        Self { root }
    }

    pub fn table_location(&self, def: &TableDef) -> Location {
        self.location_of(def.name)
    }

    /// Where the table `name` of the metadata schema lives (any table, not only the four).
    pub fn location_of(&self, name: &str) -> Location {
        self.root.child(SCHEMA_NAME).child(name)
    }

    pub fn table_url(&self, def: &TableDef) -> Result<Url, MetastoreError> {
        self.url_of(def.name)
    }

    pub fn url_of(&self, name: &str) -> Result<Url, MetastoreError> {
        let loc = self.location_of(name);
        Url::parse(&loc.dir_url_of(&loc.prefix)).map_err(|e| MetastoreError::Delta {
            table: name.to_string(),
            location: loc.display.clone(),
            message: e.to_string(),
        })
    }

    fn err(&self, def: &TableDef, e: impl std::fmt::Display) -> MetastoreError {
        self.err_named(def.name, e)
    }

    /// A Delta error on table `name`, with credential problems explained.
    pub fn err_named(&self, name: &str, e: impl std::fmt::Display) -> MetastoreError {
        MetastoreError::Delta {
            table: name.to_string(),
            location: self.location_of(name).display,
            message: self.root.explain_text(&e.to_string()),
        }
    }

    fn builder(&self, def: &TableDef) -> Result<DeltaTableBuilder, MetastoreError> {
        self.builder_of(def.name)
    }

    /// A builder for table `name` on the warehouse's own store.
    pub fn builder_of(&self, name: &str) -> Result<DeltaTableBuilder, MetastoreError> {
        let url = self.url_of(name)?;
        Ok(DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| self.err_named(name, e))?
            .with_storage_backend(self.root.store.clone(), url))
    }

    /// The table if it exists (has a Delta log).
    pub async fn open(&self, def: &TableDef) -> Result<Option<DeltaTable>, MetastoreError> {
        self.open_named(def.name).await
    }

    /// The table `name` of the metadata schema, if it exists.
    pub async fn open_named(&self, name: &str) -> Result<Option<DeltaTable>, MetastoreError> {
        // delta-rs refuses a local path that does not exist rather than calling it "not a table".
        if let Some(dir) = &self.location_of(name).local_dir
            && !dir.join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        let mut table = self
            .builder_of(name)?
            .build()
            .map_err(|e| self.err_named(name, e))?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(self.err_named(name, e)),
        }
    }

    /// Opens the table, creating it (reader 1 / writer 2, partitioned by workflow_id) if
    /// missing. A concurrent creator winning the race is not an error.
    pub async fn ensure(&self, def: &TableDef) -> Result<(DeltaTable, bool), MetastoreError> {
        if let Some(t) = self.open(def).await? {
            return Ok((t, false));
        }
        self.table_location(def).ensure_dir()?;
        let table = self.builder(def)?.build().map_err(|e| self.err(def, e))?;
        let created = table
            .create()
            .with_table_name(def.name)
            .with_comment(format!("nuvyn-executor {SCHEMA_NAME}.{}", def.name))
            .with_columns(def.delta_fields())
            .with_partition_columns(def.partition_by.iter().copied())
            .with_save_mode(SaveMode::Ignore)
            // Log cleanup lists the whole `_delta_log` after every commit; `maintain` runs it.
            .with_configuration_property(TableProperty::EnableExpiredLogCleanup, Some("false"))
            // A creation is version 0 or nothing: a job that loses the race to create the
            // table must not commit a second CREATE TABLE on top of the winner's (delta-rs
            // would otherwise retry it at version 1); it opens the winner's table instead.
            .with_commit_properties(base_commit_properties().with_max_retries(0))
            .await;
        match created {
            Ok(t) => Ok((t, true)),
            Err(e) => match self.open(def).await? {
                Some(t) => Ok((t, false)),
                None => Err(self.err(def, e)),
            },
        }
    }

    /// Differences between the table's schema and the expected one (empty: it matches).
    pub fn schema_problems(def: &TableDef, table: &DeltaTable) -> Vec<String> {
        let Ok(snapshot) = table.snapshot() else {
            return vec!["cannot read the table's snapshot".into()];
        };
        let schema = snapshot.schema();
        let mut problems = Vec::new();
        for c in def.columns {
            match schema.field(c.name) {
                None => problems.push(format!("missing column {} {}", c.name, c.ty.spark_name())),
                Some(f) if f.data_type() != &c.ty.delta() => problems.push(format!(
                    "column {} is {:?}, expected {}",
                    c.name,
                    f.data_type(),
                    c.ty.spark_name()
                )),
                _ => {}
            }
        }
        let parts = snapshot.metadata().partition_columns();
        if parts
            .iter()
            .map(String::as_str)
            .ne(def.partition_by.iter().copied())
        {
            problems.push(format!(
                "partitioned by {parts:?}, expected {:?}",
                def.partition_by
            ));
        }
        problems
    }

    /// Checks every table; with `create`, creates the missing ones.
    pub async fn check_all(&self, create: bool) -> Result<Vec<TableCheck>, MetastoreError> {
        let mut out = Vec::new();
        for def in ALL_TABLES {
            let existing = self.open(def).await?;
            let existed = existing.is_some();
            let (table, created) = match existing {
                Some(t) => (Some(t), false),
                None if create => {
                    let (t, c) = self.ensure(def).await?;
                    (Some(t), c)
                }
                None => (None, false),
            };
            let problems = match &table {
                Some(t) => Self::schema_problems(def, t),
                None => vec!["table does not exist".into()],
            };
            out.push(TableCheck {
                table: def.name.to_string(),
                location: self.table_location(def).display,
                existed,
                created,
                version: table.as_ref().and_then(|t| t.version()),
                problems,
            });
        }
        Ok(out)
    }

    /// Opens (creating if needed) a table and refuses one whose schema is not ours, so a
    /// write can never half-succeed against a foreign table.
    pub async fn ensure_valid(&self, def: &TableDef) -> Result<DeltaTable, MetastoreError> {
        let (t, _) = self.ensure(def).await?;
        let problems = Self::schema_problems(def, &t);
        if !problems.is_empty() {
            return Err(MetastoreError::SchemaMismatch {
                table: def.name,
                location: self.table_location(def).display,
                problems: problems.join("; "),
            });
        }
        Ok(t)
    }

    /// Replaces the rows matching `predicate` with `batch` in one commit.
    pub async fn replace(
        &self,
        def: &TableDef,
        table: DeltaTable,
        batch: RecordBatch,
        predicate: String,
        run_id: &str,
    ) -> Result<DeltaTable, MetastoreError> {
        let mut table = table;
        let mut attempt = 0u32;
        loop {
            let written = table
                .clone()
                .write(vec![batch.clone()])
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(predicate.clone())
                .with_commit_properties(commit_properties(run_id))
                .await;
            match written {
                Ok(t) => return Ok(t),
                // delta-rs judges conflicts by file statistics, conservatively: a concurrent
                // writer's rows of other sources or shards can look like ours. The replace is
                // re-run against the new snapshot, which is what a conflict asks for.
                Err(DeltaTableError::Transaction {
                    source: deltalake::kernel::transaction::TransactionError::CommitConflict(e),
                }) if attempt < 20 => {
                    attempt += 1;
                    tracing::info!(
                        table = def.name,
                        attempt,
                        "concurrent commit, re-running the replace: {e}"
                    );
                    let jitter = u64::from(uuid::Uuid::new_v4().as_u128() as u8);
                    tokio::time::sleep(std::time::Duration::from_millis(
                        20 * u64::from(attempt) + jitter,
                    ))
                    .await;
                    table = self
                        .open(def)
                        .await?
                        .ok_or_else(|| self.err(def, "table disappeared"))?;
                }
                Err(e) => return Err(self.err(def, e)),
            }
        }
    }

    /// Appends `batch` in one commit.
    pub async fn append(
        &self,
        def: &TableDef,
        table: DeltaTable,
        batch: RecordBatch,
        run_id: &str,
    ) -> Result<DeltaTable, MetastoreError> {
        table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(commit_properties(run_id))
            .await
            .map_err(|e| self.err(def, e))
    }
}

/// Commits made by concurrent jobs (or shards) retry on a conflicting version this many
/// times; delta-rs checks each retry against what the other commits changed.
pub(crate) const COMMIT_RETRIES: usize = 100;

pub(crate) fn base_commit_properties() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

fn commit_properties(run_id: &str) -> CommitProperties {
    let mut meta = HashMap::new();
    meta.insert(
        "nuvyn.run_id".to_string(),
        serde_json::Value::String(run_id.to_string()),
    );
    meta.insert(
        "nuvyn.executor_version".to_string(),
        serde_json::Value::String(crate::VERSION.to_string()),
    );
    base_commit_properties()
        .with_max_retries(COMMIT_RETRIES)
        .with_metadata(meta)
}

/// What `maintain` did to one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Maintenance {
    pub table: String,
    pub location: String,
    pub existed: bool,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    /// Small files rewritten into larger ones by OPTIMIZE (each job commit adds some).
    pub files_compacted: u64,
    pub files_written: u64,
    /// The version a checkpoint was written for.
    pub checkpoint_version: Option<u64>,
    /// Commit files older than the table's `delta.logRetentionDuration` (30 days) removed.
    pub logs_removed: usize,
    /// Unreferenced data files older than the retention removed by VACUUM (or, with
    /// `--dry-run`, that would be).
    pub files_vacuumed: Option<usize>,
}

/// What `maintain` runs.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    pub optimize: bool,
    /// VACUUM with this retention; `None`: no VACUUM.
    pub vacuum_hours: Option<u64>,
    pub dry_run: bool,
}

impl Warehouse {
    /// Housekeeping that commits leave to it: compaction, a checkpoint, expired-log cleanup
    /// (which delta-rs would otherwise run after every commit, listing the whole
    /// `_delta_log` each time) and, when asked, VACUUM.
    pub async fn maintain(
        &self,
        def: &TableDef,
        opts: &MaintainOptions,
    ) -> Result<Maintenance, MetastoreError> {
        let location = self.table_location(def).display;
        let mut m = Maintenance {
            table: def.name.to_string(),
            location,
            existed: false,
            version_before: None,
            version_after: None,
            files_compacted: 0,
            files_written: 0,
            checkpoint_version: None,
            logs_removed: 0,
            files_vacuumed: None,
        };
        let Some(mut table) = self.open(def).await? else {
            return Ok(m);
        };
        m.existed = true;
        m.version_before = table.version();
        if opts.optimize && !opts.dry_run {
            let (t, metrics) = table
                .optimize()
                .with_commit_properties(base_commit_properties().with_max_retries(COMMIT_RETRIES))
                .await
                .map_err(|e| self.err(def, e))?;
            table = t;
            m.files_compacted = metrics.num_files_removed;
            m.files_written = metrics.num_files_added;
        }
        if let Some(hours) = opts.vacuum_hours {
            let (t, metrics) = table
                .vacuum()
                .with_retention_period(chrono::Duration::hours(hours as i64))
                .with_dry_run(opts.dry_run)
                .with_commit_properties(base_commit_properties())
                .await
                .map_err(|e| self.err(def, e))?;
            table = t;
            m.files_vacuumed = Some(metrics.files_deleted.len());
        }
        if !opts.dry_run {
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .map_err(|e| self.err(def, e))?;
            m.checkpoint_version = table.version();
            m.logs_removed = deltalake::checkpoints::cleanup_metadata(&table, None)
                .await
                .map_err(|e| self.err(def, e))?;
        }
        m.version_after = table.version();
        Ok(m)
    }
}

/// A SQL string literal. Ids are validated before they get here; quotes are doubled anyway
/// so that this function alone is safe.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The predicate selecting the rows of `workflow_id` and the given sources (`None` is a
/// source without a `source_id`).
pub fn replace_predicate(workflow_id: &str, source_ids: &[Option<String>]) -> String {
    let mut named: Vec<String> = source_ids
        .iter()
        .flatten()
        .map(|s| sql_literal(s))
        .collect();
    named.sort();
    named.dedup();
    let mut parts = Vec::new();
    if !named.is_empty() {
        parts.push(format!("source_id IN ({})", named.join(", ")));
    }
    if source_ids.iter().any(Option::is_none) {
        parts.push("source_id IS NULL".to_string());
    }
    let sources = if parts.is_empty() {
        "FALSE".to_string()
    } else {
        parts.join(" OR ")
    };
    format!("workflow_id = {} AND ({sources})", sql_literal(workflow_id))
}

/// Builds a batch for `def` from columns given by name; every column of `def` must be there.
pub struct BatchBuilder {
    def: &'static TableDef,
    columns: HashMap<&'static str, ArrayRef>,
}

impl BatchBuilder {
    pub fn new(def: &'static TableDef) -> Self {
        Self {
            def,
            columns: HashMap::new(),
        }
    }

    pub fn strings<S: AsRef<str>>(
        mut self,
        name: &'static str,
        v: impl IntoIterator<Item = Option<S>>,
    ) -> Self {
        self.columns
            .insert(name, Arc::new(StringArray::from_iter(v)));
        self
    }

    pub fn i64s(mut self, name: &'static str, v: impl IntoIterator<Item = Option<i64>>) -> Self {
        self.columns
            .insert(name, Arc::new(Int64Array::from_iter(v)));
        self
    }

    pub fn i32s(mut self, name: &'static str, v: impl IntoIterator<Item = Option<i32>>) -> Self {
        self.columns
            .insert(name, Arc::new(Int32Array::from_iter(v)));
        self
    }

    pub fn bools(mut self, name: &'static str, v: impl IntoIterator<Item = Option<bool>>) -> Self {
        self.columns
            .insert(name, Arc::new(BooleanArray::from_iter(v)));
        self
    }

    pub fn timestamps(
        mut self,
        name: &'static str,
        v: impl IntoIterator<Item = Option<chrono::DateTime<chrono::Utc>>>,
    ) -> Self {
        let arr = TimestampMicrosecondArray::from_iter(
            v.into_iter().map(|t| t.map(|t| t.timestamp_micros())),
        )
        .with_timezone("UTC");
        self.columns.insert(name, Arc::new(arr));
        self
    }

    pub fn build(mut self) -> Result<RecordBatch, MetastoreError> {
        let schema = self.def.arrow_schema();
        let mut arrays = Vec::with_capacity(self.def.columns.len());
        for c in self.def.columns {
            let a = self
                .columns
                .remove(c.name)
                .ok_or_else(|| MetastoreError::Batch {
                    table: self.def.name,
                    message: format!("column {} not set", c.name),
                })?;
            arrays.push(a);
        }
        if let Some(extra) = self.columns.keys().next() {
            return Err(MetastoreError::Batch {
                table: self.def.name,
                message: format!("unknown column {extra}"),
            });
        }
        RecordBatch::try_new(schema, arrays).map_err(|e| MetastoreError::Batch {
            table: self.def.name,
            message: e.to_string(),
        })
    }
}

/// Unique row ids. delta-rs cannot write Delta identity columns (`GENERATED ALWAYS AS
/// IDENTITY` needs writer features it does not implement, and Spark would then refuse our
/// writes), and reading `max(id)` before writing races with concurrent jobs, which Delta's
/// optimistic concurrency lets commit side by side. So each row gets 63 random bits: with
/// ten million rows in a warehouse the chance of any collision is below one in 100,000,
/// and no coordination between writers is needed.
pub fn new_ids(n: usize) -> Vec<Option<i64>> {
    (0..n)
        .map(|_| {
            let bits = uuid::Uuid::new_v4().as_u128() as u64;
            Some((bits >> 1) as i64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        assert_eq!(
            replace_predicate(
                "wf",
                &[Some("b".into()), Some("a".into()), Some("a".into())]
            ),
            "workflow_id = 'wf' AND (source_id IN ('a', 'b'))"
        );
        assert_eq!(
            replace_predicate("wf", &[None, Some("a".into())]),
            "workflow_id = 'wf' AND (source_id IN ('a') OR source_id IS NULL)"
        );
        assert_eq!(sql_literal("a'b"), "'a''b'");
    }

    #[test]
    fn checked_in_ddl_matches_the_schemas() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/create_tables.sql");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        let generated = registration_ddl("hive_metastore");
        if std::env::var_os("NUVYN_UPDATE_DDL").is_some() {
            std::fs::write(path, &generated).unwrap();
            return;
        }
        assert_eq!(
            on_disk, generated,
            "sql/create_tables.sql is stale: run `NUVYN_UPDATE_DDL=1 cargo test --lib checked_in_ddl`"
        );
    }

    #[test]
    fn schemas_agree() {
        for def in ALL_TABLES {
            assert_eq!(def.arrow_schema().fields().len(), def.delta_fields().len());
            assert!(def.columns.iter().any(|c| c.name == "workflow_id"));
            assert!(def.columns.iter().any(|c| c.name == "run_id"));
        }
        let ids = new_ids(1000);
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), 1000);
        assert!(ids.iter().all(|i| i.unwrap() >= 0));
    }
}
