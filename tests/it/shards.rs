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

/// Partitioned tables kept as sketches (`--samples raw`): shards write their tables'
/// sketches side by side; a re-run after a new day reads only that day in each table; two
/// jobs of one pair at once, and the run after them, leave statistics equal to a full run's.
#[test]
fn sharded_and_concurrent_runs_keep_partition_sketches() {
    let d = tmp();
    let lake = d.path().join("lake");
    let tables = ["orders", "refunds", "visits", "clicks"];
    let add_day = |day: usize| {
        for (t, name) in tables.iter().enumerate() {
            let mut text = String::from("id,name,amount\n");
            for r in 0..(40 + 7 * t + day) {
                text.push_str(&format!("{r},n{}_{t},{}.25\n", r % (5 + day), r * day));
            }
            write(&lake.join(format!("{name}/day={day:02}/part-0.csv")), text);
        }
    };
    let spawn = |wh: &Path, shard: Option<&str>, full: bool| {
        let mut c = bin_std();
        c.args(["extract", "--workflow-id", "wf", "--source-id", "lake"])
            .args(["--samples", "raw", "--warehouse"])
            .arg(wh)
            .arg(&lake)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(s) = shard {
            c.args(["--shard", s]);
        }
        if full {
            c.arg("--full");
        }
        c.spawn().unwrap()
    };
    let at_once = |wh: &Path, shards: &[Option<&str>]| -> Vec<serde_json::Value> {
        let children: Vec<_> = shards.iter().map(|s| spawn(wh, *s, false)).collect();
        children
            .into_iter()
            .map(|c| ok(c.wait_with_output().unwrap()))
            .collect()
    };
    // Per table: (read, reused, dropped), over the reports.
    let counts = |reports: &[serde_json::Value]| {
        let mut out: Vec<(String, u64, u64, u64)> = reports
            .iter()
            .flat_map(|r| r["sources"][0]["tables"].as_array().unwrap().clone())
            .map(|t| {
                let p = &t["partitions"];
                let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{t}"));
                (
                    t["table_name"].as_str().unwrap().to_string(),
                    n("read"),
                    n("reused"),
                    n("dropped"),
                )
            })
            .collect();
        out.sort();
        out
    };
    let each = |read, reused| {
        let mut v: Vec<_> = tables
            .iter()
            .map(|t| (t.to_string(), read, reused, 0))
            .collect();
        v.sort();
        v
    };
    let stats = |wh: &Path| {
        [
            "SELECT table_name, row_count, column_count FROM tables ORDER BY table_name",
            "SELECT table_name, column_name, data_type, null_count, distinct_count, min_value, \
             max_value FROM columns ORDER BY table_name, position",
        ]
        .iter()
        .map(|q| sql_json(wh, q, &[]))
        .collect::<Vec<_>>()
    };
    let full = |wh: &Path| {
        ok(spawn(wh, None, true).wait_with_output().unwrap());
        stats(wh)
    };
    for day in 0..3 {
        add_day(day);
    }
    let wh = d.path().join("wh");
    let shards = [Some("0/2"), Some("1/2")];
    assert_eq!(counts(&at_once(&wh, &shards)), each(3, 0));
    add_day(3);
    assert_eq!(counts(&at_once(&wh, &shards)), each(1, 3));
    assert_eq!(stats(&wh), full(&d.path().join("full3")));
    // Each table: a sketch per day and one rollup, whichever shard wrote them.
    assert_eq!(
        sql_json(
            &wh,
            "SELECT table_name, count(*) AS n, sum(CASE WHEN partition_path = '' THEN 1 ELSE 0 END) \
             AS rollups FROM partition_sketches GROUP BY table_name ORDER BY table_name",
            &[]
        ),
        serde_json::json!(
            tables
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|t| serde_json::json!({"table_name": t, "n": 5, "rollups": 1}))
                .collect::<Vec<_>>()
        )
    );

    // Two jobs of the pair at once: both succeed; whatever sketches their settles leave,
    // the next run merges them into a full run's statistics.
    add_day(4);
    for r in at_once(&wh, &[None, None]) {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert_eq!(stats(&wh), full(&d.path().join("full4")));
    add_day(5);
    let after = at_once(&wh, &[None]);
    for (_, read, reused, _) in counts(&after) {
        assert!(read >= 1 && read + reused == 6, "{after:?}");
    }
    assert_eq!(stats(&wh), full(&d.path().join("full5")));
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
