//! The SQL notebooks in notebooks/ parse with sqlparser's Databricks dialect (the dialect
//! Databricks SQL speaks), and every `:parameter` they use is a widget they create. The Python
//! notebooks and the job definition are checked by ci/databricks-check.py.

use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;

#[test]
fn sql_notebooks_parse_with_the_databricks_dialect() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks");
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("-- Databricks notebook source\n"),
            "{}",
            path.display()
        );
        let mut widgets = Vec::new();
        let mut used = Vec::new();
        for (i, cell) in text.split("\n-- COMMAND ----------\n").enumerate() {
            let code: String = cell
                .lines()
                .filter(|l| !l.starts_with("-- MAGIC") && !l.starts_with("-- Databricks"))
                .collect::<Vec<_>>()
                .join("\n");
            for stmt in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                // `CREATE WIDGET` is Databricks notebook syntax, not SQL the dialect knows.
                if let Some(rest) = stmt.strip_prefix("CREATE WIDGET TEXT ") {
                    widgets.push(rest.split_whitespace().next().unwrap().to_string());
                    continue;
                }
                let parsed_stmt = Parser::parse_sql(&DatabricksDialect {}, stmt)
                    .unwrap_or_else(|e| panic!("{} cell {i}: {e}\n{stmt}", path.display()));
                assert_eq!(parsed_stmt.len(), 1);
                for word in stmt.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                    if let Some(p) = word.strip_prefix(':') {
                        used.push(p.to_string());
                    }
                }
                parsed += 1;
            }
        }
        for p in &used {
            assert!(
                widgets.contains(p),
                "{}: :{p} has no widget",
                path.display()
            );
        }
    }
    assert!(parsed >= 4, "{parsed} statements parsed");
}

/// `query_metadata` holds the migration document's four queries (the ones the tests run),
/// the corrected versions of queries 1 and 4 and the column profile query, with the literal ids replaced by the widgets
/// and the tables named in the `catalog` widget's catalog: the notebook cannot drift from them.
#[test]
fn the_query_notebook_carries_the_documents_queries() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let notebook = std::fs::read_to_string(dir.join("notebooks/query_metadata.sql")).unwrap();
    let names = [
        "q1",
        "q2",
        "q3",
        "q4",
        "q1_corrected",
        "q4_corrected",
        "column_profile",
    ];
    for name in names {
        let q = std::fs::read_to_string(dir.join(format!("tests/fixtures/doc_queries/{name}.sql")))
            .unwrap();
        let mut q = q
            .trim()
            .replace("'workflow_abc123'", ":workflow_id")
            .replace("'source_xyz789'", ":source_id");
        for t in ["sources", "tables", "columns"] {
            q = q.replace(
                &format!("hive_metastore._executor_metadata.{t}"),
                &format!("IDENTIFIER(:catalog || '._executor_metadata.{t}')"),
            );
        }
        assert!(
            notebook.contains(&q),
            "{name} is not in notebooks/query_metadata.sql as written"
        );
    }
    assert!(!notebook.contains("hive_metastore._executor_metadata"));
}

/// Tables Databricks touched first: their `_delta_log` gets the protocol and metadata actions
/// Databricks writes (deletion vectors turned on, the v1.0 document's identity column,
/// column mapping), as a commit after the executor's own; the binary refuses them before any
/// write, naming the feature, the table and the way out.
mod touched_by_databricks {
    use crate::common::*;
    use std::path::{Path, PathBuf};

    fn log_dir(wh: &Path, table: &str) -> PathBuf {
        wh.join("_executor_metadata").join(table).join("_delta_log")
    }

