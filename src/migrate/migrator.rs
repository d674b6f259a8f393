//! The migrator: status, plan and apply (one step at a time, as delta-rs operations, each
//! recorded in the history), validate and repair, serialised by the migration lock
//! (`lock.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use deltalake::kernel::StructField;
use deltalake::operations::optimize::OptimizeType;
use deltalake::protocol::SaveMode;

use super::MigrateError;
use super::history::*;
use super::lock::{DEFAULT_LEASE, Held, MigrationLock};
use super::model::*;
use super::parse::*;
use crate::warehouse::{self, SCHEMA_HISTORY, SCHEMA_NAME, SqlType, Warehouse};

/// The lock object serialising `apply` runs, beside the tables.
const LOCK_NAME: &str = "_migrate.lock";

/// How long `apply` waits for another run's lock unless told otherwise
/// (`NUVYN_MIGRATE_LOCK_WAIT_SECS`).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(300);

/// Further attempts at a failed (idempotent) migration step.
const STEP_RETRIES: u32 = 2;

/// Runs migrations against one warehouse.
pub struct Migrator {
    pub w: Warehouse,
    pub migrations: Vec<Migration>,
    /// How long `apply` waits for another run's lock.
    pub lock_wait: Duration,
    /// How long a lock stays live without renewal.
    pub lock_lease: Duration,
}

impl Migrator {
    pub fn new(w: Warehouse) -> Self {
        Self {
            w,
            migrations: embedded(),
            lock_wait: DEFAULT_LOCK_WAIT,
            lock_lease: DEFAULT_LEASE,
        }
    }

    pub fn with_lock_wait(mut self, lock_wait: Duration) -> Self {
        self.lock_wait = lock_wait;
        self
    }

    /// The lock settings of a job or command.
    pub fn with_policy(mut self, policy: super::MigratePolicy) -> Self {
        self.lock_wait = policy.lock_wait;
        self.lock_lease = policy.lock_lease;
        self
    }

    pub fn with_migrations(mut self, migrations: Vec<Migration>) -> Self {
        self.migrations = migrations;
        self
    }

    pub(super) fn latest(&self) -> u32 {
        self.migrations.last().map(|m| m.version).unwrap_or(0)
    }

