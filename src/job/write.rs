//! Writing a run: the warehouse readied (migrations, table checks), then the job's rows
//! appended in one commit per table (`columns`, `tables`, `sources`), the run recorded in
//! `executor_runs` (the commit point: readers see a run's rows only once it is recorded as
//! succeeded or partial), and then the rows earlier runs left for the same
//! `(workflow_id, source_id)` pairs removed (a shard's: only its own tables'). A run that
//! cannot be recorded takes its rows back.

use std::collections::{BTreeMap, BTreeSet};

use super::{JobReport, RunStatus, SourceReport};
use crate::profile::{self, TableProfile, TableStatus};
use crate::warehouse::{self, BatchBuilder, Warehouse, WarehouseError};
use datafusion::arrow::array::RecordBatch;

/// Brings the warehouse to this executor's schema (see [`crate::migrate::ensure_current`])
/// and checks every table.
pub(super) async fn prepare_warehouse(
    w: &Warehouse,
    migrate: crate::migrate::MigratePolicy,
) -> Result<(), crate::migrate::MigrateError> {
    // Every table's features first: a table this binary cannot write stops the job before
    // anything is created or written. Opened at once, and beside the read of the migration
    // history: on a remote warehouse each is a few round trips.
    let (opened, state) = futures::future::join(
        futures::future::join_all(
            warehouse::WRITTEN_TABLES
                .iter()
                .map(|def| async move { (def, w.open(def).await) }),
        ),
        crate::migrate::readiness_of(w),
    )
    .await;
    let mut tables = Vec::new();
    for (def, t) in opened {
        match t? {
            Some(t) => {
                w.ensure_writable(def.name, &t)?;
                tables.push((def, t));
            }
            None => w.refuse_managed_layout(def.name).await?,
        }
    }
    let migrated = crate::migrate::bring_current(w, migrate, state?).await?;
    if !migrated && tables.len() == warehouse::WRITTEN_TABLES.len() {
        // Nothing changed since they were opened a moment ago: checked as they are.
        for (def, t) in tables {
            w.check_schema(def, &t)?;
        }
        return Ok(());
    }
    for checked in futures::future::join_all(
        warehouse::WRITTEN_TABLES
            .iter()
            .map(|def| w.ensure_valid(def)),
    )
    .await
    {
        checked?;
    }
    Ok(())
}

/// Sources are replaced per `source_id` group; a group with a failed source is not
/// written at all, so a failure never erases the rows a previous run left.
fn writable_groups(report: &JobReport) -> Vec<(Option<String>, Vec<&SourceReport>)> {
    let mut groups: BTreeMap<Option<String>, Vec<&SourceReport>> = BTreeMap::new();
    for s in &report.sources {
        groups.entry(s.source_id.clone()).or_default().push(s);
    }
    groups
        .into_iter()
        .filter(|(sid, members)| {
            let ok = members.iter().all(|s| s.status != RunStatus::Failed);
            if !ok {
                tracing::warn!(
                    source_id = sid.as_deref().unwrap_or(""),
                    "a source of this source_id failed; its previous rows are kept"
                );
            }
            ok
        })
        .collect()
}

