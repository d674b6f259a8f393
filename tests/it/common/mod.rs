//! Shared test helpers: real files of every format written with the real writers (arrow,
//! parquet, arrow-avro, flate2, bzip2), and a way to run jobs through the library.

pub mod proxy;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use nuvyn_executor::deltalake::arrow::array::{
    BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use nuvyn_executor::deltalake::arrow::datatypes::{DataType, Field, Schema};
use nuvyn_executor::discover::Filters;
use nuvyn_executor::job::payload::{self, CliJobArgs};
use nuvyn_executor::job::{self, JobOptions, JobReport, RunMode};
use nuvyn_executor::storage::location;

/// Five people; `name` has one null, `score` one null; `id` is declared non-null.
pub fn people() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("joined", DataType::Date32, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
            Arc::new(StringArray::from(vec![
                Some("ann"),
                Some("bob"),
                None,
                Some("dan"),
                Some("eve"),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(2.5),
                Some(3.5),
                None,
                Some(9.0),
            ])),
            Arc::new(BooleanArray::from(vec![true, false, true, true, false])),
            Arc::new(Date32Array::from(vec![19000, 19001, 19002, 19003, 19004])),
        ],
    )
    .unwrap()
}

pub const PEOPLE_CSV: &str = "id,name,score,active\n1,ann,1.5,true\n2,bob,2.5,false\n3,,3.5,true\n4,dan,,true\n5,eve,9.0,false\n";
pub const PEOPLE_NDJSON: &str =
    "{\"id\":1,\"name\":\"ann\"}\n{\"id\":2,\"name\":\"bob\"}\n{\"id\":3,\"name\":null}\n";
pub const PEOPLE_JSON_ARRAY: &str =
    "[{\"id\":1,\"name\":\"ann\"},{\"id\":2,\"name\":\"bob\"},{\"id\":3,\"name\":null}]";

pub fn mkdirs(p: &Path) {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
}

pub fn write(p: &Path, text: impl AsRef<[u8]>) {
    mkdirs(p);
    std::fs::write(p, text).unwrap();
}

pub fn write_gz(p: &Path, text: &str) {
    mkdirs(p);
    let f = std::fs::File::create(p).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
}

pub fn write_bz2(p: &Path, text: &str) {
    mkdirs(p);
    let f = std::fs::File::create(p).unwrap();
    let mut e = bzip2::write::BzEncoder::new(f, bzip2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
}

pub fn write_parquet(p: &Path, batch: &RecordBatch) {
    mkdirs(p);
    let f = std::fs::File::create(p).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

pub fn write_ipc(p: &Path, batch: &RecordBatch) {
    mkdirs(p);
    let f = std::fs::File::create(p).unwrap();
    let mut w =
        nuvyn_executor::deltalake::arrow::ipc::writer::FileWriter::try_new(f, &batch.schema())
            .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

pub fn write_avro(p: &Path, batch: &RecordBatch) {
    mkdirs(p);
    let f = std::fs::File::create(p).unwrap();
    let mut w = arrow_avro::writer::AvroWriter::new(f, batch.schema().as_ref().clone()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

/// Writes a small Delta table of `people()` with delta-rs.
pub async fn write_delta(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let url = url::Url::from_directory_path(dir).unwrap();
    let table = nuvyn_executor::deltalake::DeltaTable::try_from_url(url)
        .await
        .unwrap();
    table
        .write(vec![people()])
        .with_save_mode(nuvyn_executor::deltalake::protocol::SaveMode::Append)
        .await
        .unwrap();
}

/// Runs a job through the library as the CLI would.
pub async fn run_job(
    paths: &[&Path],
    workflow_id: &str,
    source_id: Option<&str>,
    warehouse: Option<&Path>,
) -> JobReport {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let warehouse = warehouse.map(|w| w.display().to_string());
    run_job_at(&paths, workflow_id, source_id, warehouse.as_deref()).await
}

/// Runs a job on locations given as strings (local paths or URLs).
pub async fn run_job_at(
    paths: &[String],
    workflow_id: &str,
    source_id: Option<&str>,
    warehouse: Option<&str>,
) -> JobReport {
    run_job_with(paths, workflow_id, source_id, warehouse, |_| {}).await
}

/// [`run_job_at`] with command-line options set by `options` (`--samples`, `--full`, ...).
pub async fn run_job_with(
    paths: &[String],
    workflow_id: &str,
    source_id: Option<&str>,
    warehouse: Option<&str>,
    options: impl FnOnce(&mut CliJobArgs),
) -> JobReport {
    let mut cli = CliJobArgs {
        paths: paths.to_vec(),
        workflow_id: Some(workflow_id.to_string()),
        source_id: source_id.map(str::to_string),
        ..Default::default()
    };
    options(&mut cli);
    let spec = payload::resolve(None, &cli, true).unwrap();
    job::run(JobOptions {
        spec,
        run_mode: RunMode::Cli,
        warehouse: warehouse.map(|w| location::parse(w).unwrap()),
        filters: Filters::default(),
        source_concurrency: 2,
        table_concurrency: 2,
        io_concurrency: 16,
        progress: false,
        migrate: Default::default(),
        run_id: None,
        record_run: true,
        cancel: Default::default(),
        limits: Default::default(),
    })
    .await
}

/// A Parquet file of `batch`, as bytes.
pub fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf
}

/// One day of sales: `rows` rows drawn from `seed`, some ids null; `extra` adds a column.
pub fn sales_day(seed: u64, rows: usize, extra: bool) -> RecordBatch {
    use nuvyn_executor::deltalake::arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray,
    };
    use std::sync::Arc;
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let (mut ids, mut amounts, mut cities) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rows {
        let r = next();
        ids.push((r % 10 != 0).then_some((r % 5000) as i64));
        amounts.push((next() % 100_000) as f64 / 100.0 + seed as f64);
        cities.push(["oslo", "lima", "pune", "kyiv", "baku"][(next() % 5) as usize].to_string());
    }
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(ids))),
        ("amount", Arc::new(Float64Array::from(amounts))),
        ("city", Arc::new(StringArray::from(cities))),
    ];
    if extra {
        cols.push((
            "note",
            Arc::new(StringArray::from(vec![Some("late"); rows])),
        ));
    }
    RecordBatch::try_from_iter(cols).unwrap()
}

