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

/// `query_metadata` holds the migration document's four queries (the ones the tests run) and
/// the corrected versions of queries 1 and 4, with the literal ids replaced by the widgets
/// and the tables named in the `catalog` widget's catalog: the notebook cannot drift from them.
#[test]
fn the_query_notebook_carries_the_documents_queries() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let notebook = std::fs::read_to_string(dir.join("notebooks/query_metadata.sql")).unwrap();
    let names = ["q1", "q2", "q3", "q4", "q1_corrected", "q4_corrected"];
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
