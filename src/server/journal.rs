//! The API's jobs as rows of `executor_runs`: one row per job (`run_id` is the job id),
//! rewritten in place as the job's state changes, so that a job can be followed after the
//! server restarts and Databricks users see one row per run as with CLI runs.
//!
//! Writes go through one [`Journal`] per server: state changes are queued in the order they
//! happen and committed in groups (one Delta commit for every change that queued while the
//! previous commit ran), so a burst of job creations costs a few commits, not one each.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::job::RunStatus;
use crate::warehouse::{
    self, BatchBuilder, DEFAULT_CATALOG, EXECUTOR_RUNS, Warehouse, WarehouseError, sql_literal,
    to_json_rows,
};

/// The error a recovered job carries when the server stopped while it was queued or running.
pub const INTERRUPTED: &str = "interrupted: the server stopped before the job finished";

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("reading executor_runs failed: {0}")]
    Read(String),
    #[error("the run journal has stopped")]
    Stopped,
}

/// One API job's row in `executor_runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// The table's row id: kept across rewrites of the row.
    pub id: i64,
    pub run_id: String,
    pub workflow_id: String,
    pub source_id: Option<String>,
    pub status: JobState,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job's state, as the API shows it and `executor_runs.status` stores it: created, running,
/// then the job's own final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(into = "&'static str")]
pub enum JobState {
    Created,
    Running,
    Finished(RunStatus),
}

impl JobState {
    pub const FAILED: Self = Self::Finished(RunStatus::Failed);
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Running,
        Self::Finished(RunStatus::Succeeded),
        Self::Finished(RunStatus::Partial),
        Self::FAILED,
        Self::Finished(RunStatus::Cancelled),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Finished(s) => s.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a job in this state will change no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Finished(_))
    }
}

impl From<JobState> for &'static str {
    fn from(s: JobState) -> Self {
        s.as_str()
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fresh job id. Ids sort by creation time (milliseconds first), which keeps the rows a
/// group commit writes close together in `run_id` order: file statistics then let a later
/// rewrite of one row skip almost every file of the table.
pub fn new_job_id() -> String {
    let ms = Utc::now().timestamp_millis().max(0) as u64;
    let random = uuid::Uuid::new_v4().as_u128() & ((1u128 << 80) - 1);
    format!("job_{ms:012x}{random:020x}")
}

/// When a job id was made, if it is one of [`new_job_id`]'s.
pub fn created_at_of(job_id: &str) -> Option<DateTime<Utc>> {
    let hex = job_id.strip_prefix("job_")?.get(..12)?;
    let ms = i64::from_str_radix(hex, 16).ok()?;
    DateTime::from_timestamp_millis(ms)
}

type Ack = oneshot::Sender<Result<(), String>>;

/// The one writer of API job rows: changes are committed in order, in groups.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<(RunRow, Ack)>,
}

/// Most rows one commit takes; the rest wait for the next.
const GROUP_MAX: usize = 1000;

impl Journal {
    /// Starts the writer task on the current runtime.
    pub fn start(w: Warehouse) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(RunRow, Ack)>();
        tokio::spawn(async move {
            let mut table = None;
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(m) => group.push(m),
                        Err(_) => break,
                    }
                }
                let rows: Vec<RunRow> = group.iter().map(|(r, _)| r.clone()).collect();
                let result = match write(&w, table.take(), &rows).await {
                    Ok(t) => {
                        table = Some(t);
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(
                            rows = rows.len(),
                            "recording job states in executor_runs failed: {e}"
                        );
                        Err(e.to_string())
                    }
                };
                for (_, ack) in group {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    /// Queues a change; the order of calls is the order rows are written in. Await the
    /// returned receiver (outside any lock) to know it is committed.
    pub fn submit(&self, row: RunRow) -> oneshot::Receiver<Result<(), String>> {
        let (ack, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, ack))) = self.tx.send((row, ack)) {
            let _ = ack.send(Err(RunsError::Stopped.to_string()));
        }
        rx
    }
}

/// Waits for a submitted change's commit.
pub async fn wait(rx: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
    rx.await
        .unwrap_or_else(|_| Err(RunsError::Stopped.to_string()))
}