pub(super) async fn write_results(w: &Warehouse, report: &JobReport) -> Result<(), WarehouseError> {
    let groups = writable_groups(report);
    if groups.is_empty() {
        return Ok(());
    }
    let srcs: Vec<&SourceReport> = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let wf = report.workflow_id.as_str();
    let run = report.run_id.as_str();
    let ts = report.started_at;

    let n = srcs.len();
    let sources = BatchBuilder::new(&warehouse::SOURCES)
        .i64s("id", warehouse::new_ids(n))
        .strings("workflow_id", vec![Some(wf); n])
        .strings("source_id", srcs.iter().map(|s| s.source_id.as_deref()))
        .strings(
            "source_path",
            srcs.iter().map(|s| Some(s.source_path.as_str())),
        )
        .strings(
            "source_type",
            srcs.iter().map(|s| Some(s.source_type.as_str())),
        )
        .timestamps("extraction_timestamp", vec![Some(ts); n])
        .i32s(
            "files_found",
            srcs.iter()
                .map(|s| Some(s.files_found.min(i32::MAX as u64) as i32)),
        )
        .i64s(
            "total_size_bytes",
            srcs.iter().map(|s| Some(s.total_size_bytes as i64)),
        )
        .strings("run_id", vec![Some(run); n])
        .build()?;

    // Carried tables' rows are copied from the run that holds them (below); the rest are
    // built from their profiles.
    let tables: Vec<(&SourceReport, &TableProfile)> = srcs
        .iter()
        .flat_map(|s| s.tables.iter().map(move |t| (*s, t)))
        .filter(|(_, t)| t.carried_from.is_none())
        .collect();
    let n = tables.len();
    let tables_batch = BatchBuilder::new(&warehouse::TABLES)
        .i64s("id", warehouse::new_ids(n))
        .strings("workflow_id", vec![Some(wf); n])
        .strings(
            "source_id",
            tables.iter().map(|(s, _)| s.source_id.as_deref()),
        )
        .strings(
            "table_name",
            tables.iter().map(|(_, t)| Some(t.table_name.as_str())),
        )
        .strings(
            "file_path",
            tables.iter().map(|(_, t)| Some(t.file_path.as_str())),
        )
        .strings(
            "file_type",
            tables.iter().map(|(_, t)| Some(t.file_type.as_str())),
        )
        .i64s("row_count", tables.iter().map(|(_, t)| t.row_count))
        .i32s(
            "column_count",
            tables.iter().map(|(_, t)| Some(t.column_count)),
        )
        .i64s("size_bytes", tables.iter().map(|(_, t)| Some(t.size_bytes)))
        .strings("run_id", vec![Some(run); n])
        .strings(
            "status",
            tables.iter().map(|(_, t)| Some(t.status.as_str())),
        )
        .strings(
            "error_message",
            tables.iter().map(|(_, t)| t.error_message.as_deref()),
        )
        .f64s(
            "quality_score",
            tables
                .iter()
                .map(|(_, t)| t.quality.as_ref().map(|q| q.score)),
        )
        .strings(
            "quality",
            tables.iter().map(|(_, t)| t.quality.as_ref().map(json)),
        )
        .strings(
            "candidate_keys",
            tables
                .iter()
                .map(|(_, t)| (t.status == TableStatus::Ok).then(|| json(&t.candidate_keys))),
        )
        .i64s(
            "duplicate_rows",
            tables.iter().map(|(_, t)| t.duplicate_rows),
        )
        .f64s(
            "profiled_fraction",
            tables
                .iter()
                .map(|(_, t)| (t.status == TableStatus::Ok).then_some(t.profiled_fraction)),
        )
        .strings(
            "widened_columns",
            tables
                .iter()
                .map(|(_, t)| (!t.widened_columns.is_empty()).then(|| json(&t.widened_columns))),
        )
        .strings(
            "fingerprint",
            tables.iter().map(|(_, t)| t.fingerprint.as_deref()),
        )
        .strings("profile_run_id", vec![Some(run); n])
        .build()?;

    let cols: Vec<(&SourceReport, &TableProfile, &profile::ColumnProfile)> = tables
        .iter()
        .flat_map(|(s, t)| t.columns.iter().map(move |c| (*s, *t, c)))
        .collect();
    let n = cols.len();
    let samples: Vec<String> = cols
        .iter()
        .map(|(_, _, c)| serde_json::to_string(&c.sample_values).unwrap_or_else(|_| "[]".into()))
        .collect();
    let columns = BatchBuilder::new(&warehouse::COLUMNS)
        .i64s("id", warehouse::new_ids(n))
        .strings("workflow_id", vec![Some(wf); n])
        .strings(
            "source_id",
            cols.iter().map(|(s, _, _)| s.source_id.as_deref()),
        )
        .strings(
            "table_name",
            cols.iter().map(|(_, t, _)| Some(t.table_name.as_str())),
        )
        .strings(
            "column_name",
            cols.iter().map(|(_, _, c)| Some(c.column_name.as_str())),
        )
        .strings(
            "data_type",
            cols.iter().map(|(_, _, c)| Some(c.data_type.as_str())),
        )
        .i32s("position", cols.iter().map(|(_, _, c)| Some(c.position)))
        .bools(
            "is_nullable",
            cols.iter().map(|(_, _, c)| Some(c.is_nullable)),
        )
        .strings("sample_values", samples.iter().map(|s| Some(s.as_str())))
        .strings("run_id", vec![Some(run); n])
        .i64s(
            "null_count",
            cols.iter().map(|(_, _, c)| Some(c.null_count)),
        )
        .i64s(
            "distinct_count",
            cols.iter().map(|(_, _, c)| c.distinct_count),
        )
        .strings(
            "min_value",
            cols.iter().map(|(_, _, c)| c.min_value.as_deref()),
        )
        .strings(
            "max_value",
            cols.iter().map(|(_, _, c)| c.max_value.as_deref()),
        )
        .f64s(
            "null_fraction",
            cols.iter().map(|(_, _, c)| c.null_fraction),
        )
        .f64s(
            "distinct_fraction",
            cols.iter().map(|(_, _, c)| c.distinct_fraction),
        )
        .f64s("mean", cols.iter().map(|(_, _, c)| c.mean))
        .f64s("stddev", cols.iter().map(|(_, _, c)| c.stddev))
        .f64s("min_double", cols.iter().map(|(_, _, c)| c.min_double))
        .f64s("max_double", cols.iter().map(|(_, _, c)| c.max_double))
        .timestamps(
            "min_timestamp",
            cols.iter()
                .map(|(_, _, c)| c.min_timestamp.and_then(micros)),
        )
        .timestamps(
            "max_timestamp",
            cols.iter()
                .map(|(_, _, c)| c.max_timestamp.and_then(micros)),
        )
        .strings(
            "quantiles",
            cols.iter()
                .map(|(_, _, c)| c.quantiles.as_ref().map(|q| q.0.as_str())),
        )
        .strings(
            "histogram",
            cols.iter()
                .map(|(_, _, c)| c.histogram.as_ref().map(|h| h.0.as_str())),
        )
        .i64s("zero_count", cols.iter().map(|(_, _, c)| c.zero_count))
        .i64s(
            "negative_count",
            cols.iter().map(|(_, _, c)| c.negative_count),
        )
        .i64s("min_length", cols.iter().map(|(_, _, c)| c.min_length))
        .f64s("avg_length", cols.iter().map(|(_, _, c)| c.avg_length))
        .i64s("max_length", cols.iter().map(|(_, _, c)| c.max_length))
        .i64s("blank_count", cols.iter().map(|(_, _, c)| c.blank_count))
        .strings(
            "top_values",
            cols.iter()
                .map(|(_, _, c)| (!c.top_values.is_empty()).then(|| json(&c.top_values))),
        )
        .i64s(
            "top_values_error",
            cols.iter().map(|(_, _, c)| c.top_values_error),
        )
        .strings(
            "semantic_type",
            cols.iter().map(|(_, _, c)| c.semantic_type.as_deref()),
        )
        .f64s(
            "semantic_fraction",
            cols.iter().map(|(_, _, c)| c.semantic_fraction),
        )
        .bools("pii", cols.iter().map(|(_, _, c)| Some(c.pii)))
        .f64s(
            "profiled_fraction",
            cols.iter().map(|(_, _, c)| Some(c.profiled_fraction)),
        )
        .build()?;

    let carried: Vec<(Option<&str>, &str, &str)> = srcs
        .iter()
        .flat_map(|s| {
            s.carried_rows
                .iter()
                .map(move |(t, r)| (s.source_id.as_deref(), t.as_str(), r.as_str()))
        })
        .collect();
    let (tables_batch, columns) = futures::future::try_join(
        with_carried(w, &warehouse::TABLES, report, &carried, tables_batch),
        with_carried(w, &warehouse::COLUMNS, report, &carried, columns),
    )
    .await?;
    let changes = changes_batch(report, &srcs, ts)?;
    let rollups = sketches_batch(report, &srcs, ts, true)?;
    let sketches = sketches_batch(report, &srcs, ts, false)?;

    // The history gets the same rows with the run's time; readers of it, too, go by the
    // recorded runs.
    let column_history = with_time(&warehouse::COLUMN_HISTORY, &columns, ts)?;
    let table_history = with_time(&warehouse::TABLE_HISTORY, &tables_batch, ts)?;

    // Appended, not replaced: the rows an earlier run left stay whole, and the only ones
    // readers see, until this run is recorded in `executor_runs` (the commit point); then
    // [`settle`] removes them (from the current tables; the history keeps them). Readers go
    // by that record, so the tables are appended to at once: on a remote warehouse each
    // commit is several round trips.
    let writes = [
        // The rollups in files of their own: the next run removes a rollup it replaces
        // without rewriting the partitions' sketches beside it.
        (&warehouse::PARTITION_SKETCHES, vec![sketches, rollups]),
        (&warehouse::CHANGES, vec![changes]),
        (&warehouse::COLUMN_HISTORY, vec![column_history]),
        (&warehouse::TABLE_HISTORY, vec![table_history]),
        (&warehouse::COLUMNS, vec![columns]),
        (&warehouse::TABLES, vec![tables_batch]),
        (&warehouse::SOURCES, vec![sources]),
    ]
    .into_iter()
    // Shard 0 writes the source rows.
    .filter(|(def, _)| {
        !(def.name == warehouse::SOURCES.name && report.shard.is_some_and(|s| s.index != 0))
    })
    .map(|(def, mut batches)| async move {
        batches.retain(|b| b.num_rows() > 0);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if batches.is_empty() {
            return Ok::<(), WarehouseError>(());
        }
        let table = w.ensure_valid(def).await?;
        let table = match batches.len() {
            1 => w.append(def, table, batches.remove(0), run).await?,
            _ => w.append_files(def, table, batches, run).await?,
        };
        tracing::info!(
            table = def.name,
            rows,
            version = table.version().unwrap_or_default(),
            "written"
        );
        Ok(())
    });
    let results = futures::future::join_all(writes).await;
    let appended = results.iter().any(Result::is_ok);
    if let Some(e) = results.into_iter().find_map(Result::err) {
        if appended {
            retract(w, report).await;
        }
        return Err(e);
    }
    Ok(())
}

