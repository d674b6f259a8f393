//! One conformance suite for every storage backend: the same lake is written through the
//! backend's own object store, extracted with the warehouse on the same backend, queried,
//! and re-run. It runs against local disk always and against Azurite when the test command
//! started it (`ci/test.sh`); in CI a missing Azurite fails the suite.

use crate::common::*;
use nuvyn_executor::deltalake::arrow::array::RecordBatch;
use nuvyn_executor::job::RunStatus;
use nuvyn_executor::query;
use nuvyn_executor::storage::location;
use nuvyn_executor::warehouse::Warehouse;
use object_store::{ObjectStoreExt, PutPayload};

/// An Arrow IPC file as arrow-rs writes it (its schema message is padded away from the magic:
/// DataFusion's stream-based schema inference misread it on remote stores).
fn ipc_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = nuvyn_executor::deltalake::arrow::ipc::writer::FileWriter::try_new(
        &mut buf,
        &batch.schema(),
    )
    .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
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
        ("frames/part-0.arrow", ipc_bytes(&people())),
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
            ("frames", Some(5)),
            ("orders", Some(3)),
            ("people", Some(5))
        ]
    );
    assert_eq!(s.files_found, 7);
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

    let w = Warehouse::new(location::parse(&warehouse).unwrap());
    let mut after_first = Vec::new();
    for def in nuvyn_executor::warehouse::JOB_TABLES {
        after_first.push(w.open(def).await.unwrap().unwrap().version().unwrap());
    }

    // Re-run: replaced, not duplicated.
    let r2 = run_job_at(
        std::slice::from_ref(&source_root),
        "wf_conf",
        Some("s1"),
        Some(&warehouse),
    )
    .await;
    assert_eq!(r2.status, RunStatus::Succeeded);
    // Nothing changed: every table's profile is carried, and no data file is read (the
    // store is only listed).
    let s2 = &r2.sources[0];
    assert_eq!(s2.tables_carried, 5, "{s2:#?}");
    assert!(
        s2.tables
            .iter()
            .all(|t| t.carried_from.as_deref() == Some(r.run_id.as_str()))
    );
    assert!(s2.changes.is_empty(), "{:?}", s2.changes);
    assert_eq!(s2.requests.get, 0, "{:?}", s2.requests);
    let ctx = w.clone();
    let rows = ctx
        .select(
            "SELECT count(*) AS n, count(DISTINCT run_id) AS runs, sum(row_count) AS total \
             FROM hive_metastore._executor_metadata.tables WHERE workflow_id = 'wf_conf'",
        )
        .await
        .unwrap();
    assert_eq!(rows[0]["n"], 5);
    assert_eq!(rows[0]["runs"], 1);
    assert_eq!(rows[0]["total"], 24);
    // The history keeps both runs, each whole, with its time.
    let history = ctx
        .select(
            "SELECT run_id, count(*) AS n, sum(row_count) AS total, min(profiled_at) AS at \
             FROM hive_metastore._executor_metadata.table_history WHERE workflow_id = 'wf_conf' \
             GROUP BY run_id ORDER BY at",
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    for (h, run) in history.iter().zip([&r.run_id, &r2.run_id]) {
        assert_eq!(h["run_id"], run.as_str());
        assert_eq!((h["n"].clone(), h["total"].clone()), (5.into(), 24.into()));
    }
    let nested = query::workflow_metadata(&ctx, "hive_metastore", "wf_conf", Some("s1"))
        .await
        .unwrap();
    assert_eq!(nested["sources"][0]["tables"].as_array().unwrap().len(), 5);
    assert_eq!(nested["latest_run"]["run_id"], r2.run_id.as_str());
    // The second job appended once per table and, once recorded, removed the first run's
    // rows of its source in one more commit (executor_runs is only appended to).
    for (def, first) in nuvyn_executor::warehouse::JOB_TABLES
        .iter()
        .zip(after_first)
    {
        let commits = if def.name == "executor_runs" { 1 } else { 2 };
        assert_eq!(
            w.open(def).await.unwrap().unwrap().version(),
            Some(first + commits),
            "{}",
            def.name
        );
    }
    // The carried rows are the first run's profile under the second run's id.
    let carried = ctx
        .select("SELECT DISTINCT run_id, profile_run_id FROM tables WHERE workflow_id = 'wf_conf'")
        .await
        .unwrap();
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0]["run_id"], r2.run_id.as_str());
    assert_eq!(carried[0]["profile_run_id"], r.run_id.as_str());
    let same = ctx
        .select(
            "SELECT count(*) AS n FROM column_history a JOIN column_history b              ON a.table_name = b.table_name AND a.column_name = b.column_name              AND a.data_type = b.data_type AND a.null_count = b.null_count              AND a.distinct_count = b.distinct_count AND (a.quantiles IS NOT DISTINCT FROM b.quantiles)              AND (a.top_values IS NOT DISTINCT FROM b.top_values)              WHERE a.run_id <> b.run_id AND a.workflow_id = 'wf_conf' AND b.workflow_id = 'wf_conf'              AND a.run_id = (SELECT run_id FROM executor_runs WHERE workflow_id = 'wf_conf' ORDER BY started_at LIMIT 1)",
        )
        .await
        .unwrap();
    let cols = ctx
        .select("SELECT count(*) AS n FROM columns WHERE workflow_id = 'wf_conf'")
        .await
        .unwrap();
    assert_eq!(same[0]["n"], cols[0]["n"]);

    // One table changes (a column gone, the other's nulls up); one is removed: only the
    // changed table is read again, and the changes are recorded.
    let loc = location::parse(&source_root).unwrap();
    let orders = loc.prefix.clone().join("orders");
    loc.store
        .put(
            &orders.clone().join("part-00001.csv"),
            PutPayload::from(b"order_id\n3\n4\n5\n".to_vec()),
        )
        .await
        .unwrap();
    loc.store
        .delete(&loc.prefix.clone().join("frames").join("part-0.arrow"))
        .await
        .unwrap();
    let r3 = run_job_at(
        std::slice::from_ref(&source_root),
        "wf_conf",
        Some("s1"),
        Some(&warehouse),
    )
    .await;
    assert_eq!(r3.status, RunStatus::Succeeded, "{r3:#?}");
    let s3 = &r3.sources[0];
    assert_eq!(s3.tables_carried, 3, "{s3:#?}");
    let profiled: Vec<&str> = s3
        .tables
        .iter()
        .filter(|t| t.carried_from.is_none())
        .map(|t| t.table_name.as_str())
        .collect();
    assert_eq!(profiled, ["orders"]);
    let got: Vec<(&str, Option<&str>, &str, &str)> = s3
        .changes
        .iter()
        .map(|c| {
            (
                c.table_name.as_str(),
                c.column_name.as_deref(),
                c.change.as_str(),
                c.severity.as_str(),
            )
        })
        .collect();
    assert!(
        got.contains(&("frames", None, "table_removed", "breaking")),
        "{got:?}"
    );
    assert!(
        got.contains(&("orders", Some("amount"), "null_fraction", "warning")),
        "{got:?}"
    );
    assert!(
        got.contains(&("orders", None, "row_count", "warning")),
        "{got:?}"
    );
    assert_eq!(r3.changes.breaking, 1);
    let listed = query::workflow_changes(&ctx, "hive_metastore", "wf_conf", Some("s1"), None)
        .await
        .unwrap();
    let listed = nuvyn_executor::warehouse::to_json_rows(&listed).unwrap();
    assert_eq!(listed.len(), s3.changes.len(), "{listed:?}");
    assert!(
        listed.iter().all(
            |c| c["run_id"] == r3.run_id.as_str() && c["previous_run_id"] == r2.run_id.as_str()
        )
    );
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

