//! Azure-only behaviour against Azurite: secrets never leave the process, faults are
//! survived through retries, concurrent writers never lose a commit, listings page.
//! Every test needs the emulator that `ci/test.sh` starts (see `crate::common::azurite`).

use crate::common::*;
use futures::TryStreamExt;
use nuvyn_executor::storage::location;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn out_text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Both spellings of a SAS signature: as it appears in the URL and decoded.
fn sig_forms(sas: &str) -> Vec<String> {
    let raw = sas
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .unwrap()
        .to_string();
    let decoded: String = url::form_urlencoded::parse(format!("s={raw}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    vec![raw, decoded]
}

/// Every object under a location, read back whole.
async fn all_bytes(root: &str) -> Vec<(String, Vec<u8>)> {
    let loc = location::parse(root).unwrap();
    let metas: Vec<_> = loc
        .store
        .list(Some(&loc.prefix))
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for m in metas {
        let b = loc
            .store
            .get(&m.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((m.location.to_string(), b.to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_secrets_reach_no_output_log_or_table() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let loc = location::parse(&format!("{blob}/lake/{run}")).unwrap();
    for (name, body) in [
        ("a/people.csv", PEOPLE_CSV),
        ("b/people.jsonl", PEOPLE_NDJSON),
    ] {
        let p = name.split('/').fold(loc.prefix.clone(), |p, s| p.join(s));
        loc.store
            .put(&p, PutPayload::from(body.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let lake_sas = sas(&["container", "lake"]);
    let wh_sas = sas(&["container", "warehouse"]);
    let account_sas = sas(&["account"]);
    let mut secrets: Vec<String> = [&lake_sas, &wh_sas, &account_sas]
        .iter()
        .flat_map(|s| sig_forms(s))
        .collect();
    secrets.push(AZURITE_KEY.to_string());
    let warehouse = format!("{blob}/warehouse/{run}?{wh_sas}");
    // Two sources: one with the SAS in its URL, one with credentials in storage_options.
    let payload = serde_json::json!({
        "job_metadata": {"workflow_id": "wf_secret"},
        "sources": [
            {"source_id": "a", "data_source_path": format!("{blob}/lake/{run}/a?{lake_sas}")},
            {"source_id": "b", "data_source_path": format!("{blob}/lake/{run}/b"),
             "storage_options": {"sas_token": account_sas, "account_key": AZURITE_KEY}},
            {"source_id": "c", "data_source_path": format!("{blob}/lake/{run}/missing?{lake_sas}")}
        ]
    });
    let mut seen = String::new();
    for format in ["json", "text"] {
        let out = bin()
            .env("NUVYN_JOB_PAYLOAD", payload.to_string())
            .env("EXECUTOR_LOG_LEVEL", "trace")
            .args(["--log-format", format, "extract", "--warehouse", &warehouse])
            .args(["--output", "json"])
            .output()
            .unwrap();
        // Source c does not exist: a partial run, with its error (and URL) in the output.
        assert_eq!(out.status.code(), Some(3), "{}", out_text(&out));
        seen.push_str(&out_text(&out));
    }
    assert!(
        seen.contains("source path not found"),
        "the failing source is reported"
    );
    assert!(seen.contains("DEBUG") || seen.contains("\"level\":\"DEBUG\""));
    for q in [
        "SELECT * FROM sources",
        "SELECT * FROM tables",
        "SELECT * FROM columns",
        "SELECT * FROM executor_runs",
    ] {
        let rows = sql_json(&warehouse, q, &[]);
        assert!(!rows.as_array().unwrap().is_empty(), "{q}");
        seen.push_str(&rows.to_string());
    }
    let out = bin()
        .args([
            "query",
            "--workflow-id",
            "wf_secret",
            "--warehouse",
            &warehouse,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    seen.push_str(&out_text(&out));
    assert!(
        seen.contains(&format!("{blob}/lake/{run}/a")),
        "paths are kept, without queries"
    );
    // The Delta tables themselves: every log entry and data file.
    let mut files = 0;
    for (name, bytes) in all_bytes(&format!("{blob}/warehouse/{run}")).await {
        files += 1;
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{name} holds a secret");
        }
    }
    assert!(files > 8, "{files} warehouse files checked");
    for s in &secrets {
        if let Some(i) = seen.find(s.as_str()) {
            let from = seen.floor_char_boundary(i.saturating_sub(600));
            panic!(
                "secret {s:.6}… leaked here: {}",
                &seen[from..seen.ceil_char_boundary(i + 100)]
            );
        }
    }
}

/// `127.0.0.1:<port>` of the emulator behind a blob endpoint URL.
fn upstream_of(blob: &str) -> String {
    let u = url::Url::parse(blob).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
}

async fn put_files(root: &str, files: &[(&str, &[u8])]) {
    let loc = location::parse(root).unwrap();
    for (rel, body) in files {
        let p = rel.split('/').fold(loc.prefix.clone(), |p, s| p.join(s));
        loc.store
            .put(&p, PutPayload::from(body.to_vec()))
            .await
            .unwrap();
    }
}

const SMALL_LAKE: &[(&str, &[u8])] = &[
    ("people.csv", PEOPLE_CSV.as_bytes()),
    ("orders/part-00000.csv", b"order_id,amount\n1,10.5\n2,20\n"),
    ("orders/part-00001.csv", b"order_id,amount\n3,30\n"),
];

/// Runs `extract` in a blocking task (the proxy keeps serving on the runtime meanwhile).
async fn extract_async(
    source: String,
    warehouse: String,
    env: Vec<(&'static str, String)>,
) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        bin()
            .args([
                "extract",
                &source,
                "--workflow-id",
                "wf_faults",
                "--source-id",
                "s1",
            ])
            .args(["--warehouse", &warehouse, "--output", "json"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The report of a job that failed and wrote nothing (exit 1, `written: false`).
/// The run id of a job that succeeded (its stderr shown if it did not).
fn written_run(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(out)["run_id"].as_str().unwrap().to_string()
}

fn not_written(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(out);
    assert_eq!(report["written"], false, "{report:#}");
    report
}

fn table_rows(report: &serde_json::Value) -> Vec<(String, i64)> {
    report["sources"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table_name"].as_str().unwrap().to_string(),
                t["row_count"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_survived_through_retries() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_files(&format!("{blob}/lake/{run}"), SMALL_LAKE).await;
    let proxy = crate::common::proxy::FaultProxy::start(upstream_of(&blob)).await;
    let via = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    // Every third request fails once: alternately a 503 and a dropped connection. That hits
    // listing, reads, data file writes and Delta commits alike.
    proxy.set_plan(|n, _| match (n % 3, (n / 3) % 2) {
        (1, 0) => crate::common::proxy::Action::Unavailable,
        (1, _) => crate::common::proxy::Action::Drop,
        _ => crate::common::proxy::Action::Forward,
    });
    let out = extract_async(
        format!("{via}/lake/{run}"),
        format!("{via}/warehouse/{run}"),
        vec![
            ("NUVYN_STORAGE_BACKOFF_MS", "10".into()),
            ("EXECUTOR_LOG_LEVEL", "warn,object_store=info".into()),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        table_rows(&stdout_json(&out)),
        [("orders".to_string(), 3), ("people".into(), 5)]
    );
    assert!(
        stderr.contains("backing off"),
        "retries are logged: {stderr}"
    );
    let faulted = proxy.faulted();
    assert!(faulted.len() >= 10, "{faulted:?}");
    assert!(
        faulted
            .iter()
            .any(|l| l.starts_with("PUT") && l.contains("_delta_log")),
        "a commit was among the failed requests: {faulted:?}"
    );
    // Read back directly, past the proxy: every table holds exactly one run's rows.
    let rows = sql_json(
        format!("{blob}/warehouse/{run}"),
        "SELECT count(*) AS n, sum(row_count) AS total, count(DISTINCT run_id) AS runs FROM tables",
        &[],
    );
    assert_eq!(rows[0]["n"], 2);
    assert_eq!(rows[0]["total"], 8);
    assert_eq!(rows[0]["runs"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_gone_mid_job_leaves_every_table_whole_and_a_rerun_succeeds() {
    use nuvyn_executor::warehouse::{JOB_TABLES, Warehouse};
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_files(&format!("{blob}/lake/{run}"), SMALL_LAKE).await;
    let proxy = crate::common::proxy::FaultProxy::start(upstream_of(&blob)).await;
    let via = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    let (source, warehouse) = (
        format!("{via}/lake/{run}"),
        format!("{via}/warehouse/{run}"),
    );
    let env = vec![
        ("NUVYN_STORAGE_BACKOFF_MS", "10".to_string()),
        ("NUVYN_STORAGE_MAX_RETRIES", "2".to_string()),
    ];
    let first = extract_async(source.clone(), warehouse.clone(), env.clone()).await;
    let first_run = written_run(&first);
    let direct = Warehouse::new(location::parse(&format!("{blob}/warehouse/{run}")).unwrap());
    let versions = |w: Warehouse| async move {
        let mut v = Vec::new();
        for def in JOB_TABLES {
            v.push(w.open(def).await.unwrap().unwrap().version());
        }
        v
    };
    let before = versions(direct.clone()).await;

    // The store disappears when the second job starts committing, and stays away.
    let gone = AtomicBool::new(false);
    proxy.set_plan(move |_, line| {
        if gone.load(Ordering::SeqCst) || (line.starts_with("PUT") && line.contains("_delta_log")) {
            gone.store(true, Ordering::SeqCst);
            crate::common::proxy::Action::Drop
        } else {
            crate::common::proxy::Action::Forward
        }
    });
    let second = extract_async(source.clone(), warehouse.clone(), env.clone()).await;
    let report = not_written(&second);
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("_executor_metadata"),
        "the error names the warehouse table: {error}"
    );
    assert_eq!(versions(direct.clone()).await, before, "no commit landed");
    let rows = sql_json(
        format!("{blob}/warehouse/{run}"),
        "SELECT DISTINCT run_id FROM tables",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_id": first_run}]),
        "the first run's rows are intact"
    );

    proxy.set_plan(|_, _| crate::common::proxy::Action::Forward);
    let third = extract_async(source, warehouse, env).await;
    let third_run = written_run(&third);
    let rows = sql_json(
        format!("{blob}/warehouse/{run}"),
        "SELECT run_id, count(*) AS n, sum(row_count) AS total FROM tables GROUP BY run_id",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_id": third_run, "n": 2, "total": 8}])
    );
}

/// What readers see of a (workflow_id, source_id) after `query` and the API's metadata view:
/// table name -> number of columns shown, and the source row's run.
fn seen(warehouse: &str) -> (Vec<(String, usize)>, String) {
    let v = ok(bin()
        .args([
            "query",
            "--workflow-id",
            "wf_faults",
            "--warehouse",
            warehouse,
        ])
        .output()
        .unwrap());
    let src = &v["sources"].as_array().unwrap()[..];
    assert_eq!(src.len(), 1, "{v}");
    let tables = src[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let cols = t["columns"].as_array().unwrap().len();
            assert_eq!(cols as i64, t["column_count"].as_i64().unwrap(), "{t}");
            (t["table_name"].as_str().unwrap().to_string(), cols)
        })
        .collect();
    (tables, src[0]["run_id"].as_str().unwrap().to_string())
}

/// The last of a job's three commits (`sources`) fails, once with the store answering and
/// once with it gone for good (a kill): readers keep seeing the previous run whole (its
/// source row, tables and columns), never the new run's `columns`/`tables` with the old
/// source; a later run replaces it whole. Then a run killed after its `sources` append
/// alone: the next run removes that row too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_last_commit_leaves_readers_on_the_previous_whole_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_files(&format!("{blob}/lake/{run}"), SMALL_LAKE).await;
    let proxy = crate::common::proxy::FaultProxy::start(upstream_of(&blob)).await;
    let via = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    let (source, warehouse) = (
        format!("{via}/lake/{run}"),
        format!("{via}/warehouse/{run}"),
    );
    let direct = format!("{blob}/warehouse/{run}");
    let env = vec![
        ("NUVYN_STORAGE_BACKOFF_MS", "10".to_string()),
        ("NUVYN_STORAGE_MAX_RETRIES", "1".to_string()),
    ];
    let first = extract_async(source.clone(), warehouse.clone(), env.clone()).await;
    let first_run = written_run(&first);
    let before = seen(&direct);
    assert_eq!(before.0, [("orders".to_string(), 2), ("people".into(), 4)]);
    assert_eq!(before.1, first_run);

    // The lake grows a table; the commit of `sources` is refused.
    put_files(
        &format!("{blob}/lake/{run}"),
        &[("extra.csv", b"a,b,c,d\n1,2,3,4\n")],
    )
    .await;
    proxy.set_plan(|_, line| {
        if line.starts_with("PUT") && line.contains("/sources/_delta_log/") {
            crate::common::proxy::Action::Unavailable
        } else {
            crate::common::proxy::Action::Forward
        }
    });
    let second = extract_async(source.clone(), warehouse.clone(), env.clone()).await;
    let report = not_written(&second);
    assert!(
        report["error"].as_str().unwrap().contains("sources"),
        "{report:#}"
    );
    assert_eq!(
        seen(&direct),
        before,
        "readers still see the first run, whole"
    );
    // Its appended rows were taken back: the tables hold the first run only.
    for table in ["tables", "columns"] {
        let v = sql_json(
            &direct,
            &format!("SELECT DISTINCT run_id FROM {table}"),
            &[],
        );
        assert_eq!(v, serde_json::json!([{"run_id": first_run}]), "{table}");
    }

    // Now the store goes away at that commit and stays away, as for a killed writer: the
    // new run's rows stay in `columns` and `tables`, and readers still see the first run.
    let gone = std::sync::Arc::new(AtomicBool::new(false));
    let g = gone.clone();
    proxy.set_plan(move |_, line| {
        if g.load(Ordering::SeqCst)
            || (line.starts_with("PUT") && line.contains("/sources/_delta_log/"))
        {
            g.store(true, Ordering::SeqCst);
            crate::common::proxy::Action::Drop
        } else {
            crate::common::proxy::Action::Forward
        }
    });
    let third = extract_async(source.clone(), warehouse.clone(), env.clone()).await;
    not_written(&third);
    assert!(gone.load(Ordering::SeqCst));
    let left = sql_json(
        &direct,
        "SELECT count(DISTINCT run_id) AS runs FROM columns",
        &[],
    );
    assert_eq!(left[0]["runs"], 2, "the unrecorded run's columns are there");
    assert_eq!(seen(&direct), before, "and readers do not see them");
    // The API's view is the same function `query` prints.
    let w = nuvyn_executor::warehouse::Warehouse::new(location::parse(&direct).unwrap());
    let api = nuvyn_executor::query::workflow_metadata(&w, "hive_metastore", "wf_faults", None)
        .await
        .unwrap();
    assert_eq!(api["sources"][0]["run_id"], first_run.as_str());
    assert_eq!(api["sources"][0]["tables"].as_array().unwrap().len(), 2);

    // A clean run replaces it all with its own whole run.
    proxy.set_plan(|_, _| crate::common::proxy::Action::Forward);
    let fourth = extract_async(source.clone(), warehouse.clone(), env.clone()).await;
    let fourth_run = written_run(&fourth);
    let after = seen(&direct);
    assert_eq!(
        after.0,
        [
            ("extra".to_string(), 4),
            ("orders".into(), 2),
            ("people".into(), 4)
        ]
    );
    assert_eq!(after.1, fourth_run);
    for table in ["sources", "tables", "columns"] {
        let v = sql_json(
            &direct,
            &format!("SELECT DISTINCT run_id FROM {table}"),
            &[],
        );
        assert_eq!(v, serde_json::json!([{"run_id": fourth_run}]), "{table}");
    }

    // A writer killed after its `sources` append but before its `tables` and `columns`
    // ones: their commits, its record and every later commit to `sources` (the taking
    // back) never land. Only `sources` shows the dead run's row; readers do not see it, and
    // the next clean run removes it with the rest.
    let mut sources_commits = 0;
    proxy.set_plan(move |_, line| {
        let commit = line.starts_with("PUT") && line.contains("/_delta_log/");
        let sources = line.contains("/sources/_delta_log/");
        if commit && sources && line.contains(".json") {
            sources_commits += 1;
        }
        let blocked = ["/tables/", "/columns/", "/executor_runs/"]
            .iter()
            .any(|t| line.contains(&format!("{t}_delta_log/")));
        if commit && ((sources && sources_commits > 1) || blocked) {
            crate::common::proxy::Action::Drop
        } else {
            crate::common::proxy::Action::Forward
        }
    });
    let fifth = extract_async(source.clone(), warehouse.clone(), env.clone()).await;
    not_written(&fifth);
    let runs_in = |table: &str| -> Vec<String> {
        let v = sql_json(
            &direct,
            &format!("SELECT DISTINCT run_id FROM {table} ORDER BY run_id"),
            &[],
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        runs_in("sources").len(),
        2,
        "the dead run's source row is there"
    );
    assert_eq!(runs_in("tables"), [fourth_run.as_str()]);
    assert_eq!(runs_in("columns"), [fourth_run.as_str()]);
    assert_eq!(seen(&direct), after, "and readers do not see it");
    proxy.set_plan(|_, _| crate::common::proxy::Action::Forward);
    let sixth = extract_async(source, warehouse, env).await;
    let sixth_run = written_run(&sixth);
    for table in ["sources", "tables", "columns"] {
        assert_eq!(runs_in(table), [sixth_run.as_str()], "{table}");
    }
}

/// Eight processes start at once against one fresh Azure warehouse, each writing its own
/// workflow and source: every commit lands (tables are created once, conflicting commits
/// retry), row counts are exact, nothing is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_jobs_into_one_warehouse_lose_no_commit() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_files(&format!("{blob}/lake/{run}"), SMALL_LAKE).await;
    let warehouse = format!("{blob}/warehouse/{run}");
    let children: Vec<_> = (0..8)
        .map(|i| {
            bin_std()
                .args(["extract", &format!("{blob}/lake/{run}")])
                .args([
                    "--workflow-id",
                    &format!("wf_{i}"),
                    "--source-id",
                    &format!("s_{i}"),
                ])
                .args(["--warehouse", &warehouse, "--output", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let q = |sql: &str| sql_json(&warehouse, sql, &[]);
    assert_eq!(
        q("SELECT count(*) AS runs, count(DISTINCT workflow_id) AS wfs FROM executor_runs"),
        serde_json::json!([{"runs": 8, "wfs": 8}])
    );
    for (table, per_workflow) in [("sources", 1), ("tables", 2), ("columns", 6)] {
        let rows = q(&format!(
            "SELECT workflow_id, count(*) AS n, count(DISTINCT run_id) AS runs FROM {table} \
             GROUP BY workflow_id ORDER BY workflow_id"
        ));
        let expected: Vec<_> = (0..8)
            .map(|i| serde_json::json!({"workflow_id": format!("wf_{i}"), "n": per_workflow, "runs": 1}))
            .collect();
        assert_eq!(rows, serde_json::json!(expected), "{table}");
    }
    assert_eq!(
        q("SELECT sum(row_count) AS total FROM tables"),
        serde_json::json!([{"total": 8 * 8}])
    );
    // The schema was created once (the jobs raced for the migration lock; the losers found
    // it done), then exactly one commit per job landed in every table: none lost, none
    // doubled. The versions the migrations alone leave come from a reference warehouse.
    let reference = format!("{blob}/warehouse/{run}-reference");
    let out = bin()
        .args(["migrate", "apply", "--warehouse", &reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let open = |url: &str| nuvyn_executor::warehouse::Warehouse::new(location::parse(url).unwrap());
    let (w, r) = (open(&warehouse), open(&reference));
    for def in nuvyn_executor::warehouse::JOB_TABLES {
        let migrated = r.open(def).await.unwrap().unwrap().version().unwrap();
        assert_eq!(
            w.open(def).await.unwrap().unwrap().version(),
            Some(migrated + 8),
            "{}",
            def.name
        );
    }
}

fn csv_text(rows: usize) -> String {
    let mut s = String::from("id,name,amount\n");
    for i in 0..rows {
        s.push_str(&format!("{i},name_{i},{}.5\n", i % 1000));
    }
    s
}

/// Metadata comes from byte ranges: discovery sniffs a few KB of each file it must look
/// into, and a Parquet row count is one range read of the footer (Azure serves no suffix
/// ranges, so the range is computed from the listed size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_read_by_range_not_by_downloading_blobs() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let root = format!("{blob}/lake/{run}");
    let big = csv_text(120_000);
    let mut parquet = Vec::new();
    {
        use nuvyn_executor::deltalake::arrow::array::{Int64Array, RecordBatch};
        let ids = Int64Array::from_iter_values(0..400_000);
        let batch = RecordBatch::try_from_iter([("id", std::sync::Arc::new(ids) as _)]).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut parquet, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    put_files(
        &root,
        &[
            ("big.csv", big.as_bytes()),
            ("no_extension", big.as_bytes()),
            ("facts/part-0.parquet", &parquet),
        ],
    )
    .await;
    let total = (2 * big.len() + parquet.len()) as u64;
    assert!(total > 6_000_000, "{total}");

    let loc = location::parse(&root).unwrap();
    let found = nuvyn_executor::discover::discover(&loc, &Default::default())
        .await
        .unwrap();
    let names: Vec<&str> = found.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["big", "facts", "no_extension"]);
    let r = loc.requests();
    assert_eq!(r.list, 1, "{r:?}");
    assert!(r.get <= 3, "{r:?}");
    assert!(
        r.bytes_read < 300_000,
        "discovery read {} of {total} bytes",
        r.bytes_read
    );

    let meta = loc
        .store
        .head(&loc.prefix.clone().join("facts").join("part-0.parquet"))
        .await
        .unwrap();
    let before = loc.requests();
    let groups = nuvyn_executor::profile::parquet_file_rows(&loc, &meta)
        .await
        .unwrap();
    assert_eq!(groups.iter().sum::<i64>(), 400_000);
    let after = loc.requests();
    assert_eq!(after.get - before.get, 1, "one range read: {after:?}");
    assert!(after.bytes_read - before.bytes_read <= 64 * 1024);
    assert!((parquet.len() as u64) > 1_000_000);
}

/// Azure lists at most 5,000 blobs per page: a folder of 10,001 blobs needs three pages, and
/// every blob must be found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_of_more_than_ten_thousand_blobs_are_paged_through() {
    use futures::StreamExt;
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let loc = location::parse(&format!("{blob}/lake/{run}")).unwrap();
    let dir = loc.prefix.clone().join("events");
    let n = 10_001;
    futures::stream::iter(0..n)
        .map(|i| {
            let (store, path) = (
                loc.store.clone(),
                dir.clone().join(format!("part-{i:05}.csv")),
            );
            async move {
                store
                    .put(&path, PutPayload::from(format!("id\n{i}\n").into_bytes()))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let listed = loc.requests().list;
    let found = nuvyn_executor::discover::discover(&loc, &Default::default())
        .await
        .unwrap();
    assert_eq!(found.files_found, n);
    assert_eq!(found.tables.len(), 1);
    assert_eq!(found.tables[0].files.len(), n as usize);
    assert_eq!(loc.requests().list - listed, 1, "one listing, paged inside");
}

/// Per-source credentials stay with their source: a source whose own `storage_options` key is
/// wrong fails naming that key, even though a valid key sits in the environment; the
/// neighbouring source succeeds with its own SAS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_credentials_do_not_fall_back_or_leak() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_files(&format!("{blob}/lake/{run}"), SMALL_LAKE).await;
    let wrong_key = format!("AAAA{}", &AZURITE_KEY[4..]);
    let acct = AZURITE_ACCOUNT;
    let payload = serde_json::json!({
        "workflow_id": "wf_per_source",
        "sources": [
            {"source_id": "own_key", "data_source_path": format!("https://{acct}.blob.core.windows.net/lake/{run}"),
             "storage_options": {"account_key": wrong_key}},
            {"source_id": "own_sas", "data_source_path": format!("{blob}/lake/{run}/orders?{}", sas(&["container", "lake"]))}
        ]
    });
    let wh = tmp();
    let out = bin()
        .env("NUVYN_JOB_PAYLOAD", payload.to_string())
        .env("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY)
        .env("AZURE_STORAGE_ENDPOINT", &blob)
        .args(["extract", "--output", "json", "--warehouse"])
        .arg(wh.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", out_text(&out));
    let report = stdout_json(&out);
    let error = report["sources"][0]["error"].as_str().unwrap();
    // Azurite answers a wrong key with 403, and now and then with 401 AuthorizationFailure;
    // either way the error must name the account and the credential used.
    assert!(
        error.contains("\"devstoreaccount1\" refused access using shared key from storage_options.account_key (HTTP 40"),
        "{error}"
    );
    assert_eq!(report["sources"][1]["status"], "succeeded");
    assert_eq!(report["sources"][1]["tables"][0]["row_count"], 3);
    assert!(!out_text(&out).contains(&wrong_key));
}

/// Two sources of one job on the same container with different credentials: each reads with
/// its own (they used to share one session, where the second source's store replaced the
/// first's, so the first was profiled with the second's key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_on_one_container_keep_their_own_credentials() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_files(&format!("{blob}/lake/{run}"), SMALL_LAKE).await;
    let wrong_key = format!("AAAA{}", &AZURITE_KEY[4..]);
    let payload = serde_json::json!({
        "workflow_id": "wf_same_container",
        "sources": [
            {"source_id": "good", "data_source_path": format!("{blob}/lake/{run}/orders"),
             "storage_options": {"account_key": AZURITE_KEY}},
            {"source_id": "bad", "data_source_path": format!("{blob}/lake/{run}"),
             "storage_options": {"account_key": wrong_key}}
        ]
    });
    let wh = tmp();
    let out = bin()
        .env("NUVYN_JOB_PAYLOAD", payload.to_string())
        .args(["extract", "--output", "json", "--warehouse"])
        .arg(wh.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", out_text(&out));
    let report = stdout_json(&out);
    assert_eq!(report["sources"][0]["status"], "succeeded", "{report}");
    assert_eq!(report["sources"][0]["tables"][0]["row_count"], 3);
    assert_eq!(report["sources"][1]["status"], "failed");
}

/// The migration lock on Azure: a dead run's lock is taken over with a conditional update
/// (If-Match), one that looks live but is not renewed is removed by `repair` after a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_migration_lock_is_taken_over_on_azure() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let wh = format!("{blob}/warehouse/{run}");
    let lock = "_executor_metadata/_migrate.lock";
    let migrate = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = bin();
        c.arg("migrate").args(args).args(["--warehouse", &wh]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let dead = serde_json::json!({"owner": "gone", "token": "x", "since": "2026-01-01T00:00:00Z",
        "expires": "2026-01-01T00:00:30Z"});
    put_files(&wh, &[(lock, dead.to_string().as_bytes())]).await;
    let out = migrate(&["apply"], &[("EXECUTOR_LOG_LEVEL", "warn")]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(e.contains("taking over the migration lock of gone"), "{e}");
    let loc = location::parse(&wh).unwrap();
    let path = lock.split('/').fold(loc.prefix.clone(), |p, s| p.join(s));
    assert!(
        matches!(
            loc.store.head(&path).await,
            Err(object_store::Error::NotFound { .. })
        ),
        "released"
    );

    let live = serde_json::json!({"owner": "stuck", "token": "y",
        "since": chrono::Utc::now().to_rfc3339(),
        "expires": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()});
    put_files(&wh, &[(lock, live.to_string().as_bytes())]).await;
    let r = ok(migrate(
        &["repair"],
        &[("NUVYN_MIGRATE_LOCK_LEASE_SECS", "1")],
    ));
    assert_eq!(r["removed_lock"], true);
}

/// `n` single-file CSV tables with distinct names under `root`.
async fn put_small_tables(root: &str, n: usize) {
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            // Letters, not numbers: numbered names would be one table of parts.
            let word: String = [i / 676, (i / 26) % 26, i % 26]
                .iter()
                .map(|d| (b'a' + *d as u8) as char)
                .collect();
            let name = if i % 3 == 0 {
                format!("tbl_{word}")
            } else {
                format!("tbl_{word}.csv")
            };
            (
                name,
                format!("id,name,amount\n{i},n{i},{i}.5\n1,x,2\n").into_bytes(),
            )
        })
        .collect();
    for chunk in files.chunks(64) {
        let puts = chunk
            .iter()
            .map(|(n, b)| async move { put_files(root, &[(n.as_str(), b.as_slice())]).await });
        futures::future::join_all(puts).await;
    }
}

/// Runs `extract --dry-run` on `source`; the report and the wall time.
async fn dry_run(source: String, extra: &[&str]) -> (serde_json::Value, std::time::Duration) {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["extract", &source, "--workflow-id", "wf_small", "--dry-run"])
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let report = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    (report, took)
}

/// A remote lake of many small files costs about one request per file for the whole job:
/// the listing answers every HEAD, and each small file is fetched once, whole, and shared by
/// sniffing, schema inference, the statistics pass and the samples. Behind a proxy that holds
/// each request 20 ms, as a real store does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_costs_one_request() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_small_tables(&format!("{blob}/lake/{run}"), 60).await;
    let proxy = crate::common::proxy::FaultProxy::start(upstream_of(&blob)).await;
    proxy.set_delay(std::time::Duration::from_millis(20));
    let via = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    let (report, _) = dry_run(format!("{via}/lake/{run}"), &[]).await;
    let s = &report["sources"][0];
    assert_eq!(s["tables_found"], 60);
    assert_eq!(s["tables_failed"], 0);
    let r = &s["requests"];
    let (get, head, list) = (
        r["get"].as_u64().unwrap(),
        r["head"].as_u64().unwrap_or(0),
        r["list"].as_u64().unwrap(),
    );
    assert_eq!(head, 0, "{r}");
    assert_eq!(get, 60, "one GET per file: {r}");
    assert!(list <= 2, "{r}");
}

/// `ci/bench.sh`'s remote small-file case (not a timed test: it prints, the bench compares):
/// BENCH_SMALL_TABLES single-file tables (default 2,000) behind a proxy holding each request
/// 20 ms; job time, discovery time and requests per file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ci/bench.sh runs it"]
async fn bench_small_tables_at_20ms() {
    let Some(blob) = azurite() else { return };
    let n: usize = std::env::var("BENCH_SMALL_TABLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_small_tables(&format!("{blob}/lake/{run}"), n).await;
    let proxy = crate::common::proxy::FaultProxy::start(upstream_of(&blob)).await;
    proxy.set_delay(std::time::Duration::from_millis(20));
    let via = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    let (report, took) = dry_run(format!("{via}/lake/{run}"), &[]).await;
    let s = &report["sources"][0];
    assert_eq!(s["tables_found"].as_u64(), Some(n as u64));
    let r = &s["requests"];
    let total =
        r["get"].as_u64().unwrap() + r["head"].as_u64().unwrap_or(0) + r["list"].as_u64().unwrap();
    println!(
        "BENCH remote small tables: {n} tables at 20 ms/request: job {:.2} s, discovery {:.2} s, {:.2} requests per file ({r})",
        took.as_secs_f64(),
        s["discover_ms"].as_f64().unwrap() / 1000.0,
        total as f64 / n as f64
    );
}

/// `ci/bench.sh`'s re-run case (not a timed test: it prints, the bench compares):
/// A benchmark's size from the environment (`ci/bench.sh` passes them), or `default`.
fn bench_setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the binary with `args` (and JSON output, no progress) for a benchmark: its report
/// and seconds taken. `BENCH_LOG` sets its `EXECUTOR_LOG_LEVEL` (e.g. `nuvyn_executor=debug,
/// nuvyn_executor::storage::counting=trace`: phase times and every request) and
/// `BENCH_LOG_DIR` keeps each run's log there.
async fn bench_extract(args: Vec<String>) -> (serde_json::Value, f64) {
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(&args)
            .args(["--output", "json", "--no-progress"])
            .env(
                "EXECUTOR_LOG_LEVEL",
                std::env::var("BENCH_LOG").unwrap_or("warn".into()),
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let took = started.elapsed().as_secs_f64();
    if let Ok(d) = std::env::var("BENCH_LOG_DIR") {
        let n = std::fs::read_dir(&d).unwrap().count();
        std::fs::write(format!("{d}/run{n}.log"), &out.stderr).unwrap();
    }
    (ok(out), took)
}

/// BENCH_RERUN_TABLES tables (default 200) of BENCH_RERUN_ROWS rows (default 20,000) on
/// Azurite, source and warehouse both behind a proxy holding each request 20 ms. A first
/// run, then the same lake unchanged: both times and the second run's source requests
/// (logs: [`bench_extract`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ci/bench.sh runs it"]
async fn bench_rerun_unchanged_at_20ms() {
    let Some(blob) = azurite() else { return };
    let env = bench_setting;
    let (n, rows) = (
        env("BENCH_RERUN_TABLES", 200),
        env("BENCH_RERUN_ROWS", 20_000),
    );
    let run = uuid::Uuid::new_v4().simple().to_string();
    let root = format!("{blob}/lake/{run}");
    let tables: Vec<(String, Vec<u8>)> = (0..n)
        .map(|t| {
            let mut csv = String::from("id,customer,amount,region,day\n");
            for i in 0..rows {
                let region = ["north", "south", "east", "west"][(i + t) % 4];
                csv.push_str(&format!(
                    "{i},c{},{}.{:02},{region},2026-11-{:02}\n",
                    (i * 7 + t) % 5000,
                    (i * 13 + t) % 1000,
                    i % 100,
                    i % 28 + 1
                ));
            }
            (format!("table_{t:03}/part-0.csv"), csv.into_bytes())
        })
        .collect();
    for chunk in tables.chunks(16) {
        let puts = chunk.iter().map(|(n, b)| {
            let root = &root;
            async move { put_files(root, &[(n.as_str(), b.as_slice())]).await }
        });
        futures::future::join_all(puts).await;
    }
    let proxy = crate::common::proxy::FaultProxy::start(upstream_of(&blob)).await;
    proxy.set_delay(std::time::Duration::from_millis(20));
    let via = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    let (source, wh) = (
        format!("{via}/lake/{run}"),
        format!("{via}/warehouse/{run}"),
    );
    let extract = |source: String, wh: String| {
        bench_extract(vec![
            "extract".into(),
            source,
            "--workflow-id".into(),
            "wf_rerun".into(),
            "--source-id".into(),
            "s1".into(),
            "--warehouse".into(),
            wh,
        ])
    };
    let (first, t1) = extract(source.clone(), wh.clone()).await;
    let (second, t2) = extract(source, wh).await;
    let (s1, s2) = (&first["sources"][0], &second["sources"][0]);
    assert_eq!(s1["tables_found"].as_u64(), Some(n as u64));
    assert_eq!(s2["tables_carried"].as_u64(), Some(n as u64), "{s2}");
    let q = &s2["requests"];
    println!(
        "BENCH re-run of an unchanged lake: {n} tables x {rows} rows at 20 ms/request: first {t1:.2} s, second {t2:.2} s ({:.1}x faster); second run's source requests: list {}, get {}, head {}; warehouse requests {}",
        t1 / t2,
        q["list"],
        q["get"],
        q["head"],
        second["warehouse_requests"]
    );
}

/// BENCH_DAYS daily Parquet partitions (default 100) of BENCH_DAY_ROWS rows (default
/// 100,000) on Azurite, source and warehouse behind a proxy holding each request 20 ms,
/// profiled with `--samples raw` (partition sketches kept); then one more day, then `--full`.
/// Times, partitions read and the source's requests of each run (logs: [`bench_extract`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ci/bench.sh runs it"]
async fn bench_new_partition_at_20ms() {
    let Some(blob) = azurite() else { return };
    let env = bench_setting;
    let (days, rows) = (env("BENCH_DAYS", 100), env("BENCH_DAY_ROWS", 100_000));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let root = format!("{blob}/lake/{run}");
    let day_file = |d: usize| {
        (
            format!("sales/day={d:03}/part-0.parquet"),
            parquet_bytes(&sales_day(d as u64 + 1, rows, false)),
        )
    };
    for chunk in (0..days).collect::<Vec<_>>().chunks(8) {
        let puts = chunk.iter().map(|&d| {
            let root = &root;
            async move {
                let (n, b) = day_file(d);
                put_files(root, &[(n.as_str(), b.as_slice())]).await
            }
        });
        futures::future::join_all(puts).await;
    }
    let proxy = crate::common::proxy::FaultProxy::start(upstream_of(&blob)).await;
    proxy.set_delay(std::time::Duration::from_millis(20));
    let via = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    let (source, wh) = (
        format!("{via}/lake/{run}"),
        format!("{via}/warehouse/{run}"),
    );
    let extract = |full: bool| {
        let mut args: Vec<String> = ["extract", &source, "--workflow-id", "wf_days"]
            .into_iter()
            .chain(["--samples", "raw", "--warehouse", &wh])
            .map(str::to_string)
            .collect();
        if full {
            args.push("--full".into());
        }
        bench_extract(args)
    };
    let say = |what: &str, r: &serde_json::Value, t: f64| {
        let s = &r["sources"][0];
        let q = &s["requests"];
        println!(
            "BENCH {what}: {t:.2} s; partitions {}; source requests: list {}, get {}, head {} ({:.1} MB read); warehouse requests {}",
            s["tables"][0]["partitions"],
            q["list"],
            q["get"],
            q["head"],
            q["bytes_read"].as_f64().unwrap_or(0.0) / 1048576.0,
            r["warehouse_requests"]
        );
    };
    let (first, t1) = extract(false).await;
    say(&format!("{days} days x {rows} rows, first run"), &first, t1);
    let (n, b) = day_file(days);
    put_files(&root, &[(n.as_str(), b.as_slice())]).await;
    let (second, t2) = extract(false).await;
    say("one new day", &second, t2);
    assert_eq!(second["sources"][0]["tables"][0]["partitions"]["read"], 1);
    let (full, tf) = extract(true).await;
    say("--full", &full, tf);
    println!(
        "BENCH re-run with one new day of {}: {:.1}x faster than --full, {:.1}x than the first run (the re-run's time is the warehouse's round trips, which do not grow with the data: README)",
        days + 1,
        tf / t2,
        t1 / t2
    );
}