/// The rows that the run's `(workflow_id, source_id)` pairs hold in `tables` and `columns`,
/// as a predicate; a shard's are only those of its own tables (found now, or stored by an
/// earlier run and now gone from the source). `None`: none.
async fn scope_of(
    w: &Warehouse,
    report: &JobReport,
    predicate: &str,
    srcs: &[&SourceReport],
) -> Result<Option<(String, Option<BTreeSet<String>>)>, WarehouseError> {
    let Some(shard) = report.shard else {
        return Ok(Some((predicate.to_string(), None)));
    };
    let mut names: BTreeSet<String> = srcs
        .iter()
        .flat_map(|s| s.tables.iter().map(|t| t.table_name.clone()))
        .collect();
    names.extend(
        stored_table_names(w, predicate)
            .await?
            .into_iter()
            .filter(|n| shard.owns(n)),
    );
    if names.is_empty() {
        return Ok(None);
    }
    let list: Vec<String> = names.iter().map(|n| warehouse::sql_literal(n)).collect();
    Ok(Some((
        format!("{predicate} AND table_name IN ({})", list.join(", ")),
        Some(names),
    )))
}

/// The tables [`settle`] removes earlier runs' rows from, parents first.
const SETTLED: [&warehouse::TableDef; 4] = [
    &warehouse::SOURCES,
    &warehouse::TABLES,
    &warehouse::COLUMNS,
    &warehouse::PARTITION_SKETCHES,
];