/// Environment variables for one case.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// Runs `extract` in its own process, so each case has exactly the credentials it names.
fn extract(source: &str, warehouse: &str, wf: &str, env: &[(&str, &str)]) -> std::process::Output {
    bin()
        .args(["extract", source, "--workflow-id", wf, "--source-id", "s1"])
        .args(["--warehouse", warehouse, "--output", "json"])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The pipeline through the binary: the lake's five tables land in the warehouse and are read
/// back through the same URL form and credential.
fn expect_lake(case: &str, source: &str, warehouse: &str, env: &[(&str, &str)]) {
    let out = extract(source, warehouse, "wf_forms", env);
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    let rows: Vec<(String, i64)> = report["sources"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table_name"].as_str().unwrap().to_string(),
                t["row_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("events".to_string(), 6),
            ("facts".into(), 5),
            ("frames".into(), 5),
            ("orders".into(), 3),
            ("people".into(), 5)
        ],
        "{case}"
    );
    let back = sql_json_env(
        warehouse,
        "SELECT count(*) AS n, sum(row_count) AS total FROM tables WHERE workflow_id = 'wf_forms'",
        &[],
        env,
    );
    assert_eq!(back[0]["n"], 5, "{case}");
    assert_eq!(back[0]["total"], 24, "{case}");
}

/// Every URL form users paste and every credential Azurite supports, for sources and
/// warehouse alike. Real-account URL forms reach the emulator through a custom endpoint
/// (connection string `BlobEndpoint`, or `AZURE_STORAGE_ENDPOINT`), as a private endpoint would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_azurite_every_url_form_and_credential() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_lake(&format!("{blob}/lake/{run}")).await;
    let acct = AZURITE_ACCOUNT;
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={acct};AccountKey={AZURITE_KEY};BlobEndpoint={blob};"
    );
    let (lake_sas, wh_sas, account_sas) = (
        sas(&["container", "lake"]),
        sas(&["container", "warehouse"]),
        sas(&["account"]),
    );
    let key_env = [
        ("AZURE_STORAGE_ACCOUNT_NAME", acct),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("AZURE_STORAGE_ENDPOINT", blob.as_str()),
    ];
    let cases: Vec<(&str, String, String, Env)> = vec![
        (
            "connection string, az://",
            format!("az://lake/{run}"),
            format!("az://warehouse/{run}/cs-az"),
            vec![("AZURE_STORAGE_CONNECTION_STRING", cs.as_str())],
        ),
        (
            "connection string, abfss://",
            format!("abfss://lake@{acct}.dfs.core.windows.net/{run}"),
            format!("abfss://warehouse@{acct}.dfs.core.windows.net/{run}/cs-abfss"),
            vec![("AZURE_STORAGE_CONNECTION_STRING", cs.as_str())],
        ),
        (
            "shared key, https:// blob and dfs",
            format!("https://{acct}.blob.core.windows.net/lake/{run}"),
            format!("https://{acct}.dfs.core.windows.net/warehouse/{run}/key-https"),
            key_env.to_vec(),
        ),
        (
            "shared key, wasbs:// and abfs://",
            format!("wasbs://lake@{acct}.blob.core.windows.net/{run}"),
            format!("abfs://warehouse@{acct}.dfs.core.windows.net/{run}/key-wasbs"),
            key_env.to_vec(),
        ),
        (
            "container SAS in the URLs",
            format!("{blob}/lake/{run}?{lake_sas}"),
            format!("{blob}/warehouse/{run}/container-sas?{wh_sas}"),
            vec![],
        ),
        (
            "account SAS in the URLs",
            format!("https://{acct}.blob.core.windows.net/lake/{run}?{account_sas}"),
            format!(
                "https://{acct}.blob.core.windows.net/warehouse/{run}/account-sas?{account_sas}"
            ),
            vec![("AZURE_STORAGE_ENDPOINT", blob.as_str())],
        ),
        (
            "account SAS from AZURE_STORAGE_SAS_TOKEN",
            format!("{blob}/lake/{run}"),
            format!("{blob}/warehouse/{run}/env-sas"),
            vec![("AZURE_STORAGE_SAS_TOKEN", account_sas.as_str())],
        ),
    ];
    for (case, source, warehouse, env) in &cases {
        expect_lake(case, source, warehouse, env);
    }

    // A blob SAS (sr=b) may read its one blob but not list: the source is looked up directly.
    let wh = tmp();
    let blob_sas = sas(&["blob", "lake", &format!("{run}/people.csv")]);
    let out = extract(
        &format!("{blob}/lake/{run}/people.csv?{blob_sas}"),
        &wh.path().display().to_string(),
        "wf_blob",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["sources"][0]["tables"][0]["table_name"], "people");
    assert_eq!(report["sources"][0]["tables"][0]["row_count"], 5);
}

