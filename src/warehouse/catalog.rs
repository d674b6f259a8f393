//! The catalogue: every table nuvyn-executor writes, defined once (name, columns, types,
//! partitioning), with the schema and catalog names Databricks users know. The Arrow schema
//! the writer builds batches with, the Delta schema tables are created with, schema checks,
//! the query session and the registration DDL (`sql/create_tables.sql`, the `ddl` command)
//! all come from these definitions; migrations are checked against them in a unit test.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::{DataType as DeltaType, StructField};

/// The catalog Databricks puts external tables in by default; `--catalog` changes it.
pub const DEFAULT_CATALOG: &str = "hive_metastore";

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
    Double,
    Boolean,
    Binary,
}

impl SqlType {
    pub fn spark_name(self) -> &'static str {
        match self {
            Self::String => "STRING",
            Self::Timestamp => "TIMESTAMP",
            Self::Int => "INT",
            Self::BigInt => "BIGINT",
            Self::Double => "DOUBLE",
            Self::Boolean => "BOOLEAN",
            Self::Binary => "BINARY",
        }
    }

    pub fn arrow(self) -> ArrowType {
        match self {
            Self::String => ArrowType::Utf8,
            // Delta's TIMESTAMP is UTC microseconds; TIMESTAMP_NTZ would need writer 7.
            Self::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Int => ArrowType::Int32,
            Self::BigInt => ArrowType::Int64,
            Self::Double => ArrowType::Float64,
            Self::Boolean => ArrowType::Boolean,
            Self::Binary => ArrowType::Binary,
        }
    }

    pub fn delta(self) -> DeltaType {
        match self {
            Self::String => DeltaType::STRING,
            Self::Timestamp => DeltaType::TIMESTAMP,
            Self::Int => DeltaType::INTEGER,
            Self::BigInt => DeltaType::LONG,
            Self::Double => DeltaType::DOUBLE,
            Self::Boolean => DeltaType::BOOLEAN,
            Self::Binary => DeltaType::BINARY,
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
    /// The columns Delta keeps file statistics (min/max/null count) for in its log
    /// (`delta.dataSkippingStatsColumns`): ids, names, counts and times, which queries filter
    /// on. Never a profiled value (samples, min/max, error text, notebook content): the log is
    /// read by everyone who can list the table, and statistics there would copy raw data.
    pub stats_columns: &'static [&'static str],
    /// Of an append-only table: the time column `maintain --history-days` trims it by.
    pub trimmed_by: Option<&'static str>,
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
    stats_columns: &[
        "id",
        "source_id",
        "run_id",
        "source_type",
        "extraction_timestamp",
        "files_found",
        "total_size_bytes",
    ],
    trimmed_by: None,
};

/// The columns of `tables`, with the given ones where V6 put `table_history`'s own column:
/// `table_history` is `tables` with its time (V7 added two columns to both, after it).
macro_rules! table_columns {
    ($($history:tt)*) => {
        cols!(
            id: BigInt, workflow_id: String, source_id: String, table_name: String,
            file_path: String, file_type: String, row_count: BigInt, column_count: Int,
            size_bytes: BigInt, run_id: String, status: String, error_message: String,
            quality_score: Double, quality: String, candidate_keys: String,
            duplicate_rows: BigInt, widened_columns: String, profiled_fraction: Double,
            $($history)*
            fingerprint: String, profile_run_id: String,
        )
    };
}

const TABLE_STATS: &[&str] = &[
    "id",
    "source_id",
    "run_id",
    "table_name",
    "file_type",
    "row_count",
    "column_count",
    "size_bytes",
    "status",
];

/// v2.0 `tables`, plus `run_id`, the table's own status and (V5) its quality.
pub const TABLES: TableDef = TableDef {
    name: "tables",
    columns: table_columns!(),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: TABLE_STATS,
    trimmed_by: None,
};

