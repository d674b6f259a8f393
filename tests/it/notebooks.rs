//! The notebook migration store on real Delta tables, with the example notebooks of
//! `notebooks/examples/`: versions and round trips, carry-forward of mappings across notebook
//! edits (edit, delete, insert, reorder), fallback to earlier workflow versions, validation,
//! concurrent puts, and the same on Azurite.

use std::path::{Path, PathBuf};

use crate::common::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("notebooks/examples")
        .join(name)
}

fn run(wh: &str, args: &[&str]) -> std::process::Output {
    bin().args(args).args(["--warehouse", wh]).output().unwrap()
}

fn err(out: std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn put(wh: &str, wf: &str, file: &Path) -> serde_json::Value {
    ok(run(
        wh,
        &[
            "notebook",
            "put",
            "--workflow-id",
            wf,
            "--file",
            file.to_str().unwrap(),
        ],
    ))
}

/// Edits a notebook's cells with `f` and writes it to `dir/name`.
fn edited(
    dir: &Path,
    name: &str,
    base: &Path,
    f: impl FnOnce(&mut Vec<serde_json::Value>),
) -> PathBuf {
    let mut nb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base).unwrap()).unwrap();
    f(nb["cells"].as_array_mut().unwrap());
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(&nb).unwrap()).unwrap();
    p
}

