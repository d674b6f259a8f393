//! The binary as users run it: exit codes, the payload rules end to end, the upstream
//! `metadata_extraction` form, `sql`/`query` output, and crash safety (killing the process
//! mid-write, then reading and re-running).

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

#[test]
fn help_documents_commands_and_exit_codes() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "extract",
        "metadata_extraction",
        "schema_validation",
        "sql",
        "query",
        "Exit codes",
        "NUVYN_JOB_PAYLOAD",
    ] {
        assert!(text.contains(word), "{word} missing from help:\n{text}");
    }
    for sub in [
        "extract",
        "metadata_extraction",
        "schema_validation",
        "sql",
        "query",
        "changes",
    ] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
    }
    // No command and no payload: help and exit 2.
    assert_eq!(bin().output().unwrap().status.code(), Some(2));
    assert_eq!(bin().arg("bogus").output().unwrap().status.code(), Some(2));
}

#[test]
fn payload_errors_exit_2_before_touching_storage() {
    let d = tmp();
    let wh = d.path().join("wh");
    let cases: [(&str, &[&str], &str); 5] = [
        ("", &["extract", "/nonexistent"], "workflow_id is required"),
        (
            r#"{"data_source_path":"/x"}"#,
            &["metadata_extraction", "--write-to-db"],
            "workflow_id is required",
        ),
        (
            r#"{"workflow_id": "w", "#,
            &["metadata_extraction"],
            "not valid JSON",
        ),
        (
            r#"{"workflow_id": 42}"#,
            &["metadata_extraction", "/x"],
            "`workflow_id` must be a string",
        ),
        (
            r#"{"workflow_id":"a'b","data_source_path":"/x"}"#,
            &["metadata_extraction", "--write-to-db"],
            "invalid workflow_id",
        ),
    ];
    for (payload, args, msg) in cases {
        let mut c = bin();
        if !payload.is_empty() {
            c.env("NUVYN_JOB_PAYLOAD", payload);
        }
        let out = c.args(args).arg("--warehouse").arg(&wh).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected {msg:?} in {err}");
        assert!(!wh.exists(), "nothing may be written on a bad payload");
    }
    // A command-line workflow_id contradicting the payload's.
    let out = bin()
        .env(
            "NUVYN_JOB_PAYLOAD",
            r#"{"job_metadata":{"workflow_id":"meta"}}"#,
        )
        .args(["extract", "/x", "--workflow-id", "other", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict"));
}

#[test]
fn payload_job_writes_with_job_metadata_priority() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let wh = d.path().join("wh");
    let payload = serde_json::json!({
        "job_type": "metadata_extraction",
        "data_source_path": lake.display().to_string(),
        "workflow_id": "top_level",
        "source_id": "src1",
        "job_metadata": {"workflow_id": "from_meta"}
    });
    let out = bin()
        .env("NUVYN_JOB_PAYLOAD", payload.to_string())
        .env("EXECUTOR_LOG_LEVEL", "info")
        .args(["metadata_extraction", "--write-to-db", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["workflow_id"], "from_meta");
    assert_eq!(v["workflow_id_origin"], "job_metadata.workflow_id");
    assert_eq!(v["run_mode"], "payload");
    assert_eq!(v["written"], true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("using workflow_id from job_metadata"));

    let rows = sql_json(
        &wh,
        "SELECT workflow_id, source_id, run_mode FROM hive_metastore._executor_metadata.executor_runs",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"workflow_id": "from_meta", "source_id": "src1", "run_mode": "payload"}])
    );

    // Without --write-to-db the upstream form only prints.
    let wh2 = d.path().join("wh2");
    let out = bin()
        .env("NUVYN_JOB_PAYLOAD", payload.to_string())
        .args(["metadata_extraction", "--warehouse"])
        .arg(&wh2)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout_json(&out)["written"], false);
    assert!(!wh2.exists());
}