    /// Every table's commit files, to show that nothing was written.
    fn commits(wh: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for t in std::fs::read_dir(wh.join("_executor_metadata")).unwrap() {
            let t = t.unwrap().path();
            if let Ok(entries) = std::fs::read_dir(t.join("_delta_log")) {
                for e in entries {
                    out.push(e.unwrap().path().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// The table's current metaData action (of its last commit that has one), and its next
    /// version number.
    fn metadata(wh: &Path, table: &str) -> (serde_json::Value, usize) {
        let dir = log_dir(wh, table);
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        versions.sort();
        let meta = versions
            .iter()
            .rev()
            .find_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .find_map(|a| a.get("metaData").cloned())
            })
            .unwrap();
        (meta, versions.len())
    }

    /// Commits `protocol` and `meta` as the table's next version, as Databricks would.
    fn databricks_commit(
        wh: &Path,
        table: &str,
        protocol: serde_json::Value,
        meta: serde_json::Value,
    ) {
        let (_, next) = metadata(wh, table);
        let commit = serde_json::json!({"commitInfo": {
            "timestamp": 1_700_000_000_000u64, "operation": "SET TBLPROPERTIES",
            "engineInfo": "Databricks-Runtime/15.4.x-scala2.12"}});
        let text = [
            commit,
            serde_json::json!({"protocol": protocol}),
            serde_json::json!({"metaData": meta}),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join("\n");
        write(
            &log_dir(wh, table).join(format!("{next:020}.json")),
            text + "\n",
        );
    }

    fn extract(wh: &Path, workflow: &str) -> std::process::Output {
        let lake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample_lake");
        bin()
            .arg("extract")
            .arg(&lake)
            .args(["--workflow-id", workflow, "--warehouse"])
            .arg(wh)
            .output()
            .unwrap()
    }

    /// The job failed (exit 1) with every needle in its result's error or its log.
    fn refused(out: &std::process::Output, needles: &[&str]) {
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in: {err}");
        }
    }

    #[test]
    fn deletion_vectors_are_refused_before_any_write() {
        let d = tmp();
        let wh = d.path().join("wh");
        ok(extract(&wh, "wf_first"));
        let (mut meta, _) = metadata(&wh, "columns");
        meta["configuration"]["delta.enableDeletionVectors"] = "true".into();
        databricks_commit(
            &wh,
            "columns",
            serde_json::json!({"minReaderVersion": 3, "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}),
            meta,
        );
        let before = commits(&wh);
        refused(
            &extract(&wh, "wf_second"),
            &[
                "warehouse table columns",
                "uses the Delta feature `deletionVectors` (delta.enableDeletionVectors = true)",
                "nothing was written",
                "ALTER TABLE hive_metastore._executor_metadata.columns SET TBLPROPERTIES ('delta.enableDeletionVectors' = false)",
                "ALTER TABLE hive_metastore._executor_metadata.columns DROP FEATURE deletionVectors",
                "route=spark",
            ],
        );
        assert_eq!(commits(&wh), before, "no table got a commit");
        // Reading is not writing: the SQL path still answers.
        let rows = sql_json(
            &wh,
            "SELECT count(DISTINCT workflow_id) AS n FROM columns",
            &[],
        );
        assert_eq!(rows[0]["n"], 1);
    }

    #[test]
    fn the_v1_documents_identity_column_stops_a_migration_before_its_first_step() {
        let d = tmp();
        let wh = d.path().join("wh");
        ok(bin()
            .args(["migrate", "apply", "--target", "1", "--warehouse"])
            .arg(&wh)
            .output()
            .unwrap());
        // `id BIGINT GENERATED ALWAYS AS IDENTITY`, as the document's DDL makes it.
        let (mut meta, _) = metadata(&wh, "sources");
        let mut schema: serde_json::Value =
            serde_json::from_str(meta["schemaString"].as_str().unwrap()).unwrap();
        schema["fields"][0]["metadata"] = serde_json::json!({
            "delta.identity.start": 1, "delta.identity.step": 1,
            "delta.identity.allowExplicitInsert": false, "delta.identity.highWaterMark": 4});
        meta["schemaString"] = schema.to_string().into();
        databricks_commit(
            &wh,
            "sources",
            serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 6}),
            meta,
        );
        let before = commits(&wh);
        let out = bin()
            .args(["migrate", "apply", "--warehouse"])
            .arg(&wh)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        for n in [
            "warehouse table sources",
            "uses the Delta feature `identityColumns` (column `id` is GENERATED ... AS IDENTITY)",
            "CREATE OR REPLACE TABLE",
            "route=spark",
        ] {
            assert!(err.contains(n), "{n:?} not in: {err}");
        }
        let after: Vec<String> = commits(&wh)
            .into_iter()
            .filter(|c| !c.contains("_schema_history"))
            .collect();
        let before: Vec<String> = before
            .into_iter()
            .filter(|c| !c.contains("_schema_history"))
            .collect();
        assert_eq!(after, before, "no data table got a commit");
        let status = stdout_json(
            &bin()
                .args(["migrate", "status", "--warehouse"])
                .arg(&wh)
                .output()
                .unwrap(),
        );
        assert_eq!(status["migrations"][1]["state"], "pending", "{status}");
    }

    #[test]
    fn column_mapping_is_refused() {
        let d = tmp();
        let wh = d.path().join("wh");
        ok(extract(&wh, "wf_first"));
        let (mut meta, _) = metadata(&wh, "tables");
        let mut schema: serde_json::Value =
            serde_json::from_str(meta["schemaString"].as_str().unwrap()).unwrap();
        for (i, f) in schema["fields"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            let name = f["name"].as_str().unwrap().to_string();
            f["metadata"] = serde_json::json!({
                "delta.columnMapping.id": i + 1, "delta.columnMapping.physicalName": name});
        }
        meta["schemaString"] = schema.to_string().into();
        meta["configuration"]["delta.columnMapping.mode"] = "name".into();
        meta["configuration"]["delta.columnMapping.maxColumnId"] = "20".into();
        databricks_commit(
            &wh,
            "tables",
            serde_json::json!({"minReaderVersion": 2, "minWriterVersion": 5}),
            meta,
        );
        let before = commits(&wh);
        refused(
            &extract(&wh, "wf_second"),
            &[
                "warehouse table tables",
                "`columnMapping` (delta.columnMapping.mode = name)",
                "DROP FEATURE columnMapping",
            ],
        );
        assert_eq!(commits(&wh), before);
    }

    #[test]
    fn a_warehouse_of_managed_v1_tables_is_not_split_in_two() {
        let d = tmp();
        let made = d.path().join("made");
        ok(extract(&made, "wf_first"));
        // The document's layout: managed tables at <root>/_executor_metadata.db/<table>.
        let wh = d.path().join("wh");
        let managed = wh.join("_executor_metadata.db").join("sources");
        std::fs::create_dir_all(managed.join("_delta_log")).unwrap();
        for e in std::fs::read_dir(log_dir(&made, "sources")).unwrap() {
            let e = e.unwrap();
            if !e.path().is_file() {
                continue;
            }
            std::fs::copy(e.path(), managed.join("_delta_log").join(e.file_name())).unwrap();
        }
        let out = extract(&wh, "wf_second");
        refused(
            &out,
            &[
                "warehouse table sources is a managed table at",
                "_executor_metadata.db/sources (the v1.0 layout)",
                "nothing was created",
                "route=spark",
            ],
        );
        assert!(!wh.join("_executor_metadata").join("sources").exists());
    }
}
