//! Querying the warehouse: SQL over the tables under the names Databricks users know
//! (`hive_metastore._executor_metadata.sources`, catalog configurable) through
//! [`Warehouse::session`], results rendered as a table, JSON or CSV, and the nested `query`
//! view (sources -> tables -> columns) of a workflow.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use serde_json::{Map, Value};

use crate::warehouse::{JOB_TABLES, Warehouse, WarehouseError, sql_literal, to_json_rows};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("cannot render results: {0}")]
    Render(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

/// Runs one SQL statement over the warehouse, naming tables under `catalog`.
pub async fn sql(
    w: &Warehouse,
    catalog: &str,
    query: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(w.select_batches(catalog, query).await?)
}

pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    match format {
        OutputFormat::Table => datafusion::arrow::util::pretty::pretty_format_batches(batches)
            .map(|d| d.to_string())
            .map_err(|e| QueryError::Render(e.to_string())),
        OutputFormat::Json => serde_json::to_string_pretty(&to_json_rows(batches)?)
            .map_err(|e| QueryError::Render(e.to_string())),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).map_err(|e| QueryError::Render(e.to_string()))?;
                }
            }
            String::from_utf8(buf).map_err(|e| QueryError::Render(e.to_string()))
        }
    }
}

/// Statistics stored as JSON text, nested as the values they are; nulls left out.
fn nest_json(row: &mut Map<String, Value>, keys: &[&str]) {
    for k in keys {
        if let Some(Value::String(s)) = row.get(*k)
            && let Ok(v) = serde_json::from_str::<Value>(s)
        {
            row.insert((*k).to_string(), v);
        }
    }
    row.retain(|_, v| !v.is_null());
}

async fn rows(ctx: &SessionContext, q: &str) -> Result<Vec<Map<String, Value>>, QueryError> {
    let batches = ctx
        .sql(q)
        .await
        .map_err(WarehouseError::from)?
        .collect()
        .await
        .map_err(WarehouseError::from)?;
    Ok(to_json_rows(&batches)?)
}