#[test]
fn dry_run_writes_nothing_and_outputs_render() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let wh = d.path().join("wh");
    let out = bin()
        .args([
            "extract",
            "--workflow-id",
            "w",
            "--dry-run",
            "--output",
            "table",
            "--warehouse",
        ])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("people") && text.contains("not written"),
        "{text}"
    );
    assert!(!wh.exists());

    // Write for real, then query in every format.
    let out = bin()
        .args([
            "extract",
            "--workflow-id",
            "w",
            "--source-id",
            "s",
            "--warehouse",
        ])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = "SELECT column_name, data_type FROM _executor_metadata.columns ORDER BY position";
    let csv = bin()
        .args(["sql", q, "--format", "csv", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        "column_name,data_type\nid,BIGINT\nname,STRING\nscore,DOUBLE\nactive,BOOLEAN\n"
    );
    let table = bin()
        .args(["sql", q, "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("| score       | DOUBLE    |"));
    let bad = bin()
        .args(["sql", "SELECT nope FROM columns", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));

    let nested = bin()
        .args(["query", "--workflow-id", "w", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    let v = stdout_json(&nested);
    assert_eq!(
        v["sources"][0]["tables"][0]["columns"][2]["column_name"],
        "score"
    );

    // A catalog name for Unity Catalog users.
    let uc = sql_json(
        &wh,
        "SELECT count(*) AS n FROM main._executor_metadata.tables",
        &["--catalog", "main"],
    );
    assert_eq!(uc, serde_json::json!([{"n": 1}]));
}

#[test]
fn schema_validation_creates_and_checks_tables() {
    let d = tmp();
    let wh = d.path().join("wh");
    let out = bin()
        .args(["schema_validation", "--no-create", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["valid"], false);
    let out = bin()
        .args(["schema_validation", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["valid"], true);
    assert_eq!(v["tables"].as_array().unwrap().len(), 4);
    assert!(
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["created"] == true)
    );
    assert!(
        wh.join("_executor_metadata/executor_runs/_delta_log")
            .is_dir()
    );
    let again = bin()
        .args(["schema_validation", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert!(
        stdout_json(&again)["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["created"] == false)
    );
}

#[test]
fn partial_failure_exits_3() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("ok.csv"), PEOPLE_CSV);
    write(&lake.join("broken.parquet"), b"PAR1 garbage");
    let out = bin()
        .args(["extract", "--workflow-id", "w", "--dry-run"])
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v = stdout_json(&out);
    assert_eq!(v["status"], "partial");
    assert_eq!(v["sources"][0]["tables_failed"], 1);
}

/// Kills the writer at many points of its run (where each kill lands depends on timing; the
/// window between an append and the record is hit deterministically by
/// `azure::a_failed_last_commit_leaves_readers_on_the_previous_whole_run`), checking after
/// each kill that every table is readable and that readers (`query`, and the SQL the README gives: rows of recorded
/// runs) see, for the source, exactly one complete run; then a re-run converges to one run's
/// rows in every table.
#[test]
fn killing_the_job_mid_write_never_corrupts_the_warehouse() {
    let d = tmp();
    let lake = d.path().join("lake");
    // Distinct names: files named t0..t5 would be one table of part files.
    for name in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"] {
        write(&lake.join(format!("{name}.csv")), PEOPLE_CSV);
    }
    write_parquet(&lake.join("p.parquet"), &people());
    let wh = d.path().join("wh");
    let extract = || {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("nuvyn-executor"));
        c.args([
            "extract",
            "--workflow-id",
            "w",
            "--source-id",
            "s",
            "--no-progress",
            "--warehouse",
        ])
        .arg(&wh)
        .arg(&lake)
        .env("EXECUTOR_LOG_LEVEL", "error")
        .env_remove("NUVYN_JOB_PAYLOAD")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        c
    };
    // A first complete run, so that later kills interrupt a replacement of existing rows.
    assert!(extract().status().unwrap().success());
    let sql = |q: &str| sql_json(&wh, q, &[]);
    let recorded = "SELECT run_id FROM executor_runs WHERE status IN ('succeeded', 'partial')";
    let mut kills = 0;
    for step in 0..12u64 {
        let mut child = extract().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(40 + step * 90));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        // What `query` (and the API, which shares it) shows: one source of one recorded run,
        // all seven tables, each with all its columns.
        let out = bin()
            .args(["query", "--workflow-id", "w", "--warehouse"])
            .arg(&wh)
            .output()
            .unwrap();
        let v = stdout_json(&out);
        let sources = v["sources"].as_array().unwrap();
        assert_eq!(sources.len(), 1, "after a kill at step {step}: {v}");
        let tables = sources[0]["tables"].as_array().unwrap();
        assert_eq!(tables.len(), 7, "after a kill at step {step}: {v}");
        for t in tables {
            let n = t["columns"].as_array().unwrap().len() as i64;
            assert_eq!(n, t["column_count"].as_i64().unwrap(), "step {step}: {t}");
        }
        // The README's reading, rows of recorded runs only: each recorded run there has all
        // its tables, each with all its columns. More than one is there only after a kill
        // between a record and the removal of the earlier rows (parents first: sources,
        // tables, columns), and `query` then shows the newest.
        let per_run = |table: &str| -> std::collections::BTreeMap<String, i64> {
            sql(&format!(
                "SELECT run_id, count(*) AS n FROM {table} WHERE workflow_id = 'w' \
                 AND source_id = 's' AND run_id IN ({recorded}) GROUP BY run_id"
            ))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["run_id"].as_str().unwrap().to_string(),
                    r["n"].as_i64().unwrap(),
                )
            })
            .collect()
        };
        let (srcs, tbls, cols) = (per_run("sources"), per_run("tables"), per_run("columns"));
        assert!(!srcs.is_empty(), "step {step}");
        assert!(
            srcs.keys().all(|r| tbls.get(r) == Some(&7)),
            "step {step}: {srcs:?} {tbls:?}"
        );
        assert!(
            tbls.keys().all(|r| cols.get(r) == Some(&29)),
            "step {step}: {tbls:?} {cols:?}"
        );
    }
    assert!(kills > 0, "no run was interrupted; the test proved nothing");
    assert!(extract().status().unwrap().success());
    for table in ["sources", "tables", "columns"] {
        let v = sql(&format!(
            "SELECT count(DISTINCT run_id) AS runs FROM {table} WHERE workflow_id = 'w'"
        ));
        assert_eq!(v[0]["runs"], 1, "{table} after a clean re-run: {v}");
    }
    let v = sql("SELECT count(*) AS n FROM tables WHERE workflow_id = 'w' AND source_id = 's'");
    assert_eq!(v[0]["n"], 7);
    let v = sql("SELECT count(*) AS n FROM columns WHERE workflow_id = 'w'");
    assert_eq!(v[0]["n"], 6 * 4 + 5);
}