/// After the run is recorded: removes what its pairs held from runs it supersedes, so each
/// pair holds one run again. Those are the runs recorded as finished before it (readers
/// take the latest finished run), and runs that had left rows when it started and never
/// finished (they died while writing: a live run records within moments of its writes).
/// Rows of a run that finishes after this one, or that is still writing, stay: two jobs of
/// one pair at once end with the later one's rows, not with none. A failure here changes
/// nothing readers see (they go by the recorded run); the next run of the pair finishes it.
pub async fn settle(w: &Warehouse, report: &JobReport) {
    let groups = writable_groups(report);
    if groups.is_empty() {
        return;
    }
    // A pair's first run has nothing of earlier runs to remove: no delete to write ahead of.
    let settling: &[&warehouse::TableDef] = match report.runs_at_start.is_empty() {
        true => &[],
        false => &SETTLED,
    };
    w.begin_last_commits(settling);
    let source_ids: Vec<Option<String>> = groups.iter().map(|(s, _)| s.clone()).collect();
    let predicate = warehouse::replace_predicate(&report.workflow_id, &source_ids);
    let srcs: Vec<&SourceReport> = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let run = report.run_id.as_str();
    // Found once, before anything is removed: `columns` follows what `tables` held.
    let found = futures::future::try_join(
        scope_of(w, report, &predicate, &srcs),
        superseded(w, report),
    )
    .await;
    let (scope, superseded) = match found {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "finding the rows of earlier runs failed ({e}); readers see this run only, and the next run of these sources removes them"
            );
            return;
        }
    };
    let superseded: BTreeSet<String> = superseded.into_iter().collect();
    let runs = match superseded.is_empty() {
        true => "run_id IS NULL".to_string(),
        false => format!(
            "(run_id IS NULL OR run_id IN ({}))",
            superseded
                .iter()
                .map(|r| warehouse::sql_literal(r))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let kept_sketches: BTreeSet<i64> = srcs
        .iter()
        .flat_map(|s| s.tables.iter())
        .flat_map(|t| t.kept_sketches.iter().copied())
        .collect();
    let stored_sketches = superseded_sketches(&srcs, scope.as_ref(), &kept_sketches);
    let stored_sketches = &stored_sketches;
    // Parents first (sources, tables, columns): a run killed between two of them leaves
    // each superseded run whole where it still has a parent row. The sketches, which no
    // reader joins, go beside them.
    let mut deletes: Vec<_> = SETTLED
        .into_iter()
        .filter_map(|def| {
            let (rows, tables) = if def.name == warehouse::SOURCES.name {
                // Shard 0 writes the source rows.
                if report.shard.is_some_and(|s| s.index != 0) {
                    return None;
                }
                (predicate.clone(), None)
            } else {
                scope.clone()?
            };
            let mut older = format!("{rows} AND {runs}");
            // Sketches are kept across runs (each by the run that read its partition) and found
            // by their files' fingerprint: all but this run's, those it merged unread, and
            // those of the tables it carried go. Where the rows were read (a re-run of a
            // partitioned table), they go by id, those of other jobs since left alone; else by
            // predicate, another job's too (the next run reads those partitions again).
            if def.name == warehouse::PARTITION_SKETCHES.name {
                older = format!(
                    "{rows} AND (run_id IS NULL OR run_id <> {})",
                    warehouse::sql_literal(run)
                );
                if let Some(keep) = carried_tables(&srcs) {
                    older = format!("{older} AND NOT ({keep})");
                }
                let kept: Vec<String> = kept_sketches.iter().map(i64::to_string).collect();
                if !kept.is_empty() {
                    older = format!("{older} AND id NOT IN ({})", kept.join(", "));
                }
            }
            let (superseded, source_ids) = (&superseded, &source_ids);
            Some((def, async move {
                if def.name == warehouse::PARTITION_SKETCHES.name {
                    match &stored_sketches {
                        Some((ids, known, files)) => {
                            let rows = warehouse::IdRows {
                                workflow_id: &report.workflow_id,
                                sources: source_ids,
                                ids,
                                known,
                                files,
                            };
                            w.delete_ids(def, &rows, run).await
                        }
                        None => w.delete_where(def, &older, run).await,
                    }
                } else {
                    let rows = warehouse::RunRows {
                        workflow_id: &report.workflow_id,
                        sources: source_ids,
                        tables: tables.as_ref(),
                        runs: superseded,
                    };
                    w.delete_runs(def, &rows, &older, run).await
                }
            }))
        })
        .collect();
    let sketches = deletes
        .iter()
        .position(|(def, _)| def.name == warehouse::PARTITION_SKETCHES.name)
        .map(|i| deletes.remove(i).1);
    let in_order = async {
        let mut done = Vec::new();
        for (def, delete) in deletes {
            done.push((def, delete.await));
        }
        done
    };
    let (mut results, sketches) =
        futures::future::join(in_order, futures::future::OptionFuture::from(sketches)).await;
    results.extend(sketches.map(|r| (&warehouse::PARTITION_SKETCHES, r)));
    for (def, deleted) in results {
        if let Err(e) = deleted {
            tracing::warn!(
                table = def.name,
                "removing the rows of earlier runs failed ({e}); readers see this run only, and the next run of these sources removes them"
            );
        }
    }
}

/// The `partition_sketches` rows settle removes when every source read its pair's rows
/// (`None`: one did not): of those held then, the ones of tables in `scope` that this run
/// did not carry or merge. With what the pairs held (ids, files) for [`Warehouse::delete_ids`].
fn superseded_sketches(
    srcs: &[&SourceReport],
    scope: Option<&(String, Option<BTreeSet<String>>)>,
    kept: &BTreeSet<i64>,
) -> Option<(BTreeSet<i64>, BTreeSet<i64>, BTreeSet<String>)> {
    let (_, names) = scope?;
    let carried = carried_by_source(srcs);
    let (mut ids, mut known, mut files) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for s in srcs {
        let stored = s.stored_sketches.as_ref()?;
        let carried = &carried[&s.source_id.as_deref()];
        for (id, table) in &stored.rows {
            known.insert(*id);
            let in_scope = names.as_ref().is_none_or(|n| n.contains(table));
            if in_scope && !carried.contains(table.as_str()) && !kept.contains(id) {
                ids.insert(*id);
            }
        }
        files.extend(stored.files.iter().cloned());
    }
    Some((ids, known, files))
}

/// The runs `report`'s run supersedes (see [`settle`]): finished before it, by finish time
/// then run id, or present when it started and not finished.
async fn superseded(w: &Warehouse, report: &JobReport) -> Result<Vec<String>, WarehouseError> {
    let runs = w
        .select(&format!(
            "SELECT run_id, CAST(finished_at AS BIGINT) AS finished FROM {} \
             WHERE workflow_id = {} AND finished_at IS NOT NULL",
            warehouse::EXECUTOR_RUNS.name,
            warehouse::sql_literal(&report.workflow_id)
        ))
        .await?;
    let finished: BTreeMap<String, i64> = runs
        .iter()
        .filter_map(|r| {
            Some((
                r.get("run_id")?.as_str()?.to_string(),
                r.get("finished")?.as_i64()?,
            ))
        })
        .collect();
    let me = report.run_id.as_str();
    // Its own record's time where it can be read (the clocks of the reader and the writer
    // of the others' records may differ), else its report's.
    let mine = finished
        .get(me)
        .copied()
        .unwrap_or_else(|| report.finished_at.timestamp_micros());
    // Of the runs finished before it, only those that may have rows: present when it
    // started, or finished since (the warehouse keeps every run's record).
    let since = report.started_at.timestamp_micros();
    let mut out: BTreeSet<&str> = finished
        .iter()
        .filter(|(r, t)| {
            (**t, r.as_str()) < (mine, me) && (**t >= since || report.runs_at_start.contains(*r))
        })
        .map(|(r, _)| r.as_str())
        .collect();
    out.extend(
        report
            .runs_at_start
            .iter()
            .map(String::as_str)
            .filter(|r| *r != me && !finished.contains_key(*r)),
    );
    Ok(out.into_iter().map(str::to_string).collect())
}

/// Takes back the rows a run appended when it cannot be recorded (its write or its record
/// failed). Readers never saw them; this keeps the tables to one run per pair for those who
/// read them without the recorded-run rule.
pub async fn retract(w: &Warehouse, report: &JobReport) {
    let mine = format!(
        "workflow_id = {} AND run_id = {}",
        warehouse::sql_literal(&report.workflow_id),
        warehouse::sql_literal(&report.run_id)
    );
    for def in [
        &warehouse::SOURCES,
        &warehouse::TABLES,
        &warehouse::COLUMNS,
        &warehouse::TABLE_HISTORY,
        &warehouse::COLUMN_HISTORY,
        &warehouse::CHANGES,
        &warehouse::PARTITION_SKETCHES,
    ] {
        if let Err(e) = w.delete_where(def, &mine, &report.run_id).await {
            tracing::warn!(
                table = def.name,
                "taking back the rows of a run that was not recorded failed ({e}); readers do not see them, and the next run of these sources removes them"
            );
        }
    }
}

/// Per `source_id`, the tables its sources carried (not read this run).
fn carried_by_source<'a>(
    srcs: &[&'a SourceReport],
) -> BTreeMap<Option<&'a str>, BTreeSet<&'a str>> {
    let mut by_source: BTreeMap<Option<&str>, BTreeSet<&str>> = BTreeMap::new();
    for s in srcs {
        by_source
            .entry(s.source_id.as_deref())
            .or_default()
            .extend(s.carried_rows.keys().map(String::as_str));
    }
    by_source
}

/// The tables the sources carried (not read this run), as a predicate; `None`: none.
fn carried_tables(srcs: &[&SourceReport]) -> Option<String> {
    let parts: Vec<String> = carried_by_source(srcs)
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(sid, names)| {
            let source = match sid {
                Some(s) => format!("source_id = {}", warehouse::sql_literal(s)),
                None => "source_id IS NULL".to_string(),
            };
            let names: Vec<String> = names.iter().map(|n| warehouse::sql_literal(n)).collect();
            format!("({source} AND table_name IN ({}))", names.join(", "))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" OR "))
}

