//! Column and table profiles: the quality score's components on tables with known defects,
//! semantic types and personal data (masked by default, `--samples none|masked|raw`),
//! typed ranges that compare as numbers and times in SQL, and what the warehouse stores.

use std::sync::Arc;

use crate::common::*;

/// A lake whose tables each have one known defect.
fn defects_lake(root: &std::path::Path) {
    // Completeness: 10 rows x 2 columns, 5 cells empty -> 0.75.
    let mut text = String::from("id,v\n");
    for i in 0..10 {
        let v = if i < 5 {
            String::new()
        } else {
            format!("x{i}")
        };
        text.push_str(&format!("{i},{v}\n"));
    }
    write(&root.join("incomplete.csv"), text);
    // Validity: a text column of dates, one of ten is not -> 0.9 (and `id` is a key).
    let mut text = String::from("id,day\n");
    for i in 0..10 {
        let d = if i == 3 {
            "n/a".to_string()
        } else {
            format!("2024-01-{:02}", i + 1)
        };
        text.push_str(&format!("{i},{d}\n"));
    }
    write(&root.join("invalid.csv"), text);
    // Uniqueness: 2 of 10 rows repeat an earlier row -> 0.8; no candidate key.
    let mut text = String::from("a,b\n");
    for i in 0..8 {
        text.push_str(&format!("{},{}\n", i % 4, i));
    }
    text.push_str("0,0\n1,1\n");
    write(&root.join("dupes.csv"), text);
    // Consistency: `v` is a number in one part file and text in the other -> 1 - 1/2.
    write(&root.join("mixed/part-0.csv"), "k,v\n1,10\n2,20\n");
    write(&root.join("mixed/part-1.csv"), "k,v\n3,abc\n4,def\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_components_find_known_defects() {
    let d = tmp();
    let lake = d.path().join("lake");
    defects_lake(&lake);
    let r = run_job(&[&lake], "wf_quality", None, None).await;
    let table = |name: &str| {
        r.sources[0]
            .tables
            .iter()
            .find(|t| t.table_name == name)
            .unwrap_or_else(|| panic!("{name}: {:#?}", r.sources[0].tables))
    };
    let q = |name: &str| table(name).quality.clone().unwrap();

    let inc = q("incomplete");
    assert_eq!(inc.completeness, 0.75);
    assert_eq!(
        (inc.validity, inc.uniqueness, inc.consistency),
        (1.0, 1.0, 1.0)
    );
    // 100 x (0.4 x 0.75 + 0.3 + 0.2 + 0.1)
    assert_eq!(inc.score, 90.0);
    assert_eq!(table("incomplete").candidate_keys, ["id"]);

    let inv = q("invalid");
    assert_eq!(inv.validity, 0.9);
    assert_eq!(inv.invalid_columns, ["day"]);
    assert_eq!(inv.score, 97.0);
    let day = table("invalid")
        .columns
        .iter()
        .find(|c| c.column_name == "day")
        .unwrap();
    assert_eq!(day.semantic_type.as_deref(), Some("date"));
    assert_eq!(day.semantic_fraction, Some(0.9));

    let dup = q("dupes");
    assert_eq!(table("dupes").duplicate_rows, Some(2));
    assert_eq!(dup.uniqueness, 0.8);
    assert!(table("dupes").candidate_keys.is_empty());
    assert_eq!(dup.score, 96.0);

    let mixed = q("mixed");
    assert_eq!(mixed.mixed_columns, ["v"]);
    assert_eq!(mixed.consistency, 0.5);
    assert_eq!(mixed.score, 95.0);
}

/// A CSV column whose values forced it to STRING says why: its semantic type is what most
/// values are, and the share that are not lowers validity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widened_column_is_explained_by_its_semantic_type() {
    let d = tmp();
    let lake = d.path().join("lake");
    let mut text = String::from("n\n");
    for i in 0..1500 {
        text.push_str(&format!("{i}\n"));
    }
    // Past the 1,000 rows type inference reads.
    text.push_str("unknown\n");
    write(&lake.join("late.csv"), text);
    let r = run_job(&[&lake], "wf_widen", None, None).await;
    let t = &r.sources[0].tables[0];
    assert_eq!(t.widened_columns, ["n"]);
    let n = &t.columns[0];
    assert_eq!(n.data_type, "STRING");
    assert_eq!(n.semantic_type.as_deref(), Some("integer"));
    let share = n.semantic_fraction.unwrap();
    assert!((share - 1500.0 / 1501.0).abs() < 1e-9, "{share}");
    let q = t.quality.as_ref().unwrap();
    assert_eq!(q.invalid_columns, ["n"]);
    assert!(q.validity < 1.0);
}

