//! Command-line types (clap) and their conversion into a validated [`Config`] before any
//! I/O: payload parsing, id validation and location parsing all happen here, so a bad
//! invocation exits 2 without touching storage.

pub mod logging;
pub mod run;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::discover::Filters;
use crate::job::payload::{self, CliJobArgs, JobType, RawPayload};
use crate::job::{JobOptions, RunMode};
use crate::profile::limits::MemoryLimit;
use crate::query::OutputFormat;
use crate::storage::location::{self, Location};
use crate::warehouse::DEFAULT_CATALOG;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the job failed (nothing could be profiled, or results could not be written)
  2  bad usage or bad payload (nothing was read or written)
  3  partial success (some tables or sources failed; the rest was written)
  4  --fail-on: changes of that severity or worse since the previous run (all written)

A failed job exits 1 before 4, and 4 before 3.";

pub const ENV_HELP: &str = "\
Environment:
  NUVYN_JOB_PAYLOAD     job payload JSON (how a Databricks job task starts the executor)
  NUVYN_WAREHOUSE       warehouse location (default ./warehouse)
  EXECUTOR_WRITE_TO_DB  true: metadata_extraction writes to the warehouse
  EXECUTOR_LOG_LEVEL    log level (error, warn, info, debug, trace); RUST_LOG also works
  NUVYN_API_KEY         bearer token `serve` requires (never a command-line argument)
  NUVYN_LISTEN, NUVYN_SHUTDOWN_TIMEOUT_SECS, EXECUTOR_MAX_CONCURRENT_JOBS,
  EXECUTOR_MAX_QUEUED_JOBS
                        `serve`'s --listen, --shutdown-timeout-secs, --max-concurrent-jobs
                        and --max-queued-jobs
  NUVYN_LOG_FORMAT      --log-format (text or json)
  NUVYN_MIGRATE         --migrate: jobs apply pending schema migrations
  NUVYN_DBFS_ROOT       where dbfs:/ paths are mounted (default /dbfs)
  NUVYN_MIGRATE_LOCK_WAIT_SECS
                        how long a migration waits for another run's lock (default 300)
  NUVYN_MIGRATE_LOCK_LEASE_SECS
                        how long a migration lock stays live unless its holder renews it
                        (default 30; a dead run's lock is taken over after that)
  NUVYN_NOTEBOOK_MAX_BYTES
                        largest notebook `notebook put` stores (default 52428800)
  NUVYN_MEMORY_LIMIT    --memory-limit: memory every table being profiled may hold together
                        (a size such as 4G, or a share such as 50%; default 50%)
  NUVYN_MAX_RECORD_SIZE --max-record-size: the longest line of a CSV/NDJSON file (default 64M)
  NUVYN_STORAGE_MAX_RETRIES, NUVYN_STORAGE_RETRY_TIMEOUT_SECS, NUVYN_STORAGE_TIMEOUT_SECS,
  NUVYN_STORAGE_CONNECT_TIMEOUT_SECS, NUVYN_STORAGE_BACKOFF_MS
                        retries (429/5xx/timeouts/dropped connections) and timeouts of storage
                        requests: defaults 10, 180 s, 120 s, 10 s, 100 ms

AZURE CREDENTIALS (one per location; the first found wins):
  1. a SAS token in the URL's query (container, account, or blob SAS `sr=b`)
  2. the source's `storage_options` in the payload (same keys as below, lower case)
  3. the environment:
     AZURE_STORAGE_CONNECTION_STRING    (account key, SAS, or UseDevelopmentStorage=true)
     AZURE_STORAGE_ACCOUNT_KEY          (with AZURE_STORAGE_ACCOUNT_NAME for az:// URLs)
     AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_TOKEN (bearer)
     AZURE_CLIENT_ID + AZURE_CLIENT_SECRET + AZURE_TENANT_ID   (service principal)
     AZURE_CLIENT_ID + AZURE_TENANT_ID + AZURE_FEDERATED_TOKEN_FILE   (workload identity)
     AZURE_USE_AZURE_CLI=true, AZURE_USE_MANAGED_IDENTITY=true (or IDENTITY_ENDPOINT set)
     AZURE_SKIP_SIGNATURE=true          (public containers)
  A source with its own storage_options never uses the environment's credentials; a
  connection string or key naming another account is skipped. AZURE_STORAGE_ENDPOINT sets
  a private or emulator endpoint; emulator URLs (http://127.0.0.1:10000/devstoreaccount1/...)
  default to the emulator's development key.";

#[derive(Debug, Parser)]
#[command(
    name = "nuvyn-executor",
    version,
    about = "Catalogues a data lake: discovers tables, profiles them with DataFusion, and writes \
             the results as Delta Lake tables partitioned by workflow_id.",
    after_help = format!("{EXIT_CODES}\n\n{ENV_HELP}"),
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Log line format on stderr (json for Databricks driver logs).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "NUVYN_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultFormat {
    Json,
    Table,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Discover and profile data sources, and write the results to the warehouse.
    #[command(after_help = EXIT_CODES)]
    Extract(ExtractArgs),
    /// The upstream form existing Databricks jobs call; writes only with --write-to-db.
    #[command(name = "metadata_extraction", after_help = EXIT_CODES)]
    MetadataExtraction(LegacyArgs),
    /// Check that the warehouse tables exist with the expected schemas; create missing ones.
    #[command(name = "schema_validation")]
    SchemaValidation(SchemaArgs),
    /// Run DataFusion SQL over the warehouse tables
    /// (`hive_metastore._executor_metadata.<table>`).
    Sql(SqlArgs),
    /// Print a workflow's metadata as nested JSON (sources -> tables -> columns).
    Query(QueryArgs),
    /// List what changed between runs of a workflow (tables and columns added, removed,
    /// renamed, retyped; statistics beyond their thresholds), oldest first.
    Changes(ChangesArgs),
    /// Warehouse housekeeping: compact small files (OPTIMIZE), write checkpoints, remove
    /// expired commit files, and VACUUM when asked. Jobs leave this to a scheduled run.
    Maintain(MaintainArgs),
    /// Versioned schema migrations of the warehouse (sql/migrations, built in).
    Migrate(MigrateArgs),
    /// Print the Spark SQL registering every warehouse table as an external Delta table
    /// (what notebooks/register_tables runs on Databricks).
    Ddl(DdlArgs),
    /// The HTTP API: create and follow jobs (bearer token from NUVYN_API_KEY).
    Serve(ServeArgs),
    /// Versioned Jupyter notebooks per workflow (the notebook migration store).
    Notebook(NotebookArgs),
    /// Cell <-> operator mappings between notebook versions and workflow versions.
    Mapping(MappingArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; anything but loopback needs NUVYN_API_KEY.
    #[arg(long, env = "NUVYN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// A data_source_path prefix jobs may read (repeat; e.g. abfss://lake@acct.dfs.core.windows.net/raw).
    #[arg(long = "allow-source", value_name = "PREFIX")]
    pub allow_sources: Vec<String>,
    /// Let jobs read local paths (off: no caller can make the server read its own files).
    #[arg(long)]
    pub allow_local: bool,
    /// A storage endpoint (not Azure's own) payloads may name in storage_options.endpoint,
    /// http:// included, and that the server's credentials may be sent to (repeat).
    #[arg(long = "allow-endpoint", value_name = "URL")]
    pub allow_endpoints: Vec<String>,
    /// Let jobs read emulator URLs (http://127.0.0.1:10000/<account>/<container>/...).
    #[arg(long)]
    pub allow_emulator: bool,
    /// Fail a source of an API job whose listing holds more than this many files.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_files: usize,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[arg(long, env = "EXECUTOR_MAX_CONCURRENT_JOBS", default_value_t = 2)]
    pub max_concurrent_jobs: usize,
    /// Jobs waiting beyond the running ones; more are refused with 429.
    #[arg(long, env = "EXECUTOR_MAX_QUEUED_JOBS", default_value_t = 100)]
    pub max_queued_jobs: usize,
    /// Largest request body accepted.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// Largest notebook upload accepted (notebooks carry their outputs).
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub notebook_body_limit_bytes: usize,
    /// On SIGTERM/SIGINT: seconds running jobs get to finish before they are recorded as
    /// interrupted.
    #[arg(long, env = "NUVYN_SHUTDOWN_TIMEOUT_SECS", default_value_t = 60)]
    pub shutdown_timeout_secs: u64,
    /// An origin browsers may call the API from (repeat); none: no CORS headers.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DdlArgs {
    /// Catalog to register under: `<catalog>._executor_metadata.<table>`. Unity Catalog
    /// users pass their catalog; the default, hive_metastore, is the name the migration
    /// document's queries use (workspaces without Unity Catalog have only it).
    #[arg(long, default_value = DEFAULT_CATALOG)]
    pub catalog: String,
    /// The warehouse as the cluster reaches it: any Azure URL form (written as abfss://, in
    /// the account's own cloud) or dbfs:/ (/dbfs/... is written as dbfs:/...). A local path
    /// or an emulator URL is refused: Spark cannot reach it. A SAS query is never printed.
    #[arg(long, env = "NUVYN_WAREHOUSE")]
    pub warehouse: String,
}

#[derive(Debug, Args)]
pub struct NotebookArgs {
    #[command(subcommand)]
    pub action: NotebookAction,
    #[command(flatten)]
    pub warehouse: GlobalWarehouseArg,
}

#[derive(Debug, Clone, Subcommand)]
pub enum NotebookAction {
    /// Store a notebook as the workflow's next version (identical content: the existing
    /// version); the previous version's mappings are carried to it.
    Put {
        #[arg(long)]
        workflow_id: String,
        /// The .ipynb file (nbformat 4).
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long)]
        created_by: Option<String>,
    },
    /// Write a notebook version (default: the latest) to stdout or --out.
    Get {
        #[arg(long)]
        workflow_id: String,
        #[arg(long)]
        version: Option<i32>,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The workflow's notebook versions.
    List {
        #[arg(long)]
        workflow_id: String,
    },
    /// Cells added, removed, changed and moved between two versions.
    Diff {
        #[arg(long)]
        workflow_id: String,
        #[arg(long)]
        from: i32,
        #[arg(long)]
        to: i32,
    },
}

#[derive(Debug, Args)]
pub struct MappingArgs {
    #[command(subcommand)]
    pub action: MappingAction,
    #[command(flatten)]
    pub warehouse: GlobalWarehouseArg,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MappingAction {
    /// Store the mapping of a workflow version to a notebook version (default: the latest).
    Put {
        #[arg(long)]
        workflow_id: String,
        #[arg(long)]
        workflow_version: i32,
        #[arg(long)]
        notebook_version: Option<i32>,
        /// {"cell_to_operator": {...}, "operator_to_cell": {...}}
        #[arg(long)]
        file: std::path::PathBuf,
        /// The workflow JSON: the mapping may then name only its operators.
        #[arg(long)]
        workflow: Option<std::path::PathBuf>,
    },
    /// The best mapping for a workflow version and notebook version (default: the latest):
    /// its own (carried through notebook edits since it was made), else the newest earlier
    /// workflow version's; with its status, stale cells and operators, orphaned operators.
    Get {
        #[arg(long)]
        workflow_id: String,
        #[arg(long)]
        workflow_version: i32,
        #[arg(long)]
        notebook_version: Option<i32>,
        /// The workflow JSON: the mapping's operators it no longer has are listed
        /// (`missing_operators`).
        #[arg(long)]
        workflow: Option<std::path::PathBuf>,
    },
    /// Validate a mapping without storing it.
    Check {
        #[arg(long)]
        workflow_id: String,
        #[arg(long)]
        notebook_version: Option<i32>,
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long)]
        workflow: Option<std::path::PathBuf>,
    },
}

/// `--warehouse` for commands with subcommands: accepted before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalWarehouseArg {
    /// Warehouse location; tables live at <warehouse>/_executor_metadata/<table>.
    #[arg(
        long = "warehouse",
        global = true,
        env = "NUVYN_WAREHOUSE",
        default_value = "./warehouse"
    )]
    pub warehouse: String,
}

