//! The warehouse: where the Delta tables of the [`catalog`] live
//! (`<warehouse>/_executor_metadata/<table>`). Opening, creating (a creation race is not an
//! error), schema checks, replace-where and append commits with their retries, and
//! [`Warehouse::select`], the one way every reader (query, jobs, notebooks, the API's
//! journal, migrations) runs SQL over the tables. Jobs replace exactly the rows of the
//! `(workflow_id, source_id)` pairs they processed, so other workflows and sources are never
//! touched.

pub mod catalog;
pub mod features;
pub mod maintain;
pub mod rows;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::TableProperty;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use serde_json::{Map, Value};
use url::Url;

use crate::storage::immutable_objects::ImmutableObjectCache;
use crate::storage::location::Location;

pub use catalog::{
    ALL_TABLES, CHANGES, COLUMN_HISTORY, COLUMNS, ColumnDef, DEFAULT_CATALOG, EXECUTOR_RUNS,
    HISTORY_TABLES, JOB_TABLES, MIGRATED_TABLES, NOTEBOOK_MAPPING, NOTEBOOK_SOURCE,
    NOTEBOOK_TABLES, PARTITION_COLUMN, PARTITION_SKETCHES, SCHEMA_HISTORY, SCHEMA_NAME, SOURCES,
    SqlType, TABLE_HISTORY, TABLES, TableDef, WRITTEN_TABLES, registration_ddl,
};
pub use maintain::{MaintainOptions, Maintenance};
pub use rows::{
    BatchBuilder, InvalidId, MAX_ID_LEN, new_id_block, new_ids, printable, replace_predicate,
    sql_literal, to_json_rows, validate_id,
};

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
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
    Location(#[from] crate::storage::LocationError),
    #[error("cannot build rows for {table}: {message}")]
    Batch {
        table: &'static str,
        message: String,
    },
    #[error(
        "warehouse table {table} at {location} uses the Delta feature `{feature}`{detail}, which delta-rs cannot write; nothing was written. On Databricks: {way_out}"
    )]
    UnsupportedFeature {
        table: String,
        location: String,
        feature: String,
        /// ` (what uses it)`, or empty.
        detail: String,
        way_out: String,
    },
    #[error(
        "warehouse table {table} is a managed table at {managed} (the v1.0 layout), not at {location}; nothing was created. Migrate through the Databricks route (apply_migrations, route=spark), or copy the tables there (`CREATE TABLE delta.`<location>` DEEP CLONE ...`)"
    )]
    ManagedLayout {
        table: String,
        managed: String,
        location: String,
    },
    #[error("SQL error: {0}")]
    Sql(String),
    #[error("invalid catalog name {0:?}: use letters, digits and '_'")]
    Catalog(String),
    #[error("cannot render results: {0}")]
    Render(String),
}

impl From<datafusion::error::DataFusionError> for WarehouseError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Sql(crate::redact::text(&e.to_string()))
    }
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
    /// Tables opened before (and what commits left them at), shared by clones: opening one
    /// again reads only the commits since (a listing of the log after its version), not
    /// its log from the last checkpoint. A job opens each table several times.
    opened: Arc<std::sync::Mutex<std::collections::HashMap<String, DeltaTable>>>,
    /// Set for a job's warehouse ([`Warehouse::for_job`]).
    job: Option<Arc<JobMode>>,
}

/// How a job uses the warehouse: one snapshot per table, and checkpoints off its path.
#[derive(Debug, Default)]
struct JobMode {
    /// Set once the job's tables are ready ([`Warehouse::pin_snapshots`]): a table opened
    /// before is used as it is, not brought up to date first. A job reads the warehouse as
    /// it was when it started; its commits are still checked against whatever others
    /// committed since (delta-rs's conflict checks, then [`Warehouse::retrying_conflicts`]).
    /// On a remote warehouse each bringing up to date is two round trips.
    pinned: std::sync::atomic::AtomicBool,
    /// Checkpoints due after the job's commits, written beside its later steps.
    checkpoints: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set by [`Warehouse::begin_last_commits`]: the job's commits from then on write no
    /// checkpoint and make no snapshot of the table after them.
    last_commits: std::sync::atomic::AtomicBool,
}

impl Warehouse {
    /// The warehouse of one job: see [`JobMode`]; [`Warehouse::finish_checkpoints`] before
    /// the job ends.
    pub fn for_job(root: Location) -> Self {
        let mut w = Self::new(root);
        w.job = Some(Arc::default());
        w
    }

