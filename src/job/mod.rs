//! A job end to end: every source is discovered and profiled (sources and tables
//! concurrently, bounded), then the results are written to the warehouse in one commit per
//! table, and the run is recorded in `executor_runs`. One bad file fails its table, one bad
//! source fails itself; the job's status and exit code say what happened.

pub mod payload;
mod previous;
mod write;

use write::{prepare_warehouse, record_run, write_results};
pub use write::{retract, settle};

use std::io::IsTerminal;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::discover::{self, Filters, Skipped};
use crate::job::payload::{IdOrigin, JobSpec};
use crate::profile::drift::{self, Change, Severity};
use crate::profile::{self, TableProfile, TableStatus};
use crate::redact;
use crate::storage::counting::RequestCounts;
use crate::storage::location::{self, Location};
use crate::warehouse::Warehouse;

/// How the run was started, recorded in `executor_runs.run_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    Cli,
    Payload,
    Api,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Payload => "payload",
            Self::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Partial,
    Failed,
    /// Stopped on request (the HTTP API) before anything was written.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The documented exit codes: 0 success, 1 failed, 3 partial (4, `--fail-on`, is the
    /// job's: see [`JobReport::exit_code`]).
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Succeeded => 0,
            Self::Failed => 1,
            Self::Partial => 3,
            Self::Cancelled => 130,
        }
    }
}

/// Remote reads at once within a source unless told otherwise (`--io-concurrency`).
pub const DEFAULT_IO_CONCURRENCY: usize = 64;

/// Everything a job needs, validated.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub spec: JobSpec,
    pub run_mode: RunMode,
    /// `None`: discover and profile only, write nothing.
    pub warehouse: Option<Location>,
    pub filters: Filters,
    pub source_concurrency: usize,
    pub table_concurrency: usize,
    /// Remote reads at once (small files fetched ahead of profiling), apart from the
    /// CPU-bound table concurrency.
    pub io_concurrency: usize,
    pub progress: bool,
    /// Whether pending schema migrations are applied (`--migrate`) or the warehouse refused.
    pub migrate: crate::migrate::MigratePolicy,
    /// The run's id (the API's job id); `None`: a fresh one.
    pub run_id: Option<String>,
    /// Whether the job appends its own `executor_runs` row (the API records its jobs itself).
    pub record_run: bool,
    pub cancel: CancelFlag,
    /// Memory and record-size limits of profiling (clones share one memory pool).
    pub limits: profile::Limits,
}

/// Asks a running job to stop. It is looked at between tables and before anything is
/// written: a job stopped in time writes nothing, one already writing finishes.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once a stop is asked for (looked at every 100 ms): long work (a listing,
    /// one big table) waits on this beside its own future and is dropped when it resolves.
    pub async fn cancelled(&self) {
        while !self.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceReport {
    pub source_id: Option<String>,
    pub source_path: String,
    pub source_type: String,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub files_found: u64,
    pub total_size_bytes: u64,
    pub tables_found: usize,
    pub tables_failed: usize,
    /// Tables whose fingerprint matched the previous recorded run's: not read, their
    /// profiles carried (`carried_from` names the run that computed each).
    pub tables_carried: usize,
    pub skipped: Vec<Skipped>,
    /// What changed since the previous recorded run of this source's `(workflow_id,
    /// source_id)` (none on a first run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    pub tables: Vec<TableProfile>,
    /// Carried tables: the run whose warehouse rows hold each one's profile now.
    #[serde(skip)]
    pub carried_rows: std::collections::BTreeMap<String, String>,
    /// The pair's `partition_sketches` rows when its sketches were read (none: not read).
    #[serde(skip)]
    pub stored_sketches: Option<previous::StoredSketches>,
    /// Time spent listing and sniffing the source.
    pub discover_ms: u64,
    /// Storage requests made for this source (remote stores only).
    #[serde(skip_serializing_if = "no_requests")]
    pub requests: RequestCounts,
}

fn no_requests(r: &RequestCounts) -> bool {
    r.total() == 0
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobReport {
    pub run_id: String,
    pub executor_version: String,
    pub workflow_id: String,
    pub workflow_id_origin: IdOrigin,
    pub source_id: Option<String>,
    pub tenant_id: Option<String>,
    pub run_mode: RunMode,
    pub status: RunStatus,
    pub written: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Requests made to the warehouse's store (remote stores only).
    #[serde(skip_serializing_if = "no_requests")]
    pub warehouse_requests: RequestCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::job::payload::Shard>,
    /// The changes found, by severity (listed per source).
    pub changes: ChangeCounts,
    /// `--fail-on`: changes of this severity or worse make the job exit 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_on: Option<Severity>,
    pub sources: Vec<SourceReport>,
    /// The runs whose rows the job's pairs held when it started: [`settle`] may remove
    /// those of them that never finished.
    #[serde(skip)]
    pub runs_at_start: std::collections::BTreeSet<String>,
}

/// How many changes of each severity a run found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeCounts {
    pub breaking: usize,
    pub warning: usize,
    pub info: usize,
}

impl ChangeCounts {
    pub fn of<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut c = Self::default();
        for ch in changes {
            match ch.severity {
                Severity::Breaking => c.breaking += 1,
                Severity::Warning => c.warning += 1,
                Severity::Info => c.info += 1,
            }
        }
        c
    }

    /// Changes of severity `s` or worse.
    pub fn at_least(&self, s: Severity) -> usize {
        match s {
            Severity::Breaking => self.breaking,
            Severity::Warning => self.breaking + self.warning,
            Severity::Info => self.breaking + self.warning + self.info,
        }
    }
}

