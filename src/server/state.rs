//! The server's state: jobs in memory (a state is shown once the journal committed it),
//! admission (bounded running and queued jobs), the scheduler that runs them on the CLI's
//! code, cancellation, and the drain on shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use utoipa::ToSchema;

use super::journal::{self, JobState, Journal, RunRow};
use super::{ServerConfig, ServerError};
use crate::discover::Filters;
use crate::job::payload::{self};
use crate::job::{self, CancelFlag, JobOptions, RunMode};
use crate::warehouse::Warehouse;

/// A job as the API shows it.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct JobRecord {
    pub job_id: String,
    pub workflow_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// created, running, succeeded, partial, failed, cancelled
    #[schema(value_type = String)]
    pub status: JobState,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set on a running job whose cancellation was asked for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// The job's report (per-source results) while this server holds it; after a restart,
    /// the sources it wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The size of `result` as JSON, for the bound on what finished jobs keep in memory.
    #[serde(skip)]
    #[schema(ignore)]
    pub result_bytes: usize,
}

impl JobRecord {
    pub(super) fn of_row(r: &RunRow) -> Self {
        let mut rec = Self {
            job_id: r.run_id.clone(),
            workflow_id: r.workflow_id.clone(),
            source_id: r.source_id.clone(),
            status: r.status,
            created_at: journal::created_at_of(&r.run_id)
                .or(r.started_at)
                .unwrap_or_default(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: None,
            error: r.error.clone(),
            cancel_requested: false,
            result: None,
            result_bytes: 0,
        };
        rec.set_duration();
        rec
    }

    pub(super) fn set_duration(&mut self) {
        self.duration_ms = match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) => Some((f - s).num_milliseconds()),
            _ => None,
        };
    }

    pub(super) fn without_result(&self) -> Self {
        Self {
            result: None,
            result_bytes: 0,
            ..self.clone()
        }
    }
}

pub(super) struct Job {
    /// What the API shows: the last state committed to `executor_runs` (a state is shown
    /// only once it is durable, so a caller who saw it finds it in the table).
    pub(super) record: JobRecord,
    /// The newest change, queued for commit; decisions (cancel, start) look at this.
    pub(super) next: Option<JobRecord>,
    /// Changes queued so far; the commit of the last one makes `next` visible.
    pub(super) queued: u64,
    /// The job's `executor_runs` row id.
    pub(super) row_id: i64,
    pub(super) cancel: CancelFlag,
}

impl Job {
    /// The job's state including changes not yet committed.
    pub(super) fn current(&self) -> &JobRecord {
        self.next.as_ref().unwrap_or(&self.record)
    }