    /// From now on tables opened before are used as they are (a job's, see [`JobMode`]).
    pub fn pin_snapshots(&self) {
        if let Some(j) = &self.job {
            j.pinned.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn pinned(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| j.pinned.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Waits for the checkpoints the job's commits made due; one that fails is logged (the
    /// next commit due writes one again; `maintain` writes one too).
    pub async fn finish_checkpoints(&self) {
        let Some(j) = &self.job else { return };
        let pending = std::mem::take(&mut *j.checkpoints.lock().unwrap_or_else(|e| e.into_inner()));
        for p in pending {
            let _ = p.await;
        }
    }

    /// After a job's commit: the checkpoint Delta asks for every `checkpointInterval`
    /// commits, started now and awaited at the job's end (delta-rs would write it before
    /// the commit returns: five more round trips on the job's path).
    fn checkpoint_if_due(&self, name: &str, table: &DeltaTable) {
        if !self.last_commits() {
            self.checkpoint_if_due_after(name, table, 0);
        }
    }

    /// The job's last commits (settling what earlier runs left) come next, `defs` one each.
    /// They write no checkpoint: one they would make due is written now, of the version
    /// before, beside them. At the end of a job a checkpoint would be four round trips (the
    /// last checkpoint, the log, the checkpoint, `_last_checkpoint`) after all else; Delta
    /// readers take a checkpoint of any version. Nor do they make the table's snapshot after
    /// them (a listing of its log).
    pub fn begin_last_commits(&self, defs: &[&TableDef]) {
        let Some(j) = &self.job else { return };
        j.last_commits
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for def in defs {
            if let Some(table) = self.remembered(def.name) {
                self.checkpoint_if_due_after(def.name, &table, 1);
            }
        }
    }

    /// Whether the job is making its last commits ([`Warehouse::begin_last_commits`]).
    fn last_commits(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| j.last_commits.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Starts a checkpoint of `table` (a job's) when the version `ahead` after its own is
    /// one Delta asks a checkpoint for.
    fn checkpoint_if_due_after(&self, name: &str, table: &DeltaTable, ahead: u64) {
        use deltalake::table::config::TablePropertiesExt;
        let Some(j) = &self.job else { return };
        let (Some(version), Ok(snapshot)) = (table.version(), table.snapshot()) else {
            return;
        };
        let interval = snapshot.table_config().checkpoint_interval().get();
        if !(version + ahead + 1).is_multiple_of(interval) {
            return;
        }
        let (table, name) = (table.clone(), name.to_string());
        let task = tokio::spawn(async move {
            match deltalake::checkpoints::create_checkpoint(&table, None).await {
                Ok(()) => tracing::debug!(table = name, version, "checkpoint written"),
                Err(e) => tracing::warn!(table = name, version, "writing a checkpoint failed: {e}"),
            }
        });
        j.checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    fn commit_properties(&self, run_id: &str) -> CommitProperties {
        commit_properties(run_id).with_create_checkpoint(self.job.is_none())
    }

    pub fn new(mut root: Location) -> Self {
        // Every reader of the warehouse (delta-rs, DataFusion scans, migrations) goes through
        // `root.store`; the counting store stays underneath, so cache hits are not requests.
        root.store = Arc::new(ImmutableObjectCache::new(
            root.store,
            crate::storage::immutable_objects::DEFAULT_CAPACITY,
        ));
        Self {
            root,
            opened: Default::default(),
            job: None,
        }
    }

    /// Keeps `table` as the latest known state of table `name`.
    fn remember(&self, name: &str, table: &DeltaTable) {
        if let Ok(mut m) = self.opened.lock() {
            m.insert(name.to_string(), table.clone());
        }
    }

    fn forget_table(&self, name: &str) {
        if let Ok(mut m) = self.opened.lock() {
            m.remove(name);
        }
    }

    fn remembered(&self, name: &str) -> Option<DeltaTable> {
        self.opened.lock().ok()?.get(name).cloned()
    }

    pub fn table_location(&self, def: &TableDef) -> Location {
        self.location_of(def.name)
    }

    /// Where the table `name` of the metadata schema lives (any table, not only the four).
    pub fn location_of(&self, name: &str) -> Location {
        self.root.child(SCHEMA_NAME).child(name)
    }

    pub fn table_url(&self, def: &TableDef) -> Result<Url, WarehouseError> {
        self.url_of(def.name)
    }

    pub fn url_of(&self, name: &str) -> Result<Url, WarehouseError> {
        let loc = self.location_of(name);
        Url::parse(&loc.dir_url_of(&loc.prefix)).map_err(|e| WarehouseError::Delta {
            table: name.to_string(),
            location: loc.display.clone(),
            message: e.to_string(),
        })
    }

    fn err(&self, def: &TableDef, e: impl std::fmt::Display) -> WarehouseError {
        self.err_named(def.name, e)
    }

    /// A Delta error on table `name`, with credential problems explained.
    pub fn err_named(&self, name: &str, e: impl std::fmt::Display) -> WarehouseError {
        WarehouseError::Delta {
            table: name.to_string(),
            location: self.location_of(name).display,
            message: self.root.explain_text(&e.to_string()),
        }
    }

    fn builder(&self, def: &TableDef) -> Result<DeltaTableBuilder, WarehouseError> {
        self.builder_of(def.name)
    }

    /// A builder for table `name` on the warehouse's own store.
    pub fn builder_of(&self, name: &str) -> Result<DeltaTableBuilder, WarehouseError> {
        let url = self.url_of(name)?;
        Ok(DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| self.err_named(name, e))?
            .with_storage_backend(self.root.store.clone(), url))
    }

    /// The table if it exists (has a Delta log).
    pub async fn open(&self, def: &TableDef) -> Result<Option<DeltaTable>, WarehouseError> {
        self.open_named(def.name).await
    }

    /// The table `name` of the metadata schema, if it exists.
    pub async fn open_named(&self, name: &str) -> Result<Option<DeltaTable>, WarehouseError> {
        // delta-rs refuses a local path that does not exist rather than calling it "not a table".
        if let Some(dir) = &self.location_of(name).local_dir
            && !dir.join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        if let Some(table) = self.remembered(name)
            && self.pinned()
        {
            return Ok(Some(table));
        }
        self.reopen(name).await
    }

    /// [`Warehouse::open_named`], brought up to date even in a job.
    async fn reopen(&self, name: &str) -> Result<Option<DeltaTable>, WarehouseError> {
        if let Some(dir) = &self.location_of(name).local_dir
            && !dir.join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        if let Some(mut table) = self.remembered(name) {
            match table.update_incremental(None).await {
                Ok(()) => {
                    self.remember(name, &table);
                    return Ok(Some(table));
                }
                // Whatever happened to the log since (a vacuum, a re-creation), a fresh
                // load says what the table is now.
                Err(e) => tracing::debug!(table = name, "reloading the table: {e}"),
            }
        }
        let mut table = self
            .builder_of(name)?
            .build()
            .map_err(|e| self.err_named(name, e))?;
        match table.load().await {
            Ok(()) => {
                self.remember(name, &table);
                Ok(Some(table))
            }
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(self.err_named(name, e)),
        }
    }

    /// Opens the table, creating it (reader 1 / writer 2, partitioned by workflow_id) if
    /// missing. A concurrent creator winning the race is not an error.
    pub async fn ensure(&self, def: &TableDef) -> Result<(DeltaTable, bool), WarehouseError> {
        if let Some(t) = self.open(def).await? {
            return Ok((t, false));
        }
        self.refuse_managed_layout(def.name).await?;
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
            // Opening a table reads its log since the last checkpoint (Delta's default: every
            // 100 commits), and a job opens each table it writes.
            .with_configuration_property(TableProperty::CheckpointInterval, Some("10"))
            // File statistics only of ids, names and counts: never a profiled value.
            .with_configuration_property(
                TableProperty::DataSkippingStatsColumns,
                Some(def.stats_columns_property()),
            )
            // A creation is version 0 or nothing: a job that loses the race to create the
            // table must not commit a second CREATE TABLE on top of the winner's (delta-rs
            // would otherwise retry it at version 1); it opens the winner's table instead.
            .with_commit_properties(base_commit_properties().with_max_retries(0))
            .await;
        match created {
            Ok(t) => {
                self.remember(def.name, &t);
                Ok((t, true))
            }
            Err(e) => match self.open(def).await? {
                Some(t) => Ok((t, false)),
                None => Err(self.err(def, e)),
            },
        }
    }

    /// Runs `sql` over the warehouse's tables (default catalog) and returns the rows as JSON
    /// objects. Tables are named as Databricks users know them
    /// (`hive_metastore._executor_metadata.sources`) or by their bare name.
    pub async fn select(&self, sql: &str) -> Result<Vec<Map<String, Value>>, WarehouseError> {
        to_json_rows(&self.select_batches(DEFAULT_CATALOG, sql).await?)
    }

    /// [`Warehouse::select`] with the catalog given, as Arrow batches.
    pub async fn select_batches(
        &self,
        catalog: &str,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, WarehouseError> {
        let ctx = self.session(catalog, sql).await?;
        Ok(ctx.sql(sql).await?.collect().await?)
    }

    /// A session where `<catalog>._executor_metadata.<table>` (and `<table>` alone) name the
    /// warehouse tables `sql` reads; only those are opened.
    pub async fn session(
        &self,
        catalog: &str,
        sql: &str,
    ) -> Result<SessionContext, WarehouseError> {
        let parser = new_session(catalog)?.state();
        let dialect = parser.config().options().sql_parser.dialect;
        let refs = parser.resolve_table_references(&parser.sql_to_statement(sql, &dialect)?)?;
        // Listing the schema (information_schema, SHOW TABLES) needs every table.
        let all = refs
            .iter()
            .any(|r| r.schema() == Some("information_schema"));
        let needed: Vec<&'static TableDef> = ALL_TABLES
            .iter()
            .copied()
            .filter(|d| all || refs.iter().any(|r| r.table() == d.name))
            .collect();
        self.session_for(catalog, &needed).await
    }

    /// A session over the given tables, for several queries on one snapshot of them. A
    /// table that does not exist yet is empty, so a query on a fresh warehouse returns no
    /// rows instead of failing.
    pub async fn session_for(
        &self,
        catalog: &str,
        tables: &[&'static TableDef],
    ) -> Result<SessionContext, WarehouseError> {
        let mut providers = Vec::new();
        let mut opened = Vec::new();
        // Opened at once: on a remote warehouse each is a few round trips.
        let tables_now =
            futures::future::try_join_all(tables.iter().map(|def| self.open(def))).await?;
        for (def, table) in tables.iter().zip(tables_now) {
            let provider: Arc<dyn TableProvider> = match table {
                Some(t) => {
                    let p = t.table_provider().await.map_err(|e| self.err(def, e))?;
                    opened.push((def, t));
                    p
                }
                None => Arc::new(MemTable::try_new(def.arrow_schema(), vec![vec![]])?),
            };
            providers.push((def.name.to_string(), provider));
        }
        let ctx = session_with(catalog, providers)?;
        ctx.register_object_store(&self.root.store_url, self.root.store.clone());
        for (def, t) in opened {
            t.update_datafusion_session(&ctx.state())
                .map_err(|e| self.err(def, e))?;
        }
        Ok(ctx)
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
    pub async fn check_all(&self, create: bool) -> Result<Vec<TableCheck>, WarehouseError> {
        let mut out = Vec::new();
        for def in JOB_TABLES {
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
    pub async fn ensure_valid(&self, def: &TableDef) -> Result<DeltaTable, WarehouseError> {
        let (t, _) = self.ensure(def).await?;
        self.ensure_writable(def.name, &t)?;
        self.check_schema(def, &t)?;
        Ok(t)
    }

    /// Refuses a table whose schema is not `def`'s, naming every difference.
    pub fn check_schema(&self, def: &TableDef, table: &DeltaTable) -> Result<(), WarehouseError> {
        let problems = Self::schema_problems(def, table);
        if problems.is_empty() {
            return Ok(());
        }
        Err(WarehouseError::SchemaMismatch {
            table: def.name,
            location: self.table_location(def).display,
            problems: problems.join("; "),
        })
    }

    /// A warehouse created the v1.0 document's way holds managed tables at
    /// `<root>/_executor_metadata.db/<table>`: creating ours beside them would split the
    /// warehouse in two without a word, so the first table creation refuses it.
    pub async fn refuse_managed_layout(&self, name: &str) -> Result<(), WarehouseError> {
        let managed = self
            .root
            .child(&format!("{SCHEMA_NAME}.db"))
            .child(name)
            .child("_delta_log");
        let found = match &managed.local_dir {
            Some(dir) => dir.is_dir(),
            None => {
                use futures::TryStreamExt;
                managed
                    .store
                    .list(Some(&managed.prefix))
                    .try_next()
                    .await
                    .map_err(|e| self.err_named(name, e))?
                    .is_some()
            }
        };
        if found {
            return Err(WarehouseError::ManagedLayout {
                table: name.to_string(),
                managed: managed.display.trim_end_matches("/_delta_log").to_string(),
                location: self.location_of(name).display,
            });
        }
        Ok(())
    }

    /// Refuses `table` (called `name`) when it uses a Delta feature this binary cannot write.
    pub fn ensure_writable(&self, name: &str, table: &DeltaTable) -> Result<(), WarehouseError> {
        match features::unwritable(table).into_iter().next() {
            None => Ok(()),
            Some(u) => Err(WarehouseError::UnsupportedFeature {
                table: name.to_string(),
                location: self.location_of(name).display,
                detail: u
                    .detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                way_out: u.way_out(&format!("hive_metastore.{SCHEMA_NAME}.{name}")),
                feature: u.feature,
            }),
        }
    }

    /// Replaces the rows matching `predicate` with `batch` in one commit.
    pub async fn replace(
        &self,
        def: &TableDef,
        table: DeltaTable,
        batch: RecordBatch,
        predicate: String,
        run_id: &str,
    ) -> Result<DeltaTable, WarehouseError> {
        // delta-rs judges conflicts by file statistics, conservatively: a concurrent writer's
        // rows of other sources or shards can look like ours. The replace is re-run against
        // the new snapshot, which is what a conflict asks for.
        self.retrying_conflicts(def, "replace", table, |t| {
            t.write(vec![batch.clone()])
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(predicate.clone())
                .with_commit_properties(self.commit_properties(run_id))
                .into_future()
        })
        .await
    }

    /// Deletes the rows matching `predicate` in one commit (re-run on a concurrent commit,
    /// like [`Warehouse::replace`]).
    pub async fn delete_where(
        &self,
        def: &TableDef,
        predicate: &str,
        run_id: &str,
    ) -> Result<(), WarehouseError> {
        let Some(table) = self.open(def).await? else {
            return Ok(());
        };
        self.retrying_conflicts(def, "delete", table, |t| async move {
            t.delete()
                .with_predicate(predicate.to_string())
                .with_commit_properties(self.commit_properties(run_id))
                .await
                .map(|(t, _)| t)
        })
        .await
        .map(|_| ())
    }

    /// Deletes the rows of `runs` (and rows without a run) of `workflow_id`'s `sources`
    /// (and, when given, `tables`), which `predicate` selects. Where every file that may hold
    /// such rows holds nothing else, by its statistics (a settled run's rows are files of
    /// their own), the files are removed in one commit without being read; else it is
    /// [`Warehouse::delete_where`].
    pub async fn delete_runs(
        &self,
        def: &TableDef,
        rows: &RunRows<'_>,
        predicate: &str,
        run_id: &str,
    ) -> Result<(), WarehouseError> {
        self.delete_files(def, predicate, run_id, |t| whole_files(t, rows))
            .await
    }

    /// Deletes the rows of `workflow_id`'s `sources` whose ids are `rows.ids`. Where the
    /// statistics show that every file that may hold one holds nothing else (by the ids the
    /// pairs held when `rows` was read), the files are removed in one commit without being
    /// read; else the rows are deleted by id ([`Warehouse::delete_where`]).
    pub async fn delete_ids(
        &self,
        def: &TableDef,
        rows: &IdRows<'_>,
        run_id: &str,
    ) -> Result<(), WarehouseError> {
        if rows.ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = rows.ids.iter().map(i64::to_string).collect();
        let predicate = format!(
            "{} AND id IN ({})",
            replace_predicate(rows.workflow_id, rows.sources),
            ids.join(", ")
        );
        self.delete_files(def, &predicate, run_id, |t| files_of_ids(t, rows))
            .await
    }

    /// Removes the files `whole` names (rows whose every row `predicate` selects) in one
    /// commit of remove actions; where it names none (`None`: it cannot tell), deletes by
    /// `predicate` instead.
    async fn delete_files<W>(
        &self,
        def: &TableDef,
        predicate: &str,
        run_id: &str,
        whole: W,
    ) -> Result<(), WarehouseError>
    where
        W: Fn(&DeltaTable) -> Option<Vec<(deltalake::kernel::Remove, i64)>>,
    {
        let Some(table) = self.open(def).await? else {
            return Ok(());
        };
        if whole(&table).is_none() {
            return self.delete_where(def, predicate, run_id).await;
        }
        let operation = predicate.to_string();
        let whole = &whole;
        self.retrying_conflicts(def, "delete", table, |t| {
            let operation = operation.clone();
            async move {
                let Some(files) = whole(&t) else {
                    // Changed since: the rows are deleted as any others.
                    return t
                        .delete()
                        .with_predicate(operation)
                        .with_commit_properties(self.commit_properties(run_id))
                        .await
                        .map(|(t, _)| t);
                };
                if files.is_empty() {
                    return Ok(t);
                }
                let snapshot = t.snapshot()?.clone();
                // What Databricks' DESCRIBE HISTORY shows for a delete, as delta-rs writes it.
                let removed_rows: i64 = files.iter().map(|(_, n)| *n).sum();
                let props = commit_properties_with(
                    run_id,
                    [
                        ("readVersion".to_owned(), snapshot.version().into()),
                        // Ours: the files went by their statistics, none was read.
                        (UNREAD_REMOVALS.to_owned(), files.len().into()),
                        (
                            "operationMetrics".to_owned(),
                            serde_json::json!({
                                "num_added_files": 0,
                                "num_removed_files": files.len(),
                                "num_deleted_rows": removed_rows,
                                "num_copied_rows": 0,
                                "execution_time_ms": 0,
                                "scan_time_ms": 0,
                                "rewrite_time_ms": 0,
                            }),
                        ),
                    ],
                )
                .with_create_checkpoint(self.job.is_none());
                let commit = deltalake::kernel::transaction::CommitBuilder::from(props)
                    .with_actions(
                        files
                            .into_iter()
                            .map(|(f, _)| deltalake::kernel::Action::Remove(f))
                            .collect(),
                    )
                    .build(
                        Some(&snapshot),
                        t.log_store(),
                        deltalake::protocol::DeltaOperation::Delete {
                            predicate: Some(operation),
                        },
                    );
                if self.last_commits() {
                    // The job's last commit to the table: the snapshot after it, which
                    // delta-rs makes by listing the log again, is never used (and is
                    // forgotten below).
                    commit.into_prepared_commit_future().await?.await?;
                    return Ok(t);
                }
                let mut after = DeltaTable::new(t.log_store());
                after.state = Some(commit.await?.snapshot());
                Ok(after)
            }
        })
        .await?;
        if self.last_commits() {
            self.forget_table(def.name);
        }
        Ok(())
    }

    /// Appends `batch` in one commit (re-run on a concurrent commit: delta-rs counts an
    /// append as having read the table, so a concurrent delete conflicts with it).
    pub async fn append(
        &self,
        def: &TableDef,
        table: DeltaTable,
        batch: RecordBatch,
        run_id: &str,
    ) -> Result<DeltaTable, WarehouseError> {
        self.retrying_conflicts(def, "append", table, |t| {
            t.write(vec![batch.clone()])
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(self.commit_properties(run_id))
                .into_future()
        })
        .await
    }

    /// Appends `batches` in one commit, each in files of its own, so a later commit can
    /// remove one batch's rows by removing its files unread (see [`Warehouse::delete_ids`]).
    /// One commit rather than one per batch: on a remote warehouse each is several round
    /// trips, one after another. Re-committed, not re-written, on a concurrent commit.
    pub async fn append_files(
        &self,
        def: &TableDef,
        table: DeltaTable,
        batches: Vec<RecordBatch>,
        run_id: &str,
    ) -> Result<DeltaTable, WarehouseError> {
        use deltalake::writer::{DeltaWriter, RecordBatchWriter};
        self.ensure_writable(def.name, &table)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        // A writer per batch, its files put at once with the others'.
        let table_ref = &table;
        let written =
            futures::future::try_join_all(batches.into_iter().filter(|b| b.num_rows() > 0).map(
                |batch| async move {
                    let mut writer = RecordBatchWriter::for_table(table_ref)?;
                    writer.write(batch).await?;
                    writer.flush().await
                },
            ))
            .await
            .map_err(|e| self.err(def, e))?;
        let adds: Vec<_> = written.into_iter().flatten().collect();
        if adds.is_empty() {
            return Ok(table);
        }
        // What Databricks' DESCRIBE HISTORY shows for an append, as delta-rs writes it.
        let metrics = serde_json::json!({
            "num_added_files": adds.len(),
            "num_removed_files": 0,
            "num_partitions": 0,
            "num_added_rows": rows,
            "execution_time_ms": 0,
        });
        let partition_by: Vec<String> = def.partition_by.iter().map(|c| c.to_string()).collect();
        let (adds, partition_by, metrics) = (&adds, &partition_by, &metrics);
        self.retrying_conflicts(def, "append", table, |t| async move {
            let snapshot = t.snapshot()?.clone();
            let props =
                commit_properties_with(run_id, [("operationMetrics".to_owned(), metrics.clone())])
                    .with_create_checkpoint(self.job.is_none());
            let commit = deltalake::kernel::transaction::CommitBuilder::from(props)
                .with_actions(
                    adds.iter()
                        .cloned()
                        .map(deltalake::kernel::Action::Add)
                        .collect(),
                )
                .build(
                    Some(&snapshot),
                    t.log_store(),
                    deltalake::protocol::DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: (!partition_by.is_empty()).then(|| partition_by.clone()),
                        predicate: None,
                    },
                )
                .await?;
            let mut after = DeltaTable::new(t.log_store());
            after.state = Some(commit.snapshot());
            Ok(after)
        })
        .await
    }

    /// Runs a commit `op` on the table, and again on a fresh snapshot while it meets a
    /// concurrent commit (up to 20 times, with growing, jittered pauses).
    async fn retrying_conflicts<F, Fut>(
        &self,
        def: &TableDef,
        what: &str,
        table: DeltaTable,
        op: F,
    ) -> Result<DeltaTable, WarehouseError>
    where
        F: Fn(DeltaTable) -> Fut,
        Fut: std::future::Future<Output = Result<DeltaTable, DeltaTableError>>,
    {
        self.ensure_writable(def.name, &table)?;
        let mut table = table;
        let mut attempt = 0u32;
        loop {
            match op(table.clone()).await {
                Ok(t) => {
                    self.remember(def.name, &t);
                    self.checkpoint_if_due(def.name, &t);
                    return Ok(t);
                }
                Err(DeltaTableError::Transaction {
                    source: deltalake::kernel::transaction::TransactionError::CommitConflict(e),
                }) if attempt < 20 => {
                    attempt += 1;
                    tracing::info!(
                        table = def.name,
                        attempt,
                        "concurrent commit, re-running the {what}: {e}"
                    );
                    conflict_pause(attempt).await;
                    table = self
                        .reopen(def.name)
                        .await?
                        .ok_or_else(|| self.err(def, "table disappeared"))?;
                }
                Err(e) => return Err(self.err(def, e)),
            }
        }
    }
}

/// The commit info key of a delete that removed whole files by their statistics, without
/// reading them: how many.
pub const UNREAD_REMOVALS: &str = "nuvyn.files_removed_unread";

/// The rows [`Warehouse::delete_runs`] deletes.
pub struct RunRows<'a> {
    pub workflow_id: &'a str,
    pub sources: &'a [Option<String>],
    /// `None`: every table's.
    pub tables: Option<&'a std::collections::BTreeSet<String>>,
    pub runs: &'a std::collections::BTreeSet<String>,
}

/// The rows [`Warehouse::delete_ids`] deletes, and what the pairs held when they were
/// chosen.
pub struct IdRows<'a> {
    pub workflow_id: &'a str,
    pub sources: &'a [Option<String>],
    /// The ids to delete.
    pub ids: &'a std::collections::BTreeSet<i64>,
    /// Every id the pairs held then, and the files that held them.
    pub known: &'a std::collections::BTreeSet<i64>,
    pub files: &'a std::collections::BTreeSet<String>,
}

/// The paths of a table's files, as its log names them.
pub fn file_paths(table: &DeltaTable) -> std::collections::BTreeSet<String> {
    table
        .snapshot()
        .map(|s| {
            s.log_data()
                .into_iter()
                .map(|f| f.path().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// What a delete by statistics does with one file.
enum FileFate {
    /// Holds none of the rows: stays.
    Stays,
    /// Holds only rows to delete: removed whole.
    Removed,
}

/// The remove actions (and row counts) of `workflow_id`'s files that `judge` removes, given
/// each file's stats, row count and path; `None` when it cannot tell for one (the file may
/// hold rows to delete among others, or its stats say too little).
fn removed_by_stats(
    table: &DeltaTable,
    workflow_id: &str,
    judge: impl Fn(&Value, i64, &str) -> Option<FileFate>,
) -> Option<Vec<(deltalake::kernel::Remove, i64)>> {
    let snapshot = table.snapshot().ok()?;
    let mut out = Vec::new();
    for f in snapshot.log_data() {
        let partition = f.partition_values_map();
        if partition
            .get(PARTITION_COLUMN)
            .cloned()
            .flatten()
            .as_deref()
            != Some(workflow_id)
        {
            continue;
        }
        let stats: Value = serde_json::from_str(&f.stats()?).ok()?;
        let n = stats.get("numRecords")?.as_i64()?;
        if let FileFate::Removed = judge(&stats, n, f.path().as_ref())? {
            out.push((f.remove_action(true), n));
        }
    }
    Some(out)
}

/// The files that hold `rows.ids`, when each file whose id range holds one of them holds
/// nothing else: a file the pairs held then, of one of their sources, where every id known
/// in its range is one to delete (its rows are among the known ones).
fn files_of_ids(
    table: &DeltaTable,
    rows: &IdRows<'_>,
) -> Option<Vec<(deltalake::kernel::Remove, i64)>> {
    removed_by_stats(table, rows.workflow_id, |stats, n, path| {
        if stats.get("nullCount")?.get("id")?.as_i64()? > 0 {
            return None;
        }
        let (lo, hi) = (
            stats.get("minValues")?.get("id")?.as_i64()?,
            stats.get("maxValues")?.get("id")?.as_i64()?,
        );
        if lo > hi {
            return None;
        }
        if rows.ids.range(lo..=hi).next().is_none() {
            return Some(FileFate::Stays);
        }
        let whole = rows.files.contains(path)
            && rows.sources.contains(&file_only(stats, n, "source_id")?)
            && rows.known.range(lo..=hi).all(|id| rows.ids.contains(id));
        whole.then_some(FileFate::Removed)
    })
}

/// A string column's one value in a file, by its stats: `Some(None)` all null, `None`
/// several (or stats too short to tell).
fn file_only(stats: &Value, n: i64, c: &str) -> Option<Option<String>> {
    let nulls = stats.get("nullCount")?.get(c)?.as_i64()?;
    if nulls == n {
        return Some(None);
    }
    let (lo, hi) = (
        stats.get("minValues")?.get(c)?.as_str()?,
        stats.get("maxValues")?.get(c)?.as_str()?,
    );
    (nulls == 0 && lo == hi).then(|| Some(lo.to_string()))
}

/// The files that hold `rows`, when each file that may hold any holds only them (one run,
/// one source, one table where tables are named).
fn whole_files(
    table: &DeltaTable,
    rows: &RunRows<'_>,
) -> Option<Vec<(deltalake::kernel::Remove, i64)>> {
    removed_by_stats(table, rows.workflow_id, |stats, n, _| {
        let only = |c: &str| file_only(stats, n, c);
        let may_hold = {
            let nulls = stats.get("nullCount")?.get("run_id")?.as_i64()?;
            let lo = stats
                .get("minValues")
                .and_then(|m| m.get("run_id")?.as_str());
            let hi = stats
                .get("maxValues")
                .and_then(|m| m.get("run_id")?.as_str());
            nulls > 0
                || match (lo, hi) {
                    (Some(lo), Some(hi)) if lo <= hi => rows
                        .runs
                        .range(lo.to_string()..=hi.to_string())
                        .next()
                        .is_some(),
                    _ => return None,
                }
        };
        if !may_hold {
            return Some(FileFate::Stays);
        }
        let whole = only("run_id")?.is_none_or(|r| rows.runs.contains(&r))
            && rows.sources.contains(&only("source_id")?)
            && match rows.tables {
                None => true,
                Some(names) => names.contains(&only("table_name")??),
            };
        whole.then_some(FileFate::Removed)
    })
}

/// A growing, jittered pause before a commit that met a concurrent one is re-run.
async fn conflict_pause(attempt: u32) {
    let jitter = u64::from(uuid::Uuid::new_v4().as_u128() as u8);
    tokio::time::sleep(std::time::Duration::from_millis(
        20 * u64::from(attempt) + jitter,
    ))
    .await;
}

fn new_session(catalog: &str) -> Result<SessionContext, WarehouseError> {
    if catalog.is_empty()
        || !catalog
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(WarehouseError::Catalog(catalog.to_string()));
    }
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(catalog, SCHEMA_NAME)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    Ok(SessionContext::new_with_config(config))
}

/// A session where `<catalog>._executor_metadata.<name>` and `<name>` name the given
/// providers: the warehouse's tables, or (for migration checks) models of them.
pub fn session_with(
    catalog: &str,
    tables: Vec<(String, Arc<dyn TableProvider>)>,
) -> Result<SessionContext, WarehouseError> {
    let ctx = new_session(catalog)?;
    let schema = Arc::new(MemorySchemaProvider::new());
    for (name, provider) in tables {
        schema.register_table(name, provider)?;
    }
    let cat = Arc::new(MemoryCatalogProvider::new());
    cat.register_schema(SCHEMA_NAME, schema)?;
    ctx.register_catalog(catalog, cat);
    Ok(ctx)
}

/// Commits made by concurrent jobs (or shards) retry on a conflicting version this many
/// times; delta-rs checks each retry against what the other commits changed.
pub(crate) const COMMIT_RETRIES: usize = 100;

pub(crate) fn base_commit_properties() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

fn commit_properties(run_id: &str) -> CommitProperties {
    commit_properties_with(run_id, [])
}

/// [`commit_properties`] with more `commitInfo` entries (`with_metadata` replaces them all).
fn commit_properties_with(
    run_id: &str,
    extra: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> CommitProperties {
    let mut meta: HashMap<String, serde_json::Value> = extra.into_iter().collect();
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
