//! Schema migrations on real Delta tables: a v1.0 warehouse with data in all four tables is
//! migrated to the latest schema and checked row by row, by time travel, and with the
//! migration document's four queries; bad migration files are refused before anything runs;
//! edited files, failures, interruptions and concurrent runs are handled.

use std::path::Path;

use crate::common::*;
use nuvyn_executor::migrate::{Migrator, Readiness, readiness};
use nuvyn_executor::storage::location;
use nuvyn_executor::warehouse::{JOB_TABLES, Warehouse};

fn migrate(wh: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("migrate")
        .args(args)
        .arg("--warehouse")
        .arg(wh)
        .output()
        .unwrap()
}

/// A v1.0 warehouse: the V1 tables, filled with the fixture's rows through `sql`.
fn v1_warehouse(wh: &Path) {
    let r = ok(migrate(wh, &["apply", "--target", "1"]));
    assert_eq!(r["to_version"], 1);
    let fixture = include_str!("../fixtures/v1_warehouse.sql");
    for stmt in fixture.lines().filter(|l| l.starts_with("INSERT")) {
        let out = bin()
            .args(["sql", stmt, "--warehouse"])
            .arg(wh)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn warehouse(wh: &Path) -> Warehouse {
    Warehouse::new(location::parse(&wh.display().to_string()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_warehouse_migrates_keeping_every_row() {
    let d = tmp();
    let wh = d.path().join("wh");
    v1_warehouse(&wh);
    let count =
        |t: &str| sql_json(&wh, &format!("SELECT count(*) AS n FROM {t}"), &[])[0]["n"].clone();
    let before: Vec<_> = ["sources", "tables", "columns", "executor_runs"]
        .iter()
        .map(|t| count(t))
        .collect();
    assert_eq!(before, [2, 3, 7, 2]);

    // A v1 warehouse is behind: jobs refuse it and name the fix.
    let lake = d.path().join("lake");
    write(&lake.join("a.csv"), "x\n1\n");
    let out = bin()
        .args(["extract", "--workflow-id", "w", "--warehouse"])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stdout_json(&out)["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("the warehouse schema is at V1, this executor writes V8"),
        "{err}"
    );
    assert!(
        err.contains("nuvyn-executor migrate apply --warehouse"),
        "{err}"
    );

    let status = ok(migrate(&wh, &["status"]));
    let states: Vec<_> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].clone())
        .collect();
    assert_eq!(
        states,
        [
            "applied", "pending", "pending", "pending", "pending", "pending", "pending", "pending"
        ]
    );
    let plan = ok(migrate(&wh, &["plan"]));
    assert_eq!(plan["pending"].as_array().unwrap().len(), 7);
    // A dry run shows the same steps and changes nothing.
    let dry = ok(migrate(&wh, &["apply", "--dry-run"]));
    assert_eq!(dry["planned"], plan["pending"]);
    assert_eq!(dry["applied"], serde_json::json!([]));
    let status = ok(migrate(&wh, &["status"]));
    assert_eq!(status["schema_version"], 1);

    let w = warehouse(&wh);
    let mut v1_versions = Vec::new();
    for def in JOB_TABLES {
        v1_versions.push(w.open(def).await.unwrap().unwrap().version().unwrap());
    }
    let applied = ok(migrate(&wh, &["apply"]));
    assert_eq!(
        (
            applied["from_version"].clone(),
            applied["to_version"].clone()
        ),
        (1.into(), 8.into())
    );
    // Re-running is a no-op.
    let again = ok(migrate(&wh, &["apply"]));
    assert_eq!(again["applied"].as_array().unwrap().len(), 0);

    // Every row kept, workflow_id = the old source_id, partitioned by workflow_id.
    let after: Vec<_> = ["sources", "tables", "columns", "executor_runs"]
        .iter()
        .map(|t| count(t))
        .collect();
    assert_eq!(after, before);
    for t in ["sources", "tables", "columns", "executor_runs"] {
        let bad = sql_json(
            &wh,
            &format!("SELECT count(*) AS n FROM {t} WHERE workflow_id IS DISTINCT FROM source_id"),
            &[],
        );
        assert_eq!(bad[0]["n"], 0, "{t}");
    }
    assert_eq!(
        sql_json(
            &wh,
            "SELECT id, sample_values FROM columns WHERE id IN (102, 106) ORDER BY id",
            &[]
        ),
        serde_json::json!([{"id": 102, "sample_values": "[\"Oslo\",\"Rome\"]"}, {"id": 106, "sample_values": "[]"}])
    );
    assert_eq!(
        sql_json(
            &wh,
            "SELECT run_id, error_message FROM executor_runs ORDER BY run_id",
            &[]
        ),
        serde_json::json!([{"run_id": "run-1"}, {"run_id": "run-2", "error_message": "boom"}])
    );
    let check = ok(bin()
        .args(["schema_validation", "--no-create", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap());
    assert_eq!(check["valid"], true, "{check:#}");
    for (def, v1) in JOB_TABLES.iter().zip(&v1_versions) {
        let t = w.open(def).await.unwrap().unwrap();
        let snap = t.snapshot().unwrap();
        assert_eq!(
            snap.metadata().partition_columns(),
            &["workflow_id".to_string()],
            "{}",
            def.name
        );
        assert!(
            wh.join(format!(
                "_executor_metadata/{}/workflow_id=workflow_abc123",
                def.name
            ))
            .is_dir()
        );
        // The v1 layout is still there by time travel, rows and all.
        let mut old = w.open(def).await.unwrap().unwrap();
        old.load_version(*v1).await.unwrap();
        let old_snap = old.snapshot().unwrap();
        assert_eq!(
            old_snap.metadata().partition_columns(),
            &["source_id".to_string()]
        );
        assert!(old_snap.schema().field("workflow_id").is_none());
        let rows: i64 = old
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.num_records().unwrap_or(0) as i64)
            .sum();
        let now: i64 = after[JOB_TABLES.iter().position(|d| d.name == def.name).unwrap()]
            .as_i64()
            .unwrap();
        assert_eq!(rows, now, "{} at version {v1}", def.name);
    }

    // The document's queries on the migrated rows.
    let q = |i: usize| sql_json(&wh, DOC_QUERIES[i], &[]);
    let q1 = q(0);
    let cols: Vec<(&str, &str)> = q1
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["table_name"].as_str().unwrap(),
                r["column_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cols,
        [
            ("customers", "id"),
            ("customers", "name"),
            ("customers", "city"),
            ("orders", "order_id"),
            ("orders", "customer_id")
        ]
    );
    assert!(
        q1.as_array()
            .unwrap()
            .iter()
            .all(|r| r["source_path"] == "/lake/sales" && r["workflow_id"] == "workflow_abc123")
    );
    assert_eq!(
        q(1),
        serde_json::json!([]),
        "no v1 row has workflow abc and source xyz"
    );
    let q3 = q(2);
    assert_eq!(
        q3,
        serde_json::json!([
            {"workflow_id": "source_xyz789", "source_id": "source_xyz789", "table_name": "contacts", "column_name": "email", "data_type": "STRING"},
            {"workflow_id": "source_xyz789", "source_id": "source_xyz789", "table_name": "contacts", "column_name": "phone", "data_type": "STRING"}
        ])
    );
    let q4 = q(3);
    assert_eq!(q4[0]["table_count"], 2);
    assert_eq!(q4[0]["total_columns"], 5);
    assert_eq!(q4[0]["files_found"], 2);

    // New jobs write next to the migrated rows; Q2 now finds theirs.
    let out = bin()
        .args([
            "extract",
            "--workflow-id",
            "workflow_abc123",
            "--source-id",
            "source_xyz789",
            "--warehouse",
        ])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q2 = q(1);
    assert_eq!(q2.as_array().unwrap().len(), 1);
    assert_eq!(q2[0]["column_name"], "x");
    assert_eq!(count("sources"), 3);
}

/// Migration files by name.
type Files<'a> = Vec<(&'a str, String)>;

/// Writes migration files into a directory: the built-in ones plus `extra`.
fn migrations_dir(d: &Path, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = d.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in nuvyn_executor::migrate::EMBEDDED {
        std::fs::write(dir.join(name), text).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn migrate_with(wh: &Path, dir: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("migrate")
        .args(args)
        .arg("--migrations")
        .arg(dir)
        .arg("--warehouse")
        .arg(wh)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_migration_files_are_refused_before_anything_runs() {
    let d = tmp();
    let wh = d.path().join("wh");
    ok(migrate(&wh, &["apply"]));
    let w = warehouse(&wh);
    let versions = || async {
        let mut v = Vec::new();
        for def in JOB_TABLES {
            v.push(w.open(def).await.unwrap().unwrap().version());
        }
        v
    };
    let before = versions().await;
    // Each V9 starts with a valid step, so "nothing changed" means nothing ran at all.
    let good = "ALTER TABLE hive_metastore._executor_metadata.sources ADD COLUMN note STRING;\n";
    let cases: Vec<(&str, Files, &str)> = vec![
        (
            "syntax error",
            vec![(
                "V9__bad.sql",
                format!(
                    "{good}\nUPDATE hive_metastore._executor_metadata.tables SETT row_count = 0;\n"
                ),
            )],
            "V9__bad.sql line 3: syntax error:",
        ),
        (
            "unsupported statement",
            vec![(
                "V9__bad.sql",
                format!("{good}DROP TABLE hive_metastore._executor_metadata.tables;\n"),
            )],
            "V9__bad.sql line 2: DROP TABLE is not a supported migration statement",
        ),
        (
            "missing table",
            vec![(
                "V9__bad.sql",
                format!("{good}UPDATE hive_metastore._executor_metadata.nope SET a = 1;\n"),
            )],
            "V9__bad.sql line 2: table nope does not exist",
        ),
        (
            "type-incompatible UPDATE",
            vec![(
                "V9__bad.sql",
                format!(
                    "{good}UPDATE hive_metastore._executor_metadata.sources SET files_found = source_path;\n"
                ),
            )],
            "V9__bad.sql line 2: type mismatch: files_found is INT, the new value is Utf8",
        ),
        (
            "gap in versions",
            vec![("V10__later.sql", good.to_string())],
            "migration versions have a gap: V9 is missing (found V8 and V10)",
        ),
        (
            "two files with one version",
            vec![
                ("V9__a.sql", good.to_string()),
                ("V9__b.sql", good.to_string()),
            ],
            "migration version 9 is given twice: V9__a.sql and V9__b.sql",
        ),
    ];
    for (i, (case, files, expected)) in cases.into_iter().enumerate() {
        let sub = d.path().join(format!("case{i}"));
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let dir = migrations_dir(&sub, &files);
        for action in [&["plan"][..], &["apply"]] {
            let out = migrate_with(&wh, &dir, action);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
            assert!(stderr.contains(expected), "{case}: {stderr}");
        }
        assert_eq!(versions().await, before, "{case}: nothing changed");
        assert!(
            w.open_named("sources")
                .await
                .unwrap()
                .unwrap()
                .snapshot()
                .unwrap()
                .schema()
                .field("note")
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_failed_and_interrupted_migrations() {
    let d = tmp();
    let wh = d.path().join("wh");
    // V9 fails at its second step (a type the file's model allows but delta-rs rejects is
    // hard to make: a constraint violation is simplest to make fail at run time).
    let v4 = "ALTER TABLE hive_metastore._executor_metadata.sources ADD COLUMN note STRING;\n\
              UPDATE hive_metastore._executor_metadata.sources SET note = 'x' WHERE CAST(source_path AS INT) > 0;\n";
    let dir = migrations_dir(d.path(), &[("V9__note.sql", v4)]);
    ok(migrate_with(&wh, &dir, &["apply", "--target", "8"]));
    // Rows whose source_path is not a number make the CAST fail when V9 runs.
    let lake = d.path().join("lake");
    write(&lake.join("a.csv"), "x\n1\n");
    let out = bin()
        .args(["extract", "--workflow-id", "w", "--warehouse"])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = migrate_with(&wh, &dir, &["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("V9__note.sql line 2 failed:"), "{stderr}");
    let status = stdout_json(&migrate_with(&wh, &dir, &["status"]));
    assert_eq!(status["migrations"][8]["state"], "failed");
    assert_eq!(status["schema_version"], 8);
    // The failed V9 is reported to jobs run by a binary that knows V9; this one knows V8 and
    // sees the V9 attempt as a warehouse ahead of it... so it is the status that tells.
    let w = warehouse(&wh);
    assert_eq!(
        readiness(
            &Migrator::new(w.clone())
                .with_migrations(nuvyn_executor::migrate::read_dir(&dir).unwrap())
        )
        .await
        .unwrap(),
        Readiness::Unfinished {
            version: 9,
            state: nuvyn_executor::migrate::State::Failed
        }
    );

    // Fixing the file and applying again resumes V9: its first step is already done.
    let fixed = "ALTER TABLE hive_metastore._executor_metadata.sources ADD COLUMN note STRING;\n\
                 UPDATE hive_metastore._executor_metadata.sources SET note = 'x' WHERE note IS NULL;\n";
    std::fs::write(dir.join("V9__note.sql"), fixed).unwrap();
    let r = ok(migrate_with(&wh, &dir, &["apply"]));
    assert_eq!(r["applied"][0]["resumed"], true);
    assert_eq!(r["applied"][0]["steps_skipped"], 1);
    assert_eq!(
        sql_json(
            &wh,
            "SELECT count(*) AS n FROM sources WHERE note = 'x'",
            &[]
        )[0]["n"],
        1
    );

    // Editing an applied file is refused by validate and apply, naming both checksums.
    std::fs::write(dir.join("V9__note.sql"), format!("{fixed}-- edited\n")).unwrap();
    for action in ["validate", "apply"] {
        let out = migrate_with(&wh, &dir, &[action]);
        assert_eq!(out.status.code(), Some(1), "{action}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            e.contains("V9__note.sql (V9) was changed after it was applied: checksum applied "),
            "{e}"
        );
    }
    // repair accepts the edit.
    let r = ok(migrate_with(&wh, &dir, &["repair"]));
    assert_eq!(r["realigned_checksums"][0]["version"], 9);
    ok(migrate_with(&wh, &dir, &["validate"]));

    // A run that died long ago (an executor before leases) left its lock: the next apply
    // takes it over at once. (Nothing pending needs no lock, so V10 gives it work.)
    let lock = wh.join("_executor_metadata/_migrate.lock");
    std::fs::write(&lock, r#"{"owner":"test","since":"2026-01-01T00:00:00Z"}"#).unwrap();
    ok(migrate_with(&wh, &dir, &["apply"]));
    std::fs::write(
        dir.join("V10__more.sql"),
        "ALTER TABLE hive_metastore._executor_metadata.tables ADD COLUMN note STRING;\n",
    )
    .unwrap();
    let out = bin()
        .args(["migrate", "apply", "--migrations"])
        .arg(&dir)
        .arg("--warehouse")
        .arg(&wh)
        .env("NUVYN_MIGRATE_LOCK_WAIT_SECS", "30")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(e.contains("taking over the migration lock of test"), "{e}");
    assert!(!lock.exists(), "released after the apply");

    // A lock whose lease looks live: apply waits, then names the holder and the lease;
    // repair watches it for one lease and, as nobody renews it, removes it.
    let live = serde_json::json!({"owner": "test", "token": "t",
        "since": chrono::Utc::now().to_rfc3339(),
        "expires": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()});
    std::fs::write(&lock, live.to_string()).unwrap();
    std::fs::write(
        dir.join("V11__more.sql"),
        "ALTER TABLE hive_metastore._executor_metadata.tables ADD COLUMN note2 STRING;\n",
    )
    .unwrap();
    let out = bin()
        .args(["migrate", "apply", "--migrations"])
        .arg(&dir)
        .arg("--warehouse")
        .arg(&wh)
        .env("NUVYN_MIGRATE_LOCK_WAIT_SECS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("another `migrate apply` holds the lock")
            && e.contains("by test")
            && e.contains("lease renewed until"),
        "{e}"
    );
    let r = ok(bin()
        .args(["migrate", "repair", "--migrations"])
        .arg(&dir)
        .arg("--warehouse")
        .arg(&wh)
        .env("NUVYN_MIGRATE_LOCK_LEASE_SECS", "1")
        .output()
        .unwrap());
    assert_eq!(r["removed_lock"], true);
    let r = ok(migrate_with(&wh, &dir, &["apply"]));
    assert_eq!(r["to_version"], 11);

    // This binary knows V8 only: the warehouse is ahead of it, and jobs refuse to write.
    let out = bin()
        .args(["extract", "--workflow-id", "w", "--warehouse"])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stdout_json(&out)["error"].as_str().unwrap().to_string();
    assert!(
        err.contains(
            "the warehouse schema is at V11, newer than this executor's V8: upgrade nuvyn-executor"
        ),
        "{err}"
    );
    let out = migrate(&wh, &["validate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer than this executor's V8"));
}

/// Two `migrate apply` runs at once on a fresh warehouse: each step runs once, every table is
/// created once, and both runs end with the full schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_never_run_a_step_twice() {
    let d = tmp();
    let wh = d.path().join("wh");
    let children: Vec<_> = (0..2)
        .map(|_| {
            bin_std()
                .args(["migrate", "apply", "--warehouse"])
                .arg(&wh)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        applied += ok(out)["applied"].as_array().unwrap().len();
    }
    assert_eq!(applied, 8, "V1..V8 applied once between the two runs");
    let w = warehouse(&wh);
    let history = Migrator::new(w.clone()).history().await.unwrap();
    let done: Vec<i32> = history
        .iter()
        .filter(|r| r.success == Some(true))
        .map(|r| r.version)
        .collect();
    assert_eq!(done, [1, 2, 3, 4, 5, 6, 7, 8]);
    // One CREATE TABLE per table: version 0 is the only metaData-with-protocol commit.
    let reference = tmp();
    let r = Warehouse::new(location::parse(&reference.path().display().to_string()).unwrap());
    Migrator::new(r.clone()).apply(None, false).await.unwrap();
    for def in JOB_TABLES {
        assert_eq!(
            w.open(def).await.unwrap().unwrap().version(),
            r.open(def).await.unwrap().unwrap().version(),
            "{}",
            def.name
        );
    }
}

/// `--migrate` lets a job bring a v1.0 warehouse up to date itself before writing.
#[test]
fn a_job_with_migrate_upgrades_the_warehouse_first() {
    let d = tmp();
    let wh = d.path().join("wh");
    v1_warehouse(&wh);
    let lake = d.path().join("lake");
    write(&lake.join("a.csv"), "x\n1\n");
    let out = bin()
        .args(["extract", "--workflow-id", "w", "--migrate", "--warehouse"])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = ok(migrate(&wh, &["status"]));
    assert_eq!(status["schema_version"], 8);
    assert_eq!(
        sql_json(
            &wh,
            "SELECT workflow_id, count(*) AS n FROM sources GROUP BY workflow_id ORDER BY workflow_id",
            &[]
        ),
        serde_json::json!([
            {"workflow_id": "source_xyz789", "n": 1},
            {"workflow_id": "w", "n": 1},
            {"workflow_id": "workflow_abc123", "n": 1}
        ])
    );
}

/// A migration killed mid-way is reported as interrupted; its lock, no longer renewed, holds
/// the next run up for at most one lease (not the whole lock wait): that run takes it over
/// and resumes to the full schema. Jobs likewise stop waiting for a dead run's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_migration_is_reported_and_resumed() {
    let d = tmp();
    for attempt in 0..10 {
        let wh = d.path().join(format!("wh{attempt}"));
        let m = Migrator::new(warehouse(&wh));
        let mut child = bin_std()
            .args(["migrate", "apply", "--warehouse"])
            .arg(&wh)
            .env("NUVYN_MIGRATE_LOCK_LEASE_SECS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it as soon as a migration has started and not finished.
        let mut caught = false;
        while child.try_wait().unwrap().is_none() {
            if let Ok(h) = m.history().await
                && h.last().is_some_and(|r| r.success.is_none())
            {
                child.kill().unwrap();
                caught = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        child.wait().unwrap();
        // The kill may land just after that migration finished: then try again.
        let unfinished = m
            .history()
            .await
            .unwrap()
            .last()
            .is_some_and(|r| r.success.is_none());
        if !caught || !unfinished {
            continue;
        }
        let status = stdout_json(&migrate(&wh, &["status"]));
        let states: Vec<String> = status["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["state"].as_str().unwrap().to_string())
            .collect();
        assert!(states.contains(&"interrupted".to_string()), "{states:?}");
        assert_eq!(
            migrate(&wh, &["status"]).status.code(),
            Some(1),
            "an unhealthy status exits 1"
        );
        assert!(matches!(
            readiness(&m).await.unwrap(),
            Readiness::Unfinished { .. }
        ));
        assert!(wh.join("_executor_metadata/_migrate.lock").exists());
        // Once the dead run's lease (2 s) is out, a job does not wait for it (the default
        // wait is 300 s): it is told at once what to do about the unfinished migration.
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        let lake = d.path().join(format!("lake{attempt}"));
        write(&lake.join("people.csv"), PEOPLE_CSV);
        let started = std::time::Instant::now();
        let job = bin()
            .args(["extract", "--workflow-id", "w", "--warehouse"])
            .arg(&wh)
            .arg(&lake)
            .output()
            .unwrap();
        assert_eq!(job.status.code(), Some(1));
        let err = stdout_json(&job)["error"].as_str().unwrap().to_string();
        assert!(!err.contains("holds the lock"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
        let started = std::time::Instant::now();
        let out = bin()
            .args(["migrate", "apply", "--warehouse"])
            .arg(&wh)
            .env("NUVYN_MIGRATE_LOCK_LEASE_SECS", "2")
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{e}");
        assert!(e.contains("taking over the migration lock"), "{e}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
        let r = stdout_json(&out);
        assert_eq!(r["to_version"], 8);
        let check = ok(bin()
            .args(["schema_validation", "--no-create", "--warehouse"])
            .arg(&wh)
            .output()
            .unwrap());
        assert_eq!(check["valid"], true, "{check:#}");
        return;
    }
    panic!("no attempt caught a migration in progress");
}