fn store_round_trips_and_carries(wh: &str, scratch: &Path) {
    // Round trips: stored as uploaded, byte for byte.
    for (wf, name) in [
        ("wf_sales", "sales_analysis.ipynb"),
        ("wf_churn", "churn_report.ipynb"),
        ("wf_demand", "demand_features.ipynb"),
    ] {
        let r = put(wh, wf, &example(name));
        assert_eq!(
            (r["notebook_version"].clone(), r["created"].clone()),
            (1.into(), true.into()),
            "{name}"
        );
        let out = run(wh, &["notebook", "get", "--workflow-id", wf]);
        assert!(out.status.success());
        assert_eq!(
            out.stdout,
            std::fs::read(example(name)).unwrap(),
            "{name} round trip"
        );
        // Identical content is not a new version, however it is formatted.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let compact = scratch.join(format!("{wf}.compact.ipynb"));
        std::fs::write(&compact, serde_json::to_string(&v).unwrap()).unwrap();
        let again = put(wh, wf, &compact);
        assert_eq!(
            (again["notebook_version"].clone(), again["created"].clone()),
            (1.into(), false.into())
        );
    }
    // A notebook without cell ids gets deterministic ones, reported and stored.
    let legacy = example("legacy_customer_etl.ipynb");
    let r = put(wh, "wf_legacy", &legacy);
    let assigned = r["assigned_cell_ids"].as_array().unwrap();
    assert_eq!(assigned.len(), 5);
    assert!(assigned[0][1].as_str().unwrap().starts_with("cell-0-"));
    let stored: serde_json::Value =
        serde_json::from_slice(&run(wh, &["notebook", "get", "--workflow-id", "wf_legacy"]).stdout)
            .unwrap();
    assert_eq!(stored["nbformat_minor"], 5);
    assert_eq!(stored["cells"][0]["id"], assigned[0][1]);
    assert_eq!(
        put(wh, "wf_legacy", &legacy)["created"],
        false,
        "the same ids again: same content"
    );

    // A mapping for workflow version 1, checked against the workflow's operators.
    let mapping = example("sales_analysis.mapping.json");
    let workflow = example("sales_analysis.workflow.json");
    let m = ok(run(
        wh,
        &[
            "mapping",
            "put",
            "--workflow-id",
            "wf_sales",
            "--workflow-version",
            "1",
            "--file",
            mapping.to_str().unwrap(),
            "--workflow",
            workflow.to_str().unwrap(),
        ],
    ));
    assert_eq!(m["status"], "valid");

    // Edit a cell: v2, the mapping is carried with the edited cell's entries stale.
    let base = example("sales_analysis.ipynb");
    let v2 = edited(scratch, "v2.ipynb", &base, |cells| {
        cells[3]["source"] = serde_json::json!(
            "sales = sales.dropna(subset=['region', 'amount', 'order_date'])\nsales = sales[sales['amount'] > 0]"
        );
    });
    let r = put(wh, "wf_sales", &v2);
    assert_eq!(r["notebook_version"], 2);
    assert_eq!(r["carried_mappings"], serde_json::json!([1]));
    let g = ok(run(
        wh,
        &[
            "mapping",
            "get",
            "--workflow-id",
            "wf_sales",
            "--workflow-version",
            "1",
        ],
    ));
    assert_eq!(g["notebook_version"], 2);
    assert_eq!(g["status"], "carried");
    assert_eq!(g["stale_cells"], serde_json::json!(["clean"]));
    assert_eq!(
        g["stale_operators"],
        serde_json::json!(["Filter-2", "Filter-3"])
    );
    assert_eq!(
        g["mapping"]["cell_to_operator"]["clean"],
        serde_json::json!(["Filter-2", "Filter-3"])
    );
    assert_eq!(
        g["mapping"]["operator_to_cell"]["Sort-5"],
        serde_json::json!(["top10"])
    );
    let d = ok(run(
        wh,
        &[
            "notebook",
            "diff",
            "--workflow-id",
            "wf_sales",
            "--from",
            "1",
            "--to",
            "2",
        ],
    ));
    assert_eq!(d["changed"], serde_json::json!(["clean"]));
    assert_eq!(d["unchanged"], 6);

    // Delete a cell: its entries are dropped; the earlier staleness stays.
    let v3 = edited(scratch, "v3.ipynb", &v2, |cells| {
        cells.remove(5);
    });
    assert_eq!(put(wh, "wf_sales", &v3)["notebook_version"], 3);
    let g = ok(run(
        wh,
        &[
            "mapping",
            "get",
            "--workflow-id",
            "wf_sales",
            "--workflow-version",
            "1",
        ],
    ));
    assert_eq!(g["notebook_version"], 3);
    assert!(g["mapping"]["cell_to_operator"].get("top10").is_none());
    assert!(g["mapping"]["operator_to_cell"].get("Sort-5").is_none());
    assert_eq!(g["stale_cells"], serde_json::json!(["clean"]));
    let d = ok(run(
        wh,
        &[
            "notebook",
            "diff",
            "--workflow-id",
            "wf_sales",
            "--from",
            "2",
            "--to",
            "3",
        ],
    ));
    assert_eq!(d["removed"], serde_json::json!(["top10"]));

    // Insert a cell, then reorder two: the mapping's entries all survive.
    let v4 = edited(scratch, "v4.ipynb", &v3, |cells| {
        cells.insert(2, serde_json::json!({"cell_type": "code", "id": "check-schema", "metadata": {}, "execution_count": null, "outputs": [], "source": "sales.dtypes"}));
    });
    assert_eq!(put(wh, "wf_sales", &v4)["notebook_version"], 4);
    let d = ok(run(
        wh,
        &[
            "notebook",
            "diff",
            "--workflow-id",
            "wf_sales",
            "--from",
            "3",
            "--to",
            "4",
        ],
    ));
    assert_eq!(d["added"], serde_json::json!(["check-schema"]));
    let v5 = edited(scratch, "v5.ipynb", &v4, |cells| cells.swap(4, 5));
    assert_eq!(put(wh, "wf_sales", &v5)["notebook_version"], 5);
    let d = ok(run(
        wh,
        &[
            "notebook",
            "diff",
            "--workflow-id",
            "wf_sales",
            "--from",
            "4",
            "--to",
            "5",
        ],
    ));
    assert!(!d["moved"].as_array().unwrap().is_empty(), "{d}");
    assert_eq!(d["changed"], serde_json::json!([]));
    let g = ok(run(
        wh,
        &[
            "mapping",
            "get",
            "--workflow-id",
            "wf_sales",
            "--workflow-version",
            "1",
        ],
    ));
    assert_eq!(g["notebook_version"], 5);
    assert_eq!(
        g["mapping"]["cell_to_operator"].as_object().unwrap().len(),
        4
    );
    let list = ok(run(wh, &["notebook", "list", "--workflow-id", "wf_sales"]));
    assert_eq!(list.as_array().unwrap().len(), 5);

    // A new workflow version without its own mapping falls back to version 1's, and says so;
    // the older notebook version keeps its own mapping.
    let g = ok(run(
        wh,
        &[
            "mapping",
            "get",
            "--workflow-id",
            "wf_sales",
            "--workflow-version",
            "3",
        ],
    ));
    assert_eq!(g["fallback_from_workflow_version"], 1);
    assert_eq!(g["status"], "stale");
    assert_eq!(g["workflow_version"], 1);
    // Older versions stay readable.
    let out = run(
        wh,
        &[
            "notebook",
            "get",
            "--workflow-id",
            "wf_sales",
            "--version",
            "1",
        ],
    );
    assert_eq!(
        out.stdout,
        std::fs::read(example("sales_analysis.ipynb")).unwrap()
    );
    let g1 = ok(run(
        wh,
        &[
            "mapping",
            "get",
            "--workflow-id",
            "wf_sales",
            "--workflow-version",
            "1",
            "--notebook-version",
            "1",
        ],
    ));
    assert_eq!(
        (g1["status"].clone(), g1["stale_cells"].clone()),
        ("valid".into(), serde_json::json!([]))
    );
}