impl GlobalWarehouseArg {
    fn arg(&self) -> WarehouseArg {
        WarehouseArg {
            warehouse: self.warehouse.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub action: MigrateAction,
    #[command(flatten)]
    pub warehouse: GlobalWarehouseArg,
    /// Use the migration files of this directory instead of the built-in ones (to try a new
    /// migration before it ships).
    #[arg(long, global = true, value_name = "DIR")]
    pub migrations: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MigrateAction {
    /// Every migration with its state (applied, pending, failed, interrupted, changed).
    Status,
    /// What `apply` would run, checked against the warehouse's tables; changes nothing.
    Plan {
        #[arg(long, value_name = "V")]
        target: Option<u32>,
    },
    /// Apply pending migrations in order (resuming a failed or interrupted one).
    Apply {
        /// Stop after this version.
        #[arg(long, value_name = "V")]
        target: Option<u32>,
        /// Check and print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check applied migrations against the files (checksums) and the binary's version.
    Validate,
    /// Remove failed/interrupted history rows and a dead run's lock; accept edited files.
    Repair,
    /// Every migration's statements and checksum and the history table's DDL, as JSON: what
    /// the apply_migrations notebook runs through spark.sql where this binary cannot write
    /// (the Databricks route). Reads no warehouse.
    Export,
}

#[derive(Debug, Args, Clone)]
pub struct WarehouseArg {
    /// Warehouse location; tables live at <warehouse>/_executor_metadata/<table>.
    #[arg(long, env = "NUVYN_WAREHOUSE", default_value = "./warehouse")]
    pub warehouse: String,
}

/// What profiling may use; unset: `NUVYN_MEMORY_LIMIT` / `NUVYN_MAX_RECORD_SIZE`, then the
/// defaults.
#[derive(Debug, Args, Clone, Default)]
pub struct LimitArgs {
    /// Memory every table being profiled may hold together (DataFusion's memory pool): a size
    /// (4G, 512M) or a share of this machine's or container's memory (50%, the default). A
    /// table that needs more fails alone, naming this option.
    #[arg(long, value_name = "SIZE|PERCENT")]
    pub memory_limit: Option<MemoryLimit>,
    /// The longest line a CSV/NDJSON file may hold (default 64M); a file with a longer one
    /// (a compressed file that inflates to one huge line) fails its table.
    #[arg(long, value_name = "SIZE", value_parser = crate::profile::limits::parse_size)]
    pub max_record_size: Option<usize>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DiscoveryArgs {
    /// Fail a source whose listing holds more than this many files (a bound on what one
    /// job may list and hold).
    #[arg(long, value_name = "N")]
    pub max_files: Option<usize>,
    /// Only files whose path (relative to the source) matches one of these globs.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip files whose path (relative to the source) matches one of these globs.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Sources processed at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub source_concurrency: u16,
    /// Tables profiled at once within a source; small tables (up to 8 MB, read as one
    /// partition) eight times as many.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub table_concurrency: u16,
    /// Remote reads at once within a source (files sniffed while discovering, small files
    /// fetched ahead of profiling).
    #[arg(long, default_value_t = crate::job::DEFAULT_IO_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub io_concurrency: u16,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Apply pending schema migrations to the warehouse before writing, instead of refusing
    /// a warehouse whose schema is behind this executor's.
    #[arg(long, env = "NUVYN_MIGRATE")]
    pub migrate: bool,
    /// Process only shard I of N of each source's tables (0 <= I < N); N runs with
    /// 0/N .. N-1/N together equal one run. Also the payload's `shard`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// What is kept of profiled values (sample values, top values, text min/max): `masked`
    /// masks those of personal columns (e-mail, phone, card, IBAN, national id, IP),
    /// `none` keeps no sample or top values at all, `raw` keeps them as read. Also the
    /// payload's `profile.samples`. [default: masked]
    #[arg(long, value_parser = ["none", "masked", "raw"])]
    pub samples: Option<String>,
    /// Profile about N rows of each table that has more: random byte blocks of plain CSV and
    /// NDJSON, random row groups of Parquet (others are read whole). Row counts stay exact
    /// where metadata gives them; every column records the share read. Also the payload's
    /// `profile.sample: {"rows": N}`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "sample_fraction")]
    pub sample_rows: Option<u64>,
    /// Profile this share (0 < F < 1) of each table over 64 MiB, as --sample-rows does.
    /// Also the payload's `profile.sample: {"fraction": F}`.
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    pub sample_fraction: Option<f64>,
    /// Profile every table again. Without it, a table whose fingerprint (its files' names,
    /// sizes and ETags or modification times, and these profile settings) matches the
    /// previous recorded run's is not read: its profile is carried into this run. Also the
    /// payload's `full_refresh: true`.
    #[arg(long)]
    pub full: bool,
    /// Exit 4 when this run found changes of this severity or worse since the previous
    /// recorded run (README "Profiles over time"). Also the payload's `fail_on`.
    #[arg(long, value_name = "SEVERITY", value_parser = ["breaking", "warning"])]
    pub fail_on: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl DiscoveryArgs {
    fn sample(&self) -> Option<crate::profile::SampleSpec> {
        use crate::profile::SampleSpec;
        self.sample_rows
            .map(SampleSpec::Rows)
            .or(self.sample_fraction.map(SampleSpec::Fraction))
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a share between 0 and 1 (e.g. 0.1)")),
    }
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Data source paths (files or folders): local, file://, /Volumes/..., dbfs:/...
    pub paths: Vec<String>,
    /// Primary identifier; required here or in NUVYN_JOB_PAYLOAD.
    #[arg(long)]
    pub workflow_id: Option<String>,
    /// Optional source identifier (filter).
    #[arg(long)]
    pub source_id: Option<String>,
    /// Source type recorded in `sources.source_type` (default: from the location).
    #[arg(long)]
    pub source_type: Option<String>,
    #[arg(long)]
    pub tenant_id: Option<String>,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Discover and profile fully, print the result, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "json")]
    pub output: ResultFormat,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

#[derive(Debug, Args)]
pub struct LegacyArgs {
    pub data_source_path: Option<String>,
    pub data_source_type: Option<String>,
    pub tenant_id: Option<String>,
    /// Write results to the warehouse (also EXECUTOR_WRITE_TO_DB=true).
    #[arg(long)]
    pub write_to_db: bool,
    #[arg(long)]
    pub workflow_id: Option<String>,
    #[arg(long)]
    pub source_id: Option<String>,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    #[arg(long, value_enum, default_value = "json")]
    pub output: ResultFormat,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Only check; do not create missing tables.
    #[arg(long)]
    pub no_create: bool,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL to run.
    pub query: String,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Catalog name the tables are registered under (Unity Catalog users: their catalog).
    #[arg(long, default_value = DEFAULT_CATALOG)]
    pub catalog: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[arg(long)]
    pub workflow_id: String,
    #[arg(long)]
    pub source_id: Option<String>,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    #[arg(long, default_value = DEFAULT_CATALOG)]
    pub catalog: String,
}

#[derive(Debug, Args)]
pub struct ChangesArgs {
    #[arg(long)]
    pub workflow_id: String,
    #[arg(long)]
    pub source_id: Option<String>,
    /// Only changes found from this time on: RFC 3339 (2026-11-01T06:00:00Z) or a date
    /// (2026-11-01, UTC midnight).
    #[arg(long, value_name = "TIME", value_parser = payload::parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    #[arg(long, default_value = DEFAULT_CATALOG)]
    pub catalog: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Skip compaction (OPTIMIZE).
    #[arg(long)]
    pub no_optimize: bool,
    /// Also VACUUM: delete unreferenced data files older than this many hours (Delta refuses
    /// less than the table's delta.deletedFileRetentionDuration, 168 h by default).
    #[arg(long, value_name = "HOURS")]
    pub vacuum_hours: Option<u64>,
    /// Remove rows of the profile history (`table_history`, `column_history`) profiled more
    /// than this many days ago. Without it the history is kept whole.
    #[arg(long, value_name = "DAYS")]
    pub history_days: Option<u64>,
    /// Change nothing; report what VACUUM would delete.
    #[arg(long)]
    pub dry_run: bool,
}

/// What the process will do, validated, with the settings every command shares.
#[derive(Debug)]
pub struct Config {
    pub task: Task,
    pub settings: Settings,
}

/// Settings from the environment, validated (`--help` lists them).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `NUVYN_DBFS_ROOT` and the `NUVYN_STORAGE_*` request settings.
    pub storage: crate::storage::Settings,
    /// `NUVYN_MIGRATE_LOCK_WAIT_SECS`.
    pub migrate: crate::migrate::MigratePolicy,
    /// `NUVYN_NOTEBOOK_MAX_BYTES`.
    pub notebook_max_bytes: usize,
    /// `NUVYN_MEMORY_LIMIT`.
    pub memory_limit: MemoryLimit,
    /// `NUVYN_MAX_RECORD_SIZE`.
    pub max_record_bytes: usize,
}

impl Settings {
    /// The limits of profiling: the command's options over the environment's.
    pub fn limits(&self, args: &LimitArgs) -> crate::profile::Limits {
        crate::profile::Limits::new(
            args.memory_limit.unwrap_or(self.memory_limit).bytes(),
            args.max_record_size.unwrap_or(self.max_record_bytes),
        )
    }
}

/// The command to run, validated.
#[derive(Debug)]
pub enum Task {
    Job {
        options: Box<JobOptions>,
        output: ResultFormat,
    },
    SchemaValidation {
        warehouse: Location,
        create: bool,
    },
    Sql {
        warehouse: Location,
        catalog: String,
        query: String,
        format: OutputFormat,
    },
    Query {
        warehouse: Location,
        catalog: String,
        workflow_id: String,
        source_id: Option<String>,
    },
    Changes {
        warehouse: Location,
        catalog: String,
        workflow_id: String,
        source_id: Option<String>,
        since: Option<chrono::DateTime<chrono::Utc>>,
        format: OutputFormat,
    },
    Maintain {
        warehouse: Location,
        options: crate::warehouse::MaintainOptions,
    },
    Migrate {
        warehouse: Location,
        action: MigrateAction,
        migrations: Option<std::path::PathBuf>,
    },
    Ddl {
        catalog: String,
        location: String,
    },
    Serve {
        config: Box<crate::server::ServerConfig>,
        listen: std::net::SocketAddr,
    },
    Notebook {
        warehouse: Location,
        action: NotebookAction,
    },
    Mapping {
        warehouse: Location,
        action: MappingAction,
    },
    /// No command and no payload: print help.
    Help,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Payload(#[from] payload::PayloadError),
    #[error("--warehouse: {0}")]
    Warehouse(location::LocationError),
    #[error(transparent)]
    Discover(#[from] crate::discover::DiscoverError),
    #[error("EXECUTOR_WRITE_TO_DB must be true or false, got {0:?}")]
    WriteToDb(String),
    #[error("{name}: {reason}")]
    Setting { name: String, reason: String },
    #[error("{0}")]
    Usage(String),
}

/// The environment the config depends on, passed in so tests need not set variables. Its
/// `Debug` shows whether the API key is set, never the key.
#[derive(Default, Clone)]
pub struct Env {
    pub payload: Option<String>,
    pub write_to_db: Option<String>,
    pub warehouse: Option<String>,
    /// `NUVYN_API_KEY`: the bearer token `serve` requires (never a command-line argument,
    /// where other users of the machine could see it).
    pub api_key: Option<String>,
    /// `NUVYN_DBFS_ROOT`.
    pub dbfs_root: Option<String>,
    /// `NUVYN_MIGRATE_LOCK_WAIT_SECS`.
    pub migrate_lock_wait_secs: Option<String>,
    /// `NUVYN_MIGRATE_LOCK_LEASE_SECS`.
    pub migrate_lock_lease_secs: Option<String>,
    /// `NUVYN_NOTEBOOK_MAX_BYTES`.
    pub notebook_max_bytes: Option<String>,
    /// `NUVYN_MEMORY_LIMIT`.
    pub memory_limit: Option<String>,
    /// `NUVYN_MAX_RECORD_SIZE`.
    pub max_record_size: Option<String>,
    /// The `NUVYN_STORAGE_*` variables that are set.
    pub storage_requests: Vec<(String, String)>,
    /// `AZURE_STORAGE_ACCOUNT_NAME`: the account `ddl` writes for an `az://` warehouse.
    pub azure_account_name: Option<String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("payload", &self.payload.as_ref().map(|p| p.len()))
            .field("write_to_db", &self.write_to_db)
            .field("warehouse", &self.warehouse)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("dbfs_root", &self.dbfs_root)
            .field("migrate_lock_wait_secs", &self.migrate_lock_wait_secs)
            .field("migrate_lock_lease_secs", &self.migrate_lock_lease_secs)
            .field("notebook_max_bytes", &self.notebook_max_bytes)
            .field("memory_limit", &self.memory_limit)
            .field("max_record_size", &self.max_record_size)
            .field("storage_requests", &self.storage_requests)
            .field("azure_account_name", &self.azure_account_name)
            .finish()
    }
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            payload: std::env::var("NUVYN_JOB_PAYLOAD")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            write_to_db: std::env::var("EXECUTOR_WRITE_TO_DB").ok(),
            warehouse: std::env::var("NUVYN_WAREHOUSE").ok(),
            api_key: std::env::var("NUVYN_API_KEY")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            dbfs_root: std::env::var("NUVYN_DBFS_ROOT").ok(),
            migrate_lock_wait_secs: std::env::var("NUVYN_MIGRATE_LOCK_WAIT_SECS").ok(),
            migrate_lock_lease_secs: std::env::var("NUVYN_MIGRATE_LOCK_LEASE_SECS").ok(),
            notebook_max_bytes: std::env::var("NUVYN_NOTEBOOK_MAX_BYTES").ok(),
            memory_limit: std::env::var("NUVYN_MEMORY_LIMIT").ok(),
            max_record_size: std::env::var("NUVYN_MAX_RECORD_SIZE").ok(),
            storage_requests: crate::storage::azure::REQUEST_ENV
                .iter()
                .filter_map(|(k, _)| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                .collect(),
            azure_account_name: std::env::var("AZURE_STORAGE_ACCOUNT_NAME").ok(),
        }
    }

    /// The settings every command shares; an unset or empty variable keeps its default.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        fn number(name: &str, v: &Option<String>) -> Result<Option<u64>, ConfigError> {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<u64>().map_err(|_| ConfigError::Setting {
                        name: name.to_string(),
                        reason: format!("expected a whole number, got {v:?}"),
                    })
                })
                .transpose()
        }
        let requests = crate::storage::azure::RequestSettings::from_env(&|k: &str| {
            self.storage_requests
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
        .map_err(|e| match e {
            crate::storage::azure::AzureError::BadSetting { field, reason } => {
                ConfigError::Setting {
                    name: field,
                    reason,
                }
            }
            other => ConfigError::Usage(other.to_string()),
        })?;
        let mut storage = crate::storage::Settings {
            requests,
            ..Default::default()
        };
        if let Some(root) = self.dbfs_root.as_deref().filter(|r| !r.trim().is_empty()) {
            storage.dbfs_root = root.trim().into();
        }
        let mut migrate = crate::migrate::MigratePolicy::default();
        if let Some(secs) = number("NUVYN_MIGRATE_LOCK_WAIT_SECS", &self.migrate_lock_wait_secs)? {
            migrate.lock_wait = std::time::Duration::from_secs(secs);
        }
        if let Some(secs) = number(
            "NUVYN_MIGRATE_LOCK_LEASE_SECS",
            &self.migrate_lock_lease_secs,
        )? {
            if secs == 0 {
                return Err(ConfigError::Setting {
                    name: "NUVYN_MIGRATE_LOCK_LEASE_SECS".into(),
                    reason: "a lease must be at least 1 second".into(),
                });
            }
            migrate.lock_lease = std::time::Duration::from_secs(secs);
        }
        let notebook_max_bytes = number("NUVYN_NOTEBOOK_MAX_BYTES", &self.notebook_max_bytes)?
            .map(|n| n as usize)
            .unwrap_or(crate::notebook::DEFAULT_MAX_BYTES);
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let memory_limit = set(&self.memory_limit)
            .map(|v| {
                v.parse::<MemoryLimit>()
                    .map_err(|reason| ConfigError::Setting {
                        name: "NUVYN_MEMORY_LIMIT".into(),
                        reason,
                    })
            })
            .transpose()?
            .unwrap_or_default();
        let max_record_bytes = set(&self.max_record_size)
            .map(|v| {
                crate::profile::limits::parse_size(v).map_err(|reason| ConfigError::Setting {
                    name: "NUVYN_MAX_RECORD_SIZE".into(),
                    reason,
                })
            })
            .transpose()?
            .unwrap_or(crate::profile::limits::DEFAULT_MAX_RECORD_BYTES);
        Ok(Settings {
            storage,
            migrate,
            notebook_max_bytes,
            memory_limit,
            max_record_bytes,
        })
    }
}