/// A wrong credential is one clear error naming the account and the method, not a stack of
/// retries; the other sources of the job are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_wrong_or_missing_credentials_are_named_once() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    put_lake(&format!("{blob}/lake/{run}")).await;
    let wh = tmp();
    let wh = wh.path().display().to_string();
    let acct = AZURITE_ACCOUNT;
    // The development key with its first bytes changed: well-formed, wrong.
    let wrong_key = format!("AAAA{}", &AZURITE_KEY[4..]);
    let lake_sas = sas(&["container", "lake"]);
    let tampered = lake_sas.replace("sig=", "sig=AAAA");
    let cases: Vec<(&str, String, Env, &str)> = vec![
        (
            "wrong shared key",
            format!("https://{acct}.blob.core.windows.net/lake/{run}"),
            vec![
                ("AZURE_STORAGE_ACCOUNT_KEY", wrong_key.as_str()),
                ("AZURE_STORAGE_ENDPOINT", blob.as_str()),
            ],
            "using shared key from AZURE_STORAGE_ACCOUNT_KEY (HTTP 40",
        ),
        (
            "tampered SAS",
            format!("{blob}/lake/{run}?{tampered}"),
            vec![],
            "using the SAS token in the URL (HTTP 40",
        ),
        (
            "read-only SAS listing",
            format!("{blob}/lake/{run}?{}", sas(&["container", "lake", "r"])),
            vec![],
            "using the SAS token in the URL (HTTP 40",
        ),
        (
            "no credential",
            format!("abfss://lake@{acct}.dfs.core.windows.net/{run}"),
            vec![],
            "no credential for Azure storage account \"devstoreaccount1\"",
        ),
    ];
    // "(HTTP 40": Azurite refuses with 403, and at times with 401 AuthorizationFailure.
    for (case, source, mut env, expected) in cases {
        // At info level the store logs every retry ("backing off"): there must be none.
        env.push(("EXECUTOR_LOG_LEVEL", "info"));
        let out = extract(&source, &wh, "wf_denied", &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        let report = stdout_json(&out);
        let error = report["sources"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{case}: {error}");
        assert!(
            error.contains(acct) && !error.contains("retr"),
            "{case}: {error}"
        );
        for secret in [wrong_key.as_str(), "sig=AAAA"] {
            assert!(
                !stderr.contains(secret) && !error.contains(secret),
                "{case}"
            );
        }
        assert!(!stderr.contains("backing off"), "{case}: {stderr}");
    }
}

async fn put_sales_day(loc: &location::Location, day: u64, batch: &RecordBatch) {
    let path = loc
        .prefix
        .clone()
        .join("sales")
        .join(format!("day=2024-01-{day:02}"))
        .join("part-0.parquet");
    loc.store
        .put(&path, PutPayload::from(parquet_bytes(batch)))
        .await
        .unwrap();
}

/// The statistics that merging partition sketches must give exactly as a whole-table pass
/// (top values: exact counts while a column has few distinct values).
fn exact_view(t: &nuvyn_executor::profile::TableProfile) -> Vec<String> {
    let mut out = vec![format!(
        "rows {:?} dup {:?} keys {:?}",
        t.row_count, t.duplicate_rows, t.candidate_keys
    )];
    for c in &t.columns {
        out.push(format!(
            "{} {} nullable={} nulls={} distinct={:?} min={:?} max={:?} zero={:?} neg={:?} len={:?}/{:?} top={:?}",
            c.column_name,
            c.data_type,
            c.is_nullable,
            c.null_count,
            c.distinct_count,
            c.min_value,
            c.max_value,
            c.zero_count,
            c.negative_count,
            c.min_length,
            c.max_length,
            c.top_values.iter().map(|v| (&v.value, v.count)).collect::<Vec<_>>(),
        ));
    }
    out
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a == b,
    }
}