/// The columns of `columns`, then any given: `column_history` is `columns` with its time.
macro_rules! column_columns {
    ($($extra:tt)*) => {
        cols!(
            id: BigInt, workflow_id: String, source_id: String, table_name: String,
            column_name: String, data_type: String, position: Int, is_nullable: Boolean,
            sample_values: String, run_id: String, null_count: BigInt, distinct_count: BigInt,
            min_value: String, max_value: String,
            null_fraction: Double, distinct_fraction: Double, mean: Double, stddev: Double,
            min_double: Double, max_double: Double, min_timestamp: Timestamp,
            max_timestamp: Timestamp, quantiles: String, histogram: String, zero_count: BigInt,
            negative_count: BigInt, min_length: BigInt, avg_length: Double, max_length: BigInt,
            blank_count: BigInt, top_values: String, top_values_error: BigInt,
            semantic_type: String, semantic_fraction: Double, pii: Boolean,
            profiled_fraction: Double,
            $($extra)*
        )
    };
}

const COLUMN_STATS: &[&str] = &[
    "id",
    "source_id",
    "run_id",
    "table_name",
    "column_name",
    "data_type",
    "position",
    "is_nullable",
    "null_count",
    "distinct_count",
];

/// v2.0 `columns`, plus `run_id` and the statistics columns (V2, V5).
pub const COLUMNS: TableDef = TableDef {
    name: "columns",
    columns: column_columns!(),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: COLUMN_STATS,
    trimmed_by: None,
};

/// Every run's table profiles, appended and never replaced (V6): `tables` plus the time
/// the run started. `maintain --history-days N` trims it.
pub const TABLE_HISTORY: TableDef = TableDef {
    name: "table_history",
    columns: table_columns!(profiled_at: Timestamp,),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: &[
        "id",
        "source_id",
        "run_id",
        "table_name",
        "file_type",
        "row_count",
        "column_count",
        "size_bytes",
        "status",
        "profiled_at",
    ],
    trimmed_by: Some("profiled_at"),
};

/// Every run's column profiles (V6): `columns` plus the time the run started.
pub const COLUMN_HISTORY: TableDef = TableDef {
    name: "column_history",
    columns: column_columns!(profiled_at: Timestamp),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: &[
        "id",
        "source_id",
        "run_id",
        "table_name",
        "column_name",
        "data_type",
        "position",
        "is_nullable",
        "null_count",
        "distinct_count",
        "profiled_at",
    ],
    trimmed_by: Some("profiled_at"),
};

/// What changed in a table since the previous recorded run of its `(workflow_id,
/// source_id)` (V7; README "Profiles over time"): one row per change, appended by the run
/// that found it. `previous_value`/`current_value` hold types, names, counts and measures,
/// never a profiled value of a column marked `pii`.
pub const CHANGES: TableDef = TableDef {
    name: "changes",
    columns: cols!(
        id: BigInt, workflow_id: String, source_id: String, run_id: String,
        previous_run_id: String, table_name: String, column_name: String, change: String,
        severity: String, measure: Double, threshold: Double, previous_value: String,
        current_value: String, detail: String, detected_at: Timestamp,
    ),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: &[
        "id",
        "source_id",
        "run_id",
        "table_name",
        "column_name",
        "change",
        "severity",
        "detected_at",
    ],
    trimmed_by: Some("detected_at"),
};

