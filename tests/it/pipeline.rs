//! The extraction pipeline through the library, on real files of every format: discovery,
//! profiling, Delta writes, re-runs, isolation between workflows, and the document's queries.

use crate::common::*;
use nuvyn_executor::discover::{self, Filters, Format, Layout};
use nuvyn_executor::job::RunStatus;
use nuvyn_executor::profile::{TableProfile, TableStatus};
use nuvyn_executor::query;
use nuvyn_executor::storage::location;
use nuvyn_executor::warehouse::{self, Warehouse};

fn table<'a>(r: &'a nuvyn_executor::job::JobReport, name: &str) -> &'a TableProfile {
    r.sources[0]
        .tables
        .iter()
        .find(|t| t.table_name == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = r.sources[0].tables.iter().map(|t| &t.table_name).collect();
            panic!("no table {name}; have {names:?}")
        })
}

fn col<'a>(t: &'a TableProfile, name: &str) -> &'a nuvyn_executor::profile::ColumnProfile {
    t.columns
        .iter()
        .find(|c| c.column_name == name)
        .unwrap_or_else(|| panic!("no column {name} in {}", t.table_name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_discovered_and_profiled() {
    let d = tmp();
    let root = d.path().join("lake");
    write(&root.join("people.csv"), PEOPLE_CSV);
    write(&root.join("people_tab.tsv"), PEOPLE_CSV.replace(',', "\t"));
    write(&root.join("semi.txt"), PEOPLE_CSV.replace(',', ";"));
    write_gz(&root.join("zipped/people.csv.gz"), PEOPLE_CSV);
    write_bz2(&root.join("events.jsonl.bz2"), PEOPLE_NDJSON);
    write(&root.join("arr.json"), PEOPLE_JSON_ARRAY);
    write_parquet(&root.join("p.parquet"), &people());
    write_avro(&root.join("a.avro"), &people());
    write_ipc(&root.join("f.arrow"), &people());
    write_delta(&root.join("deltatab")).await;

    let r = run_job(&[&root], "wf_formats", None, None).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(r.sources[0].tables.len(), 10, "{:#?}", r.sources[0].tables);

    for name in ["people", "people_tab", "semi", "zipped/people"] {
        let t = table(&r, name);
        assert_eq!(t.file_type, "csv", "{name}");
        assert_eq!(t.row_count, Some(5), "{name}");
        assert_eq!(t.column_count, 4, "{name}");
        let names: Vec<_> = t.columns.iter().map(|c| c.column_name.as_str()).collect();
        assert_eq!(names, ["id", "name", "score", "active"], "{name}");
        assert_eq!(col(t, "id").data_type, "BIGINT");
        assert_eq!(col(t, "score").data_type, "DOUBLE");
        assert_eq!(col(t, "active").data_type, "BOOLEAN");
        assert_eq!(col(t, "name").data_type, "STRING");
        // CSV nullability is observed: `name` and `score` have one empty value each.
        assert!(!col(t, "id").is_nullable);
        assert!(col(t, "name").is_nullable);
        assert_eq!(col(t, "score").null_count, 1);
        assert_eq!(col(t, "score").min_value.as_deref(), Some("1.5"));
        assert_eq!(col(t, "score").max_value.as_deref(), Some("9.0"));
        assert_eq!(col(t, "score").distinct_count, Some(4));
        assert_eq!(
            sorted(&col(t, "id").sample_values),
            ["1", "2", "3", "4", "5"]
        );
        assert_eq!(
            sorted(&col(t, "name").sample_values),
            ["ann", "bob", "dan", "eve"]
        );
        assert_eq!(sorted(&col(t, "active").sample_values), ["false", "true"]);
    }
    assert_eq!(
        table(&r, "zipped/people").compression,
        discover::Compression::Gzip
    );

    for name in ["events", "arr"] {
        let t = table(&r, name);
        assert_eq!(t.file_type, "json");
        assert_eq!(t.row_count, Some(3), "{name}");
        assert_eq!(col(t, "name").null_count, 1);
        assert!(col(t, "name").is_nullable);
        assert!(!col(t, "id").is_nullable);
        assert_eq!(col(t, "id").max_value.as_deref(), Some("3"));
    }

    for (name, ty) in [
        ("p", "parquet"),
        ("a", "avro"),
        ("f", "arrow"),
        ("deltatab", "delta"),
    ] {
        let t = table(&r, name);
        assert_eq!(t.file_type, ty);
        assert_eq!(t.row_count, Some(5), "{name}");
        assert_eq!(t.column_count, 5, "{name}");
        // Declared nullability: `id` is declared NOT NULL, `name` nullable.
        assert!(!col(t, "id").is_nullable, "{name}");
        assert!(col(t, "name").is_nullable, "{name}");
        assert_eq!(col(t, "joined").data_type, "DATE", "{name}");
        assert_eq!(
            col(t, "joined").min_value.as_deref(),
            Some("2022-01-08"),
            "{name}"
        );
        assert_eq!(col(t, "name").null_count, 1, "{name}");
        assert_eq!(col(t, "id").distinct_count, Some(5), "{name}");
        assert_eq!(col(t, "id").position, 0);
        assert_eq!(col(t, "joined").position, 4);
        assert!(t.size_bytes > 0);
    }
}

/// Delta roots are found by folder: a Delta table inside another one's folder is part of
/// the outer table, a sibling whose name extends the root's (`d2` beside `d`) is not, and
/// files beside them are grouped as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_roots_are_found_by_folder() {
    let d = tmp();
    let lake = d.path().join("lake");
    for rel in [
        "d/_delta_log/00000000000000000000.json",
        "d/inner/_delta_log/00000000000000000000.json",
        "d2/_delta_log/00000000000000000000.json",
    ] {
        write(&lake.join(rel), "{}");
    }
    write_parquet(&lake.join("d/part-0.parquet"), &people());
    write_parquet(&lake.join("d/inner/part-0.parquet"), &people());
    write_parquet(&lake.join("d2/part-0.parquet"), &people());
    write(&lake.join("d_x/a.csv"), PEOPLE_CSV);
    let loc = location::parse(&lake.display().to_string()).unwrap();
    let found = discover::discover(&loc, &Filters::default()).await.unwrap();
    let tables: Vec<(String, Format, usize)> = found
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.format, t.files.len()))
        .collect();
    assert_eq!(
        tables,
        [
            ("d".to_string(), Format::Delta, 2),
            ("d2".into(), Format::Delta, 1),
            ("d_x/a".into(), Format::Csv, 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_groups_files_into_tables() {
    let d = tmp();
    let root = d.path().join("lake");
    let order = |n: i64| format!("order_id,amount\n{n},10.5\n{},20\n", n + 1);
    write(&root.join("orders/part-00000.csv"), order(1));
    write(&root.join("orders/part-00001.csv"), order(3));
    write(&root.join("orders/_SUCCESS"), "");
    write(&root.join("orders/.part-00000.csv.crc"), "xx");
    write(&root.join(".hidden/x.csv"), "a,b\n1,2\n");
    write(&root.join("_tmp/y.csv"), "a,b\n1,2\n");
    write_parquet(
        &root.join("sales/year=2023/month=1/data.parquet"),
        &people(),
    );
    write_parquet(
        &root.join("sales/year=2024/month=12/data.parquet"),
        &people(),
    );
    write(&root.join("notes.xyz"), "hello world\nsecond line\n");
    write(&root.join("blob.bin"), [0u8, 159, 146, 150, 0, 1, 2, 3]);
    write(&root.join("dup.csv"), "a,b\n1,2\n");
    write_parquet(&root.join("dup.parquet"), &people());
    write(&root.join("raw/part-00000"), "k|v\nx|1\ny|2\n");
    write(&root.join("a/customers.csv"), "id,name\n1,x\n");
    write(&root.join("b/customers.csv"), "id,name\n2,y\n");
    write(&root.join("monthly/events_2024_01.csv"), "id\n1\n");
    write(&root.join("monthly/events_2024_02.csv"), "id\n2\n");
    write(&root.join("monthly/lookup.csv"), "code,label\nA,alpha\n");

    let loc = location::parse(&root.display().to_string()).unwrap();
    let found = discover::discover(&loc, &Filters::default()).await.unwrap();
    let names: Vec<&str> = found.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "a/customers",
            "b/customers",
            "dup.csv",
            "dup.parquet",
            "monthly/events",
            "monthly/lookup",
            "orders",
            "raw",
            "sales"
        ]
    );
    // Hidden, `_`-prefixed and checksum files are not files of the lake; unknown ones are.
    assert_eq!(found.files_found, 14);
    let skipped: Vec<&str> = found
        .skipped
        .iter()
        .map(|s| s.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(skipped, ["blob.bin", "notes.xyz"]);
    assert!(found.skipped.iter().all(|s| !s.reason.is_empty()));

    let orders = found.tables.iter().find(|t| t.name == "orders").unwrap();
    assert_eq!(orders.files.len(), 2);
    let sales = found.tables.iter().find(|t| t.name == "sales").unwrap();
    assert_eq!(
        sales.partition_cols,
        [("year".to_string(), true), ("month".to_string(), true)]
    );
    assert!(matches!(sales.layout, Layout::Folder { .. }));
    let raw = found.tables.iter().find(|t| t.name == "raw").unwrap();
    assert_eq!(raw.format, Format::Csv);
    assert_eq!(raw.csv.unwrap().delimiter, b'|');

    let r = run_job(&[&root], "wf_disc", None, None).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(table(&r, "orders").row_count, Some(4));
    assert_eq!(
        col(table(&r, "orders"), "order_id").max_value.as_deref(),
        Some("4")
    );
    let sales = table(&r, "sales");
    assert_eq!(sales.row_count, Some(10));
    assert_eq!(col(sales, "year").data_type, "BIGINT");
    assert_eq!(col(sales, "month").min_value.as_deref(), Some("1"));
    assert_eq!(col(sales, "month").max_value.as_deref(), Some("12"));
    assert_eq!(sales.partition_columns, ["year", "month"]);
    assert_eq!(table(&r, "monthly/events").row_count, Some(2));
    assert_eq!(table(&r, "raw").row_count, Some(2));

    // Include / exclude globs work on paths relative to the source.
    let only = Filters::new(
        &["orders/**".into(), "sales/**".into()],
        &["sales/year=2023/**".into()],
    )
    .unwrap();
    let found = discover::discover(&loc, &only).await.unwrap();
    let names: Vec<&str> = found.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["orders", "sales"]);
    assert_eq!(found.tables[1].files.len(), 1);

    // A single file as the source, and a missing path.
    let one = location::parse(&root.join("dup.csv").display().to_string()).unwrap();
    let found = discover::discover(&one, &Filters::default()).await.unwrap();
    assert_eq!(found.tables.len(), 1);
    assert_eq!(found.tables[0].name, "dup");
    let missing = location::parse(&root.join("nope").display().to_string()).unwrap();
    let err = discover::discover(&missing, &Filters::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not found") && err.to_string().contains("nope"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_type_contradiction_widens_the_column_and_corrupt_files_fail_only_their_table() {
    let d = tmp();
    let root = d.path().join("lake");
    let mut csv = String::from("id,code,price\n");
    for i in 0..1500 {
        let code = if i == 1400 {
            "A12".to_string()
        } else {
            i.to_string()
        };
        csv.push_str(&format!("{i},{code},{}.25\n", i % 7));
    }
    write(&root.join("late.csv"), &csv);
    write(
        &root.join("bad.parquet"),
        b"PAR1 this is not a parquet file at all PAR1",
    );
    write(&root.join("good.csv"), PEOPLE_CSV);

    let r = run_job(&[&root], "wf_bad", None, None).await;
    assert_eq!(r.status, RunStatus::Partial, "{r:#?}");
    assert_eq!(r.exit_code(), 3);
    let late = table(&r, "late");
    assert_eq!(late.status, TableStatus::Ok, "{late:#?}");
    assert_eq!(late.row_count, Some(1500));
    assert_eq!(col(late, "code").data_type, "STRING");
    assert_eq!(col(late, "id").data_type, "BIGINT");
    assert_eq!(late.widened_columns, ["code"]);
    let bad = table(&r, "bad");
    assert_eq!(bad.status, TableStatus::Failed);
    assert!(
        bad.error_message
            .as_deref()
            .unwrap()
            .contains("bad.parquet"),
        "{bad:#?}"
    );
    assert!(bad.columns.is_empty());
    assert_eq!(table(&r, "good").row_count, Some(5));
    assert_eq!(r.sources[0].tables_failed, 1);
}

async fn count(ctx: &Warehouse, q: &str) -> i64 {
    let rows = ctx.select(q).await.unwrap();
    rows[0].values().next().unwrap().as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_land_in_delta_and_reruns_replace_only_their_source() {
    let d = tmp();
    let lake_a = d.path().join("a");
    let lake_b = d.path().join("b");
    write(&lake_a.join("people.csv"), PEOPLE_CSV);
    write_parquet(&lake_a.join("p/part-0.parquet"), &people());
    write(&lake_b.join("only.csv"), "x,y\n1,2\n");
    let wh = d.path().join("wh");

    let r1 = run_job(&[&lake_a], "wf1", Some("s1"), Some(&wh)).await;
    assert_eq!(r1.status, RunStatus::Succeeded, "{r1:#?}");
    assert!(r1.written);
    run_job(&[&lake_a], "wf2", Some("s1"), Some(&wh)).await;
    run_job(&[&lake_b], "wf1", Some("s2"), Some(&wh)).await;
    run_job(&[&lake_b], "wf1", None, Some(&wh)).await;

    let w = Warehouse::new(location::parse(&wh.display().to_string()).unwrap());
    let ctx = w.clone();
    let cols_wf1_s1 = "SELECT count(*) FROM hive_metastore._executor_metadata.columns WHERE workflow_id = 'wf1' AND source_id = 's1'";
    assert_eq!(count(&ctx, cols_wf1_s1).await, 4 + 5);
    let before_other = count(&ctx, "SELECT count(*) FROM columns WHERE NOT (workflow_id = 'wf1' AND coalesce(source_id, '') = 's1')").await;
    assert_eq!(before_other, 9 + 2 + 2);

    // Re-run: the source's rows are replaced, not duplicated; everything else is untouched.
    let first_run_ids = count(
        &ctx,
        "SELECT count(DISTINCT run_id) FROM columns WHERE workflow_id = 'wf1' AND source_id = 's1'",
    )
    .await;
    assert_eq!(first_run_ids, 1);
    let r2 = run_job(&[&lake_a], "wf1", Some("s1"), Some(&wh)).await;
    assert_eq!(r2.status, RunStatus::Succeeded);
    let ctx = w.clone();
    assert_eq!(count(&ctx, cols_wf1_s1).await, 9);
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM columns WHERE NOT (workflow_id = 'wf1' AND coalesce(source_id, '') = 's1')").await,
        before_other
    );
    let q = format!(
        "SELECT count(*) FROM tables WHERE workflow_id = 'wf1' AND source_id = 's1' AND run_id = '{}'",
        r2.run_id
    );
    assert_eq!(count(&ctx, &q).await, 2);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM sources WHERE workflow_id = 'wf1'"
        )
        .await,
        3
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM executor_runs").await, 5);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM executor_runs WHERE status = 'succeeded' AND run_mode = 'cli'"
        )
        .await,
        5
    );
    // ids are unique across the whole table.
    assert_eq!(
        count(&ctx, "SELECT count(DISTINCT id) FROM columns").await,
        count(&ctx, "SELECT count(*) FROM columns").await
    );
    let rows = ctx.select("SELECT row_count, file_type, status FROM tables WHERE workflow_id='wf1' AND source_id='s1' AND table_name='p'").await.unwrap();
    assert_eq!(rows[0]["row_count"], 5);
    assert_eq!(rows[0]["file_type"], "parquet");
    assert_eq!(rows[0]["status"], "ok");

    // One commit per table per job, after the versions the schema migrations made (read
    // from a warehouse that only got the schema).
    let reference = tmp();
    let r = Warehouse::new(location::parse(&reference.path().display().to_string()).unwrap());
    nuvyn_executor::migrate::Migrator::new(r.clone())
        .apply(None, false)
        .await
        .unwrap();
    for def in warehouse::JOB_TABLES {
        let migrated = r.open(def).await.unwrap().unwrap().version().unwrap();
        let t = w.open(def).await.unwrap().unwrap();
        // Each job appends once; then, once the run is recorded, one delete removes the rows
        // earlier runs left for its sources: only the re-run of wf1/s1 had any (a delete that
        // matches nothing commits nothing), and executor_runs is only appended to.
        let ops: Vec<String> = (migrated + 1..=t.version().unwrap())
            .map(|v| {
                let log = wh.join(format!(
                    "_executor_metadata/{}/_delta_log/{v:020}.json",
                    def.name
                ));
                std::fs::read_to_string(log)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .find_map(|v| v["commitInfo"]["operation"].as_str().map(str::to_string))
                    .unwrap()
            })
            .collect();
        let writes = ops.iter().filter(|o| *o == "WRITE").count();
        let deletes = ops.iter().filter(|o| *o == "DELETE").count();
        assert_eq!(
            (writes, writes + deletes),
            (5, ops.len()),
            "{}: {ops:?}",
            def.name
        );
        let expected = if def.name == "executor_runs" { 0 } else { 1 };
        assert_eq!(deletes, expected, "{}: {ops:?}", def.name);
        // The earlier run's rows were a file of their own: removed whole, nothing rewritten.
        if deletes == 1 {
            let v = t.version().unwrap();
            let log = std::fs::read_to_string(wh.join(format!(
                "_executor_metadata/{}/_delta_log/{v:020}.json",
                def.name
            )))
            .unwrap();
            let actions: Vec<serde_json::Value> = log
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let (adds, removes) = (
                actions.iter().filter(|a| a.get("add").is_some()).count(),
                actions.iter().filter(|a| a.get("remove").is_some()).count(),
            );
            assert_eq!((adds, removes), (0, 1), "{}: {log}", def.name);
            let removed_rows = actions
                .iter()
                .find_map(|a| a["commitInfo"]["operationMetrics"]["num_deleted_rows"].as_i64());
            let earlier = match def.name {
                "sources" => 1,
                "tables" => 2,
                _ => 9,
            };
            assert_eq!(removed_rows, Some(earlier), "{}: {log}", def.name);
            assert!(
                actions
                    .iter()
                    .any(|a| a["commitInfo"]["nuvyn.run_id"] == r2.run_id.as_str()),
                "{}: {log}",
                def.name
            );
        }
        // Older versions stay reachable: the first job's rows by time travel.
        let mut old = w.open(def).await.unwrap().unwrap();
        old.load_version(migrated + 1).await.unwrap();
        assert_eq!(
            old.snapshot().unwrap().metadata().partition_columns(),
            &["workflow_id".to_string()]
        );
    }

    // The tables are protocol reader 1 / writer 2, partitioned by workflow_id.
    let log0 = std::fs::read_to_string(
        wh.join("_executor_metadata/columns/_delta_log/00000000000000000000.json"),
    )
    .unwrap();
    let protocol = log0
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find_map(|v| v.get("protocol").cloned())
        .unwrap();
    assert_eq!(protocol["minReaderVersion"], 1);
    assert_eq!(protocol["minWriterVersion"], 2);
    assert!(
        wh.join("_executor_metadata/columns/workflow_id=wf1")
            .is_dir()
    );
    assert!(
        wh.join("_executor_metadata/columns/workflow_id=wf2")
            .is_dir()
    );

    // The nested view.
    let v = query::workflow_metadata(&ctx, "hive_metastore", "wf1", Some("s1"))
        .await
        .unwrap();
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    let tables = sources[0]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2);
    let people_t = tables.iter().find(|t| t["table_name"] == "people").unwrap();
    assert_eq!(people_t["columns"].as_array().unwrap().len(), 4);
    assert!(
        people_t["columns"][1]["sample_values"]
            .as_array()
            .unwrap()
            .contains(&"ann".into())
    );
    assert_eq!(v["latest_run"]["run_id"], r2.run_id.as_str());
    let all = query::workflow_metadata(&ctx, "hive_metastore", "wf1", None)
        .await
        .unwrap();
    assert_eq!(all["sources"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_source_keeps_its_previous_rows() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let wh = d.path().join("wh");
    let ok = run_job(&[&lake], "wf", Some("s"), Some(&wh)).await;
    assert_eq!(ok.status, RunStatus::Succeeded);
    std::fs::remove_dir_all(&lake).unwrap();
    let failed = run_job(&[&lake], "wf", Some("s"), Some(&wh)).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.exit_code(), 1);
    assert!(
        failed.error.as_deref().unwrap().contains("not found"),
        "{failed:#?}"
    );
    let w = Warehouse::new(location::parse(&wh.display().to_string()).unwrap());
    let ctx = w.clone();
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM columns WHERE workflow_id='wf'").await,
        4
    );
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM executor_runs WHERE status='failed'"
        )
        .await,
        1
    );
    let rows = ctx
        .select("SELECT error_message FROM executor_runs WHERE status='failed'")
        .await
        .unwrap();
    assert!(
        rows[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_four_queries_return_correct_results() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(
        &lake.join("customers.csv"),
        "id,name,city\n1,ann,Oslo\n2,bob,Rome\n",
    );
    write(
        &lake.join("orders/part-00000.csv"),
        "order_id,customer_id\n10,1\n",
    );
    write(
        &lake.join("orders/part-00001.csv"),
        "order_id,customer_id\n11,2\n",
    );
    let other = d.path().join("other");
    write(&other.join("misc.csv"), "k\n1\n");
    let wh = d.path().join("wh");
    run_job(
        &[&lake],
        "workflow_abc123",
        Some("source_xyz789"),
        Some(&wh),
    )
    .await;
    run_job(&[&lake], "workflow_other", Some("source_xyz789"), Some(&wh)).await;
    run_job(&[&other], "workflow_abc123", Some("source_zzz"), Some(&wh)).await;

    let w = Warehouse::new(location::parse(&wh.display().to_string()).unwrap());
    let ctx = w.clone();
    let run = |i: usize| {
        let ctx = ctx.clone();
        async move { ctx.select(DOC_QUERIES[i]).await.unwrap() }
    };

    // Q1: every source row of the workflow joined with every column of its tables.
    let q1 = run(0).await;
    assert_eq!(q1.len(), 2 * (3 + 2 + 1), "2 sources x 6 columns");
    let order: Vec<(String, String)> = q1
        .iter()
        .map(|r| {
            (
                r["table_name"].as_str().unwrap().into(),
                r["column_name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(order[0], ("customers".into(), "id".into()));
    assert_eq!(
        order.last().unwrap(),
        &("orders".to_string(), "customer_id".to_string())
    );
    assert!(q1.iter().all(|r| r["workflow_id"] == "workflow_abc123"));
    let cust = q1.iter().find(|r| r["table_name"] == "customers").unwrap();
    assert_eq!(cust["row_count"], 2);

    // Q2: the workflow's columns of one source, in order.
    let q2 = run(1).await;
    let got: Vec<(&str, &str, i64, bool)> = q2
        .iter()
        .map(|r| {
            (
                r["table_name"].as_str().unwrap(),
                r["column_name"].as_str().unwrap(),
                r["position"].as_i64().unwrap(),
                r["is_nullable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("customers", "id", 0, false),
            ("customers", "name", 1, false),
            ("customers", "city", 2, false),
            ("orders", "order_id", 0, false),
            ("orders", "customer_id", 1, false),
        ]
    );
    assert_eq!(q2[0]["data_type"], "BIGINT");

    // Q3: one source across workflows.
    let q3 = run(2).await;
    assert_eq!(q3.len(), 10);
    assert_eq!(q3[0]["workflow_id"], "workflow_abc123");
    assert_eq!(q3[9]["workflow_id"], "workflow_other");

    // Q4: the latest extraction of the workflow with table and column counts.
    let q4 = run(3).await;
    assert_eq!(q4.len(), 1);
    let r = &q4[0];
    assert_eq!(r["workflow_id"], "workflow_abc123");
    assert_eq!(
        r["source_id"], "source_zzz",
        "the most recent source of the workflow"
    );
    assert_eq!(r["files_found"], 1);
    // The document's join is on workflow_id only, so it counts the workflow's tables.
    assert_eq!(r["table_count"], 3);
    assert_eq!(r["total_columns"], 6);

    // The corrected versions join on source_id and run_id too: each column once, under its
    // own source, and the latest source's own tables.
    let [(1, q1_fixed), (4, q4_fixed)] = DOC_QUERIES_CORRECTED else {
        unreachable!()
    };
    let q1c = ctx.select(q1_fixed).await.unwrap();
    let got: Vec<(&str, &str, &str)> = q1c
        .iter()
        .map(|r| {
            (
                r["source_id"].as_str().unwrap(),
                r["table_name"].as_str().unwrap(),
                r["column_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("source_xyz789", "customers", "id"),
            ("source_xyz789", "customers", "name"),
            ("source_xyz789", "customers", "city"),
            ("source_xyz789", "orders", "order_id"),
            ("source_xyz789", "orders", "customer_id"),
            ("source_zzz", "misc", "k"),
        ],
        "query 1 gave {} rows, 2 per column; the corrected one gives each column once",
        q1.len()
    );
    let q4c = ctx.select(q4_fixed).await.unwrap();
    assert_eq!(q4c.len(), 1);
    assert_eq!(q4c[0]["source_id"], "source_zzz");
    assert_eq!(q4c[0]["table_count"], 1, "source_zzz's own table only");
    assert_eq!(q4c[0]["total_columns"], 1);
}

/// Sample values are drawn at random across the whole table (a reservoir, not the first
/// rows), and are the same on every run: a table profiled twice, or by a sharded run, gets
/// the same samples and the same sample-based statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_values_are_random_across_the_table_and_repeatable() {
    let d = tmp();
    let lake = d.path().join("lake");
    // 40 files of 500 rows: more rows than the sample holds.
    for f in 0..40 {
        let mut text = String::from("v,w\n");
        for r in 0..500 {
            text.push_str(&format!("{},f{f}\n", f * 1000 + r));
        }
        write(&lake.join(format!("t/part-{f:05}.csv")), text);
    }
    let wh = d.path().join("wh");
    let mut seen = None;
    for run in 0..3 {
        run_job(&[&lake], "wf_samples", None, Some(&wh)).await;
        let rows = sql_json(
            &wh,
            "SELECT column_name, sample_values, quantiles, top_values FROM columns WHERE workflow_id = 'wf_samples' ORDER BY position",
            &[],
        );
        let samples: Vec<i64> =
            serde_json::from_str::<Vec<String>>(rows[0]["sample_values"].as_str().unwrap())
                .unwrap()
                .iter()
                .map(|v| v.parse().unwrap())
                .collect();
        assert_eq!(samples.len(), 5, "run {run}");
        let files: std::collections::BTreeSet<i64> = samples.iter().map(|v| v / 1000).collect();
        assert!(files.len() > 1, "samples from one file only: {samples:?}");
        assert!(samples.iter().any(|v| v / 1000 > 0), "{samples:?}");
        match &seen {
            None => seen = Some(rows),
            Some(first) => assert_eq!(first, &rows, "run {run} differs"),
        }
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}
