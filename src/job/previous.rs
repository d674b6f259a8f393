//! What the previous recorded run left for each table of a job's `(workflow_id, source_id)`
//! pairs: the fingerprint (a table whose fingerprint did not change is carried, not read)
//! and the profile drift compares with. Only runs recorded in `executor_runs` as succeeded
//! or partial count, and of those the latest per table, as every reader sees them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::payload::JobSpec;
use crate::profile::drift::{ColumnSnapshot, Histogram, TableSnapshot};
use crate::profile::partitions::{PartitionSketch, PriorSketches, ROLLUP_PATH, members_key};
use crate::warehouse::{self, Warehouse, WarehouseError};

/// One table as the previous recorded run left it.
#[derive(Debug, Clone)]
pub struct PreviousTable {
    /// The run whose rows these are.
    pub run_id: String,
    /// The run that computed the profile (`run_id`, unless that run carried it too).
    pub profile_run_id: String,
    pub fingerprint: Option<String>,
    pub snapshot: TableSnapshot,
}

/// Per `source_id`, per table name.
#[derive(Debug, Default)]
pub struct Previous {
    by_source: HashMap<Option<String>, BTreeMap<String, PreviousTable>>,
    /// Per `source_id`, the latest recorded run that left a table.
    latest_run: HashMap<Option<String>, String>,
    /// Every run whose rows the pairs held in `sources`, `tables` or `columns` when the job
    /// started, recorded or not.
    runs_present: BTreeSet<String>,
}

impl Previous {
    pub fn of_source(
        &self,
        source_id: &Option<String>,
    ) -> Option<&BTreeMap<String, PreviousTable>> {
        self.by_source.get(source_id)
    }

    /// The latest recorded run of `source_id`: what a new table is compared with.
    pub fn latest_run(&self, source_id: &Option<String>) -> Option<&str> {
        self.latest_run.get(source_id).map(String::as_str)
    }

    /// The runs whose rows the pairs held when the job started (see [`super::settle`]).
    pub fn runs_present(&self) -> &BTreeSet<String> {
        &self.runs_present
    }
}

fn text(r: &Map<String, Value>, k: &str) -> Option<String> {
    r.get(k).and_then(Value::as_str).map(str::to_string)
}

fn num(r: &Map<String, Value>, k: &str) -> Option<f64> {
    r.get(k).and_then(Value::as_f64)
}