#[test]
fn multi_source_payload_runs_every_source_and_reports_each() {
    let d = tmp();
    let a = d.path().join("a");
    let b = d.path().join("b");
    write(&a.join("people.csv"), PEOPLE_CSV);
    write_parquet(&b.join("p.parquet"), &people());
    let wh = d.path().join("wh");
    let payload = serde_json::json!({
        "workflow_id": "wf_multi",
        "sources": [
            {"source_id": "sa", "data_source_path": a.display().to_string(), "data_source_type": "csv"},
            {"source_id": "sb", "data_source_path": b.display().to_string()},
            {"source_id": "sc", "data_source_path": d.path().join("missing").display().to_string()}
        ]
    });
    // No command: the payload's job runs and writes (the Databricks task form).
    let out = bin()
        .env("NUVYN_JOB_PAYLOAD", payload.to_string())
        .env("NUVYN_WAREHOUSE", &wh)
        .arg("--log-format")
        .arg("json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    let statuses: Vec<(&str, &str)> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["source_id"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [("sa", "succeeded"), ("sb", "succeeded"), ("sc", "failed")]
    );
    assert_eq!(v["sources"][0]["source_type"], "csv");
    assert_eq!(v["sources"][1]["source_type"], "local");
    // Every stderr line is a JSON object (Databricks log delivery parses them).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() > 0);
    for line in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    let q = sql_json(
        &wh,
        "SELECT source_id, count(*) AS n FROM tables GROUP BY source_id ORDER BY source_id",
        &[],
    );
    assert_eq!(
        q,
        serde_json::json!([{"source_id": "sa", "n": 1}, {"source_id": "sb", "n": 1}])
    );
    let runs = sql_json(&wh, "SELECT status, run_mode FROM executor_runs", &[]);
    assert_eq!(
        runs,
        serde_json::json!([{"status": "partial", "run_mode": "payload"}])
    );
}