/// Rewrites the rows of the given runs in one commit (the last change of a run wins).
async fn write(
    w: &Warehouse,
    table: Option<deltalake::DeltaTable>,
    rows: &[RunRow],
) -> Result<deltalake::DeltaTable, RunsError> {
    let mut latest: BTreeMap<&str, &RunRow> = BTreeMap::new();
    for r in rows {
        latest.insert(&r.run_id, r);
    }
    let rows: Vec<&RunRow> = latest.into_values().collect();
    let def = &EXECUTOR_RUNS;
    let batch = BatchBuilder::new(def)
        .i64s("id", rows.iter().map(|r| Some(r.id)))
        .strings("run_id", rows.iter().map(|r| Some(r.run_id.as_str())))
        .strings(
            "executor_version",
            rows.iter().map(|_| Some(crate::VERSION)),
        )
        .strings(
            "workflow_id",
            rows.iter().map(|r| Some(r.workflow_id.as_str())),
        )
        .strings("source_id", rows.iter().map(|r| r.source_id.as_deref()))
        .strings("run_mode", rows.iter().map(|_| Some("api")))
        .strings("status", rows.iter().map(|r| Some(r.status.as_str())))
        .strings("error_message", rows.iter().map(|r| r.error.as_deref()))
        .timestamps("started_at", rows.iter().map(|r| r.started_at))
        .timestamps("finished_at", rows.iter().map(|r| r.finished_at))
        .build()?;
    let list = |f: &dyn Fn(&RunRow) -> &str| {
        let mut v: Vec<String> = rows.iter().map(|r| sql_literal(f(r))).collect();
        v.sort();
        v.dedup();
        v.join(", ")
    };
    // The workflow ids prune partitions; the run ids pick the rows.
    let predicate = format!(
        "workflow_id IN ({}) AND run_id IN ({})",
        list(&|r| &r.workflow_id),
        list(&|r| &r.run_id)
    );
    let table = match table {
        Some(t) => t,
        None => w.ensure_valid(def).await?,
    };
    let tag = rows.first().map(|r| r.run_id.as_str()).unwrap_or_default();
    Ok(w.replace(def, table, batch, predicate, tag).await?)
}

/// Rows of API jobs selected by `filter` (SQL over `executor_runs`), newest first.
pub async fn read(w: &Warehouse, filter: &str) -> Result<Vec<RunRow>, RunsError> {
    let rows = w
        .select(&rows_query(filter, ""))
        .await
        .map_err(|e| read_error(&e))?;
    Ok(rows.iter().map(row_of).collect())
}

/// Page `page` (from 1) of `size` rows of the API jobs `filter` selects, newest first, and
/// how many there are in all; both from one snapshot of `executor_runs`.
pub async fn page(
    w: &Warehouse,
    filter: &str,
    page: usize,
    size: usize,
) -> Result<(usize, Vec<RunRow>), RunsError> {
    let session = w
        .session_for(DEFAULT_CATALOG, &[&EXECUTOR_RUNS])
        .await
        .map_err(|e| read_error(&e))?;
    let rows = |sql: String| {
        let session = &session;
        async move {
            let batches = session
                .sql(&sql)
                .await
                .map_err(|e| read_error(&e))?
                .collect()
                .await
                .map_err(|e| read_error(&e))?;
            to_json_rows(&batches).map_err(|e| read_error(&e))
        }
    };
    let total = rows(format!(
        "SELECT COUNT(*) AS n FROM executor_runs WHERE run_mode = 'api' AND ({filter})"
    ))
    .await?
    .first()
    .and_then(|r| r.get("n"))
    .and_then(Value::as_u64)
    .unwrap_or(0) as usize;
    let offset = page.saturating_sub(1).saturating_mul(size);
    if offset >= total {
        // Past the end (this also keeps an absurd page number out of the SQL).
        return Ok((total, Vec::new()));
    }
    let page = rows(rows_query(
        filter,
        &format!(" LIMIT {size} OFFSET {offset}"),
    ))
    .await?;
    Ok((total, page.iter().map(row_of).collect()))
}

fn rows_query(filter: &str, limit: &str) -> String {
    format!(
        "SELECT id, run_id, workflow_id, source_id, status, error_message, \
         CAST(started_at AS VARCHAR) AS started_at, CAST(finished_at AS VARCHAR) AS finished_at \
         FROM executor_runs WHERE run_mode = 'api' AND ({filter}) ORDER BY run_id DESC{limit}"
    )
}

