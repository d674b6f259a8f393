//! Housekeeping that commits leave to `maintain`: compaction (OPTIMIZE), a checkpoint,
//! expired-log cleanup and, when asked, VACUUM.

use super::catalog::TableDef;
use super::{COMMIT_RETRIES, Warehouse, WarehouseError, base_commit_properties};

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
    /// History tables with `--history-days`: rows profiled before this time were removed
    /// (with `--dry-run`: would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_removed_before: Option<String>,
}

/// What `maintain` runs.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    pub optimize: bool,
    /// VACUUM with this retention; `None`: no VACUUM.
    pub vacuum_hours: Option<u64>,
    /// Remove history rows profiled more than this many days ago; `None`: keep all.
    pub history_days: Option<u64>,
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
    ) -> Result<Maintenance, WarehouseError> {
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
            history_removed_before: None,
        };
        let Some(mut table) = self.open(def).await? else {
            return Ok(m);
        };
        m.existed = true;
        m.version_before = table.version();
        if let Some(days) = opts.history_days
            && let Some(time_column) = def.trimmed_by
        {
            // Trimmed first, so that the compaction after it rewrites what is left.
            let cutoff = chrono::Utc::now() - chrono::Duration::days(days as i64);
            if !opts.dry_run {
                // A literal of the column's own type (UTC microseconds): a SQL `TIMESTAMP`
                // literal is cast, and delta-rs cannot write a cast into the commit's record.
                use datafusion::prelude::{col, lit};
                let at = datafusion::scalar::ScalarValue::TimestampMicrosecond(
                    Some(cutoff.timestamp_micros()),
                    Some("UTC".into()),
                );
                let older = col(time_column).lt(lit(at));
                table = self
                    .retrying_conflicts(def, "trim", table, |t| {
                        let older = older.clone();
                        async move {
                            t.delete()
                                .with_predicate(older)
                                .with_commit_properties(base_commit_properties())
                                .await
                                .map(|(t, _)| t)
                        }
                    })
                    .await?;
            }
            m.history_removed_before = Some(cutoff.to_rfc3339());
        }
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