/// A job writes the checkpoints its commits make due (`delta.checkpointInterval` 10) beside
/// its later steps, and none after the deletes that end it (settling the earlier run's
/// rows): one of those would make due is written before them, of the version before.
#[test]
fn jobs_checkpoint_before_their_last_commits() {
    let d = tmp();
    let wh = d.path().join("wh");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample_lake");
    let mut early = 0;
    for run in 0..7 {
        ok(bin()
            .args(["extract", sample, "--workflow-id", "w1", "--source-id", "a"])
            .arg("--warehouse")
            .arg(&wh)
            .output()
            .unwrap());
        for name in ["sources", "tables", "columns", "executor_runs"] {
            let log = wh.join(format!("_executor_metadata/{name}/_delta_log"));
            let (mut latest, mut checkpoints) = (0u64, Vec::new());
            for e in std::fs::read_dir(&log).unwrap() {
                let f = e.unwrap().file_name().into_string().unwrap();
                if let Some(v) = f.strip_suffix(".json") {
                    latest = latest.max(v.parse().unwrap());
                } else if let Some(v) = f.strip_suffix(".checkpoint.parquet") {
                    checkpoints.push(v.parse::<u64>().unwrap());
                }
            }
            let operation = |v: u64| {
                let commit = std::fs::read_to_string(log.join(format!("{v:020}.json")))
                    .unwrap_or_else(|e| panic!("run {run}, {name}: commit {v}: {e}"));
                commit
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find_map(|a| a["commitInfo"]["operation"].as_str().map(str::to_string))
                    .unwrap()
            };
            for &c in &checkpoints {
                if (c + 1) % 10 == 0 {
                    // Due at c: written after c's commit, unless that was a settle delete.
                    assert_ne!(
                        operation(c),
                        "DELETE",
                        "{name}: checkpoint {c} after a delete"
                    );
                } else {
                    // Written early: the next commit was the delete that made it due.
                    assert_eq!((c + 2) % 10, 0, "{name}: checkpoint {c}");
                    assert_eq!(operation(c + 1), "DELETE", "{name}: checkpoint {c}");
                    early += 1;
                }
            }
            // Opening the table never reads more than an interval of commits.
            let last = checkpoints.iter().max().copied();
            assert!(
                latest < 9 || last.is_some_and(|c| latest - c <= 10),
                "run {run}, {name}: version {latest}, checkpoints {checkpoints:?}"
            );
        }
    }
    assert!(
        early > 0,
        "no delete made a checkpoint due: the test checks nothing"
    );
}