/// The partition sketches the tables profiled partition by partition computed this run:
/// their rollups, or the partitions' own.
fn sketches_batch(
    report: &JobReport,
    srcs: &[&SourceReport],
    ts: chrono::DateTime<chrono::Utc>,
    rollups: bool,
) -> Result<RecordBatch, WarehouseError> {
    let rows: Vec<(
        &SourceReport,
        &TableProfile,
        &profile::partitions::PartitionSketch,
    )> = srcs
        .iter()
        .flat_map(|s| s.tables.iter().map(move |t| (*s, t)))
        .filter(|(_, t)| t.status == TableStatus::Ok && t.carried_from.is_none())
        .flat_map(|(s, t)| t.partition_sketches.iter().map(move |k| (s, t, k)))
        .filter(|(_, _, k)| (k.path == profile::partitions::ROLLUP_PATH) == rollups)
        .collect();
    let n = rows.len();
    BatchBuilder::new(&warehouse::PARTITION_SKETCHES)
        .i64s("id", warehouse::new_id_block(n))
        .strings("workflow_id", vec![Some(report.workflow_id.as_str()); n])
        .strings(
            "source_id",
            rows.iter().map(|(s, _, _)| s.source_id.as_deref()),
        )
        .strings("run_id", vec![Some(report.run_id.as_str()); n])
        .strings(
            "table_name",
            rows.iter().map(|(_, t, _)| Some(t.table_name.as_str())),
        )
        .strings(
            "partition_path",
            rows.iter().map(|(_, _, k)| Some(k.path.as_str())),
        )
        .strings(
            "fingerprint",
            rows.iter().map(|(_, _, k)| Some(k.fingerprint.as_str())),
        )
        .strings(
            "schema_key",
            rows.iter().map(|(_, _, k)| Some(k.schema_key.as_str())),
        )
        .i64s("row_count", rows.iter().map(|(_, _, k)| Some(k.rows)))
        .binaries(
            "file_schema",
            rows.iter().map(|(_, _, k)| Some(k.file_schema.as_slice())),
        )
        .binaries(
            "sketch",
            rows.iter().map(|(_, _, k)| Some(k.sketch.as_slice())),
        )
        .timestamps("computed_at", vec![Some(ts); n])
        .build()
}