fn personal_lake(root: &std::path::Path) {
    let mut text = String::from("id,email,card,city\n");
    for i in 0..20 {
        text.push_str(&format!(
            "{i},person{i}@example.org,4111 1111 1111 1111,{}\n",
            ["Oslo", "Rome"][i % 2]
        ));
    }
    write(&root.join("people.csv"), text);
}

fn extract(lake: &std::path::Path, extra: &[&str], payload: Option<&str>) -> serde_json::Value {
    let mut cmd = bin();
    cmd.args(["extract", "--workflow-id", "wf_pii", "--dry-run"])
        .arg(lake)
        .args(extra);
    if let Some(p) = payload {
        cmd.env("NUVYN_JOB_PAYLOAD", p);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

fn column<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["sources"][0]["tables"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column_name"] == name)
        .unwrap()
}

/// Personal columns are flagged and their values masked unless the job asks for raw values;
/// `none` keeps no values at all. The raw values reach neither the output nor the warehouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_values_are_masked_unless_asked_for() {
    let d = tmp();
    let lake = d.path().join("lake");
    personal_lake(&lake);

    let masked = extract(&lake, &[], None);
    let text = masked.to_string();
    assert!(!text.contains("@example.org"), "{text}");
    assert!(!text.contains("4111 1111"), "{text}");
    for name in ["email", "card"] {
        let c = column(&masked, name);
        assert_eq!(c["pii"], true, "{name}");
        assert!(!c["sample_values"].as_array().unwrap().is_empty());
    }
    assert_eq!(column(&masked, "email")["semantic_type"], "email");
    assert_eq!(column(&masked, "card")["semantic_type"], "card_number");
    assert_eq!(
        column(&masked, "card")["top_values"][0]["value"],
        "4*** **** **** ***1"
    );
    // Not personal: shown as read.
    assert_eq!(column(&masked, "city")["pii"], false);
    assert_eq!(column(&masked, "city")["top_values"][0]["value"], "Oslo");

    let raw = extract(&lake, &["--samples", "raw"], None);
    assert!(raw.to_string().contains("@example.org"));
    assert_eq!(column(&raw, "email")["pii"], true);
    assert_eq!(column(&raw, "email")["min_value"], "person0@example.org");

    let none = extract(&lake, &[], Some(r#"{"profile": {"samples": "none"}}"#));
    for name in ["id", "email", "card", "city"] {
        let c = column(&none, name);
        assert_eq!(c["sample_values"], serde_json::json!([]), "{name}");
        assert!(c.get("top_values").is_none(), "{name}");
    }
    assert!(column(&none, "email")["min_value"].is_null());
    assert_eq!(column(&none, "id")["min_value"], "0");

    // The option and the payload must agree; a bad mode names its field.
    let e = refused(
        &lake,
        &["--samples", "raw"],
        r#"{"profile": {"samples": "none"}}"#,
    );
    assert!(
        e.contains("samples conflict: the command line gives raw but the payload's `profile.samples` gives none"),
        "{e}"
    );
    let e = refused(&lake, &[], r#"{"profile": {"samples": "all"}}"#);
    assert!(
        e.contains(r#"invalid profile.samples "all": must be none, masked or raw"#),
        "{e}"
    );

    // The table view says what the profile found.
    let out = bin()
        .args([
            "extract",
            "--workflow-id",
            "w",
            "--dry-run",
            "--output",
            "table",
        ])
        .arg(&lake)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("quality 100.0")
            && text.contains("keys id")
            && text.contains("personal data in email, card"),
        "{text}"
    );

    // In the warehouse: masked values only, in the table and in its log.
    let wh = d.path().join("wh");
    let out = bin()
        .args(["extract", "--workflow-id", "wf_pii", "--warehouse"])
        .arg(&wh)
        .arg(&lake)
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows = sql_json(
        &wh,
        "SELECT sample_values, min_value, top_values, pii FROM columns WHERE column_name = 'email'",
        &[],
    );
    assert_eq!(rows[0]["pii"], true);
    assert!(!rows.to_string().contains("@example.org"), "{rows}");
    for f in walk(&wh) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("example.org"),
            "{} holds a raw value",
            f.display()
        );
    }
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Typed ranges compare as numbers and times (a text min/max has `"9" > "10"`), and the
/// JSON statistics are stored as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_ranges_compare_as_numbers_and_times() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(
        &lake.join("small.csv"),
        "n,at\n9,2024-01-01T00:00:00\n8,2024-03-01T12:00:00\n",
    );
    write(
        &lake.join("big.csv"),
        "n,at\n10,2023-01-01T00:00:00\n2000000,2023-06-01T00:00:00\n",
    );
    let wh = d.path().join("wh");
    run_job(&[&lake], "wf_typed", None, Some(&wh)).await;
    let rows = sql_json(
        &wh,
        "SELECT table_name, max_value, max_double FROM columns \
         WHERE workflow_id = 'wf_typed' AND column_name = 'n' AND max_double > 1e6",
        &[],
    );
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["table_name"], "big");
    // As text, "9" is the larger maximum.
    let rows = sql_json(
        &wh,
        "SELECT table_name FROM columns WHERE workflow_id = 'wf_typed' AND column_name = 'n' \
         ORDER BY max_value DESC LIMIT 1",
        &[],
    );
    assert_eq!(rows[0]["table_name"], "small");
    let rows = sql_json(
        &wh,
        "SELECT table_name, quantiles, histogram, top_values, mean FROM columns \
         WHERE workflow_id = 'wf_typed' AND column_name = 'at' \
         AND max_timestamp < TIMESTAMP '2024-01-01 00:00:00'",
        &[],
    );
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["table_name"], "big");
    let q: serde_json::Value =
        serde_json::from_str(rows[0]["quantiles"].as_str().unwrap()).unwrap();
    assert_eq!(q["p05"], "2023-01-01T00:00:00");
    assert_eq!(q["p95"], "2023-06-01T00:00:00");
    assert_eq!(q["exact"], true);
    let h: serde_json::Value =
        serde_json::from_str(rows[0]["histogram"].as_str().unwrap()).unwrap();
    assert_eq!(
        h["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        2
    );
    assert!(rows[0]["mean"].is_null(), "no mean of times");
    let t = sql_json(
        &wh,
        "SELECT table_name, quality_score, candidate_keys, duplicate_rows FROM tables \
         WHERE workflow_id = 'wf_typed' ORDER BY table_name",
        &[],
    );
    assert_eq!(t[0]["quality_score"], 100.0);
    assert_eq!(t[0]["candidate_keys"], r#"["n","at"]"#);
    assert_eq!(t[0]["duplicate_rows"], 0);
}

/// The query notebook's column profile query, run as written on a real warehouse: each
/// column once, beside its table's quality score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_column_profile_query_runs() {
    let d = tmp();
    let lake = d.path().join("lake");
    personal_lake(&lake);
    let wh = d.path().join("wh");
    run_job(&[&lake], "workflow_abc123", Some("s1"), Some(&wh)).await;
    run_job(&[&lake], "workflow_abc123", Some("s2"), Some(&wh)).await;
    let q = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/doc_queries/column_profile.sql"
    ))
    .unwrap();
    let rows = sql_json(&wh, q.trim().trim_end_matches(';'), &[]);
    let rows = rows.as_array().unwrap();
    // Two sources x four columns, each once.
    assert_eq!(rows.len(), 8, "{rows:?}");
    let email = rows.iter().find(|r| r["column_name"] == "email").unwrap();
    assert_eq!(email["pii"], true);
    assert_eq!(email["semantic_type"], "email");
    assert_eq!(email["quality_score"], 100.0);
    let id = rows.iter().find(|r| r["column_name"] == "id").unwrap();
    assert_eq!(id["mean"], 9.5);
    let q: serde_json::Value = serde_json::from_str(id["quantiles"].as_str().unwrap()).unwrap();
    assert_eq!(q["p50"], 9.0);
}