/// The binary, with nothing from the test's own environment that would change what it does
/// (payload, warehouse, log level, Azure credentials).
pub fn bin() -> assert_cmd::Command {
    assert_cmd::Command::from_std(bin_std())
}

/// [`bin`] as a plain `std::process::Command`, for tests that spawn and wait themselves.
pub fn bin_std() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_nuvyn-executor"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AZURE_") || k.starts_with("NUVYN_STORAGE_") || k == "IDENTITY_ENDPOINT" {
            c.env_remove(k);
        }
    }
    c.env_remove("NUVYN_JOB_PAYLOAD")
        .env_remove("NUVYN_WAREHOUSE")
        .env_remove("EXECUTOR_WRITE_TO_DB")
        .env_remove("RUST_LOG")
        .env_remove("NUVYN_MEMORY_LIMIT")
        .env_remove("NUVYN_MAX_RECORD_SIZE")
        .env("EXECUTOR_LOG_LEVEL", "warn");
    c
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The Azurite blob endpoint the test command started (`NUVYN_AZURITE_BLOB`), or `None`
/// after saying why the Azure tests do not run. In CI a missing emulator is a failure.
pub fn azurite() -> Option<String> {
    match std::env::var("NUVYN_AZURITE_BLOB") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_string()),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "NUVYN_AZURITE_BLOB is not set: CI must run the Azure tests (ci/test.sh starts Azurite)"
            );
            eprintln!(
                "Azure tests not run: NUVYN_AZURITE_BLOB is not set (run ci/test.sh, which starts Azurite)"
            );
            None
        }
    }
}

pub fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs `sql --format json` against a warehouse; the query must succeed.
pub fn sql_json(wh: impl AsRef<std::ffi::OsStr>, q: &str, extra: &[&str]) -> serde_json::Value {
    sql_json_env(wh, q, extra, &[])
}

/// [`sql_json`] with extra environment variables (credentials).
pub fn sql_json_env(
    wh: impl AsRef<std::ffi::OsStr>,
    q: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let out = bin()
        .args(["sql", q, "--format", "json", "--warehouse"])
        .arg(wh)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

/// A SAS token made by Azure's own SDK (`ci/azurite/sas.js`) for the emulator's account:
/// `sas(&["container", "lake"])`, `sas(&["blob", "lake", "a/b.csv"])`, `sas(&["account"])`.
pub fn sas(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ci/azurite/sas.js");
    let out = std::process::Command::new("node")
        .arg(script)
        .args(args)
        .output()
        .expect("node (installed with Azurite by ci/test.sh)");
    assert!(
        out.status.success(),
        "sas.js {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The emulator's published development key and account (not secrets).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// The four example queries of WORKFLOW_ID_MIGRATION.md, verbatim (shared with
/// ci/migration-check.sh).
pub const DOC_QUERIES: [&str; 4] = [
    include_str!("../../fixtures/doc_queries/q1.sql"),
    include_str!("../../fixtures/doc_queries/q2.sql"),
    include_str!("../../fixtures/doc_queries/q3.sql"),
    include_str!("../../fixtures/doc_queries/q4.sql"),
];

/// Queries 1 and 4 joined also on `source_id` and `run_id` (the versions next to the
/// document's in notebooks/query_metadata.sql).
pub const DOC_QUERIES_CORRECTED: [(usize, &str); 2] = [
    (
        1,
        include_str!("../../fixtures/doc_queries/q1_corrected.sql"),
    ),
    (
        4,
        include_str!("../../fixtures/doc_queries/q4_corrected.sql"),
    ),
];

/// The JSON a successful command printed; fails the test with its stderr otherwise.
pub fn ok(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}\nstderr: {}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    stdout_json(&out)
}