/// The table names stored in `tables` for the rows `predicate` selects.
async fn stored_table_names(w: &Warehouse, predicate: &str) -> Result<Vec<String>, WarehouseError> {
    let rows = w
        .select(&format!(
            "SELECT DISTINCT table_name FROM {} WHERE {predicate}",
            warehouse::TABLES.name
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            r.get("table_name")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .collect())
}

pub(super) async fn record_run(w: &Warehouse, report: &JobReport) -> Result<(), WarehouseError> {
    let def = &warehouse::EXECUTOR_RUNS;
    let batch = BatchBuilder::new(def)
        .i64s("id", warehouse::new_ids(1))
        .strings("run_id", [Some(report.run_id.as_str())])
        .strings("executor_version", [Some(crate::VERSION)])
        .strings("workflow_id", [Some(report.workflow_id.as_str())])
        .strings("source_id", [report.source_id.as_deref()])
        .strings("run_mode", [Some(report.run_mode.as_str())])
        .strings("status", [Some(report.status.as_str())])
        .strings("error_message", [report.error.as_deref()])
        .timestamps("started_at", [Some(report.started_at)])
        .timestamps("finished_at", [Some(report.finished_at)])
        .build()?;
    let table = w.ensure_valid(def).await?;
    w.append(def, table, batch, &report.run_id).await?;
    Ok(())
}

/// A statistic's JSON text, as stored.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn micros(m: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(m)
}

