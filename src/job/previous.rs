//! What the previous recorded run left for each table of a job's `(workflow_id, source_id)`
//! pairs: the fingerprint (a table whose fingerprint did not change is carried, not read)
//! and the profile drift compares with. Only runs recorded in `executor_runs` as succeeded
//! or partial count, and of those the latest per table, as every reader sees them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::payload::JobSpec;
use crate::profile::drift::{ColumnSnapshot, Histogram, TableSnapshot};
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
}

fn text(r: &Map<String, Value>, k: &str) -> Option<String> {
    r.get(k).and_then(Value::as_str).map(str::to_string)
}

fn num(r: &Map<String, Value>, k: &str) -> Option<f64> {
    r.get(k).and_then(Value::as_f64)
}

/// Reads the previous profiles of `spec`'s pairs (two queries, whatever the lake's size).
pub async fn load(w: &Warehouse, spec: &JobSpec) -> Result<Previous, WarehouseError> {
    let source_ids: Vec<Option<String>> =
        spec.sources.iter().map(|s| s.source_id.clone()).collect();
    let pairs = warehouse::replace_predicate(&spec.workflow_id, &source_ids);
    let wf = warehouse::sql_literal(&spec.workflow_id);
    let tables = w
        .select(&format!(
            "SELECT t.source_id, t.table_name, t.run_id, t.profile_run_id, t.fingerprint, t.row_count \
             FROM (SELECT * FROM {tables} WHERE {pairs} AND status = 'ok') t \
             JOIN (SELECT run_id, started_at FROM {runs} WHERE workflow_id = {wf} \
                   AND status IN ('succeeded', 'partial')) r ON t.run_id = r.run_id \
             ORDER BY r.started_at, t.run_id",
            tables = warehouse::TABLES.name,
            runs = warehouse::EXECUTOR_RUNS.name,
        ))
        .await?;
    let mut out = Previous::default();
    // Later runs replace earlier ones: each table's latest recorded run.
    for r in &tables {
        let (Some(name), Some(run_id)) = (text(r, "table_name"), text(r, "run_id")) else {
            continue;
        };
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
    let runs: BTreeSet<&str> = out
        .by_source
        .values()
        .flat_map(|m| m.values().map(|t| t.run_id.as_str()))
        .collect();
    if runs.is_empty() {
        return Ok(out);
    }
    let list: Vec<String> = runs.iter().map(|r| warehouse::sql_literal(r)).collect();
    let columns = w
        .select(&format!(
            "SELECT source_id, table_name, run_id, column_name, data_type, position, is_nullable, \
             null_fraction, distinct_fraction, mean, stddev, min_double, max_double, \
             CAST(min_timestamp AS BIGINT) AS min_ts, CAST(max_timestamp AS BIGINT) AS max_ts, \
             histogram, pii FROM {columns} WHERE {pairs} AND run_id IN ({runs}) ORDER BY position",
            columns = warehouse::COLUMNS.name,
            runs = list.join(", "),
        ))
        .await?;
    for r in &columns {
        let (Some(table), Some(run_id)) = (text(r, "table_name"), text(r, "run_id")) else {
            continue;
        };
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
