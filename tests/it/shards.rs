//! `--shard I/N`: N processes, each profiling its share of a source's tables, write into one
//! warehouse at once and end with the same rows as one run; re-running converges, and a
//! table gone from the source is removed by the shard that owns it.

use std::path::Path;

use crate::common::*;

const TABLES_Q: &str = "SELECT workflow_id, source_id, table_name, file_path, file_type, row_count, \
    column_count, size_bytes, status FROM tables ORDER BY table_name";
const COLUMNS_Q: &str = "SELECT workflow_id, source_id, table_name, column_name, data_type, position, \
    is_nullable, sample_values, null_count, distinct_count, min_value, max_value FROM columns \
    ORDER BY table_name, position";
const SOURCES_Q: &str = "SELECT workflow_id, source_id, source_path, source_type, files_found, \
    total_size_bytes FROM sources";

fn snapshot(wh: &Path) -> Vec<serde_json::Value> {
    [TABLES_Q, COLUMNS_Q, SOURCES_Q]
        .iter()
        .map(|q| sql_json(wh, q, &[]))
        .collect()
}

fn shards(lake: &Path, wh: &Path, n: u32) {
    let children: Vec<_> = (0..n)
        .map(|i| {
            bin_std()
                .args(["extract", "--workflow-id", "wf", "--source-id", "lake"])
                .args(["--shard", &format!("{i}/{n}"), "--warehouse"])
                .arg(wh)
                .arg(lake)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut profiled = 0;
    for c in children {
        let r = ok(c.wait_with_output().unwrap());
        profiled += r["sources"][0]["tables"].as_array().unwrap().len();
    }
    let expected = std::fs::read_dir(lake).unwrap().count();
    assert_eq!(
        profiled, expected,
        "every table profiled by exactly one shard"
    );
}

fn one_run(lake: &Path, wh: &Path) {
    ok(bin()
        .args([
            "extract",
            "--workflow-id",
            "wf",
            "--source-id",
            "lake",
            "--warehouse",
        ])
        .arg(wh)
        .arg(lake)
        .output()
        .unwrap());
}

#[test]
fn shards_together_equal_one_run_and_converge() {
    let d = tmp();
    let lake = d.path().join("lake");
    let names = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
    ];
    for (i, name) in names.iter().enumerate() {
        let mut text = String::from("id,name,amount\n");
        for r in 0..(i + 2) {
            text.push_str(&format!("{r},n{i}_{r},{}.5\n", r * i));
        }
        write(&lake.join(format!("{name}.csv")), text);
    }
    let (sharded, single) = (d.path().join("sharded"), d.path().join("single"));
    shards(&lake, &sharded, 3);
    one_run(&lake, &single);
    let want = snapshot(&single);
    assert_eq!(want[0].as_array().unwrap().len(), 9);
    assert_eq!(snapshot(&sharded), want, "3 shards == one run, row for row");
    // The nested view shows every shard's tables, each with its columns.
    let nested = |wh: &Path| {
        let v = ok(bin()
            .args(["query", "--workflow-id", "wf", "--warehouse"])
            .arg(wh)
            .output()
            .unwrap());
        v["sources"][0]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let cols = t["columns"].as_array().unwrap().len();
                (t["table_name"].as_str().unwrap().to_string(), cols)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(nested(&sharded), nested(&single));
    assert_eq!(nested(&sharded).len(), 9);
    assert_eq!(
        sql_json(&sharded, "SELECT count(*) AS n FROM executor_runs", &[]),
        serde_json::json!([{"n": 3}])
    );

    // Re-running every shard converges: same rows, nothing doubled.
    shards(&lake, &sharded, 3);
    assert_eq!(snapshot(&sharded), want);

    // A table removed from the source disappears when its shard runs again.
    std::fs::remove_file(lake.join("epsilon.csv")).unwrap();
    shards(&lake, &sharded, 3);
    one_run(&lake, &single);
    let want = snapshot(&single);
    assert_eq!(want[0].as_array().unwrap().len(), 8);
    assert_eq!(snapshot(&sharded), want);
}

#[test]
fn bad_shards_are_usage_errors() {
    for bad in ["3/3", "x/2", "1"] {
        let out = bin()
            .args([
                "extract",
                "--workflow-id",
                "wf",
                "--dry-run",
                "--shard",
                bad,
                ".",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--shard"),
            "{bad}"
        );
    }
}