/// Big tables can be sampled: only a random share of a CSV's bytes or a Parquet file's row
/// groups is read; counts are scaled to the table, the share is recorded on the table and
/// every column, and a Parquet row count stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_tables_can_be_sampled() {
    use nuvyn_executor::deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
    use nuvyn_executor::deltalake::arrow::datatypes::{DataType, Field, Schema};
    let d = tmp();
    let lake = d.path().join("lake");
    let n = 200_000i64;
    let mut text = String::from("id,kind\n");
    for i in 0..n {
        let kind = if i % 4 == 0 {
            String::new()
        } else {
            format!("k{}", i % 3)
        };
        text.push_str(&format!("{i},{kind}\n"));
    }
    write(&lake.join("big.csv"), &text);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 4 != 0).then(|| format!("k{}", i % 3))),
            )),
        ],
    )
    .unwrap();
    let f = std::fs::File::create(lake.join("big.parquet")).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(5_000))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let mut json = String::new();
    for i in 0..n {
        let kind = if i % 4 == 0 {
            "null".to_string()
        } else {
            format!("\"k{}\"", i % 3)
        };
        json.push_str(&format!("{{\"id\": {i}, \"kind\": {kind}}}\n"));
    }
    write(&lake.join("big.ndjson"), &json);

    let whole = extract(&lake, &["--samples", "raw"], None);
    let sampled = extract(&lake, &["--samples", "raw", "--sample-rows", "20000"], None);
    for (name, exact_rows) in [
        ("big.csv", false),
        ("big.json", false),
        ("big.parquet", true),
    ] {
        let table = |r: &serde_json::Value| {
            r["sources"][0]["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["table_name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name}: {r}"))
        };
        let (w, s) = (table(&whole), table(&sampled));
        assert_eq!(w["profiled_fraction"], 1.0, "{name}");
        let share = s["profiled_fraction"].as_f64().unwrap();
        assert!(
            (0.05..0.3).contains(&share),
            "{name}: read {share} of the table"
        );
        let rows = s["row_count"].as_i64().unwrap();
        if exact_rows {
            assert_eq!(
                rows, n,
                "{name}: a Parquet row count comes from the footers"
            );
            assert_eq!(
                share,
                20_000.0 / n as f64,
                "{name}: whole row groups of 5,000 rows"
            );
        } else {
            assert!((rows - n).abs() < n / 10, "{name}: estimated {rows} rows");
        }
        let col = |t: &serde_json::Value, c: &str| {
            t["columns"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["column_name"] == c)
                .cloned()
                .unwrap()
        };
        let kind = col(&s, "kind");
        assert_eq!(kind["profiled_fraction"], share, "{name}");
        // A quarter of the rows have no kind: the scaled count and the share say so.
        let nulls = kind["null_count"].as_i64().unwrap();
        assert!((nulls - n / 4).abs() < n / 20, "{name}: {nulls} nulls");
        assert!(
            (kind["null_fraction"].as_f64().unwrap() - 0.25).abs() < 0.05,
            "{name}"
        );
        // Counted values are scaled to the table, with an error that says so.
        let top = &kind["top_values"][0];
        assert!(
            (top["count"].as_i64().unwrap() - n / 4).abs() < n / 20,
            "{name}: {top}"
        );
        assert!(kind["top_values_error"].as_i64().unwrap() > 0, "{name}");
        assert_eq!(col(&s, "id")["quantiles"]["exact"], false, "{name}");
        assert!(
            s["candidate_keys"].is_null(),
            "no keys from a sample: {name}"
        );
        assert_eq!(col(&w, "id")["quantiles"]["exact"], false, "{name}");
        assert_eq!(w["candidate_keys"], serde_json::json!(["id"]), "{name}");
        // Rows with a key are all different, whatever a row-hash estimate says.
        assert_eq!(w["duplicate_rows"], 0, "{name}");
    }

    // A fraction leaves tables under 64 MiB whole; bad values name their field.
    let small = extract(
        &lake,
        &[],
        Some(r#"{"profile": {"sample": {"fraction": 0.5}}}"#),
    );
    assert_eq!(small["sources"][0]["tables"][0]["profiled_fraction"], 1.0);
    for (payload, field) in [
        (
            r#"{"profile": {"sample": {"fraction": 2}}}"#,
            "profile.sample.fraction",
        ),
        (
            r#"{"profile": {"sample": {"rows": 0}}}"#,
            "profile.sample.rows",
        ),
        (r#"{"profile": {"sample": {"every": 3}}}"#, "profile.sample"),
    ] {
        let e = refused(&lake, &[], payload);
        assert!(e.contains(&format!("invalid {field} ")), "{payload}: {e}");
    }
    let e = refused(
        &lake,
        &["--sample-rows", "5", "--sample-fraction", "0.1"],
        "{}",
    );
    assert!(e.contains("cannot be used with"), "{e}");
}

/// Runs `extract --dry-run` expecting it to be refused as bad usage (exit 2); its stderr.
fn refused(lake: &std::path::Path, extra: &[&str], payload: &str) -> String {
    let out = bin()
        .args(["extract", "--workflow-id", "w", "--dry-run"])
        .arg(lake)
        .args(extra)
        .env("NUVYN_JOB_PAYLOAD", payload)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{extra:?} {payload}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every run's profiles are kept in the history tables (the current tables keep one run per
/// source), and `maintain --history-days N` trims what was profiled more than N days ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_every_run_and_maintain_trims_it() {
    let d = tmp();
    let lake = d.path().join("lake");
    personal_lake(&lake);
    let wh = d.path().join("wh");
    let r1 = run_job(&[&lake], "wf_hist", Some("s1"), Some(&wh)).await;
    let r2 = run_job(&[&lake], "wf_hist", Some("s1"), Some(&wh)).await;
    let count = |q: &str| sql_json(&wh, q, &[])[0]["n"].as_i64().unwrap();
    assert_eq!(
        count("SELECT count(*) AS n FROM tables WHERE workflow_id = 'wf_hist'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM table_history WHERE workflow_id = 'wf_hist'"),
        2
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM column_history WHERE workflow_id = 'wf_hist'"),
        8
    );
    let runs = sql_json(
        &wh,
        "SELECT h.run_id, h.profiled_at, h.quality_score, r.status FROM table_history h \
         JOIN executor_runs r ON r.run_id = h.run_id ORDER BY h.profiled_at",
        &[],
    );
    assert_eq!(runs[0]["run_id"], r1.run_id.as_str());
    assert_eq!(runs[1]["run_id"], r2.run_id.as_str());
    assert_eq!(runs[1]["status"], "succeeded");
    assert_eq!(runs[0]["quality_score"], runs[1]["quality_score"]);
    let maintain = |days: &str| {
        ok(bin()
            .args([
                "maintain",
                "--no-optimize",
                "--history-days",
                days,
                "--warehouse",
            ])
            .arg(&wh)
            .output()
            .unwrap())
    };
    // Both runs are younger than a day: kept.
    let m = maintain("1");
    assert!(m.to_string().contains("history_removed_before"), "{m}");
    assert_eq!(count("SELECT count(*) AS n FROM column_history"), 8);
    // Older than now: removed; the current tables keep their run.
    maintain("0");
    assert_eq!(count("SELECT count(*) AS n FROM table_history"), 0);
    assert_eq!(count("SELECT count(*) AS n FROM column_history"), 0);
    assert_eq!(count("SELECT count(*) AS n FROM columns"), 4);
}