fn warehouse(arg: &WarehouseArg) -> Result<Location, ConfigError> {
    let loc = location::parse(&arg.warehouse).map_err(ConfigError::Warehouse)?;
    if loc.kind == location::LocationKind::Volumes {
        // Volumes are fine to read, but their FUSE mount has no atomic rename or hard links,
        // which a Delta commit from delta-rs needs to be safe.
        return Err(ConfigError::Usage(format!(
            "the warehouse {} is on a Unity Catalog volume, which cannot take Delta commits from delta-rs (no atomic rename or hard links): put the warehouse on abfss://<container>@<account>.dfs.core.windows.net/...; volumes are fine as data sources",
            loc.display
        )));
    }
    Ok(loc)
}

fn parse_bool_env(v: &Option<String>) -> Result<bool, ConfigError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(false),
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(ConfigError::WriteToDb(s.to_string())),
        },
    }
}

struct JobInputs {
    cli: CliJobArgs,
    discovery: DiscoveryArgs,
    warehouse: Option<Location>,
    output: ResultFormat,
}

fn job_config(env: &Env, settings: &Settings, inputs: JobInputs) -> Result<Task, ConfigError> {
    let raw = env.payload.as_deref().map(RawPayload::parse).transpose()?;
    let spec = payload::resolve(raw.as_ref(), &inputs.cli, true)?;
    if spec.job_type == JobType::SchemaValidation {
        return Ok(Task::SchemaValidation {
            warehouse: inputs
                .warehouse
                .ok_or_else(|| ConfigError::Usage("schema_validation needs a warehouse".into()))?,
            create: true,
        });
    }
    // Source locations are parsed here too, so a malformed one is a usage error (exit 2).
    for (i, s) in spec.sources.iter().enumerate() {
        location::check(&s.path).map_err(|e| {
            ConfigError::Usage(format!(
                "source {} ({}): {e}",
                i + 1,
                crate::redact::url(&s.path)
            ))
        })?;
    }
    let filters = Filters::new(&inputs.discovery.include, &inputs.discovery.exclude)?
        .with_max_files(inputs.discovery.max_files);
    Ok(Task::Job {
        options: Box::new(JobOptions {
            spec,
            run_mode: if raw.is_some() {
                RunMode::Payload
            } else {
                RunMode::Cli
            },
            warehouse: inputs.warehouse,
            filters,
            source_concurrency: inputs.discovery.source_concurrency as usize,
            table_concurrency: inputs.discovery.table_concurrency as usize,
            io_concurrency: inputs.discovery.io_concurrency as usize,
            progress: !inputs.discovery.no_progress,
            migrate: crate::migrate::MigratePolicy {
                apply_pending: inputs.discovery.migrate,
                ..settings.migrate
            },
            run_id: None,
            record_run: true,
            cancel: Default::default(),
            limits: settings.limits(&inputs.discovery.limits),
        }),
        output: inputs.output,
    })
}