/// Of `rows`, those of recorded runs (or of none: rows written before runs were recorded),
/// and per `key` only the latest recorded run's, in their order.
fn latest_recorded(
    rows: Vec<Map<String, Value>>,
    recorded: &HashMap<String, String>,
    key: &[&str],
) -> Vec<Map<String, Value>> {
    let rank = |r: &Map<String, Value>| -> Option<(String, String)> {
        match r.get("run_id").and_then(Value::as_str) {
            None => Some((String::new(), String::new())),
            Some(run) => recorded.get(run).map(|f| (f.clone(), run.to_string())),
        }
    };
    let key_of = |r: &Map<String, Value>| -> Vec<Option<String>> {
        key.iter()
            .map(|k| r.get(*k).and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let mut best: HashMap<Vec<Option<String>>, (String, String)> = HashMap::new();
    for r in &rows {
        if let Some(rk) = rank(r) {
            let e = best.entry(key_of(r)).or_insert_with(|| rk.clone());
            if rk > *e {
                *e = rk;
            }
        }
    }
    rows.into_iter()
        .filter(|r| rank(r).is_some_and(|rk| best.get(&key_of(r)) == Some(&rk)))
        .collect()
}

/// The changes recorded for a workflow (README "Profiles over time"), oldest first: only
/// those of recorded runs (a run's rows count once it is recorded), optionally of one
/// source and from a time on. `workflow_id`/`source_id` must be validated ids.
pub async fn workflow_changes(
    w: &Warehouse,
    catalog: &str,
    workflow_id: &str,
    source_id: Option<&str>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let wf = sql_literal(workflow_id);
    let mut filter = format!("c.workflow_id = {wf}");
    if let Some(s) = source_id {
        filter.push_str(&format!(" AND c.source_id = {}", sql_literal(s)));
    }
    if let Some(t) = since {
        // Microseconds, as the column holds them: a TIMESTAMP literal is nanoseconds and
        // stops at the year 2262.
        filter.push_str(&format!(
            " AND c.detected_at >= to_timestamp_micros({})",
            t.timestamp_micros()
        ));
    }
    let ctx = w
        .session_for(
            catalog,
            &[&crate::warehouse::CHANGES, &crate::warehouse::EXECUTOR_RUNS],
        )
        .await?;
    let q = format!(
        "SELECT c.detected_at, c.run_id, c.previous_run_id, c.source_id, c.table_name,          c.column_name, c.change, c.severity, c.measure, c.threshold, c.previous_value,          c.current_value, c.detail FROM changes c          JOIN (SELECT run_id FROM executor_runs WHERE workflow_id = {wf}                AND status IN ('succeeded', 'partial')) r ON c.run_id = r.run_id          WHERE {filter} ORDER BY c.detected_at, c.source_id, c.table_name, c.column_name, c.change"
    );
    Ok(ctx
        .sql(&q)
        .await
        .map_err(WarehouseError::from)?
        .collect()
        .await
        .map_err(WarehouseError::from)?)
}

/// The nested view of a workflow's metadata: its latest successful run, and its sources
/// with their tables and columns. `workflow_id`/`source_id` must be validated ids.
pub async fn workflow_metadata(
    w: &Warehouse,
    catalog: &str,
    workflow_id: &str,
    source_id: Option<&str>,
) -> Result<Value, QueryError> {
    // One session for the four queries: they read one snapshot of the tables.
    let session = w.session_for(catalog, &JOB_TABLES).await?;
    let ctx = &session;
    let mut filter = format!("workflow_id = {}", sql_literal(workflow_id));
    if let Some(s) = source_id {
        filter.push_str(&format!(" AND source_id = {}", sql_literal(s)));
    }
    let latest_run = rows(
        ctx,
        &format!(
            "SELECT run_id, executor_version, run_mode, status, started_at, finished_at \
             FROM executor_runs WHERE workflow_id = {} AND status IN ('succeeded', 'partial') \
             ORDER BY finished_at DESC LIMIT 1",
            sql_literal(workflow_id)
        ),
    )
    .await?
    .into_iter()
    .next();
    let sources = rows(
        ctx,
        &format!(
            "SELECT source_id, source_path, source_type, extraction_timestamp, files_found, \
             total_size_bytes, run_id FROM sources WHERE {filter} ORDER BY source_path"
        ),
    )
    .await?;
    let tables = rows(
        ctx,
        &format!(
            "SELECT source_id, table_name, file_path, file_type, row_count, column_count, \
             size_bytes, status, error_message, run_id, quality_score, quality, candidate_keys, \
             duplicate_rows, widened_columns, profiled_fraction FROM tables WHERE {filter} ORDER BY table_name"
        ),
    )
    .await?;
    let columns = rows(
        ctx,
        &format!(
            "SELECT source_id, table_name, column_name, data_type, position, is_nullable, \
             sample_values, null_count, distinct_count, min_value, max_value, run_id, \
             null_fraction, distinct_fraction, mean, stddev, min_double, max_double, \
             min_timestamp, max_timestamp, quantiles, histogram, zero_count, negative_count, \
             min_length, avg_length, max_length, blank_count, top_values, top_values_error, \
             semantic_type, semantic_fraction, pii, profiled_fraction \
             FROM columns WHERE {filter} ORDER BY table_name, position"
        ),
    )
    .await?;

    let s_of =
        |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    // Only recorded runs are shown, and of those the latest per source and per table: a run
    // is recorded (`executor_runs`, succeeded or partial) after all its rows are written, so
    // a run that died while writing is never half-seen, and what an earlier run left stays
    // until a newer one is recorded.
    let recorded: HashMap<String, String> = rows(
        ctx,
        &format!(
            "SELECT run_id, CAST(finished_at AS STRING) AS finished_at FROM executor_runs \
             WHERE workflow_id = {} AND status IN ('succeeded', 'partial')",
            sql_literal(workflow_id)
        ),
    )
    .await?
    .into_iter()
    .filter_map(|r| {
        Some((
            s_of(&r, "run_id")?,
            s_of(&r, "finished_at").unwrap_or_default(),
        ))
    })
    .collect();
    let sources = latest_recorded(sources, &recorded, &["source_id", "source_path"]);
    let tables = latest_recorded(tables, &recorded, &["source_id", "file_path", "table_name"]);
    // Grouped once, so nesting is linear in the rows (a workflow may have many thousands of
    // columns).
    type Key = (Option<String>, Option<String>);
    let mut columns_of: HashMap<(Key, Option<String>), Vec<Value>> = HashMap::new();
    for mut c in columns {
        let key = (
            (s_of(&c, "source_id"), s_of(&c, "run_id")),
            s_of(&c, "table_name"),
        );
        for k in ["source_id", "table_name", "run_id"] {
            c.remove(k);
        }
        nest_json(
            &mut c,
            &["sample_values", "quantiles", "histogram", "top_values"],
        );
        columns_of.entry(key).or_default().push(Value::Object(c));
    }
    // Tables by source, whatever run wrote them: shards of one run (`--shard I/N`) each write
    // their own tables under their own run id, and the source row is shard 0's.
    let mut tables_of: HashMap<Option<String>, Vec<Map<String, Value>>> = HashMap::new();
    for t in tables {
        tables_of.entry(s_of(&t, "source_id")).or_default().push(t);
    }
    let nested_sources: Vec<Value> = sources
        .into_iter()
        .map(|mut src| {
            let sid = s_of(&src, "source_id");
            let path = s_of(&src, "source_path").unwrap_or_default();
            let under = format!("{path}/");
            // A table belongs to the source whose path its file path lies under.
            let ts: Vec<Value> = tables_of
                .get(&sid)
                .into_iter()
                .flatten()
                .filter(|t| {
                    s_of(t, "file_path").is_some_and(|f| f == path || f.starts_with(&under))
                })
                .map(|t| {
                    let mut t = t.clone();
                    nest_json(&mut t, &["quality", "candidate_keys", "widened_columns"]);
                    // A table's columns are those its own run wrote.
                    let key = (sid.clone(), s_of(&t, "run_id"));
                    let cs = columns_of
                        .get(&(key, s_of(&t, "table_name")))
                        .cloned()
                        .unwrap_or_default();
                    for k in ["source_id", "run_id"] {
                        t.remove(k);
                    }
                    t.insert("columns".into(), Value::Array(cs));
                    Value::Object(t)
                })
                .collect();
            src.insert("tables".into(), Value::Array(ts));
            Value::Object(src)
        })
        .collect();
    Ok(serde_json::json!({
        "workflow_id": workflow_id,
        "source_id": source_id,
        "latest_run": latest_run,
        "sources": nested_sources,
    }))
}