fn mapping_get(wh: &str, wf: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["mapping", "get", "--workflow-id", wf];
    args.extend_from_slice(extra);
    ok(run(wh, &args))
}

fn mapping_put(wh: &str, wf: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "mapping",
        "put",
        "--workflow-id",
        wf,
        "--file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(run(wh, &args))
}

/// Every way a mapping entry used to get lost or misreported (issue: mappings never lose an
/// entry silently), with the example notebooks' edits.
fn mappings_never_lose_entries(wh: &str, scratch: &Path) {
    let wf = "wf_carry";
    let mapping = example("sales_analysis.mapping.json");
    // Two notebook versions first, then the mapping for version 1: version 2 still gets it,
    // carried (whatever the order of arrival), with the edited cell stale.
    assert_eq!(
        put(wh, wf, &example("sales_analysis.ipynb"))["notebook_version"],
        1
    );
    let edited_nb = example("sales_analysis.edited.ipynb");
    let r = put(wh, wf, &edited_nb);
    assert_eq!(r["notebook_version"], 2);
    assert_eq!(
        r["carried_mappings"],
        serde_json::json!(null),
        "no mapping yet"
    );
    let m = mapping_put(
        wh,
        wf,
        &mapping,
        &["--workflow-version", "1", "--notebook-version", "1"],
    );
    assert_eq!(m["status"], "valid");
    let g = mapping_get(
        wh,
        wf,
        &["--workflow-version", "1", "--notebook-version", "2"],
    );
    assert_eq!(g["status"], "carried", "{g}");
    assert_eq!(g["notebook_version"], 2);
    assert_eq!(g["carried_from_notebook_version"], 1);
    // The edited cell and the cell turned into markdown (same source) are stale...
    assert_eq!(g["stale_cells"], serde_json::json!(["clean", "save"]));
    assert_eq!(
        g["stale_operators"],
        serde_json::json!(["Filter-2", "Filter-3", "ParquetSink-7"])
    );
    // ...and the operators whose only cell was deleted are listed, not silently gone.
    assert_eq!(
        g["orphaned_operators"],
        serde_json::json!(["Limit-6", "Sort-5"])
    );
    assert!(g["mapping"]["operator_to_cell"].get("Sort-5").is_none());
    for kept in ["load", "aggregate", "clean", "save"] {
        assert!(
            g["mapping"]["cell_to_operator"].get(kept).is_some(),
            "{kept}: {g}"
        );
    }
    // The latest version is the default.
    assert_eq!(mapping_get(wh, wf, &["--workflow-version", "1"]), g);

    // A put of identical content (a retry) answers the stored version and what carries to it.
    let again = put(wh, wf, &edited_nb);
    assert_eq!(again["created"], false);
    assert_eq!(again["notebook_version"], 2);
    assert_eq!(again["carried_mappings"], serde_json::json!([1]));

    // Falling back to an earlier workflow version's mapping with the new workflow given lists
    // the operators it no longer has.
    let wf_v2 = example("sales_analysis.workflow.v2.json");
    let g = mapping_get(
        wh,
        wf,
        &[
            "--workflow-version",
            "2",
            "--workflow",
            wf_v2.to_str().unwrap(),
        ],
    );
    assert_eq!(g["status"], "stale");
    assert_eq!(g["fallback_from_workflow_version"], 1);
    assert_eq!(g["missing_operators"], serde_json::json!(["Aggregate-4"]));
    // Without the workflow nothing is claimed about it.
    assert!(
        mapping_get(wh, wf, &["--workflow-version", "2"])
            .get("missing_operators")
            .is_none()
    );

    // A notebook without cell ids (nbformat 4.4), then an edited copy of the original file
    // (a cell inserted first, one cell edited): unchanged cells keep their ids and entries,
    // the edited one's entries are kept as stale.
    let lwf = "wf_legacy_carry";
    let v1 = put(wh, lwf, &example("legacy_customer_etl.ipynb"));
    let ids: Vec<String> = v1["assigned_cell_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5);
    let (read, clean, write) = (&ids[2], &ids[3], &ids[4]);
    let lmap = scratch.join("legacy.mapping.json");
    std::fs::write(
        &lmap,
        serde_json::json!({
            "cell_to_operator": {read: ["JSONScan-1"], clean: ["Projection-2"], write: ["CSVSink-3"]},
            "operator_to_cell": {"JSONScan-1": [read], "Projection-2": [clean], "CSVSink-3": [write]}
        })
        .to_string(),
    )
    .unwrap();
    mapping_put(wh, lwf, &lmap, &["--workflow-version", "1"]);
    let v2 = put(wh, lwf, &example("legacy_customer_etl.edited.ipynb"));
    assert_eq!(v2["notebook_version"], 2);
    let v2_ids: Vec<String> = v2["assigned_cell_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&v2_ids[1..], &ids[..], "old cells keep their ids: {v2}");
    let g = mapping_get(wh, lwf, &["--workflow-version", "1"]);
    assert_eq!(g["status"], "carried");
    assert_eq!(g["stale_cells"], serde_json::json!([clean]));
    assert_eq!(g["orphaned_operators"], serde_json::json!([]));
    for (cell, op) in [
        (read, "JSONScan-1"),
        (clean, "Projection-2"),
        (write, "CSVSink-3"),
    ] {
        assert_eq!(
            g["mapping"]["cell_to_operator"][cell],
            serde_json::json!([op]),
            "{g}"
        );
    }
    // The diff of the two versions says what happened, by those ids.
    let d = ok(run(
        wh,
        &[
            "notebook",
            "diff",
            "--workflow-id",
            lwf,
            "--from",
            "1",
            "--to",
            "2",
        ],
    ));
    assert_eq!(d["added"], serde_json::json!([v2_ids[0]]));
    assert_eq!(d["changed"], serde_json::json!([clean]));
    assert_eq!(d["removed"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_local_disk() {
    let d = tmp();
    let wh = d.path().join("wh").display().to_string();
    store_round_trips_and_carries(&wh, d.path());
    mappings_never_lose_entries(&wh, d.path());
    // The tables V3 made are the ones the store writes (one definition checked by the other).
    let w = nuvyn_executor::warehouse::Warehouse::new(
        nuvyn_executor::storage::location::parse(&wh).unwrap(),
    );
    for def in [
        &nuvyn_executor::warehouse::NOTEBOOK_SOURCE,
        &nuvyn_executor::warehouse::NOTEBOOK_MAPPING,
    ] {
        let t = w.open(def).await.unwrap().unwrap();
        assert_eq!(
            nuvyn_executor::warehouse::Warehouse::schema_problems(def, &t),
            Vec::<String>::new(),
            "{}",
            def.name
        );
    }
}

#[test]
fn the_store_on_azurite() {
    let Some(blob) = azurite() else { return };
    let d = tmp();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let wh = format!("{blob}/warehouse/{run}");
    store_round_trips_and_carries(&wh, d.path());
    mappings_never_lose_entries(&wh, d.path());
}

#[test]
fn bad_notebooks_and_mappings_are_named() {
    let d = tmp();
    let wh = d.path().join("wh").display().to_string();
    let nb = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        ("not json", "{\"cells\": [", "invalid notebook: not JSON"),
        (
            "nbformat 3",
            r#"{"nbformat": 3, "cells": []}"#,
            "nbformat 3 is not supported",
        ),
        (
            "cells not array",
            r#"{"nbformat": 4, "nbformat_minor": 5, "cells": {}}"#,
            "`cells` must be an array",
        ),
        (
            "duplicate ids",
            r#"{"nbformat": 4, "nbformat_minor": 5, "cells": [{"id": "a", "cell_type": "code", "source": ""}, {"id": "b", "cell_type": "code", "source": ""}, {"id": "a", "cell_type": "markdown", "source": "x"}]}"#,
            "duplicate cell id \"a\" in cells[0] and cells[2]",
        ),
        (
            "no source",
            r#"{"nbformat": 4, "nbformat_minor": 5, "cells": [{"id": "a", "cell_type": "code"}]}"#,
            "cells[0].source must be a string or an array of strings",
        ),
        (
            "bad type",
            r#"{"nbformat": 4, "nbformat_minor": 5, "cells": [{"id": "a", "cell_type": "sql", "source": ""}]}"#,
            "cells[0].cell_type \"sql\" is not code, markdown or raw",
        ),
        (
            "4.5 without ids",
            r#"{"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code", "source": ""}]}"#,
            "cells[0].id is missing (nbformat 4.5 requires cell ids)",
        ),
    ];
    for (case, text, expected) in cases {
        let p = nb("bad.ipynb", text);
        let e = err(run(
            &wh,
            &[
                "notebook",
                "put",
                "--workflow-id",
                "w",
                "--file",
                p.to_str().unwrap(),
            ],
        ));
        assert!(e.contains(expected), "{case}: {e}");
    }
    let big = example("demand_features.ipynb");
    let e = err(bin()
        .args([
            "notebook",
            "put",
            "--workflow-id",
            "w",
            "--file",
            big.to_str().unwrap(),
            "--warehouse",
            &wh,
        ])
        .env("NUVYN_NOTEBOOK_MAX_BYTES", "1000")
        .output()
        .unwrap());
    assert!(e.contains("is over the 1000 byte limit"), "{e}");
    assert_eq!(
        ok(run(&wh, &["notebook", "list", "--workflow-id", "w"])),
        serde_json::json!([]),
        "nothing stored"
    );

    put(&wh, "w", &example("churn_report.ipynb"));
    let workflow = example("churn_report.workflow.json");
    let mcases = [
        (
            "directions disagree",
            r#"{"cell_to_operator": {"chart": ["BarChart-3"], "load-subs": ["ParquetFileScan-1"]}, "operator_to_cell": {"BarChart-3": ["chart"]}}"#,
            "cell_to_operator entries missing from operator_to_cell: load-subs->ParquetFileScan-1",
        ),
        (
            "unknown cell",
            r#"{"cell_to_operator": {"nope": ["BarChart-3"]}, "operator_to_cell": {"BarChart-3": ["nope"]}}"#,
            "cells not in the notebook: nope",
        ),
        (
            "unknown operator",
            r#"{"cell_to_operator": {"chart": ["Pie-9"]}, "operator_to_cell": {"Pie-9": ["chart"]}}"#,
            "operators not in the workflow: Pie-9",
        ),
        (
            "not a mapping",
            r#"{"cell_to_operator": []}"#,
            "`cell_to_operator` must be an object",
        ),
    ];
    for (case, text, expected) in mcases {
        let p = nb("m.json", text);
        for action in ["check", "put"] {
            let mut args = vec![
                "mapping",
                action,
                "--workflow-id",
                "w",
                "--file",
                p.to_str().unwrap(),
                "--workflow",
                workflow.to_str().unwrap(),
            ];
            if action == "put" {
                args.extend(["--workflow-version", "1"]);
            }
            let e = err(run(&wh, &args));
            assert!(e.contains(expected), "{case} {action}: {e}");
        }
    }
    let good = example("churn_report.mapping.json");
    let c = ok(run(
        &wh,
        &[
            "mapping",
            "check",
            "--workflow-id",
            "w",
            "--file",
            good.to_str().unwrap(),
            "--workflow",
            workflow.to_str().unwrap(),
        ],
    ));
    assert_eq!(c["valid"], true);
    let e = err(run(
        &wh,
        &[
            "mapping",
            "get",
            "--workflow-id",
            "w",
            "--workflow-version",
            "1",
        ],
    ));
    assert!(e.contains("mapping not found"), "check stores nothing: {e}");
}

/// Six processes put six different notebooks for one workflow at once: six versions, 1..6,
/// each content exactly once.
#[test]
fn concurrent_puts_never_share_a_version_number() {
    let d = tmp();
    let wh = d.path().join("wh").display().to_string();
    ok(run(&wh, &["migrate", "apply"]));
    let base = example("sales_analysis.ipynb");
    let files: Vec<PathBuf> = (0..6)
        .map(|i| {
            edited(d.path(), &format!("n{i}.ipynb"), &base, |cells| {
                cells[0]["source"] = serde_json::json!(format!("# Variant {i}"));
            })
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            bin_std()
                .args(["notebook", "put", "--workflow-id", "wf", "--file"])
                .arg(f)
                .args(["--warehouse", &wh])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions: Vec<i64> = children
        .into_iter()
        .map(|c| {
            ok(c.wait_with_output().unwrap())["notebook_version"]
                .as_i64()
                .unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    let list = ok(run(&wh, &["notebook", "list", "--workflow-id", "wf"]));
    let shas: std::collections::BTreeSet<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["notebook_sha256"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((list.as_array().unwrap().len(), shas.len()), (6, 6));
}