/// `batch` of a current table as a row batch of its history table `def`: the same columns
/// and the run's start time (in the history's own column order).
fn with_time(
    def: &'static warehouse::TableDef,
    batch: &datafusion::arrow::array::RecordBatch,
    ts: chrono::DateTime<chrono::Utc>,
) -> Result<datafusion::arrow::array::RecordBatch, WarehouseError> {
    let bad = |message: String| WarehouseError::Batch {
        table: def.name,
        message,
    };
    let time: datafusion::arrow::array::ArrayRef = std::sync::Arc::new(
        datafusion::arrow::array::TimestampMicrosecondArray::from(vec![
            Some(ts.timestamp_micros());
            batch.num_rows()
        ])
        .with_timezone("UTC"),
    );
    let columns = def
        .columns
        .iter()
        .map(|c| {
            if Some(c.name) == def.trimmed_by {
                Ok(time.clone())
            } else {
                batch
                    .column_by_name(c.name)
                    .cloned()
                    .ok_or_else(|| bad(format!("no column {}", c.name)))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    datafusion::arrow::array::RecordBatch::try_new(def.arrow_schema(), columns)
        .map_err(|e| bad(e.to_string()))
}

/// `batch` of `def` (`tables` or `columns`) with the rows of the carried tables added: the
/// rows the previous recorded run holds for them, copied as this run's (new ids, this run's
/// id; `profile_run_id` keeps the run that computed the profile). Fails when they are gone
/// (a concurrent run of the same pair removed them): the run must not record tables
/// without their profiles.
async fn with_carried(
    w: &Warehouse,
    def: &'static warehouse::TableDef,
    report: &JobReport,
    carried: &[(Option<&str>, &str, &str)],
    batch: RecordBatch,
) -> Result<RecordBatch, WarehouseError> {
    use datafusion::arrow::array::{Array, AsArray, BooleanArray, StringArray};
    use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
    use datafusion::arrow::datatypes::DataType;
    if carried.is_empty() {
        return Ok(batch);
    }
    let wanted: BTreeSet<(Option<&str>, &str, &str)> = carried.iter().copied().collect();
    let runs: BTreeSet<&str> = carried.iter().map(|c| c.2).collect();
    let names: Vec<String> = def
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    let runs: Vec<String> = runs.iter().map(|r| warehouse::sql_literal(r)).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE workflow_id = {} AND run_id IN ({})",
        names.join(", "),
        def.name,
        warehouse::sql_literal(&report.workflow_id),
        runs.join(", ")
    );
    let bad = |message: String| WarehouseError::Batch {
        table: def.name,
        message,
    };
    let schema = def.arrow_schema();
    let index = |name: &str| def.columns.iter().position(|c| c.name == name);
    let (Some(sid), Some(tname), Some(rid)) =
        (index("source_id"), index("table_name"), index("run_id"))
    else {
        return Err(bad("not a table of profiles".into()));
    };
    let mut out = vec![batch];
    let mut found: BTreeSet<(Option<String>, String)> = BTreeSet::new();
    for b in w.select_batches(warehouse::DEFAULT_CATALOG, &sql).await? {
        let text = |i: usize| -> Result<StringArray, WarehouseError> {
            let a = cast(b.column(i), &DataType::Utf8).map_err(|e| bad(e.to_string()))?;
            Ok(a.as_string::<i32>().clone())
        };
        let (s, t, r) = (text(sid)?, text(tname)?, text(rid)?);
        let keep: BooleanArray = (0..b.num_rows())
            .map(|i| {
                let key = (s.is_valid(i).then(|| s.value(i)), t.value(i), r.value(i));
                Some(wanted.contains(&key))
            })
            .collect();
        for i in 0..b.num_rows() {
            if keep.value(i) {
                found.insert((
                    s.is_valid(i).then(|| s.value(i).to_string()),
                    t.value(i).to_string(),
                ));
            }
        }
        let kept = filter_record_batch(&b, &keep).map_err(|e| bad(e.to_string()))?;
        let n = kept.num_rows();
        if n == 0 {
            continue;
        }
        let old_runs = cast(kept.column(rid), &DataType::Utf8).map_err(|e| bad(e.to_string()))?;
        let old_runs = old_runs.as_string::<i32>();
        let mut columns = Vec::with_capacity(def.columns.len());
        for (i, c) in def.columns.iter().enumerate() {
            let col: std::sync::Arc<dyn Array> = match c.name {
                "id" => std::sync::Arc::new(datafusion::arrow::array::Int64Array::from(
                    warehouse::new_ids(n),
                )),
                "run_id" => {
                    std::sync::Arc::new(StringArray::from(vec![Some(report.run_id.as_str()); n]))
                }
                "profile_run_id" => {
                    let was =
                        cast(kept.column(i), &DataType::Utf8).map_err(|e| bad(e.to_string()))?;
                    let was = was.as_string::<i32>();
                    std::sync::Arc::new(
                        (0..n)
                            .map(|j| {
                                Some(if was.is_valid(j) {
                                    was.value(j)
                                } else {
                                    old_runs.value(j)
                                })
                            })
                            .collect::<StringArray>(),
                    )
                }
                _ => cast(kept.column(i), schema.field(i).data_type())
                    .map_err(|e| bad(e.to_string()))?,
            };
            columns.push(col);
        }
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| bad(e.to_string()))?);
    }
    // Every carried table has a `tables` row; a table without columns has no `columns` rows.
    if def.name == warehouse::TABLES.name && found.len() < wanted.len() {
        return Err(bad(format!(
            "the profiles of {} unchanged tables are gone from the previous run (a concurrent run of the same source removed them); run again",
            wanted.len() - found.len()
        )));
    }
    concat_batches(&schema, &out).map_err(|e| bad(e.to_string()))
}