/// The per-partition sketches of a `key=value` partitioned table (V8; README "Profiles over
/// time"): one row per partition with the files it was computed from (`fingerprint`), the
/// table schema it was computed against (`schema_key`) and the aggregate's mergeable state
/// (`sketch`, Arrow IPC), written by the run that read the partition and kept while its
/// files do not change; and per table one row with an empty `partition_path`, the latest
/// profile's rollup (all partitions' states merged; `fingerprint` keys its partitions). A
/// re-run reads only the partitions whose files changed and merges the rest (the rollup
/// when only partitions were added). The sketches hold sampled values as read, so they are
/// kept only by jobs that keep raw values (`--samples raw`).
pub const PARTITION_SKETCHES: TableDef = TableDef {
    name: "partition_sketches",
    columns: cols!(
        id: BigInt, workflow_id: String, source_id: String, run_id: String,
        table_name: String, partition_path: String, fingerprint: String, schema_key: String,
        row_count: BigInt, file_schema: Binary, sketch: Binary, computed_at: Timestamp,
    ),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: &[
        "id",
        "source_id",
        "run_id",
        "table_name",
        "partition_path",
        "row_count",
        "computed_at",
    ],
    trimmed_by: None,
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
    stats_columns: &[
        "id",
        "run_id",
        "executor_version",
        "source_id",
        "run_mode",
        "status",
        "started_at",
        "finished_at",
    ],
    trimmed_by: None,
};

/// Versioned notebooks per workflow (migration V3).
pub const NOTEBOOK_SOURCE: TableDef = TableDef {
    name: "workflow_notebook_source",
    columns: cols!(
        workflow_id: String, notebook_version: Int, notebook: String, notebook_sha256: String,
        cell_count: Int, created_at: Timestamp, created_by: String,
    ),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: &[
        "notebook_version",
        "notebook_sha256",
        "cell_count",
        "created_at",
    ],
    trimmed_by: None,
};

/// Cell <-> operator mappings per (workflow version, notebook version) (migration V3).
pub const NOTEBOOK_MAPPING: TableDef = TableDef {
    name: "workflow_notebook_mapping",
    columns: cols!(
        workflow_id: String, workflow_version: Int, notebook_version: Int, mapping: String,
        status: String, stale_cells: String, stale_operators: String, created_at: Timestamp,
    ),
    partition_by: &[PARTITION_COLUMN],
    stats_columns: &[
        "workflow_version",
        "notebook_version",
        "status",
        "created_at",
    ],
    trimmed_by: None,
};

/// The migration history: one row per run of a migration (not made by a migration itself).
pub const SCHEMA_HISTORY: TableDef = TableDef {
    name: "_schema_history",
    columns: cols!(
        version: Int, description: String, script: String, checksum: String,
        applied_at: Timestamp, execution_ms: BigInt, success: Boolean, steps_done: Int,
        table_versions: String, error_message: String, executor_version: String,
    ),
    partition_by: &[],
    stats_columns: &[
        "version",
        "success",
        "applied_at",
        "execution_ms",
        "steps_done",
    ],
    trimmed_by: None,
};

/// The four `_executor_metadata` tables a job writes.
pub const JOB_TABLES: [&TableDef; 4] = [&SOURCES, &TABLES, &COLUMNS, &EXECUTOR_RUNS];

/// The notebook store's tables.
pub const NOTEBOOK_TABLES: [&TableDef; 2] = [&NOTEBOOK_SOURCE, &NOTEBOOK_MAPPING];

/// What a job appends to and never replaces: the profile history (V6) and the changes
/// (V7). `maintain --history-days` trims them.
pub const HISTORY_TABLES: [&TableDef; 3] = [&TABLE_HISTORY, &COLUMN_HISTORY, &CHANGES];

/// Every table a job writes: its four, the history and the partition sketches (V8).
pub const WRITTEN_TABLES: [&TableDef; 8] = [
    &SOURCES,
    &TABLES,
    &COLUMNS,
    &EXECUTOR_RUNS,
    &TABLE_HISTORY,
    &COLUMN_HISTORY,
    &CHANGES,
    &PARTITION_SKETCHES,
];

/// The tables made by migrations, in registration order (`_schema_history` is not).
pub const MIGRATED_TABLES: [&TableDef; 10] = [
    &SOURCES,
    &TABLES,
    &COLUMNS,
    &EXECUTOR_RUNS,
    &NOTEBOOK_SOURCE,
    &NOTEBOOK_MAPPING,
    &TABLE_HISTORY,
    &COLUMN_HISTORY,
    &CHANGES,
    &PARTITION_SKETCHES,
];

