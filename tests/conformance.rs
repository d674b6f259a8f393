//! One conformance suite for every storage backend: the same lake is written through the
//! backend's own object store, extracted with the warehouse on the same backend, queried,
//! and re-run. It runs against local disk always and against Azurite when the test command
//! started it (`ci/test.sh`); in CI a missing Azurite fails the suite.

mod common;

use common::*;
use nuvyn_executor::deltalake::arrow::array::RecordBatch;
use nuvyn_executor::job::RunStatus;
use nuvyn_executor::location;
use nuvyn_executor::metastore::Warehouse;
use nuvyn_executor::query;
use object_store::{ObjectStoreExt, PutPayload};

fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf
}

/// Writes the lake under `root` through the location's own store.
async fn put_lake(root: &str) {
    let loc = location::parse(root).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("people.csv", PEOPLE_CSV.as_bytes().to_vec()),
        (
            "orders/part-00000.csv",
            b"order_id,amount\n1,10.5\n2,20\n".to_vec(),
        ),
        ("orders/part-00001.csv", b"order_id,amount\n3,30\n".to_vec()),
        (
            "events/day=1/part-0.jsonl",
            PEOPLE_NDJSON.as_bytes().to_vec(),
        ),
        (
            "events/day=2/part-0.jsonl",
            PEOPLE_NDJSON.as_bytes().to_vec(),
        ),
        ("facts/part-0.parquet", parquet_bytes(&people())),
        ("_SUCCESS", Vec::new()),
    ];
    for (rel, data) in files {
        let path = rel
            .split('/')
            .fold(loc.prefix.clone(), |p, part| p.join(part));
        loc.store.put(&path, PutPayload::from(data)).await.unwrap();
    }
}

async fn conformance(source_root: String, warehouse: String) {
    put_lake(&source_root).await;
    let r = run_job_at(
        std::slice::from_ref(&source_root),
        "wf_conf",
        Some("s1"),
        Some(&warehouse),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let s = &r.sources[0];
    let names: Vec<(&str, Option<i64>)> = s
        .tables
        .iter()
        .map(|t| (t.table_name.as_str(), t.row_count))
        .collect();
    assert_eq!(
        names,
        [
            ("events", Some(6)),
            ("facts", Some(5)),
            ("orders", Some(3)),
            ("people", Some(5))
        ]
    );
    assert_eq!(s.files_found, 6);
    // `10.5` in one part file and `30` in the other: the column widens to DOUBLE.
    let orders = s.tables.iter().find(|t| t.table_name == "orders").unwrap();
    let amount = orders
        .columns
        .iter()
        .find(|c| c.column_name == "amount")
        .unwrap();
    assert_eq!(amount.data_type, "DOUBLE");
    assert_eq!(amount.max_value.as_deref(), Some("30.0"));
    let events = s.tables.iter().find(|t| t.table_name == "events").unwrap();
    assert_eq!(events.partition_columns, ["day"]);

    // Re-run: replaced, not duplicated.
    let r2 = run_job_at(
        std::slice::from_ref(&source_root),
        "wf_conf",
        Some("s1"),
        Some(&warehouse),
    )
    .await;
    assert_eq!(r2.status, RunStatus::Succeeded);
    let w = Warehouse::new(location::parse(&warehouse).unwrap());
    let ctx = query::session(&w, "hive_metastore").await.unwrap();
    let rows = query::to_json_rows(
        &query::sql(
            &ctx,
            "SELECT count(*) AS n, count(DISTINCT run_id) AS runs, sum(row_count) AS total \
             FROM hive_metastore._executor_metadata.tables WHERE workflow_id = 'wf_conf'",
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rows[0]["n"], 4);
    assert_eq!(rows[0]["runs"], 1);
    assert_eq!(rows[0]["total"], 19);
    let nested = query::workflow_metadata(&ctx, "wf_conf", Some("s1"))
        .await
        .unwrap();
    assert_eq!(nested["sources"][0]["tables"].as_array().unwrap().len(), 4);
    assert_eq!(nested["latest_run"]["run_id"], r2.run_id.as_str());
    // Every table was committed three times: created, then two jobs.
    for def in nuvyn_executor::metastore::ALL_TABLES {
        assert_eq!(
            w.open(def).await.unwrap().unwrap().version(),
            Some(2),
            "{}",
            def.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_disk() {
    let d = tmp();
    conformance(
        d.path().join("lake").display().to_string(),
        d.path().join("wh").display().to_string(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_azurite() {
    let Some(blob) = azurite() else { return };
    // A fresh prefix per run: the emulator's containers outlive a test.
    let run = uuid::Uuid::new_v4().simple().to_string();
    conformance(
        format!("{blob}/lake/{run}"),
        format!("{blob}/warehouse/{run}"),
    )
    .await;
}
