//! Profiles over time from the command line: changes between runs (recorded, listed,
//! `--fail-on`), unchanged tables carried instead of read, `--full`, and the payload's
//! `full_refresh`/`fail_on`.

use crate::common::*;

fn sales(rows: usize, region_header: &str, shift: f64, note: bool) -> String {
    let mut s = format!(
        "id,amount,{region_header}{}\n",
        if note { ",note" } else { "" }
    );
    for i in 0..rows {
        let region = ["north", "south", "east", "west"][i % 4];
        s.push_str(&format!(
            "{i},{:.2},{region}{}\n",
            (i % 50) as f64 + shift,
            if note { ",ok" } else { "" }
        ));
    }
    s
}

fn extract(lake: &std::path::Path, wh: &std::path::Path, extra: &[&str]) -> std::process::Output {
    bin()
        .arg("extract")
        .arg(lake)
        .args([
            "--workflow-id",
            "drift_wf",
            "--source-id",
            "s1",
            "--warehouse",
        ])
        .arg(wh)
        .args(["--output", "json"])
        .args(extra)
        .output()
        .unwrap()
}

type Change = (String, Option<String>, String, String);

fn changes_of(r: &serde_json::Value) -> Vec<Change> {
    r["sources"][0]["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["table_name"].as_str().unwrap().to_string(),
                        c["column_name"].as_str().map(str::to_string),
                        c["change"].as_str().unwrap().to_string(),
                        c["severity"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has(
    changes: &[Change],
    table: &str,
    column: Option<&str>,
    change: &str,
    severity: &str,
) -> bool {
    changes
        .iter()
        .any(|c| c.0 == table && c.1.as_deref() == column && c.2 == change && c.3 == severity)
}

#[test]
fn changes_between_runs_are_recorded_listed_and_fail_the_run_when_asked() {
    let d = tmp();
    let (lake, wh) = (d.path().join("lake"), d.path().join("wh"));
    write(&lake.join("sales.csv"), sales(400, "region", 0.0, false));
    write(&lake.join("ref.csv"), "code,label\n1,a\n2,b\n");

    let first = ok(extract(&lake, &wh, &["--fail-on", "warning"]));
    assert_eq!(
        first["changes"],
        serde_json::json!({"breaking": 0, "warning": 0, "info": 0})
    );
    assert_eq!(first["sources"][0]["tables_carried"], 0);

    // Nothing changed: nothing read, nothing to report, exit 0 even with --fail-on warning.
    let second = ok(extract(&lake, &wh, &["--fail-on", "warning"]));
    assert_eq!(second["sources"][0]["tables_carried"], 2);
    assert!(changes_of(&second).is_empty());
    for t in second["sources"][0]["tables"].as_array().unwrap() {
        assert_eq!(t["carried_from"], first["run_id"], "{t}");
    }

    // region renamed to area, amounts moved up by 1000, a new column, a table gone.
    write(&lake.join("sales.csv"), sales(400, "area", 1000.0, true));
    std::fs::remove_file(lake.join("ref.csv")).unwrap();
    let out = extract(&lake, &wh, &["--fail-on", "breaking"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let third = stdout_json(&out);
    assert_eq!(third["status"], "succeeded");
    assert_eq!(third["written"], true);
    let got = changes_of(&third);
    for (table, column, change, severity) in [
        ("sales", Some("area"), "column_renamed", "breaking"),
        ("sales", Some("note"), "column_added", "info"),
        ("sales", Some("amount"), "mean_shift", "warning"),
        ("sales", Some("amount"), "distribution_shift", "warning"),
        ("sales", Some("amount"), "range", "info"),
        ("ref", None, "table_removed", "breaking"),
    ] {
        assert!(
            has(&got, table, column, change, severity),
            "{change} of {table}.{column:?} not in {got:?}"
        );
    }
    assert!(
        !has(&got, "sales", Some("id"), "mean_shift", "warning"),
        "{got:?}"
    );
    assert_eq!(third["changes"]["breaking"], 2, "{}", third["changes"]);
    let psi = third["sources"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["change"] == "distribution_shift")
        .unwrap();
    assert!(psi["measure"].as_f64().unwrap() >= 0.25, "{psi}");
    assert_eq!(psi["threshold"], 0.25);
    assert_eq!(psi["previous_run_id"], second["run_id"]);

    // Listed by the `changes` command, from the recorded runs; `--since` filters.
    let listed = ok(bin()
        .args([
            "changes",
            "--workflow-id",
            "drift_wf",
            "--format",
            "json",
            "--warehouse",
        ])
        .arg(&wh)
        .output()
        .unwrap());
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), got.len(), "{listed:?}");
    assert!(listed.iter().all(|c| c["run_id"] == third["run_id"]));
    let later = ok(bin()
        .args(["changes", "--workflow-id", "drift_wf", "--format", "json"])
        .args(["--source-id", "s1", "--since", "2999-01-01", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap());
    assert_eq!(later, serde_json::json!([]));
    let table = bin()
        .args([
            "extract",
            "--output",
            "table",
            "--workflow-id",
            "drift_wf",
            "--source-id",
            "s1",
        ])
        .arg(&lake)
        .arg("--warehouse")
        .arg(&wh)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("1 unchanged tables not read"), "{text}");

    // --full reads every table again; the same data shows no change.
    let full = ok(extract(&lake, &wh, &["--full", "--fail-on", "warning"]));
    assert_eq!(full["sources"][0]["tables_carried"], 0);
    assert!(changes_of(&full).is_empty(), "{:?}", changes_of(&full));
    let rows = sql_json(
        &wh,
        "SELECT DISTINCT run_id, profile_run_id FROM tables WHERE workflow_id = 'drift_wf'",
        &[],
    );
    assert_eq!(rows[0]["run_id"], full["run_id"]);
    assert_eq!(rows[0]["profile_run_id"], full["run_id"]);

    // Bad settings name their field, before anything is read.
    let bad = bin()
        .args([
            "changes",
            "--workflow-id",
            "drift_wf",
            "--since",
            "last week",
            "--warehouse",
        ])
        .arg(&wh)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
    for (payload, field) in [
        (r#"{"full_refresh": "yes"}"#, "full_refresh"),
        (r#"{"fail_on": "info"}"#, "fail_on"),
    ] {
        let mut p: serde_json::Value = serde_json::from_str(payload).unwrap();
        p["job_type"] = "metadata_extraction".into();
        p["data_source_path"] = lake.display().to_string().into();
        p["workflow_id"] = "drift_wf".into();
        let out = bin()
            .env("NUVYN_JOB_PAYLOAD", p.to_string())
            .args(["metadata_extraction", "--write-to-db", "--warehouse"])
            .arg(&wh)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{payload}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{payload}: {err}");
    }
}

#[test]
fn a_changed_file_is_read_again_and_the_rest_carried() {
    let d = tmp();
    let (lake, wh) = (d.path().join("lake"), d.path().join("wh"));
    for t in ["a", "b", "c"] {
        write(&lake.join(t).join("part-0.csv"), "k,v\n1,x\n2,y\n");
    }
    let first = ok(extract(&lake, &wh, &[]));
    assert_eq!(first["sources"][0]["tables_found"], 3);
    // Another file in b: b's fingerprint changes.
    write(&lake.join("b").join("part-1.csv"), "k,v\n3,z\n");
    let second = ok(extract(&lake, &wh, &[]));
    let tables = second["sources"][0]["tables"].as_array().unwrap();
    let read: Vec<&str> = tables
        .iter()
        .filter(|t| t["carried_from"].is_null())
        .map(|t| t["table_name"].as_str().unwrap())
        .collect();
    assert_eq!(read, ["b"]);
    assert_eq!(tables[1]["row_count"], 3);
    assert!(
        has(&changes_of(&second), "b", None, "row_count", "info"),
        "{:?}",
        changes_of(&second)
    );
    // Other profile settings: every table read again.
    let third = ok(extract(&lake, &wh, &["--samples", "none"]));
    assert_eq!(third["sources"][0]["tables_carried"], 0);
    // The warehouse holds each table once, all under the latest run, with its columns.
    let rows = sql_json(
        &wh,
        "SELECT t.table_name, count(c.column_name) AS n FROM tables t JOIN columns c \
         ON t.table_name = c.table_name AND t.run_id = c.run_id \
         WHERE t.workflow_id = 'drift_wf' GROUP BY t.table_name ORDER BY t.table_name",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([
            {"table_name": "a", "n": 2},
            {"table_name": "b", "n": 2},
            {"table_name": "c", "n": 2}
        ])
    );
}