/// Every table, in registration order.
pub const ALL_TABLES: [&TableDef; 11] = [
    &SOURCES,
    &TABLES,
    &COLUMNS,
    &EXECUTOR_RUNS,
    &NOTEBOOK_SOURCE,
    &NOTEBOOK_MAPPING,
    &TABLE_HISTORY,
    &COLUMN_HISTORY,
    &CHANGES,
    &PARTITION_SKETCHES,
    &SCHEMA_HISTORY,
];

/// The table called `name`, if it is one of ours.
pub fn by_name(name: &str) -> Option<&'static TableDef> {
    ALL_TABLES.iter().copied().find(|d| d.name == name)
}

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

    /// The value of `delta.dataSkippingStatsColumns` (see [`TableDef::stats_columns`]).
    pub fn stats_columns_property(&self) -> String {
        self.stats_columns.join(",")
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
            .map(|c| format!("  {} {}", quote(c.name), c.ty.spark_name()))
            .collect();
        let partitioned = if self.partition_by.is_empty() {
            String::new()
        } else {
            let cols: Vec<String> = self.partition_by.iter().map(|p| quote(p)).collect();
            format!(" PARTITIONED BY ({})", cols.join(", "))
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {full_name} (\n{}\n) USING DELTA{partitioned} LOCATION '{location}'",
            cols.join(",\n"),
        )
    }
}

/// A Spark identifier in backticks (a backtick inside is doubled), so that catalog names
/// with hyphens and column names that are keywords (`position`) need no care.
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// Spark DDL registering every table as an external Delta table under `catalog`, with
/// `${warehouse}` standing for the warehouse location. `sql/create_tables.sql` is this text.
pub fn registration_ddl(catalog: &str) -> String {
    let mut out = String::from(
        "-- Registers the nuvyn-executor metadata and notebook tables as external Delta tables.\n\
         -- Generated from src/warehouse/catalog.rs (tests keep this file in step); replace ${warehouse}\n\
         -- with the warehouse location, e.g. abfss://lake@account.dfs.core.windows.net/warehouse.\n",
    );
    let schema = format!("{}.{}", quote(catalog), quote(SCHEMA_NAME));
    out.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"));
    for def in MIGRATED_TABLES {
        out.push('\n');
        out.push_str(&def.create_ddl(
            &format!("{schema}.{}", quote(def.name)),
            &format!("${{warehouse}}/{SCHEMA_NAME}/{}", def.name),
        ));
        out.push_str(";\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(by_name(def.name).map(|d| d.name), Some(def.name));
        }
        for def in MIGRATED_TABLES {
            assert!(def.columns.iter().any(|c| c.name == "workflow_id"));
            assert_eq!(def.partition_by, [PARTITION_COLUMN]);
        }
        for def in WRITTEN_TABLES {
            assert!(def.columns.iter().any(|c| c.name == "run_id"));
        }
        for def in ALL_TABLES {
            let trimmable = HISTORY_TABLES.iter().any(|h| h.name == def.name);
            assert_eq!(def.trimmed_by.is_some(), trimmable, "{}", def.name);
            if let Some(t) = def.trimmed_by {
                assert!(
                    def.columns
                        .iter()
                        .any(|c| c.name == t && c.ty == SqlType::Timestamp)
                );
            }
        }
        // A history table is its current table plus the time.
        for (history, current) in [(&TABLE_HISTORY, &TABLES), (&COLUMN_HISTORY, &COLUMNS)] {
            let names = |d: &TableDef| d.columns.iter().map(|c| (c.name, c.ty)).collect::<Vec<_>>();
            let mut got = names(history);
            got.retain(|c| *c != ("profiled_at", SqlType::Timestamp));
            assert_eq!(got, names(current), "{}", history.name);
            assert_eq!(history.columns.len(), current.columns.len() + 1);
        }
    }
}