impl Cli {
    /// Validates everything; no I/O.
    pub fn into_config(self, env: &Env) -> Result<Config, ConfigError> {
        let settings = env.settings()?;
        let task = self.into_task(env, &settings)?;
        Ok(Config { task, settings })
    }

    fn into_task(self, env: &Env, settings: &Settings) -> Result<Task, ConfigError> {
        match self.command {
            None if env.payload.is_some() => job_config(
                env,
                settings,
                JobInputs {
                    cli: CliJobArgs::default(),
                    discovery: DiscoveryArgs {
                        source_concurrency: 4,
                        table_concurrency: 2,
                        io_concurrency: crate::job::DEFAULT_IO_CONCURRENCY as u16,
                        ..Default::default()
                    },
                    warehouse: Some(warehouse(&WarehouseArg {
                        warehouse: env
                            .warehouse
                            .clone()
                            .unwrap_or_else(|| "./warehouse".into()),
                    })?),
                    output: ResultFormat::Json,
                },
            ),
            None => Ok(Task::Help),
            Some(Command::Extract(a)) => job_config(
                env,
                settings,
                JobInputs {
                    cli: CliJobArgs {
                        shard: a.discovery.shard.clone(),
                        full: a.discovery.full,
                        fail_on: a.discovery.fail_on.clone(),
                        samples: a.discovery.samples.clone(),
                        sample: a.discovery.sample(),
                        paths: a.paths,
                        workflow_id: a.workflow_id,
                        source_id: a.source_id,
                        source_type: a.source_type,
                        tenant_id: a.tenant_id,
                    },
                    warehouse: if a.dry_run {
                        None
                    } else {
                        Some(warehouse(&a.warehouse)?)
                    },
                    discovery: a.discovery,
                    output: a.output,
                },
            ),
            Some(Command::MetadataExtraction(a)) => {
                let write = a.write_to_db || parse_bool_env(&env.write_to_db)?;
                job_config(
                    env,
                    settings,
                    JobInputs {
                        cli: CliJobArgs {
                            shard: a.discovery.shard.clone(),
                            full: a.discovery.full,
                            fail_on: a.discovery.fail_on.clone(),
                            samples: a.discovery.samples.clone(),
                            sample: a.discovery.sample(),
                            paths: a.data_source_path.into_iter().collect(),
                            workflow_id: a.workflow_id,
                            source_id: a.source_id,
                            source_type: a.data_source_type,
                            tenant_id: a.tenant_id,
                        },
                        warehouse: if write {
                            Some(warehouse(&a.warehouse)?)
                        } else {
                            None
                        },
                        discovery: a.discovery,
                        output: a.output,
                    },
                )
            }
            Some(Command::SchemaValidation(a)) => Ok(Task::SchemaValidation {
                warehouse: warehouse(&a.warehouse)?,
                create: !a.no_create,
            }),
            Some(Command::Sql(a)) => Ok(Task::Sql {
                warehouse: warehouse(&a.warehouse)?,
                catalog: a.catalog,
                query: a.query,
                format: a.format,
            }),
            Some(Command::Serve(a)) => {
                if env.api_key.is_none() && !a.listen.ip().is_loopback() {
                    return Err(ConfigError::Usage(format!(
                        "refusing to listen on {} without NUVYN_API_KEY: set a key, or listen on 127.0.0.1",
                        a.listen
                    )));
                }
                for p in &a.allow_sources {
                    location::address(p).map_err(|e| {
                        ConfigError::Usage(format!("--allow-source {}: {e}", crate::redact::url(p)))
                    })?;
                }
                if a.max_concurrent_jobs == 0 {
                    return Err(ConfigError::Usage(
                        "--max-concurrent-jobs must be at least 1".into(),
                    ));
                }
                Ok(Task::Serve {
                    config: Box::new(crate::server::ServerConfig {
                        warehouse: warehouse(&a.warehouse)?,
                        api_key: env.api_key.clone(),
                        allow_sources: a.allow_sources,
                        allow_local: a.allow_local,
                        allow_endpoints: a
                            .allow_endpoints
                            .iter()
                            .map(|e| e.trim().trim_end_matches('/').to_string())
                            .collect(),
                        allow_emulator: a.allow_emulator,
                        max_files: Some(a.max_files),
                        max_concurrent_jobs: a.max_concurrent_jobs,
                        max_queued_jobs: a.max_queued_jobs,
                        body_limit: a.body_limit_bytes,
                        notebook_body_limit: a.notebook_body_limit_bytes,
                        shutdown_timeout: std::time::Duration::from_secs(a.shutdown_timeout_secs),
                        cors_origins: a.cors_origins,
                        migrate: settings.migrate,
                        limits: settings.limits(&a.limits),
                    }),
                    listen: a.listen,
                })
            }
            Some(Command::Ddl(a)) => {
                // Unity Catalog names take letters, digits, '_' and '-' (backticks quote them).
                if a.catalog.is_empty()
                    || !a
                        .catalog
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(ConfigError::Usage(format!(
                        "invalid --catalog {:?}: use letters, digits, '_' and '-'",
                        a.catalog
                    )));
                }
                let location =
                    location::spark_location(&a.warehouse, env.azure_account_name.as_deref())
                        .map_err(ConfigError::Warehouse)?;
                Ok(Task::Ddl {
                    catalog: a.catalog,
                    location,
                })
            }
            Some(Command::Notebook(a)) => {
                let (NotebookAction::Put { workflow_id, .. }
                | NotebookAction::Get { workflow_id, .. }
                | NotebookAction::List { workflow_id }
                | NotebookAction::Diff { workflow_id, .. }) = &a.action;
                payload::validate_id("--workflow-id", workflow_id)?;
                Ok(Task::Notebook {
                    warehouse: warehouse(&a.warehouse.arg())?,
                    action: a.action,
                })
            }
            Some(Command::Mapping(a)) => {
                let (MappingAction::Put { workflow_id, .. }
                | MappingAction::Get { workflow_id, .. }
                | MappingAction::Check { workflow_id, .. }) = &a.action;
                payload::validate_id("--workflow-id", workflow_id)?;
                Ok(Task::Mapping {
                    warehouse: warehouse(&a.warehouse.arg())?,
                    action: a.action,
                })
            }
            Some(Command::Migrate(a)) => Ok(Task::Migrate {
                warehouse: warehouse(&a.warehouse.arg())?,
                action: a.action,
                migrations: a.migrations,
            }),
            Some(Command::Maintain(a)) => Ok(Task::Maintain {
                warehouse: warehouse(&a.warehouse)?,
                options: crate::warehouse::MaintainOptions {
                    optimize: !a.no_optimize,
                    vacuum_hours: a.vacuum_hours,
                    history_days: a.history_days,
                    dry_run: a.dry_run,
                },
            }),
            Some(Command::Query(a)) => {
                validate_ids(&a.workflow_id, a.source_id.as_deref())?;
                Ok(Task::Query {
                    warehouse: warehouse(&a.warehouse)?,
                    catalog: a.catalog,
                    workflow_id: a.workflow_id,
                    source_id: a.source_id,
                })
            }
            Some(Command::Changes(a)) => {
                validate_ids(&a.workflow_id, a.source_id.as_deref())?;
                Ok(Task::Changes {
                    warehouse: warehouse(&a.warehouse)?,
                    catalog: a.catalog,
                    workflow_id: a.workflow_id,
                    source_id: a.source_id,
                    since: a.since,
                    format: a.format,
                })
            }
        }
    }
}