/// Reads the previous profiles of `spec`'s pairs (three queries at once, whatever the
/// lake's size).
pub async fn load(w: &Warehouse, spec: &JobSpec) -> Result<Previous, WarehouseError> {
    let source_ids: Vec<Option<String>> =
        spec.sources.iter().map(|s| s.source_id.clone()).collect();
    let pairs = warehouse::replace_predicate(&spec.workflow_id, &source_ids);
    let wf = warehouse::sql_literal(&spec.workflow_id);
    // At once: each is a few round trips on a remote warehouse. `columns` is read for the
    // pairs whole (after a settled run it holds that run only) and matched to each table's
    // latest recorded run below. The runs of the rows in `sources` and `tables`, recorded
    // or not, are there for settle: a run killed after its `sources` append but before its
    // `columns` one left rows that only they show.
    let (tables, columns, present) = futures::future::try_join3(
        w.select(&format!(
            "SELECT t.source_id, t.table_name, t.run_id, t.profile_run_id, t.fingerprint, t.row_count \
             FROM (SELECT * FROM {tables} WHERE {pairs} AND status = 'ok') t \
             JOIN (SELECT run_id, started_at FROM {runs} WHERE workflow_id = {wf} \
                   AND status IN ('succeeded', 'partial')) r ON t.run_id = r.run_id \
             ORDER BY r.started_at, t.run_id",
            tables = warehouse::TABLES.name,
            runs = warehouse::EXECUTOR_RUNS.name,
        )),
        w.select(&format!(
            "SELECT source_id, table_name, run_id, column_name, data_type, position, is_nullable, \
             null_fraction, distinct_fraction, mean, stddev, min_double, max_double, \
             CAST(min_timestamp AS BIGINT) AS min_ts, CAST(max_timestamp AS BIGINT) AS max_ts, \
             histogram, pii FROM {columns} WHERE {pairs} ORDER BY position",
            columns = warehouse::COLUMNS.name,
        )),
        w.select(&format!(
            "SELECT run_id FROM {sources} WHERE {pairs} UNION SELECT run_id FROM {tables} WHERE {pairs}",
            sources = warehouse::SOURCES.name,
            tables = warehouse::TABLES.name,
        )),
    )
    .await?;
    let mut out = Previous::default();
    out.runs_present
        .extend(present.iter().filter_map(|r| text(r, "run_id")));
    // Later runs replace earlier ones: each table's latest recorded run.
    for r in &tables {
        let (Some(name), Some(run_id)) = (text(r, "table_name"), text(r, "run_id")) else {
            continue;
        };
        out.latest_run.insert(text(r, "source_id"), run_id.clone());
        out.runs_present.insert(run_id.clone());
        out.by_source
            .entry(text(r, "source_id"))
            .or_default()
            .insert(
                name,
                PreviousTable {
                    profile_run_id: text(r, "profile_run_id").unwrap_or_else(|| run_id.clone()),
                    run_id,
                    fingerprint: text(r, "fingerprint"),
                    snapshot: TableSnapshot {
                        row_count: r.get("row_count").and_then(Value::as_i64),
                        columns: Vec::new(),
                    },
                },
            );
    }
    for r in &columns {
        let (Some(table), Some(run_id)) = (text(r, "table_name"), text(r, "run_id")) else {
            continue;
        };
        out.runs_present.insert(run_id.clone());
        let Some(t) = out
            .by_source
            .get_mut(&text(r, "source_id"))
            .and_then(|m| m.get_mut(&table))
            .filter(|t| t.run_id == run_id)
        else {
            continue;
        };
        let (min_ts, max_ts) = (num(r, "min_ts"), num(r, "max_ts"));
        t.snapshot.columns.push(ColumnSnapshot {
            name: text(r, "column_name").unwrap_or_default(),
            data_type: text(r, "data_type").unwrap_or_default(),
            position: r.get("position").and_then(Value::as_i64).unwrap_or(0) as i32,
            is_nullable: r
                .get("is_nullable")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            null_fraction: num(r, "null_fraction"),
            distinct_fraction: num(r, "distinct_fraction"),
            mean: num(r, "mean"),
            stddev: num(r, "stddev"),
            min: num(r, "min_double").or(min_ts),
            max: num(r, "max_double").or(max_ts),
            temporal: min_ts.is_some() || max_ts.is_some(),
            histogram: text(r, "histogram").and_then(|h| Histogram::parse(&h)),
            pii: r.get("pii").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

/// Every `partition_sketches` row a pair held when its sketches were read (id and table),
/// and the files that held them then: what lets settle remove whole files of superseded
/// rows by their statistics instead of reading them.
#[derive(Debug, Clone, Default)]
pub struct StoredSketches {
    pub rows: BTreeMap<i64, String>,
    pub files: BTreeSet<String>,
}

/// The stored partition sketches that tables can merge: `current` maps each table name of
/// `source_id` to its partitions' paths and fingerprints now. A stored state is keyed by
/// the files it was computed from, so any run's row of an unchanged partition will do.
/// The partitions' keys and the tables' rollups are read first; when no rollup covers
/// exactly a table's unchanged partitions, their own states are read after (each is as big
/// as the partition's sketches).
pub async fn sketches(
    w: &Warehouse,
    workflow_id: &str,
    source_id: &Option<String>,
    current: &BTreeMap<String, Vec<(String, String)>>,
) -> Result<(HashMap<String, PriorSketches>, StoredSketches), WarehouseError> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::error::DataFusionError;

    let mut out: HashMap<String, PriorSketches> = HashMap::new();
    let mut held = StoredSketches::default();
    if current.is_empty() {
        return Ok((out, held));
    }
    let pairs = warehouse::replace_predicate(workflow_id, std::slice::from_ref(source_id));
    let names: Vec<String> = current.keys().map(|n| warehouse::sql_literal(n)).collect();
    let scope = format!("{pairs} AND table_name IN ({})", names.join(", "));
    // The reader may hand strings over as views or dictionaries: one type each.
    let column = |b: &RecordBatch, i: usize, to: &DataType| {
        datafusion::arrow::compute::cast(b.column(i), to).map_err(DataFusionError::from)
    };
    // The files as the queries below see them (the job's snapshot of the table).
    if let Some(t) = w.open(&warehouse::PARTITION_SKETCHES).await? {
        held.files = warehouse::file_paths(&t);
    }
    // The rollups (files of their own) are fetched beside the partitions' keys: on a re-run
    // that only added partitions, one of them is all that is merged. Beside them, the ids
    // of every row of the pair, of all its tables.
    let (keys, rollups, every) = futures::future::try_join3(
        w.select_batches(
            warehouse::DEFAULT_CATALOG,
            &format!(
                "SELECT id, table_name, partition_path, fingerprint, schema_key, row_count, \
                 file_schema FROM {} WHERE {scope} AND partition_path <> {rollup}",
                warehouse::PARTITION_SKETCHES.name,
                rollup = warehouse::sql_literal(ROLLUP_PATH),
            ),
        ),
        w.select_batches(
            warehouse::DEFAULT_CATALOG,
            &format!(
                "SELECT id, table_name, partition_path, fingerprint, schema_key, row_count, \
                 file_schema, sketch FROM {} WHERE {scope} AND partition_path = {rollup}",
                warehouse::PARTITION_SKETCHES.name,
                rollup = warehouse::sql_literal(ROLLUP_PATH),
            ),
        ),
        w.select_batches(
            warehouse::DEFAULT_CATALOG,
            &format!(
                "SELECT id, table_name FROM {} WHERE {pairs}",
                warehouse::PARTITION_SKETCHES.name,
            ),
        ),
    )
    .await?;
    for b in &every {
        let ids = column(b, 0, &DataType::Int64)?;
        let ids = ids.as_primitive::<Int64Type>();
        let tables = column(b, 1, &DataType::Utf8)?;
        let tables = tables.as_string::<i32>();
        for r in (0..b.num_rows()).filter(|&r| !ids.is_null(r)) {
            let table = (!tables.is_null(r)).then(|| tables.value(r).to_string());
            held.rows.insert(ids.value(r), table.unwrap_or_default());
        }
    }
    // Per table, per path, the stored rows.
    let mut stored: HashMap<String, HashMap<String, Vec<PartitionSketch>>> = HashMap::new();
    for b in keys.iter().chain(&rollups) {
        let sketch = match b.num_columns() {
            8 => Some(column(b, 7, &DataType::Binary)?),
            _ => None,
        };
        let sketch = sketch.as_ref().map(|s| s.as_binary::<i32>());
        let ids = column(b, 0, &DataType::Int64)?;
        let ids = ids.as_primitive::<Int64Type>();
        let text = (1..5)
            .map(|i| column(b, i, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let s = |i: usize| text[i].as_string::<i32>();
        let (table, path, fp, key) = (s(0), s(1), s(2), s(3));
        let rows = column(b, 5, &DataType::Int64)?;
        let rows = rows.as_primitive::<Int64Type>();
        let schema = column(b, 6, &DataType::Binary)?;
        let schema = schema.as_binary::<i32>();
        for r in 0..b.num_rows() {
            if [
                ids.is_null(r),
                table.is_null(r),
                path.is_null(r),
                fp.is_null(r),
            ]
            .contains(&true)
            {
                continue;
            }
            stored
                .entry(table.value(r).to_string())
                .or_default()
                .entry(path.value(r).to_string())
                .or_default()
                .push(PartitionSketch {
                    path: path.value(r).to_string(),
                    fingerprint: fp.value(r).to_string(),
                    schema_key: key.value(r).to_string(),
                    rows: rows.value(r),
                    file_schema: schema.value(r).to_vec(),
                    sketch: sketch
                        .filter(|s| !s.is_null(r))
                        .map(|s| s.value(r).to_vec())
                        .unwrap_or_default(),
                    id: Some(ids.value(r)),
                });
        }
    }
    let mut wanted: BTreeSet<i64> = BTreeSet::new();
    for (table, parts) in current {
        let Some(mut by_path) = stored.remove(table) else {
            continue;
        };
        let rollups = by_path.remove(ROLLUP_PATH).unwrap_or_default();
        let mut prior = PriorSketches::default();
        for (path, fingerprint) in parts {
            if let Some(rows) = by_path.remove(path) {
                let row = rows
                    .iter()
                    .find(|s| &s.fingerprint == fingerprint)
                    .unwrap_or(&rows[0]);
                prior.partitions.insert(path.clone(), row.clone());
            }
        }
        // Partitions stored and gone now: counted as dropped.
        for (path, mut rows) in by_path {
            prior.partitions.insert(path, rows.swap_remove(0));
        }
        let unchanged: Vec<(&str, &str)> = parts
            .iter()
            .filter(|(p, f)| prior.partitions.get(p).is_some_and(|s| &s.fingerprint == f))
            .map(|(p, f)| (p.as_str(), f.as_str()))
            .collect();
        let covering = members_key(unchanged.iter().copied());
        prior.rollup = rollups
            .into_iter()
            .find(|r| !unchanged.is_empty() && r.fingerprint == covering);
        if prior.rollup.is_none() {
            wanted.extend(
                unchanged
                    .iter()
                    .filter_map(|(p, _)| prior.partitions.get(*p).and_then(|s| s.id)),
            );
        }
        out.insert(table.clone(), prior);
    }
    if wanted.is_empty() {
        return Ok((out, held));
    }
    let ids: Vec<String> = wanted.iter().map(i64::to_string).collect();
    let states = w
        .select_batches(
            warehouse::DEFAULT_CATALOG,
            &format!(
                "SELECT id, sketch FROM {} WHERE {scope} AND id IN ({})",
                warehouse::PARTITION_SKETCHES.name,
                ids.join(", ")
            ),
        )
        .await?;
    let mut by_id: HashMap<i64, Vec<u8>> = HashMap::new();
    for b in &states {
        let ids = column(b, 0, &DataType::Int64)?;
        let ids = ids.as_primitive::<Int64Type>();
        let sketch = column(b, 1, &DataType::Binary)?;
        let sketch = sketch.as_binary::<i32>();
        for r in 0..b.num_rows() {
            if !ids.is_null(r) && !sketch.is_null(r) {
                by_id.insert(ids.value(r), sketch.value(r).to_vec());
            }
        }
    }
    for prior in out.values_mut() {
        for s in prior.partitions.values_mut().chain(prior.rollup.as_mut()) {
            if let Some(bytes) = s.id.and_then(|id| by_id.remove(&id)) {
                s.sketch = bytes;
            }
        }
    }
    Ok((out, held))
}