    pub(super) fn row(&self) -> RunRow {
        let r = self.current();
        RunRow {
            id: self.row_id,
            run_id: r.job_id.clone(),
            workflow_id: r.workflow_id.clone(),
            source_id: r.source_id.clone(),
            status: r.status,
            error: r.error.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// A change queued for commit: which job, its number, and the commit's answer.
pub(super) struct Pending {
    pub(super) id: String,
    pub(super) seq: u64,
    pub(super) ack: tokio::sync::oneshot::Receiver<Result<(), String>>,
}

/// Now, to the microsecond Delta keeps: a job read back from the table after a restart shows
/// the same times as it did from memory.
pub(super) fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// Finished jobs kept in memory (with their full reports); older ones are read from the table.
pub(super) const KEPT_IN_MEMORY: usize = 10_000;

/// What the finished jobs kept in memory may hold in reports, in bytes (as JSON).
pub(super) const KEPT_BYTES: usize = 64 * 1024 * 1024;

pub(super) struct Inner {
    pub(super) cfg: ServerConfig,
    pub(super) warehouse: Warehouse,
    pub(super) journal: Journal,
    pub(super) jobs: Mutex<BTreeMap<String, Job>>,
    pub(super) running: Semaphore,
    /// Jobs created and not yet in a final state (running + waiting).
    pub(super) outstanding: AtomicUsize,
    pub(super) accepting: AtomicBool,
    pub(super) tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(super) started: AtomicU64,
    pub(super) finished: AtomicU64,
    pub(super) recovered: usize,
}

#[derive(Clone)]
pub struct AppState(pub(super) Arc<Inner>);

impl AppState {
    /// Readies the warehouse (a fresh one gets the schema; one behind is refused), starts the
    /// run journal and marks jobs a previous server left unfinished as interrupted.
    pub async fn start(cfg: ServerConfig) -> Result<Self, ServerError> {
        let warehouse = Warehouse::new(cfg.warehouse.clone());
        crate::migrate::ensure_current(&warehouse, cfg.migrate)
            .await
            .map_err(|e| ServerError::Warehouse {
                warehouse: warehouse.root.display.clone(),
                reason: e.to_string(),
            })?;
        let journal = Journal::start(warehouse.clone());
        let recovered = journal::recover(&warehouse, &journal)
            .await
            .map_err(ServerError::Recover)?;
        if !recovered.is_empty() {
            tracing::warn!(
                jobs = recovered.len(),
                "jobs left queued or running by a previous server were marked failed (interrupted)"
            );
        }
        Ok(Self(Arc::new(Inner {
            running: Semaphore::new(cfg.max_concurrent_jobs.max(1)),
            cfg,
            warehouse,
            journal,
            jobs: Mutex::new(BTreeMap::new()),
            outstanding: AtomicUsize::new(0),
            accepting: AtomicBool::new(true),
            tasks: std::sync::Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            recovered: recovered.len(),
        })))
    }

    /// Changes a job that is not final yet and queues its row. Called under the jobs lock,
    /// so rows are queued in the order the changes happen; the change becomes visible when
    /// [`AppState::committed`] sees its commit. A change into a final state frees the job's
    /// place in the queue.
    pub(super) fn change(
        &self,
        jobs: &mut BTreeMap<String, Job>,
        id: &str,
        f: impl FnOnce(&mut JobRecord),
    ) -> Option<Pending> {
        let job = jobs.get_mut(id)?;
        if job.current().status.is_final() {
            return None;
        }
        let mut next = job.current().clone();
        f(&mut next);
        next.set_duration();
        if next.status.is_final() {
            self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
            self.0.finished.fetch_add(1, Ordering::SeqCst);
        }
        job.next = Some(next);
        job.queued += 1;
        Some(Pending {
            id: id.to_string(),
            seq: job.queued,
            ack: self.0.journal.submit(job.row()),
        })
    }

    /// Waits for a change's commit and shows it (unless a later change is queued, whose
    /// commit will). A failed commit is logged and the change shown anyway: the job goes
    /// on, and a restart would mark it interrupted.
    /// Waits for a state change to be recorded; `false`: it could not be.
    pub(super) async fn committed(&self, p: Option<Pending>) -> bool {
        let Some(p) = p else { return false };
        let recorded = match journal::wait(p.ack).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(job_id = %p.id, "the job's state could not be recorded: {e}");
                false
            }
        };
        let mut jobs = self.0.jobs.lock().await;
        if let Some(job) = jobs.get_mut(&p.id)
            && job.queued == p.seq
            && let Some(next) = job.next.take()
        {
            job.record = next;
        }
        recorded
    }

    /// Records a job's final state; `false`: it could not be recorded.
    pub(super) async fn set_final(
        &self,
        id: &str,
        status: JobState,
        error: Option<String>,
        result: Option<Value>,
    ) -> bool {
        let p = {
            let mut jobs = self.0.jobs.lock().await;
            let result_bytes = result
                .as_ref()
                .and_then(|v| serde_json::to_vec(v).ok())
                .map_or(0, |b| b.len());
            self.change(&mut jobs, id, |r| {
                r.status = status;
                r.error = error;
                r.result = result;
                r.result_bytes = result_bytes;
                r.finished_at = Some(now());
            })
        };
        self.committed(p).await
    }

    /// Stops taking jobs (creates answer 503 from now on).
    pub fn stop_accepting(&self) {
        self.0.accepting.store(false, Ordering::SeqCst);
    }

    /// The shutdown: no new jobs; queued jobs are recorded as interrupted; running jobs get
    /// `timeout` to finish, then are asked to stop and recorded as interrupted. Returns when
    /// every state is committed.
    pub async fn drain(&self, timeout: Duration) {
        self.stop_accepting();
        self.0.running.close();
        let handles = std::mem::take(&mut *self.0.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let running = self.0.outstanding.load(Ordering::SeqCst);
        tracing::info!(
            jobs = running,
            ?timeout,
            "draining: waiting for running jobs"
        );
        if tokio::time::timeout(timeout, futures::future::join_all(handles))
            .await
            .is_err()
        {
            let acks: Vec<_> = {
                let mut jobs = self.0.jobs.lock().await;
                let ids: Vec<String> = jobs
                    .iter()
                    .filter(|(_, j)| !j.current().status.is_final())
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter()
                    .filter_map(|id| {
                        if let Some(j) = jobs.get(&id) {
                            j.cancel.cancel();
                        }
                        tracing::warn!(job_id = %id, "recorded as interrupted");
                        self.change(&mut jobs, &id, |r| {
                            r.error = Some(if r.status == JobState::Created {
                                "interrupted: the server shut down before the job started".into()
                            } else {
                                format!(
                                    "interrupted: still running when the server shut down ({}s after the shutdown began)",
                                    timeout.as_secs()
                                )
                            });
                            r.status = JobState::FAILED;
                            r.finished_at = Some(now());
                        })
                    })
                    .collect()
            };
            for p in acks {
                self.committed(Some(p)).await;
            }
        }
        tracing::info!("drained");
    }
}

/// Drops the oldest finished jobs from memory beyond [`KEPT_IN_MEMORY`] jobs or
/// [`KEPT_BYTES`] of reports; they stay readable from `executor_runs`.
pub(super) fn evict(jobs: &mut BTreeMap<String, Job>) {
    let mut count = jobs.len();
    let mut bytes: usize = jobs.values().map(|j| j.record.result_bytes).sum();
    if count <= KEPT_IN_MEMORY && bytes <= KEPT_BYTES {
        return;
    }
    // Ids sort by creation time: the oldest finished jobs go first.
    let mut old = Vec::new();
    for (id, j) in jobs.iter() {
        if count <= KEPT_IN_MEMORY && bytes <= KEPT_BYTES {
            break;
        }
        if j.next.is_none() && j.record.status.is_final() {
            old.push(id.clone());
            count -= 1;
            bytes -= j.record.result_bytes;
        }
    }
    for id in old {
        jobs.remove(&id);
    }
}

/// One job's life: wait for a place, run, record the outcome.
pub(super) async fn run_job(s: AppState, id: String, spec: payload::JobSpec, cancel: CancelFlag) {
    let Ok(_permit) = s.0.running.acquire().await else {
        // Closed: the server is shutting down before this job got a place.
        s.set_final(
            &id,
            JobState::FAILED,
            Some("interrupted: the server shut down before the job started".into()),
            None,
        )
        .await;
        return;
    };
    let ack = {
        let mut jobs = s.0.jobs.lock().await;
        match jobs.get(&id) {
            Some(j) if j.current().status == JobState::Created => {}
            _ => return, // cancelled while waiting
        }
        s.change(&mut jobs, &id, |r| {
            r.status = JobState::Running;
            r.started_at = Some(now());
        })
    };
    s.0.started.fetch_add(1, Ordering::SeqCst);
    s.committed(ack).await;
    let opts = JobOptions {
        spec,
        run_mode: RunMode::Api,
        warehouse: Some(s.0.cfg.warehouse.clone()),
        filters: Filters::default()
            .with_max_files(s.0.cfg.max_files)
            .with_contained(true),
        source_concurrency: 4,
        table_concurrency: 2,
        io_concurrency: crate::job::DEFAULT_IO_CONCURRENCY,
        progress: false,
        migrate: s.0.cfg.migrate,
        run_id: Some(id.clone()),
        record_run: false,
        cancel,
        limits: s.0.cfg.limits.clone(),
    };
    // The job's future borrows across awaits in ways `tokio::spawn`'s Send check cannot
    // follow; it runs on a blocking thread driving the same runtime instead.
    let rt = tokio::runtime::Handle::current();
    let Ok(report) = tokio::task::spawn_blocking(move || rt.block_on(job::run(opts))).await else {
        s.set_final(&id, JobState::FAILED, Some("the job crashed".into()), None)
            .await;
        return;
    };
    let result = serde_json::to_value(&report).ok();
    let recorded = s
        .set_final(
            &id,
            JobState::Finished(report.status),
            report.error.clone(),
            result,
        )
        .await;
    // The final state is the run's commit point (see `job::settle`).
    if report.written {
        if recorded {
            job::settle(&s.0.warehouse, &report).await;
        } else {
            job::retract(&s.0.warehouse, &report).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::RunStatus;

    fn job(id: &str, status: JobState, result_bytes: usize) -> (String, Job) {
        let record = JobRecord {
            job_id: id.into(),
            workflow_id: "w".into(),
            source_id: None,
            status,
            created_at: now(),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: None,
            cancel_requested: false,
            result: None,
            result_bytes,
        };
        let j = Job {
            record,
            next: None,
            queued: 0,
            row_id: 0,
            cancel: CancelFlag::default(),
        };
        (id.to_string(), j)
    }

    #[test]
    fn finished_jobs_in_memory_are_bounded_by_bytes_oldest_first() {
        let mb = 1024 * 1024;
        let mut jobs: BTreeMap<String, Job> = [
            job("job_1", JobState::FAILED, 30 * mb),
            job("job_2", JobState::Running, 0),
            job("job_3", JobState::Finished(RunStatus::Succeeded), 30 * mb),
            job("job_4", JobState::Finished(RunStatus::Succeeded), 30 * mb),
        ]
        .into_iter()
        .collect();
        evict(&mut jobs);
        // 90 MB of reports: the oldest finished one goes; the running one always stays.
        assert_eq!(
            jobs.keys().map(String::as_str).collect::<Vec<_>>(),
            ["job_2", "job_3", "job_4"]
        );
        evict(&mut jobs);
        assert_eq!(jobs.len(), 3, "within both bounds now");
    }
}
