//! Azure-only behaviour against Azurite: secrets never leave the process, faults are
//! survived through retries, concurrent writers never lose a commit, listings page.
//! Every test needs the emulator that `ci/test.sh` starts (see `common::azurite`).

mod common;

use common::*;
use futures::TryStreamExt;
use nuvyn_executor::location;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn out_text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Both spellings of a SAS signature: as it appears in the URL and decoded.
fn sig_forms(sas: &str) -> Vec<String> {
    let raw = sas
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .unwrap()
        .to_string();
    let decoded: String = url::form_urlencoded::parse(format!("s={raw}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    vec![raw, decoded]
}

/// Every object under a location, read back whole.
async fn all_bytes(root: &str) -> Vec<(String, Vec<u8>)> {
    let loc = location::parse(root).unwrap();
    let metas: Vec<_> = loc
        .store
        .list(Some(&loc.prefix))
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for m in metas {
        let b = loc
            .store
            .get(&m.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((m.location.to_string(), b.to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_secrets_reach_no_output_log_or_table() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let loc = location::parse(&format!("{blob}/lake/{run}")).unwrap();
    for (name, body) in [
        ("a/people.csv", PEOPLE_CSV),
        ("b/people.jsonl", PEOPLE_NDJSON),
    ] {
        let p = name.split('/').fold(loc.prefix.clone(), |p, s| p.join(s));
        loc.store
            .put(&p, PutPayload::from(body.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let lake_sas = sas(&["container", "lake"]);
    let wh_sas = sas(&["container", "warehouse"]);
    let account_sas = sas(&["account"]);
    let mut secrets: Vec<String> = [&lake_sas, &wh_sas, &account_sas]
        .iter()
        .flat_map(|s| sig_forms(s))
        .collect();
    secrets.push(AZURITE_KEY.to_string());
    let warehouse = format!("{blob}/warehouse/{run}?{wh_sas}");
    // Two sources: one with the SAS in its URL, one with credentials in storage_options.
    let payload = serde_json::json!({
        "job_metadata": {"workflow_id": "wf_secret"},
        "sources": [
            {"source_id": "a", "data_source_path": format!("{blob}/lake/{run}/a?{lake_sas}")},
            {"source_id": "b", "data_source_path": format!("{blob}/lake/{run}/b"),
             "storage_options": {"sas_token": account_sas, "account_key": AZURITE_KEY}},
            {"source_id": "c", "data_source_path": format!("{blob}/lake/{run}/missing?{lake_sas}")}
        ]
    });
    let mut seen = String::new();
    for format in ["json", "text"] {
        let out = bin()
            .env("NUVYN_JOB_PAYLOAD", payload.to_string())
            .env("EXECUTOR_LOG_LEVEL", "trace")
            .args(["--log-format", format, "extract", "--warehouse", &warehouse])
            .args(["--output", "json"])
            .output()
            .unwrap();
        // Source c does not exist: a partial run, with its error (and URL) in the output.
        assert_eq!(out.status.code(), Some(3), "{}", out_text(&out));
        seen.push_str(&out_text(&out));
    }
    assert!(
        seen.contains("source path not found"),
        "the failing source is reported"
    );
    assert!(seen.contains("DEBUG") || seen.contains("\"level\":\"DEBUG\""));
    for q in [
        "SELECT * FROM sources",
        "SELECT * FROM tables",
        "SELECT * FROM columns",
        "SELECT * FROM executor_runs",
    ] {
        let rows = sql_json(&warehouse, q, &[]);
        assert!(!rows.as_array().unwrap().is_empty(), "{q}");
        seen.push_str(&rows.to_string());
    }
    let out = bin()
        .args([
            "query",
            "--workflow-id",
            "wf_secret",
            "--warehouse",
            &warehouse,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    seen.push_str(&out_text(&out));
    assert!(
        seen.contains(&format!("{blob}/lake/{run}/a")),
        "paths are kept, without queries"
    );
    // The Delta tables themselves: every log entry and data file.
    let mut files = 0;
    for (name, bytes) in all_bytes(&format!("{blob}/warehouse/{run}")).await {
        files += 1;
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{name} holds a secret");
        }
    }
    assert!(files > 8, "{files} warehouse files checked");
    for s in &secrets {
        if let Some(i) = seen.find(s.as_str()) {
            let from = seen.floor_char_boundary(i.saturating_sub(600));
            panic!(
                "secret {s:.6}… leaked here: {}",
                &seen[from..seen.ceil_char_boundary(i + 100)]
            );
        }
    }
}