    /// Every history row, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryRow>, MigrateError> {
        let rows = self
            .w
            .select(&format!(
                "SELECT * FROM {} ORDER BY applied_at, version, success NULLS FIRST",
                SCHEMA_HISTORY.name
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                serde_json::from_value(serde_json::Value::Object(r)).map_err(MigrateError::other)
            })
            .collect()
    }

    /// The latest history row of each version.
    pub(super) fn last_rows(history: &[HistoryRow]) -> BTreeMap<u32, HistoryRow> {
        let mut out = BTreeMap::new();
        for r in history {
            out.insert(r.version as u32, r.clone());
        }
        out
    }

    pub async fn status(&self) -> Result<Status, MigrateError> {
        let history = self.history().await?;
        let last = Self::last_rows(&history);
        let mut migrations = Vec::new();
        for m in &self.migrations {
            let r = last.get(&m.version);
            let state = match r.map(|r| r.success) {
                None => State::Pending,
                Some(None) => State::Interrupted,
                Some(Some(false)) => State::Failed,
                Some(Some(true)) if !m.matches(r.and_then(|r| r.checksum.as_deref())) => {
                    State::ChecksumMismatch
                }
                Some(Some(true)) => State::Applied,
            };
            migrations.push(MigrationStatus {
                version: m.version,
                description: m.description.clone(),
                script: m.script.clone(),
                state,
                applied_at: r.and_then(|r| r.applied_at.clone()),
                error: r.and_then(|r| r.error_message.clone()),
                table_versions: r
                    .and_then(|r| r.table_versions.as_deref())
                    .and_then(|t| serde_json::from_str(t).ok()),
            });
        }
        Ok(Status {
            warehouse: self.w.root.display.clone(),
            schema_version: Self::schema_version(&last),
            binary_version: self.latest(),
            migrations,
        })
    }

    pub(super) fn schema_version(last: &BTreeMap<u32, HistoryRow>) -> u32 {
        last.iter()
            .filter(|(_, r)| r.success == Some(true))
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0)
    }

    /// Problems that make `apply` refuse: edited applied files, a warehouse newer than the
    /// files.
    pub async fn validate(&self) -> Result<Status, MigrateError> {
        let status = self.status().await?;
        let last = Self::last_rows(&self.history().await?);
        if let Some(max) = last.keys().max()
            && *max > self.latest()
        {
            return Err(MigrateError::Ahead {
                warehouse: *max,
                binary: self.latest(),
            });
        }
        for m in &self.migrations {
            if let Some(r) = last.get(&m.version)
                && r.success == Some(true)
                && !m.matches(r.checksum.as_deref())
            {
                return Err(MigrateError::Checksum {
                    version: m.version,
                    script: m.script.clone(),
                    applied: r.checksum.clone().unwrap_or_default(),
                    file: m.checksum.clone(),
                });
            }
        }
        Ok(status)
    }

    /// The migrations `apply --target` would run, each checked against a model of the
    /// warehouse's tables; an error here means nothing would run.
    pub async fn plan(&self, target: Option<u32>) -> Result<Vec<Migration>, MigrateError> {
        self.validate().await?;
        let last = Self::last_rows(&self.history().await?);
        let target = target.unwrap_or(self.latest());
        if target > self.latest() {
            return Err(MigrateError::Other(format!(
                "--target V{target} does not exist (the last migration is V{})",
                self.latest()
            )));
        }
        let pending: Vec<Migration> = self
            .migrations
            .iter()
            .filter(|m| m.version <= target)
            .filter(|m| last.get(&m.version).and_then(|r| r.success) != Some(true))
            .cloned()
            .collect();
        // The model starts from the tables as they are.
        let mut names: BTreeSet<String> = BTreeSet::new();
        for m in &pending {
            for s in &m.steps {
                names.insert(s.op.table().to_string());
            }
        }
        let mut model = BTreeMap::new();
        for n in names {
            if let Some(t) = self.w.open_named(&n).await? {
                // Refused before any step runs: nothing half-migrated.
                self.w.ensure_writable(&n, &t)?;
                let mt = ModelTable::of_table(&t)
                    .map_err(|e| MigrateError::Other(format!("table {n}: {e}")))?;
                model.insert(n, mt);
            } else {
                self.w.refuse_managed_layout(&n).await?;
            }
        }
        for m in &pending {
            for s in &m.steps {
                check_step(&mut model, m, s).await?;
            }
        }
        Ok(pending)
    }

    fn lock_path(&self) -> object_store::path::Path {
        self.w.root.prefix.clone().join(SCHEMA_NAME).join(LOCK_NAME)
    }

    fn lock(&self) -> MigrationLock {
        MigrationLock::new(&self.w.root, self.lock_path(), self.lock_lease)
    }

    async fn take_lock(&self) -> Result<Held, MigrateError> {
        self.w.root.ensure_dir().map_err(MigrateError::other)?;
        if let Some(d) = &self.w.root.local_dir {
            std::fs::create_dir_all(d.join(SCHEMA_NAME)).map_err(MigrateError::other)?;
        }
        let owner = format!(
            "{}@{} pid {}",
            crate::VERSION,
            hostname(),
            std::process::id()
        );
        self.lock().acquire(&owner, self.lock_wait).await
    }

    /// Waits (up to the lock wait) while another live run holds the migration lock; true
    /// when there was one to wait for. A job that finds a migration in progress waits for it
    /// instead of calling it unfinished; a dead run's lock holds no one up.
    pub(super) async fn wait_while_locked(&self) -> Result<bool, MigrateError> {
        self.lock().wait_while_held(self.lock_wait).await
    }

    async fn record(&self, rows: Vec<HistoryRow>) -> Result<(), MigrateError> {
        let (table, _) = self.w.ensure(&SCHEMA_HISTORY).await?;
        let n = rows.len();
        let b = warehouse::BatchBuilder::new(&SCHEMA_HISTORY)
            .i32s("version", rows.iter().map(|r| Some(r.version)))
            .strings("description", rows.iter().map(|r| r.description.clone()))
            .strings("script", rows.iter().map(|r| r.script.clone()))
            .strings("checksum", rows.iter().map(|r| r.checksum.clone()))
            .timestamps("applied_at", (0..n).map(|_| Some(chrono::Utc::now())))
            .i64s("execution_ms", rows.iter().map(|r| r.execution_ms))
            .bools("success", rows.iter().map(|r| r.success))
            .i32s("steps_done", rows.iter().map(|r| r.steps_done))
            .strings(
                "table_versions",
                rows.iter().map(|r| r.table_versions.clone()),
            )
            .strings(
                "error_message",
                rows.iter().map(|r| r.error_message.clone()),
            )
            .strings(
                "executor_version",
                (0..n).map(|_| Some(crate::VERSION.to_string())),
            )
            .build()?;
        self.w.append(&SCHEMA_HISTORY, table, b, "migrate").await?;
        Ok(())
    }

    /// Applies pending migrations up to `target` (default: all), in order. Re-running is a
    /// no-op; a failed or interrupted migration is resumed from its first step (every step
    /// is idempotent).
    pub async fn apply(
        &self,
        target: Option<u32>,
        dry_run: bool,
    ) -> Result<ApplyReport, MigrateError> {
        let from = Self::schema_version(&Self::last_rows(&self.history().await?));
        let mut report = ApplyReport {
            warehouse: self.w.root.display.clone(),
            dry_run,
            from_version: from,
            to_version: from,
            applied: Vec::new(),
            planned: Vec::new(),
        };
        let pending = self.plan(target).await?;
        if dry_run {
            report.planned = pending;
            return Ok(report);
        }
        if pending.is_empty() {
            // Up to date: no lock taken, so jobs on a current warehouse never wait.
            return Ok(report);
        }
        let held = self.take_lock().await?;
        let result = self.apply_locked(target, &mut report).await;
        if result.is_ok() && !report.applied.is_empty() {
            self.compact_history().await;
        }
        held.release().await;
        result.map(|()| report)
    }

    /// Compacts `_schema_history` (one small file per step) after migrations ran, under the
    /// lock: every job reads it whole to know the warehouse is current, and on a remote
    /// warehouse each file is three round trips. A failure changes nothing but that cost.
    async fn compact_history(&self) {
        let opts = crate::warehouse::MaintainOptions {
            optimize: true,
            vacuum_hours: None,
            history_days: None,
            dry_run: false,
        };
        if let Err(e) = self.w.maintain(&SCHEMA_HISTORY, &opts).await {
            tracing::warn!("compacting the migration history failed ({e}); jobs read it as it is");
        }
    }

    async fn apply_locked(
        &self,
        target: Option<u32>,
        report: &mut ApplyReport,
    ) -> Result<(), MigrateError> {
        // Planned under the lock: another run may have applied everything meanwhile.
        let pending = self.plan(target).await?;
        let last = Self::last_rows(&self.history().await?);
        for m in pending {
            let resumed = last.contains_key(&m.version);
            if resumed {
                tracing::warn!(
                    version = m.version,
                    "resuming {} (its last run did not finish)",
                    m.script
                );
            }
            tracing::info!(version = m.version, "applying {}", m.script);
            let started = Instant::now();
            let row = |success: Option<bool>,
                       done: usize,
                       versions: &BTreeMap<String, Option<u64>>,
                       error: Option<String>| HistoryRow {
                version: m.version as i32,
                description: Some(m.description.clone()),
                script: Some(m.script.clone()),
                checksum: Some(m.checksum.clone()),
                applied_at: None,
                execution_ms: Some(started.elapsed().as_millis() as i64),
                success,
                steps_done: Some(done as i32),
                table_versions: Some(serde_json::to_string(versions).unwrap_or_default()),
                error_message: error,
                executor_version: None,
            };
            let mut versions: BTreeMap<String, Option<u64>> = BTreeMap::new();
            self.record(vec![row(None, 0, &versions, None)]).await?;
            let mut skipped = 0;
            for (i, step) in m.steps.iter().enumerate() {
                // Every step is idempotent, so a step that failed (a dropped connection
                // during a commit leaves no way to tell whether it landed) is run again
                // before the migration is given up.
                let mut outcome = self.run_step(step).await;
                for attempt in 1..=STEP_RETRIES {
                    let Err(reason) = &outcome else { break };
                    tracing::warn!(
                        script = %m.script,
                        line = step.line,
                        attempt,
                        "migration step failed ({reason}); running it again"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64))
                        .await;
                    outcome = self.run_step(step).await;
                }
                match outcome {
                    Ok((ran, version)) => {
                        if !ran {
                            skipped += 1;
                        }
                        versions.insert(step.op.table().to_string(), version);
                    }
                    Err(reason) => {
                        let err = MigrateError::Failed {
                            script: m.script.clone(),
                            line: step.line,
                            statement: step.sql.clone(),
                            reason,
                        };
                        self.record(vec![row(Some(false), i, &versions, Some(err.to_string()))])
                            .await?;
                        return Err(err);
                    }
                }
            }
            self.record(vec![row(Some(true), m.steps.len(), &versions, None)])
                .await?;
            report.to_version = m.version;
            report.applied.push(Applied {
                version: m.version,
                script: m.script.clone(),
                execution_ms: started.elapsed().as_millis() as u64,
                steps: m.steps.len(),
                steps_skipped: skipped,
                table_versions: versions,
                resumed,
            });
        }
        Ok(())
    }

    /// Runs one step; `Ok((false, _))` when it had nothing to do. Returns the table's Delta
    /// version afterwards.
    async fn run_step(&self, step: &Step) -> Result<(bool, Option<u64>), String> {
        let table = step.op.table();
        let open = || async {
            self.w
                .open_named(table)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("table {table} does not exist"))
        };
        let props =
            || warehouse::base_commit_properties().with_max_retries(warehouse::COMMIT_RETRIES);
        match &step.op {
            Op::Create {
                columns,
                partition_by,
                ..
            } => {
                if let Some(t) = self.w.open_named(table).await.map_err(|e| e.to_string())? {
                    return Ok((false, t.version()));
                }
                self.w
                    .location_of(table)
                    .ensure_dir()
                    .map_err(|e| e.to_string())?;
                let fields: Vec<StructField> = columns
                    .iter()
                    .map(|c| StructField::new(c.name.clone(), c.ty.delta(), c.nullable))
                    .collect();
                let t = self
                    .w
                    .builder_of(table)
                    .and_then(|b| b.build().map_err(|e| self.w.err_named(table, e)))
                    .map_err(|e| e.to_string())?;
                let created = t
                    .create()
                    .with_table_name(table)
                    .with_columns(fields)
                    .with_partition_columns(partition_by.clone())
                    .with_save_mode(SaveMode::Ignore)
                    .with_configuration_property(
                        deltalake::TableProperty::EnableExpiredLogCleanup,
                        Some("false"),
                    )
                    .with_commit_properties(warehouse::base_commit_properties().with_max_retries(0))
                    .await;
                match created {
                    Ok(t) => Ok((true, t.version())),
                    Err(e) => match self.w.open_named(table).await.map_err(|e| e.to_string())? {
                        Some(t) => Ok((false, t.version())),
                        None => Err(e.to_string()),
                    },
                }
            }
            Op::AddColumns { columns, .. } => {
                let t = open().await?;
                let model = ModelTable::of_table(&t)?;
                let new: Vec<StructField> = columns
                    .iter()
                    .filter(|c| model.col(&c.name).is_none())
                    .map(|c| StructField::new(c.name.clone(), c.ty.delta(), true))
                    .collect();
                if new.is_empty() {
                    return Ok((false, t.version()));
                }
                let t = t
                    .add_columns()
                    .with_fields(new)
                    .with_commit_properties(props())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((true, t.version()))
            }
            Op::SetProperties { properties, .. } => {
                let t = open().await?;
                let map: std::collections::HashMap<String, String> =
                    properties.iter().cloned().collect();
                let t = t
                    .set_tbl_properties()
                    .with_properties(map)
                    .with_commit_properties(props())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((true, t.version()))
            }
            Op::Update { set, predicate, .. } => {
                let t = open().await?;
                let before = t.version();
                let mut b = t.update().with_commit_properties(props());
                if let Some(p) = predicate {
                    b = b.with_predicate(p.as_str());
                }
                for (c, e) in set {
                    b = b.with_update(c.as_str(), e.as_str());
                }
                let (t, metrics) = b.await.map_err(|e| e.to_string())?;
                Ok((
                    metrics.num_updated_rows > 0 || t.version() != before,
                    t.version(),
                ))
            }
            Op::Delete { predicate, .. } => {
                let t = open().await?;
                let before = t.version();
                let mut b = t.delete().with_commit_properties(props());
                if let Some(p) = predicate {
                    b = b.with_predicate(p.as_str());
                }
                let (t, _) = b.await.map_err(|e| e.to_string())?;
                Ok((t.version() != before, t.version()))
            }
            Op::Optimize { zorder, .. } => {
                let t = open().await?;
                let before = t.version();
                let kind = if zorder.is_empty() {
                    OptimizeType::Compact
                } else {
                    OptimizeType::ZOrder(zorder.clone())
                };
                let (t, _) = t
                    .optimize()
                    .with_type(kind)
                    .with_commit_properties(props())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((t.version() != before, t.version()))
            }
            Op::Rewrite {
                partition_by,
                query,
                ..
            } => self.rewrite(table, partition_by, query).await,
        }
    }

    /// `CREATE OR REPLACE TABLE t ... AS SELECT`: the query's rows replace the table's in one
    /// commit, with the query's columns (nullable) and the new partitioning. Skipped when
    /// the table already has exactly that layout (a resumed migration).
    async fn rewrite(
        &self,
        table: &str,
        partition_by: &[String],
        query: &str,
    ) -> Result<(bool, Option<u64>), String> {
        let mut providers: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
        let mut current = None;
        for name in self.table_names().await? {
            if let Some(t) = self.w.open_named(&name).await.map_err(|e| e.to_string())? {
                if name == table {
                    current = Some(t.clone());
                }
                providers.push((name, t.table_provider().await.map_err(|e| e.to_string())?));
            }
        }
        let current = current.ok_or_else(|| format!("table {table} does not exist"))?;
        let ctx = warehouse::session_with(warehouse::DEFAULT_CATALOG, providers)
            .map_err(|e| e.to_string())?;
        ctx.register_object_store(&self.w.root.store_url, self.w.root.store.clone());
        let df = ctx.sql(query).await.map_err(|e| e.to_string())?;
        let target = Arc::new(Schema::new(
            df.schema()
                .fields()
                .iter()
                .map(|f| {
                    let ty = sql_type_of_arrow(f.data_type())
                        .map(SqlType::arrow)
                        .unwrap_or_else(|| f.data_type().clone());
                    Field::new(f.name(), ty, true)
                })
                .collect::<Vec<_>>(),
        ));
        let now = ModelTable::of_table(&current)?;
        let wanted: Vec<(String, ArrowType)> = target
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let have: Vec<(String, ArrowType)> = now
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.arrow()))
            .collect();
        if wanted == have
            && now.partition_by == partition_by
            && now.columns.iter().all(|c| c.nullable)
        {
            return Ok((false, current.version()));
        }
        let batches: Vec<RecordBatch> = df.collect().await.map_err(|e| e.to_string())?;
        let mut batches = batches
            .iter()
            .map(|b| cast_batch(b, &target))
            .collect::<Result<Vec<_>, _>>()?;
        if batches.is_empty() {
            // An empty table is rewritten too: its schema and partitioning change.
            batches.push(RecordBatch::new_empty(target.clone()));
        }
        let t = current
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .with_partition_columns(partition_by.to_vec())
            .with_commit_properties(warehouse::base_commit_properties())
            .await
            .map_err(|e| e.to_string())?;
        Ok((true, t.version()))
    }

    /// Every table any migration names (the ones a query may read).
    async fn table_names(&self) -> Result<BTreeSet<String>, String> {
        Ok(self
            .migrations
            .iter()
            .flat_map(|m| m.steps.iter().map(|s| s.op.table().to_string()))
            .collect())
    }

    /// Removes failed and interrupted attempts from the history (so `status` is clean and
    /// `apply` starts them afresh), accepts the current checksums of edited applied files, and
    /// removes a lock left by a run that died. While a live run holds the lock (its lease is
    /// renewed), it changes nothing: that run's unfinished history rows are its own.
    pub async fn repair(&self) -> Result<serde_json::Value, MigrateError> {
        let removed_lock = self.lock().remove_dead().await?;
        let mut removed_rows = 0;
        let mut realigned = Vec::new();
        if let Some(t) = self.w.open(&SCHEMA_HISTORY).await? {
            // The latest successful row of each version stays; unfinished and failed ones go.
            let (t, metrics) = t
                .delete()
                .with_predicate("success IS NULL OR success = false")
                .with_commit_properties(warehouse::base_commit_properties())
                .await
                .map_err(MigrateError::other)?;
            removed_rows = metrics.num_deleted_rows.unwrap_or(0);
            let last = Self::last_rows(&self.history().await?);
            let mut t = t;
            for m in &self.migrations {
                if let Some(r) = last.get(&m.version)
                    && !m.matches(r.checksum.as_deref())
                {
                    let (nt, _) = t
                        .update()
                        .with_predicate(format!("version = {}", m.version))
                        .with_update("checksum", format!("'{}'", m.checksum))
                        .with_commit_properties(warehouse::base_commit_properties())
                        .await
                        .map_err(MigrateError::other)?;
                    t = nt;
                    realigned.push(serde_json::json!({
                        "version": m.version,
                        "script": m.script,
                        "old_checksum": r.checksum,
                        "new_checksum": m.checksum,
                    }));
                }
            }
        }
        Ok(serde_json::json!({
            "warehouse": self.w.root.display,
            "removed_lock": removed_lock,
            "removed_history_rows": removed_rows,
            "realigned_checksums": realigned,
        }))
    }
}

pub(super) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

pub(super) fn cast_batch(b: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, String> {
    let cols = b
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), cols).map_err(|e| e.to_string())
}