/// The ids a reading command (`query`, `changes`) is given, checked as a job's are.
fn validate_ids(workflow_id: &str, source_id: Option<&str>) -> Result<(), ConfigError> {
    payload::validate_id("--workflow-id", workflow_id)?;
    if let Some(s) = source_id {
        payload::validate_id("--source-id", s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str], env: Env) -> Result<Task, ConfigError> {
        let mut v = vec!["nuvyn-executor"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)
            .expect("parses")
            .into_config(&env)
            .map(|c| c.task)
    }

    #[test]
    fn extract_requires_workflow_id() {
        let e = config(&["extract", "/data"], Env::default()).unwrap_err();
        assert!(e.to_string().starts_with("workflow_id is required"), "{e}");
    }

    #[test]
    fn legacy_form_writes_only_when_asked() {
        let env = Env {
            payload: Some(r#"{"workflow_id":"w1"}"#.into()),
            ..Default::default()
        };
        match config(
            &["metadata_extraction", "/data", "csv", "default"],
            env.clone(),
        )
        .unwrap()
        {
            Task::Job { options, .. } => {
                assert!(options.warehouse.is_none());
                assert_eq!(options.run_mode, RunMode::Payload);
                assert_eq!(options.spec.sources[0].source_type.as_deref(), Some("csv"));
                assert_eq!(options.spec.tenant_id.as_deref(), Some("default"));
            }
            other => panic!("{other:?}"),
        }
        for args in [
            vec!["metadata_extraction", "/data", "--write-to-db"],
            vec!["metadata_extraction", "/data"],
        ] {
            let env = Env {
                write_to_db: Some("true".into()),
                ..env.clone()
            };
            match config(&args, env).unwrap() {
                Task::Job { options, .. } => assert!(options.warehouse.is_some()),
                other => panic!("{other:?}"),
            }
        }
        let bad = Env {
            write_to_db: Some("maybe".into()),
            ..env
        };
        assert!(matches!(
            config(&["metadata_extraction", "/data"], bad),
            Err(ConfigError::WriteToDb(_))
        ));
    }

    /// Every variable the source reads is listed in `--help` (a new setting cannot be
    /// forgotten there).
    #[test]
    fn help_lists_every_variable() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        let mut names = std::collections::BTreeSet::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for prefix in ["\"NUVYN_", "\"EXECUTOR_"] {
                    for (i, _) in text.match_indices(prefix) {
                        let name: String = text[i + 1..]
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                            .collect();
                        names.insert(name);
                    }
                }
            }
        }
        // Test-only: rewrites sql/create_tables.sql.
        names.remove("NUVYN_UPDATE_DDL");
        assert!(names.len() > 15, "{names:?}");
        let missing: Vec<_> = names
            .iter()
            .filter(|n| !help.contains(n.as_str()))
            .collect();
        assert!(missing.is_empty(), "not in --help: {missing:?}");
    }

    #[test]
    fn settings_are_validated_with_the_variable_named() {
        let env = Env {
            migrate_lock_wait_secs: Some("soon".into()),
            ..Default::default()
        };
        let e = config(&["query", "--workflow-id", "w"], env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "NUVYN_MIGRATE_LOCK_WAIT_SECS: expected a whole number, got \"soon\""
        );
        let env = Env {
            storage_requests: vec![("NUVYN_STORAGE_TIMEOUT_SECS".into(), "x".into())],
            ..Default::default()
        };
        let e = config(&["query", "--workflow-id", "w"], env).unwrap_err();
        assert!(
            e.to_string().starts_with("NUVYN_STORAGE_TIMEOUT_SECS:"),
            "{e}"
        );
        for (env, name) in [
            (
                Env {
                    migrate_lock_lease_secs: Some("0".into()),
                    ..Default::default()
                },
                "NUVYN_MIGRATE_LOCK_LEASE_SECS: a lease must be at least 1 second",
            ),
            (
                Env {
                    memory_limit: Some("lots".into()),
                    ..Default::default()
                },
                "NUVYN_MEMORY_LIMIT:",
            ),
            (
                Env {
                    max_record_size: Some("0".into()),
                    ..Default::default()
                },
                "NUVYN_MAX_RECORD_SIZE:",
            ),
        ] {
            let e = env.settings().unwrap_err().to_string();
            assert!(e.starts_with(name), "{e}");
        }
        let env = Env {
            dbfs_root: Some("/mnt/dbfs".into()),
            migrate_lock_wait_secs: Some("7".into()),
            migrate_lock_lease_secs: Some("9".into()),
            notebook_max_bytes: Some("1000".into()),
            memory_limit: Some("25%".into()),
            max_record_size: Some("1M".into()),
            ..Default::default()
        };
        let s = env.settings().unwrap();
        assert_eq!(s.storage.dbfs_root, std::path::PathBuf::from("/mnt/dbfs"));
        assert_eq!(s.migrate.lock_wait, std::time::Duration::from_secs(7));
        assert_eq!(s.migrate.lock_lease, std::time::Duration::from_secs(9));
        assert_eq!(s.notebook_max_bytes, 1000);
        assert_eq!(s.memory_limit, MemoryLimit::Percent(25));
        assert_eq!(s.max_record_bytes, 1 << 20);
        let d = Env::default().settings().unwrap();
        assert_eq!(d.storage, crate::storage::Settings::default());
        assert_eq!(d.notebook_max_bytes, crate::notebook::DEFAULT_MAX_BYTES);
    }

    #[test]
    fn bad_globs_and_ids_are_usage_errors() {
        let e = config(
            &["extract", "/d", "--workflow-id", "w", "--include", "a[b"],
            Env::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--include"), "{e}");
        let e = config(&["query", "--workflow-id", "x' OR '1'='1"], Env::default()).unwrap_err();
        assert!(e.to_string().contains("--workflow-id"), "{e}");
    }
}