/// Jobs do not clean up the Delta log after each commit (the table property is off);
/// `maintain` compacts the small files each job adds, checkpoints, and cleans up, without
/// changing what the tables hold.
#[test]
fn maintain_compacts_and_checkpoints_without_changing_results() {
    let d = tmp();
    let wh = d.path().join("wh");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample_lake");
    for (wf, src) in [("w1", "a"), ("w1", "b"), ("w2", "a"), ("w1", "a")] {
        let out = bin()
            .args(["extract", sample, "--workflow-id", wf, "--source-id", src])
            .arg("--warehouse")
            .arg(&wh)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let q = "SELECT workflow_id, source_id, table_name, row_count FROM tables \
             ORDER BY workflow_id, source_id, table_name";
    let before = sql_json(&wh, q, &[]);
    let log = wh.join("_executor_metadata/tables/_delta_log");
    let config = std::fs::read_to_string(log.join("00000000000000000000.json")).unwrap();
    assert!(
        config.contains(r#""delta.enableExpiredLogCleanup":"false""#),
        "{config}"
    );

    let out = bin()
        .arg("maintain")
        .arg("--warehouse")
        .arg(&wh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    let tables = report["tables"].as_array().unwrap();
    // The four job tables, the two history tables, the changes and the partition sketches.
    assert_eq!(tables.len(), 8);
    let t = tables.iter().find(|t| t["table"] == "tables").unwrap();
    // Four job commits (after the schema's own) wrote partition w1 three times (one file
    // each, two later replaced) and w2 once: w1's live files are compacted into one commit.
    let v = t["version_before"].as_u64().unwrap();
    assert!(v >= 4, "{t}");
    assert_eq!(t["version_after"], v + 1, "{t}");
    assert!(t["files_compacted"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["checkpoint_version"], v + 1);
    assert!(
        log.join(format!("{:020}.checkpoint.parquet", v + 1))
            .exists()
    );
    assert!(log.join("_last_checkpoint").exists());
    assert_eq!(
        sql_json(&wh, q, &[]),
        before,
        "maintenance changes no result"
    );

    // VACUUM dry run: the replaced files are younger than the retention, so none are due.
    let out = bin()
        .args([
            "maintain",
            "--no-optimize",
            "--vacuum-hours",
            "168",
            "--dry-run",
            "--warehouse",
        ])
        .arg(&wh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["tables"][1]["files_vacuumed"], 0);
    assert_eq!(report["tables"][1]["version_after"], v + 1);

    // Jobs go on after maintenance, reading from the checkpoint.
    let out = bin()
        .args([
            "extract",
            sample,
            "--workflow-id",
            "w2",
            "--source-id",
            "a",
            "--warehouse",
        ])
        .arg(&wh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sql_json(&wh, q, &[]), before);
}

#[test]
fn a_warehouse_on_a_volume_is_refused_with_the_reason() {
    let out = bin()
        .args([
            "extract",
            ".",
            "--workflow-id",
            "w",
            "--warehouse",
            "/Volumes/main/lake/vol/wh",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("cannot take Delta commits from delta-rs") && e.contains("abfss://"),
        "{e}"
    );
    assert!(!std::path::Path::new("/Volumes/main/lake/vol/wh").exists());
}

/// `ddl` writes what Spark on a cluster can use: backticked names, any Azure form as
/// `abfss://` (no SAS), `/dbfs` as `dbfs:/`; what a cluster cannot reach is a usage error.
#[test]
fn ddl_writes_locations_spark_can_reach() {
    let ddl = |catalog: &str, wh: &str| {
        bin()
            .args(["ddl", "--catalog", catalog, "--warehouse", wh])
            .env("AZURE_STORAGE_ACCOUNT_NAME", "acct")
            .output()
            .unwrap()
    };
    let out = ddl(
        "my-catalog",
        "https://acct.blob.core.windows.net/lake/wh?sv=2022-11-02&sig=SECRET",
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("CREATE SCHEMA IF NOT EXISTS `my-catalog`.`_executor_metadata`;"));
    assert_eq!(
        text.matches("LOCATION 'abfss://lake@acct.dfs.core.windows.net/wh/_executor_metadata/")
            .count(),
        10,
        "{text}"
    );
    assert!(
        text.contains("CREATE TABLE IF NOT EXISTS `my-catalog`.`_executor_metadata`.`columns`")
    );
    assert!(!text.contains("SECRET") && !text.contains("sig="));
    let az = String::from_utf8(ddl("main", "az://lake/wh").stdout).unwrap();
    assert!(az.contains(
        "LOCATION 'abfss://lake@acct.dfs.core.windows.net/wh/_executor_metadata/sources'"
    ));
    let dbfs = String::from_utf8(ddl("main", "/dbfs/mnt/wh/").stdout).unwrap();
    assert!(dbfs.contains("LOCATION 'dbfs:/mnt/wh/_executor_metadata/sources'"));
    for (catalog, wh, reason) in [
        (
            "main",
            "./warehouse",
            "Spark on a Databricks cluster cannot read",
        ),
        (
            "main",
            "http://127.0.0.1:10000/devstoreaccount1/lake/wh",
            "emulator",
        ),
        ("main", "/Volumes/main/raw/vol/wh", "volume"),
        (
            "bad name",
            "abfss://lake@acct.dfs.core.windows.net/wh",
            "invalid --catalog",
        ),
    ] {
        let out = ddl(catalog, wh);
        assert_eq!(out.status.code(), Some(2), "{wh}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{wh}: {err}");
    }
}