/// The changes of the written sources, as rows of `changes`.
fn changes_batch(
    report: &JobReport,
    srcs: &[&SourceReport],
    ts: chrono::DateTime<chrono::Utc>,
) -> Result<RecordBatch, WarehouseError> {
    let rows: Vec<(&SourceReport, &crate::profile::drift::Change)> = srcs
        .iter()
        .flat_map(|s| s.changes.iter().map(move |c| (*s, c)))
        .collect();
    let n = rows.len();
    BatchBuilder::new(&warehouse::CHANGES)
        .i64s("id", warehouse::new_ids(n))
        .strings("workflow_id", vec![Some(report.workflow_id.as_str()); n])
        .strings(
            "source_id",
            rows.iter().map(|(s, _)| s.source_id.as_deref()),
        )
        .strings("run_id", vec![Some(report.run_id.as_str()); n])
        .strings(
            "previous_run_id",
            rows.iter().map(|(_, c)| c.previous_run_id.as_deref()),
        )
        .strings(
            "table_name",
            rows.iter().map(|(_, c)| Some(c.table_name.as_str())),
        )
        .strings(
            "column_name",
            rows.iter().map(|(_, c)| c.column_name.as_deref()),
        )
        .strings("change", rows.iter().map(|(_, c)| Some(c.change.as_str())))
        .strings(
            "severity",
            rows.iter().map(|(_, c)| Some(c.severity.as_str())),
        )
        .f64s("measure", rows.iter().map(|(_, c)| c.measure))
        .f64s("threshold", rows.iter().map(|(_, c)| c.threshold))
        .strings(
            "previous_value",
            rows.iter().map(|(_, c)| c.previous_value.as_deref()),
        )
        .strings(
            "current_value",
            rows.iter().map(|(_, c)| c.current_value.as_deref()),
        )
        .strings("detail", rows.iter().map(|(_, c)| Some(c.detail.as_str())))
        .timestamps("detected_at", vec![Some(ts); n])
        .build()
}