impl JobReport {
    /// 0 success, 1 failed, 3 partial, 130 cancelled; 4 when `--fail-on` found changes of
    /// its severity or worse (a failed job still exits 1; a partial one with such changes, 4).
    pub fn exit_code(&self) -> i32 {
        match self.status {
            RunStatus::Failed | RunStatus::Cancelled => self.status.exit_code(),
            _ if self.fail_on.is_some_and(|s| self.changes.at_least(s) > 0) => 4,
            s => s.exit_code(),
        }
    }
}

fn progress_bar(enabled: bool) -> indicatif::ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tables {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

async fn run_source(
    spec: &crate::job::payload::SourceSpec,
    opts: &JobOptions,
    previous: Option<&std::collections::BTreeMap<String, previous::PreviousTable>>,
    latest_run: Option<&str>,
    warehouse: Option<&Warehouse>,
    pb: &indicatif::ProgressBar,
) -> SourceReport {
    let mut report = SourceReport {
        source_id: spec.source_id.clone(),
        source_path: redact::url(&spec.path),
        source_type: spec.source_type.clone().unwrap_or_default(),
        status: RunStatus::Failed,
        error: None,
        files_found: 0,
        total_size_bytes: 0,
        tables_found: 0,
        tables_failed: 0,
        tables_carried: 0,
        skipped: Vec::new(),
        changes: Vec::new(),
        tables: Vec::new(),
        carried_rows: Default::default(),
        stored_sketches: None,
        discover_ms: 0,
        requests: RequestCounts::default(),
    };
    let loc = match location::parse_with(&spec.path, &spec.storage_options) {
        Ok(l) => l.reading_small_objects_once(),
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.source_path = loc.display.clone();
    if report.source_type.is_empty() {
        report.source_type = loc.kind.as_str().to_string();
    }
    tracing::info!(source = %loc.display, "discovering");
    let discovering = Instant::now();
    // Fingerprints that the previous run profiled: their tables need no sniffing.
    let unchanged: std::collections::HashSet<String> = previous
        .filter(|_| !opts.spec.full_refresh)
        .into_iter()
        .flat_map(|p| p.values().filter_map(|t| t.fingerprint.clone()))
        .collect();
    let filters = opts
        .filters
        .clone()
        .with_reads_at_once(opts.io_concurrency)
        .with_fingerprints(profile_settings(&opts.spec), std::sync::Arc::new(unchanged));
    let found = tokio::select! {
        found = discover::discover(&loc, &filters) => found,
        () = opts.cancel.cancelled() => {
            report.error = Some("cancelled while listing the source".into());
            report.requests = loc.requests();
            return report;
        }
    };
    report.discover_ms = discovering.elapsed().as_millis() as u64;
    let found = match found {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(source = %loc.display, "source failed: {e}");
            report.error = Some(e.to_string());
            report.requests = loc.requests();
            return report;
        }
    };
    // A shard profiles only its tables; the counts stay the source's (every shard sees the
    // same listing, and shard 0 writes the source's row).
    let mut found = found;
    if let Some(shard) = opts.spec.shard {
        found.tables.retain(|t| shard.owns(&t.name));
    }
    report.files_found = found.files_found;
    report.total_size_bytes = found.total_size_bytes;
    report.skipped = found.skipped;
    report.tables_found = found.tables.len();
    let found_names: Vec<String> = found.tables.iter().map(|t| t.name.clone()).collect();
    // A table whose fingerprint is the one its previous profile was computed from is not
    // read: that profile is carried into this run.
    let mut carried = Vec::new();
    let mut carried_rows = std::collections::BTreeMap::new();
    if !opts.spec.full_refresh
        && let Some(prev) = previous
    {
        found.tables.retain(|t| match prev.get(&t.name) {
            Some(p) if t.problem.is_none() && p.fingerprint.as_deref() == Some(&t.fingerprint) => {
                carried.push(TableProfile::carried(
                    t,
                    loc.display_of(&t.root),
                    p.snapshot.row_count,
                    p.snapshot.columns.len(),
                    p.profile_run_id.clone(),
                ));
                carried_rows.insert(t.name.clone(), p.run_id.clone());
                loc.done_with(&t.files);
                false
            }
            _ => true,
        });
    }
    report.tables_carried = carried.len();
    report.carried_rows = carried_rows;
    for s in &report.skipped {
        tracing::warn!(path = %s.path, "skipped: {}", s.reason);
    }
    tracing::info!(
        source = %loc.display,
        tables = found.tables.len(),
        files = found.files_found,
        "discovered"
    );
    let (mut sketched, stored_sketches) =
        partition_sketches(opts, spec, &loc, &found.tables, previous, warehouse).await;
    report.stored_sketches = stored_sketches;
    pb.inc_length((found.tables.len() + carried.len()) as u64);
    pb.inc(carried.len() as u64);
    // A session of its own: two sources on one container with different credentials must
    // not replace each other's store.
    let ctx = &profile::session_for(&loc, &opts.limits, &found.tables);
    // On a remote source, the small files of the next tables are fetched while the current
    // ones are profiled (up to `io_concurrency` tables ahead): profiling waits on the CPU, not
    // on a round trip per table.
    let ahead = opts.io_concurrency.max(1);
    let to_profile = found.tables.len();
    let partitioned: std::collections::HashSet<String> = sketched.keys().cloned().collect();
    let prefetched = futures::stream::iter(found.tables.into_iter().map(|t| {
        let loc = loc.clone();
        // A partitioned table's unchanged partitions are not read at all.
        let whole = !partitioned.contains(&t.name);
        async move {
            if loc.remote.is_some() && whole {
                prefetch(&loc, &t).await;
            }
            t
        }
    }))
    .buffered(ahead);
    // A small table waits on its reads and its set-up more than on the CPU, so several run
    // for each slot; a big one reads with every core and holds a slot of its own.
    let slots = opts.table_concurrency.max(1);
    let big_tables = std::sync::Arc::new(tokio::sync::Semaphore::new(slots));
    let mut tables: Vec<TableProfile> = Vec::with_capacity(to_profile + carried.len());
    let mut profiled = prefetched
        .map(|t| {
        let (ctx, loc, limits) = (ctx.clone(), loc.clone(), opts.limits.clone());
        let big_tables = big_tables.clone();
        let popts = profile::ProfileOptions {
            samples: opts.spec.samples,
            sample: opts.spec.sample,
        };
        let prior = sketched.remove(&t.name);
        async move {
            let started = Instant::now();
            let name = t.name.clone();
            let root = loc.display_of(&t.root);
            if opts.cancel.is_cancelled() {
                pb.inc(1);
                return profile::TableProfile::failed(&name, &root, "cancelled".to_string());
            }
            let _slot = if profile::small_table(&t) {
                None
            } else {
                big_tables.acquire_owned().await.ok()
            };
            // Each table runs in its own task: a panic inside a reader library on a
            // malformed file fails that table, not the job.
            let mut task = tokio::spawn(async move {
                let p = profile::profile_table(&ctx, &loc, &t, &limits, popts, prior.as_ref()).await;
                loc.done_with(&t.files);
                p
            });
            let p = tokio::select! {
                p = &mut task => match p {
                    Ok(p) => p,
                    Err(e) => {
                        profile::TableProfile::failed(&name, &root, format!("reader crashed: {e}"))
                    }
                },
                // A stop reaches the profiling of a big table too: its task is dropped.
                () = opts.cancel.cancelled() => {
                    task.abort();
                    profile::TableProfile::failed(&name, &root, "cancelled".to_string())
                }
            };
            tracing::debug!(table = %name, ms = started.elapsed().as_millis() as u64, "profiled");
            pb.inc(1);
            pb.set_message(name);
            p
        }
    })
    .buffer_unordered(slots * SMALL_TABLES_PER_SLOT);
    // Collected into a vector of the right size: growing one by doubling held up to twice
    // the profiles of a 20,000-table source at once.
    while let Some(p) = profiled.next().await {
        tables.push(p);
    }
    drop(profiled);
    tables.extend(carried);
    tables.sort_by(|a, b| a.table_name.cmp(&b.table_name));
    if let Some(prev) = previous.filter(|p| !p.is_empty()) {
        report.changes = changes_since(prev, &tables, &found_names, opts.spec.shard, latest_run);
    }
    report.tables_failed = tables
        .iter()
        .filter(|t| t.status == TableStatus::Failed)
        .count();
    report.status = if report.tables_failed == 0 {
        RunStatus::Succeeded
    } else if report.tables_failed < tables.len() {
        RunStatus::Partial
    } else {
        RunStatus::Failed
    };
    if report.status == RunStatus::Failed {
        report.error = Some(format!("all {} tables failed", tables.len()));
    }
    report.tables = tables;
    report.requests = loc.requests();
    report
}

/// What a profile depends on besides the table's files: the executor's version and the
/// profile settings. Part of every fingerprint, so that a change of either profiles again.
fn profile_settings(spec: &JobSpec) -> String {
    format!(
        "nuvyn-executor {}; samples {:?}; sample {:?}",
        crate::VERSION,
        spec.samples,
        spec.sample
    )
}

/// The changes of a source's tables since `prev` (its previous recorded run): tables
/// profiled now are compared with their previous profiles (a carried one did not change);
/// tables that were there and are no longer found are removed (a shard looks at its own
/// only); a table that failed now is not compared.
fn changes_since(
    prev: &std::collections::BTreeMap<String, previous::PreviousTable>,
    tables: &[TableProfile],
    found: &[String],
    shard: Option<crate::job::payload::Shard>,
    latest_run: Option<&str>,
) -> Vec<Change> {
    let latest_run = latest_run.map(str::to_string);
    let mut out = Vec::new();
    for t in tables {
        if t.status != TableStatus::Ok || t.carried_from.is_some() {
            continue;
        }
        let now = drift::TableSnapshot::of(t);
        match prev.get(&t.table_name) {
            Some(p) => out.extend(
                drift::compare(&t.table_name, &p.snapshot, &now)
                    .into_iter()
                    .map(|c| Change {
                        previous_run_id: Some(p.run_id.clone()),
                        ..c
                    }),
            ),
            None => out.push(Change {
                previous_run_id: latest_run.clone(),
                ..drift::table_added(&t.table_name, &now)
            }),
        }
    }
    for (name, p) in prev {
        if !found.contains(name) && shard.is_none_or(|s| s.owns(name)) {
            out.push(Change {
                previous_run_id: Some(p.run_id.clone()),
                ..drift::table_removed(name, &p.snapshot)
            });
        }
    }
    out.sort_by(|a, b| a.table_name.cmp(&b.table_name));
    out
}

/// The tables of a source profiled partition by partition, each with the stored sketches
/// a re-run can merge (none on a first run or with `--full`): only those of partitions
/// whose files did not change are fetched, and only their rollup when there is one. Sketches
/// hold sampled values as read, so only a job that keeps raw values (`--samples raw`) and
/// reads whole tables (no `--sample-*`) keeps them; a failure to read them reads the tables
/// whole.
async fn partition_sketches(
    opts: &JobOptions,
    spec: &crate::job::payload::SourceSpec,
    loc: &Location,
    tables: &[discover::DiscoveredTable],
    previous: Option<&std::collections::BTreeMap<String, previous::PreviousTable>>,
    warehouse: Option<&Warehouse>,
) -> (
    std::collections::HashMap<String, profile::partitions::PriorSketches>,
    Option<previous::StoredSketches>,
) {
    let mut out = std::collections::HashMap::new();
    if warehouse.is_none()
        || opts.spec.samples != profile::SampleMode::Raw
        || opts.spec.sample.is_some()
    {
        return (out, None);
    }
    let mut current = std::collections::BTreeMap::new();
    for t in tables.iter().filter(|t| profile::partitions::applies(t)) {
        out.insert(t.name.clone(), Default::default());
        if previous.is_some_and(|p| p.contains_key(&t.name))
            && !opts.spec.full_refresh
            // A table whose partitions cannot be told apart is reported by profiling.
            && let Ok(parts) = profile::partitions::fingerprints(loc, t)
        {
            current.insert(t.name.clone(), parts);
        }
    }
    if let Some(w) = warehouse
        && !current.is_empty()
    {
        match previous::sketches(w, &opts.spec.workflow_id, &spec.source_id, &current).await {
            Ok((found, stored)) => {
                out.extend(found);
                return (out, Some(stored));
            }
            Err(e) => tracing::warn!(
                "reading the partition sketches of earlier runs failed ({e}); those tables are read whole"
            ),
        }
    }
    (out, None)
}

/// Reads a table's small files once, so that profiling finds them kept (see
/// [`crate::storage::small_objects`]); a failure here is left for profiling to report.
async fn prefetch(loc: &Location, t: &discover::DiscoveredTable) {
    use object_store::ObjectStoreExt;
    let small = t
        .files
        .iter()
        .filter(|f| f.size <= PREFETCH_FILE_BYTES)
        .take(PREFETCH_FILES_PER_TABLE);
    for f in small {
        if let Ok(r) = loc.store.get(&f.location).await {
            let _ = r.bytes().await;
        }
    }
}

/// Small tables ([`profile::small_table`]) profiled at once per `--table-concurrency` slot:
/// a lake of 100,000 files in 20,000 tables took 21.2 s on 2 cores with 2 at once, 13.3 s
/// with 8 and 11.4 s with 16.
const SMALL_TABLES_PER_SLOT: usize = 8;

/// Files fetched ahead: tiny ones, where a round trip costs more than the bytes, and only a
/// table's first few (DataFusion reads many-file tables itself, concurrently). With 64
/// tables ahead that is at most 64 MB, what a source keeps.
const PREFETCH_FILE_BYTES: u64 = 256 * 1024;
const PREFETCH_FILES_PER_TABLE: usize = 4;

/// Runs a job. Never panics on bad data; the report carries every failure.
pub async fn run(opts: JobOptions) -> JobReport {
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = opts
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let spec = &opts.spec;
    tracing::info!(
        run_id = %run_id,
        workflow_id = %spec.workflow_id,
        source_id = spec.source_id.as_deref().unwrap_or(""),
        sources = spec.sources.len(),
        "job started"
    );
    let mut report = JobReport {
        run_id: run_id.clone(),
        executor_version: crate::VERSION.to_string(),
        workflow_id: spec.workflow_id.clone(),
        workflow_id_origin: spec.workflow_id_origin,
        source_id: spec.source_id.clone(),
        tenant_id: spec.tenant_id.clone(),
        run_mode: opts.run_mode,
        status: RunStatus::Failed,
        written: false,
        warehouse: opts.warehouse.as_ref().map(|w| w.display.clone()),
        started_at,
        finished_at: started_at,
        duration_ms: 0,
        error: None,
        warehouse_requests: RequestCounts::default(),
        shard: spec.shard,
        changes: ChangeCounts::default(),
        fail_on: spec.fail_on,
        sources: Vec::new(),
        runs_at_start: Default::default(),
    };

    // The warehouse is checked before any source is read: a job that cannot record its
    // results should fail in seconds, not after an hour of profiling.
    let warehouse = opts.warehouse.clone().map(Warehouse::for_job);
    if let Some(w) = &warehouse
        && let Err(e) = prepare_warehouse(w, opts.migrate).await
    {
        report.error = Some(e.to_string());
        report.warehouse_requests = w.root.requests();
        return finish(report, clock);
    }
    if let Some(w) = &warehouse {
        w.pin_snapshots();
    }
    phase(&clock, "warehouse ready");
    // What the previous recorded run left: fingerprints to skip by, profiles to compare with.
    let previous = match &warehouse {
        Some(w) => match previous::load(w, spec).await {
            Ok(p) => p,
            Err(e) => {
                report.error = Some(format!("reading the previous run's profiles failed: {e}"));
                report.warehouse_requests = w.root.requests();
                return finish(report, clock);
            }
        },
        None => previous::Previous::default(),
    };
    report.runs_at_start = previous.runs_present().clone();
    phase(&clock, "previous run read");

    let pb = progress_bar(opts.progress);
    let mut sources: Vec<(usize, SourceReport)> =
        futures::stream::iter(spec.sources.iter().enumerate().map(|(i, s)| {
            let opts = &opts;
            let pb = &pb;
            let prev = previous.of_source(&s.source_id);
            let latest = previous.latest_run(&s.source_id);
            let w = warehouse.as_ref();
            async move { (i, run_source(s, opts, prev, latest, w, pb).await) }
        }))
        .buffer_unordered(opts.source_concurrency.max(1))
        .collect()
        .await;
    pb.finish_and_clear();
    phase(&clock, "sources profiled");
    sources.sort_by_key(|(i, _)| *i);
    report.sources = sources.into_iter().map(|(_, s)| s).collect();

    let failed = report
        .sources
        .iter()
        .filter(|s| s.status == RunStatus::Failed)
        .count();
    let partial = report
        .sources
        .iter()
        .any(|s| s.status == RunStatus::Partial);
    report.status = if failed == report.sources.len() {
        RunStatus::Failed
    } else if failed > 0 || partial {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    if failed > 0 {
        let msgs: Vec<String> = report
            .sources
            .iter()
            .filter(|s| s.status == RunStatus::Failed)
            .map(|s| {
                format!(
                    "{}: {}",
                    s.source_path,
                    s.error.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        report.error = Some(format!(
            "{failed} of {} sources failed: {}",
            report.sources.len(),
            msgs.join("; ")
        ));
    }
    cap_reasons(&mut report);
    report.changes = ChangeCounts::of(report.sources.iter().flat_map(|s| &s.changes));

    if opts.cancel.is_cancelled() {
        report.status = RunStatus::Cancelled;
        report.error = Some("cancelled before its results were written".into());
        tracing::warn!(run_id = %report.run_id, "cancelled; nothing written");
        return finish(report, clock);
    }
    if let Some(w) = &warehouse {
        match write_results(w, &report).await {
            Ok(()) => report.written = true,
            Err(e) => {
                tracing::error!("writing results failed: {e}");
                report.status = RunStatus::Failed;
                report.error = Some(format!("writing results failed: {e}"));
            }
        }
        phase(&clock, "results written");
        report.finished_at = Utc::now();
        if opts.record_run {
            let recorded = record_run(w, &report).await;
            phase(&clock, "run recorded");
            match recorded {
                // Recorded: the run is what readers see; the earlier rows can go.
                Ok(()) if report.written => {
                    write::settle(w, &report).await;
                    phase(&clock, "earlier rows settled");
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::error!("recording the run in executor_runs failed: {e}");
                    if report.written {
                        write::retract(w, &report).await;
                        report.written = false;
                    }
                    report.status = RunStatus::Failed;
                    report
                        .error
                        .get_or_insert(format!("recording the run failed: {e}"));
                }
            }
        }
        w.finish_checkpoints().await;
        report.warehouse_requests = w.root.requests();
    }
    finish(report, clock)
}

/// Where a job's time goes, at debug level (`EXECUTOR_LOG_LEVEL=nuvyn_executor=debug`).
fn phase(clock: &Instant, name: &str) {
    tracing::debug!(ms = clock.elapsed().as_millis() as u64, "{name}");
}

/// Reasons may carry what a storage endpoint answered: kept short and without secrets
/// before they reach a result or a table.
fn cap_reasons(report: &mut JobReport) {
    let cap = |e: &mut Option<String>| {
        if let Some(m) = e.as_mut() {
            *m = redact::reason(m);
        }
    };
    for s in &mut report.sources {
        cap(&mut s.error);
        for t in &mut s.tables {
            cap(&mut t.error_message);
        }
    }
    cap(&mut report.error);
}

fn finish(mut report: JobReport, clock: Instant) -> JobReport {
    cap_reasons(&mut report);
    report.finished_at = Utc::now();
    report.duration_ms = clock.elapsed().as_millis() as u64;
    tracing::info!(
        run_id = %report.run_id,
        status = report.status.as_str(),
        ms = report.duration_ms,
        "job finished"
    );
    report
}