/// A daily-partitioned table re-run after a day is added reads that day only and merges the
/// rest from the stored sketches; the result equals a full profile of the table (exact
/// statistics exactly, moments to 9 digits), and removed, changed and widened partitions are
/// handled.
async fn partitioned_reruns(source_root: String, warehouse: String, remote: bool) {
    let loc = location::parse(&source_root).unwrap();
    for day in 1..=4 {
        put_sales_day(&loc, day, &sales_day(day, 3000, false)).await;
    }
    let raw = |c: &mut nuvyn_executor::job::payload::CliJobArgs| c.samples = Some("raw".into());
    let run = |wh: String, full: bool| {
        let src = source_root.clone();
        async move {
            run_job_with(&[src], "wf_parts", Some("p1"), Some(&wh), |c| {
                raw(c);
                c.full = full;
            })
            .await
        }
    };
    let sales = |r: &nuvyn_executor::job::JobReport| {
        r.sources[0]
            .tables
            .iter()
            .find(|t| t.table_name == "sales")
            .cloned()
            .unwrap_or_else(|| panic!("{r:#?}"))
    };
    let counts = |read, reused, dropped| {
        Some(nuvyn_executor::profile::partitions::PartitionCounts {
            read,
            reused,
            dropped,
        })
    };
    let r1 = run(warehouse.clone(), false).await;
    assert_eq!(r1.status, RunStatus::Succeeded, "{r1:#?}");
    assert_eq!(sales(&r1).partitions, counts(4, 0, 0));
    let first_gets = r1.sources[0].requests.get;

    // A new day: only it is read.
    put_sales_day(&loc, 5, &sales_day(5, 3000, false)).await;
    let r2 = run(warehouse.clone(), false).await;
    assert_eq!(r2.status, RunStatus::Succeeded, "{r2:#?}");
    let merged = sales(&r2);
    assert_eq!(merged.partitions, counts(1, 4, 0));
    assert_eq!(merged.row_count, Some(15_000));
    if remote {
        let gets = r2.sources[0].requests.get;
        assert!(
            gets > 0 && gets * 4 <= first_gets,
            "one day of five read: {gets} GETs now, {first_gets} for four days"
        );
    }
    // The same lake profiled in full, partition by partition and as one table.
    let full_wh = format!("{warehouse}-full");
    let full = sales(&run(full_wh.clone(), true).await);
    assert_eq!(full.partitions, counts(5, 0, 0));
    let whole = run_job_at(
        std::slice::from_ref(&source_root),
        "wf_parts",
        Some("p1"),
        Some(&format!("{warehouse}-whole")),
    )
    .await;
    let whole = sales(&whole);
    assert_eq!(whole.partitions, None, "masked samples keep no sketches");
    for other in [&full, &whole] {
        assert_eq!(exact_view(&merged), exact_view(other));
        for (a, b) in merged.columns.iter().zip(&other.columns) {
            assert!(
                close(a.mean, b.mean),
                "{}: {:?} {:?}",
                a.column_name,
                a.mean,
                b.mean
            );
            assert!(close(a.stddev, b.stddev), "{}", a.column_name);
            assert_eq!(a.sample_values.len(), b.sample_values.len());
        }
    }
    // Quantiles come from a sample of 8,192 of the 15,000 values: the merged sketches give
    // the very sample a full partition-by-partition run draws, and each quantile's rank in
    // the real values is within the stated bound.
    let quantiles = |t: &nuvyn_executor::profile::TableProfile| -> Vec<Option<String>> {
        t.columns
            .iter()
            .map(|c| c.quantiles.as_ref().map(|q| q.0.clone()))
            .collect()
    };
    assert_eq!(quantiles(&merged), quantiles(&full));
    let days: Vec<RecordBatch> = (1..=5).map(|d| sales_day(d, 3000, false)).collect();
    let bound =
        nuvyn_executor::profile::sketch::share_bound(nuvyn_executor::profile::sketch::SAMPLE_SIZE);
    for (i, name) in [(0, "id"), (1, "amount")] {
        let mut values: Vec<f64> = days
            .iter()
            .flat_map(|b| {
                let c = nuvyn_executor::deltalake::arrow::compute::cast(
                    b.column(i),
                    &nuvyn_executor::deltalake::arrow::datatypes::DataType::Float64,
                )
                .unwrap();
                c.as_any()
                    .downcast_ref::<nuvyn_executor::deltalake::arrow::array::Float64Array>()
                    .unwrap()
                    .iter()
                    .flatten()
                    .collect::<Vec<_>>()
            })
            .collect();
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let col = merged
            .columns
            .iter()
            .find(|c| c.column_name == name)
            .unwrap();
        let q: serde_json::Value =
            serde_json::from_str(&col.quantiles.as_ref().unwrap().0).unwrap();
        assert_eq!(q["exact"], false, "{q}");
        for (key, rank) in [
            ("p05", 0.05),
            ("p25", 0.25),
            ("p50", 0.5),
            ("p75", 0.75),
            ("p95", 0.95),
        ] {
            let v = q[key].as_f64().unwrap();
            let below = values.partition_point(|x| *x < v) as f64 / n;
            let upto = values.partition_point(|x| *x <= v) as f64 / n;
            assert!(
                below - bound <= rank && rank <= upto + bound,
                "{name} {key} = {v}: rank {below}..{upto}, bound {bound}"
            );
        }
    }

    // The warehouse keeps one sketch per partition, each from the run that read it, and
    // the latest profile's rollup of them all.
    let w = Warehouse::new(location::parse(&warehouse).unwrap());
    let stored = |w: Warehouse| async move {
        w.select(
            "SELECT partition_path = '' AS rollup, count(*) AS n, \
             count(DISTINCT partition_path) AS paths, sum(row_count) AS total, \
             max(run_id) AS run, count(DISTINCT run_id) AS runs \
             FROM partition_sketches WHERE workflow_id = 'wf_parts' \
             GROUP BY partition_path = '' ORDER BY 1",
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r["n"].as_i64().unwrap(),
                r["paths"].as_i64().unwrap(),
                r["total"].as_i64().unwrap(),
                r["run"].as_str().unwrap().to_string(),
                r["runs"].as_i64().unwrap(),
            )
        })
        .collect::<Vec<_>>()
    };
    let latest = |a: &str, b: &str| a.max(b).to_string();
    // The superseded rollup was a file of its own: settle removed it by its statistics,
    // without reading it, and nothing else.
    let last_sketch_commit = |w: Warehouse| async move {
        use futures::StreamExt;
        let t = w
            .open(&nuvyn_executor::warehouse::PARTITION_SKETCHES)
            .await
            .unwrap()
            .unwrap();
        let info = t.history(Some(1)).next().await.unwrap().unwrap();
        (
            info.operation.clone().unwrap_or_default(),
            info.info
                .get(nuvyn_executor::warehouse::UNREAD_REMOVALS)
                .and_then(|v| v.as_i64()),
            info.info
                .get("operationMetrics")
                .and_then(|m| m["num_deleted_rows"].as_i64()),
        )
    };
    assert_eq!(
        last_sketch_commit(w.clone()).await,
        ("DELETE".to_string(), Some(1), Some(1))
    );
    // Before it, the run's one append: the new day's sketch and the rollup, two files.
    let append = {
        use futures::StreamExt;
        let t = w
            .open(&nuvyn_executor::warehouse::PARTITION_SKETCHES)
            .await
            .unwrap()
            .unwrap();
        let info = t.history(Some(2)).skip(1).next().await.unwrap().unwrap();
        let m = info.info["operationMetrics"].clone();
        (
            info.operation.clone().unwrap_or_default(),
            m["num_added_files"].as_i64(),
            m["num_added_rows"].as_i64(),
        )
    };
    assert_eq!(append, ("WRITE".to_string(), Some(2), Some(2)));
    let after_r2 = stored(w.clone()).await;
    assert_eq!(
        after_r2,
        vec![
            (5, 5, 15_000, latest(&r1.run_id, &r2.run_id), 2),
            (1, 1, 15_000, r2.run_id.clone(), 1)
        ]
    );

    // Another day: the rollup stands for the five unchanged days, and the result is still
    // the full profile's.
    put_sales_day(&loc, 7, &sales_day(7, 3000, false)).await;
    let r2b = sales(&run(warehouse.clone(), false).await);
    assert_eq!(r2b.partitions, counts(1, 5, 0));
    assert_eq!(r2b.row_count, Some(18_000));
    assert_eq!(
        last_sketch_commit(w.clone()).await,
        ("DELETE".to_string(), Some(1), Some(1))
    );
    let full = sales(&run(format!("{warehouse}-full1"), true).await);
    assert_eq!(exact_view(&r2b), exact_view(&full));
    assert_eq!(quantiles(&r2b), quantiles(&full));
    for (a, b) in r2b.columns.iter().zip(&full.columns) {
        assert!(close(a.mean, b.mean), "{}", a.column_name);
        assert_eq!(a.sample_values.len(), b.sample_values.len());
    }
    let after_r2b = stored(w.clone()).await;
    assert_eq!(
        (after_r2b[0].0, after_r2b[0].1, after_r2b[0].2),
        (6, 6, 18_000)
    );
    assert_eq!((after_r2b[1].0, after_r2b[1].2), (1, 18_000));

    // Unchanged: carried whole, every sketch kept as it was.
    let r3 = run(warehouse.clone(), false).await;
    assert_eq!(r3.sources[0].tables_carried, 1);
    assert_eq!(r3.sources[0].requests.get, 0);
    assert_eq!(stored(w.clone()).await, after_r2b);

    // A day removed and another rewritten: one read, three merged, one dropped.
    loc.store
        .delete(
            &loc.prefix
                .clone()
                .join("sales")
                .join("day=2024-01-01")
                .join("part-0.parquet"),
        )
        .await
        .unwrap();
    put_sales_day(&loc, 2, &sales_day(20, 1000, false)).await;
    let r4 = sales(&run(warehouse.clone(), false).await);
    assert_eq!(r4.partitions, counts(1, 4, 1));
    assert_eq!(r4.row_count, Some(13_000));
    let full = sales(&run(format!("{warehouse}-full3"), true).await);
    assert_eq!(exact_view(&r4), exact_view(&full));
    let after_r4 = stored(w.clone()).await;
    assert_eq!(
        (after_r4[0].0, after_r4[0].1, after_r4[0].2),
        (5, 5, 13_000)
    );
    assert_eq!((after_r4[1].0, after_r4[1].2), (1, 13_000));

    // A day with a new column changes the table's schema: every day is read again, and the
    // column is null where the days lack it.
    put_sales_day(&loc, 6, &sales_day(6, 500, true)).await;
    let r5 = sales(&run(warehouse.clone(), false).await);
    assert_eq!(r5.partitions, counts(6, 0, 0));
    let note = r5.columns.iter().find(|c| c.column_name == "note").unwrap();
    assert_eq!(note.null_count, 13_000);
    assert!(note.is_nullable);
    let full = sales(&run(format!("{warehouse}-full2"), true).await);
    assert_eq!(exact_view(&r5), exact_view(&full));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_sketches_local_disk() {
    let d = tmp();
    partitioned_reruns(
        d.path().join("lake").display().to_string(),
        d.path().join("wh").display().to_string(),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_sketches_azurite() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    partitioned_reruns(
        format!("{blob}/lake/{run}"),
        format!("{blob}/warehouse/{run}"),
        true,
    )
    .await;
}