fn read_error(e: &dyn std::fmt::Display) -> RunsError {
    RunsError::Read(crate::redact::text(&e.to_string()))
}

/// The SQL filter for one job.
pub fn by_id(job_id: &str) -> String {
    format!("run_id = {}", sql_literal(job_id))
}

/// What the sources a job wrote say, for a job this server no longer holds in memory.
pub async fn written_sources(w: &Warehouse, job_id: &str) -> Result<Vec<Value>, RunsError> {
    let rows = select(
        w,
        &format!(
            "SELECT s.source_id, s.source_path, s.source_type, s.files_found, s.total_size_bytes, \
             COUNT(t.table_name) AS tables_found, \
             COALESCE(SUM(CASE WHEN t.status = 'failed' THEN 1 ELSE 0 END), 0) AS tables_failed \
             FROM sources s LEFT JOIN tables t ON t.run_id = s.run_id AND t.workflow_id = s.workflow_id \
               AND (t.file_path = s.source_path OR starts_with(t.file_path, concat(s.source_path, '/'))) \
             WHERE s.run_id = {id} \
             GROUP BY s.source_id, s.source_path, s.source_type, s.files_found, s.total_size_bytes \
             ORDER BY s.source_path",
            id = sql_literal(job_id)
        ),
    )
    .await?;
    Ok(rows.into_iter().map(Value::Object).collect())
}

async fn select(w: &Warehouse, sql: &str) -> Result<Vec<Map<String, Value>>, RunsError> {
    w.select(sql).await.map_err(|e| read_error(&e))
}

fn row_of(m: &Map<String, Value>) -> RunRow {
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let t = |k: &str| {
        s(k).and_then(|v| {
            if let Ok(t) = DateTime::parse_from_rfc3339(&v) {
                return Some(t.with_timezone(&Utc));
            }
            chrono::NaiveDateTime::parse_from_str(&v, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M:%S%.f"))
                .ok()
                .map(|n| n.and_utc())
        })
    };
    RunRow {
        id: m.get("id").and_then(Value::as_i64).unwrap_or(0),
        run_id: s("run_id").unwrap_or_default(),
        workflow_id: s("workflow_id").unwrap_or_default(),
        source_id: s("source_id"),
        // Rows are written by the journal only; one it cannot read is shown as failed.
        status: s("status")
            .and_then(|st| JobState::parse(&st))
            .unwrap_or(JobState::FAILED),
        error: s("error_message"),
        started_at: t("started_at"),
        finished_at: t("finished_at"),
    }
}

/// Marks the API jobs a previous server left queued or running as failed (interrupted):
/// nothing is running them any more. Returns their ids.
pub async fn recover(w: &Warehouse, journal: &Journal) -> Result<Vec<String>, RunsError> {
    let left = read(
        w,
        &format!(
            "status IN ({}, {})",
            sql_literal(JobState::Created.as_str()),
            sql_literal(JobState::Running.as_str())
        ),
    )
    .await?;
    let now = Utc::now();
    let mut ids = Vec::new();
    let mut acks = Vec::new();
    for mut r in left {
        tracing::warn!(job_id = %r.run_id, status = %r.status, "{INTERRUPTED}");
        r.status = JobState::FAILED;
        r.error = Some(INTERRUPTED.into());
        r.finished_at = Some(now);
        ids.push(r.run_id.clone());
        acks.push(journal.submit(r));
    }
    for a in acks {
        wait(a).await.map_err(RunsError::Read)?;
    }
    Ok(ids)
}

/// A new row id for a job's row.
pub fn new_row_id() -> i64 {
    warehouse::new_ids(1)[0].unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_sort_by_creation_and_carry_their_time() {
        let a = new_job_id();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let b = new_job_id();
        assert!(a < b, "{a} !< {b}");
        assert_eq!(a.len(), 4 + 32);
        let t = created_at_of(&a).unwrap();
        assert!((Utc::now() - t).num_seconds().abs() < 5);
        assert_eq!(created_at_of("job_123"), None);
        assert_eq!(created_at_of("x"), None);
    }
}
