//! The HTTP API: router tests with `tower::ServiceExt::oneshot` for each endpoint and error
//! case, and a real socket with real jobs writing real Delta tables.

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nuvyn_executor::server::{AppState, ServerConfig, app};
use nuvyn_executor::storage::location;
use tower::ServiceExt;

const KEY: &str = "test-key-0123456789";

fn config(wh: &std::path::Path) -> ServerConfig {
    ServerConfig {
        warehouse: location::parse(&wh.display().to_string()).unwrap(),
        api_key: Some(KEY.into()),
        allow_sources: Vec::new(),
        allow_local: true,
        allow_endpoints: Vec::new(),
        allow_emulator: false,
        max_files: Some(1000),
        max_concurrent_jobs: 1,
        max_queued_jobs: 2,
        body_limit: 64 * 1024,
        notebook_body_limit: 256 * 1024,
        shutdown_timeout: std::time::Duration::from_secs(60),
        cors_origins: Vec::new(),
        migrate: Default::default(),
        limits: Default::default(),
    }
}

async fn start(cfg: ServerConfig) -> AppState {
    AppState::start(cfg).await.unwrap()
}

/// A source with `n` tables (one CSV folder each): long enough a job to act on it while
/// it runs.
fn big_lake(dir: &std::path::Path, n: usize) {
    for i in 0..n {
        let mut text = String::from("id,name,score\n");
        for r in 0..200 {
            text.push_str(&format!("{r},name{r},{}.5\n", r % 17));
        }
        write(&dir.join(format!("t{i:03}/part-0.csv")), text);
    }
}

/// Waits until a job has the given status (or any final one when `None`).
async fn wait_status(router: &axum::Router, id: &str, want: &str) -> serde_json::Value {
    for _ in 0..1200 {
        let (_, v, _) = call(router, "GET", &format!("/jobs/{id}"), None, Some(KEY)).await;
        if v["status"] == want {
            return v;
        }
        assert!(
            matches!(v["status"].as_str(), Some("created" | "running")),
            "{id} ended before being {want}: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("job {id} never became {want}");
}

/// Creates a job that must be accepted; its id.
async fn create(router: &axum::Router, body: &str) -> String {
    let (s, v, _) = call(router, "POST", "/jobs/create", Some(body), Some(KEY)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["job_id"].as_str().unwrap().to_string()
}

fn job_body(workflow_id: &str, path: &std::path::Path) -> String {
    serde_json::json!({"workflow_id": workflow_id, "data_source_path": path.display().to_string()})
        .to_string()
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (StatusCode, serde_json::Value, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req
        .header("content-type", "application/json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json, headers)
}

async fn wait_done(router: &axum::Router, id: &str) -> serde_json::Value {
    for _ in 0..600 {
        let (s, v, _) = call(router, "GET", &format!("/jobs/{id}"), None, Some(KEY)).await;
        assert_eq!(s, StatusCode::OK);
        if !matches!(v["status"].as_str(), Some("created" | "running")) {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_their_errors() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let wh = d.path().join("wh");
    let router = app(start(config(&wh)).await);

    // Open and closed endpoints.
    let (s, v, _) = call(&router, "GET", "/health", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    for (method, uri) in [
        ("GET", "/info"),
        ("GET", "/jobs"),
        ("POST", "/jobs/create"),
        ("GET", "/jobs/x"),
        ("DELETE", "/jobs/x"),
        ("GET", "/openapi.json"),
        ("GET", "/workflows/w/metadata"),
        ("GET", "/workflows/w/changes"),
        ("GET", "/workflows/w/notebooks"),
        ("POST", "/workflows/w/mappings/check"),
        ("GET", "/nope"),
    ] {
        let (s, v, _) = call(&router, method, uri, Some("{}"), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(v["error"], "unauthorized");
        let (s, _, _) = call(&router, method, uri, Some("{}"), Some("wrong")).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} with a wrong key"
        );
    }
    let (s, v, _) = call(&router, "GET", "/info", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["version"], nuvyn_executor::VERSION);
    assert_eq!(v["schema_version"], v["binary_schema_version"]);

    // The OpenAPI document is served and describes what the router answers.
    let (s, doc, _) = call(&router, "GET", "/openapi.json", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{:?}", paths.keys());
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            // Every documented route exists: without a token it is 401, never 404/405.
            let uri = path
                .replace("{job_id}", "job_x")
                .replace("{workflow_id}", "w")
                .replace("{version}", "1")
                .replace("{from}", "1")
                .replace("{to}", "2")
                .replace("{workflow_version}", "1");
            let (s, _, _) = call(&router, &method.to_uppercase(), &uri, None, None).await;
            let open = path == "/health";
            assert_eq!(
                s,
                if open {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                },
                "{method} {uri}"
            );
        }
    }

    // Bad bodies are 400 with the field named, never 500.
    let cases = [
        (
            r#"{"data_source_path": "/x"}"#,
            "Missing required field: workflow_id",
        ),
        ("{not json", "malformed JSON"),
        (
            r#"{"workflow_id": 5, "data_source_path": "/x"}"#,
            "payload field `workflow_id` must be a string",
        ),
        (
            r#"{"workflow_id": "w'1", "data_source_path": "/x"}"#,
            "invalid workflow_id",
        ),
        (r#"{"workflow_id": "w"}"#, "no data source"),
        (
            r#"{"workflow_id": "w", "data_source_path": "s3://b/x"}"#,
            "data_source_path: unsupported location",
        ),
        (
            r#"{"workflow_id": "w", "data_source_path": "/x", "profile": {"samples": "all"}}"#,
            "invalid profile.samples",
        ),
        (
            r#"{"workflow_id": "w", "data_source_path": "/x", "profile": {"sample": {"fraction": 1.5}}}"#,
            "invalid profile.sample.fraction",
        ),
    ];
    for (body, expected) in cases {
        let (s, v, _) = call(&router, "POST", "/jobs/create", Some(body), Some(KEY)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(v["error"], "bad_request");
        assert!(
            v["message"].as_str().unwrap().contains(expected),
            "{body}: {v}"
        );
    }
    let big = format!(
        r#"{{"workflow_id": "w", "data_source_path": "{}"}}"#,
        "x".repeat(70_000)
    );
    let (s, _, _) = call(&router, "POST", "/jobs/create", Some(&big), Some(KEY)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // A job: created, then succeeded, with its result; listed; its metadata served.
    let body = serde_json::json!({
        "job_type": "metadata_extraction",
        "data_source_path": lake.display().to_string(),
        "workflow_id": "top",
        "job_metadata": {"workflow_id": "api_wf", "source_id": "api_src"}
    })
    .to_string();
    let (s, v, _) = call(&router, "POST", "/jobs/create", Some(&body), Some(KEY)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["message"].as_str()),
        (Some("created"), Some("Job created successfully"))
    );
    let id = v["job_id"].as_str().unwrap().to_string();
    let done = wait_done(&router, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["workflow_id"], "api_wf");
    assert_eq!(done["result"]["sources"][0]["tables"][0]["row_count"], 5);
    let (_, list, _) = call(
        &router,
        "GET",
        "/jobs?workflow_id=api_wf&status=succeeded",
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["jobs"][0]["job_id"], id.as_str());
    let (_, none, _) = call(&router, "GET", "/jobs?workflow_id=other", None, Some(KEY)).await;
    assert_eq!(none["total"], 0);
    for (bad, named) in [
        ("/jobs?page_size=0", "page_size"),
        ("/jobs?page_size=501", "page_size"),
        ("/jobs?status=done", "status"),
        ("/jobs?workflow_id=a'b", "workflow_id"),
        ("/jobs?page=x", "page"),
        ("/workflows/w/mappings/abc", "workflow_version"),
        (
            "/workflows/w/mappings/1?notebook_version=one",
            "notebook_version",
        ),
    ] {
        let (s, v, _) = call(&router, "GET", bad, None, Some(KEY)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"], "bad_request", "{bad}: {v}");
        assert!(v["message"].as_str().unwrap().contains(named), "{bad}: {v}");
    }
    let (s, v, _) = call(&router, "PATCH", "/jobs/job_x", None, Some(KEY)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (s, v, _) = call(
        &router,
        "GET",
        &format!("/jobs?page={}", usize::MAX),
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["jobs"], serde_json::json!([]));
    let (s, meta, _) = call(
        &router,
        "GET",
        "/workflows/api_wf/metadata?source_id=api_src",
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let people = &meta["sources"][0]["tables"][0];
    assert_eq!(people["table_name"], "people");
    // The profile, with its JSON statistics nested as values.
    assert!(
        people["quality"]["score"].as_f64().unwrap() > 0.0,
        "{people}"
    );
    assert!(people["candidate_keys"].is_array(), "{people}");
    let first = &people["columns"][0];
    assert!(
        first["top_values"][0]["count"].as_i64().unwrap() >= 1,
        "{first}"
    );
    assert!(first["null_fraction"].is_number(), "{first}");
    let (s, _, _) = call(
        &router,
        "GET",
        "/workflows/bad'id/metadata",
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A first run has nothing to compare with: no changes; a bad time is named.
    let (s, v, _) = call(
        &router,
        "GET",
        "/workflows/api_wf/changes?source_id=api_src&since=2020-01-01",
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], serde_json::json!([]));
    let (s, v, _) = call(
        &router,
        "GET",
        "/workflows/api_wf/changes?since=yesterday",
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"].as_str().unwrap_or_default().contains("since"),
        "{v}"
    );

    // Unknown job, finished job cannot be cancelled, unknown endpoint.
    let (s, v, _) = call(&router, "GET", "/jobs/job_nope", None, Some(KEY)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _, _) = call(&router, "DELETE", "/jobs/job_nope", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(&router, "DELETE", &format!("/jobs/{id}"), None, Some(KEY)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v, _) = call(&router, "GET", "/nope", None, Some(KEY)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // The job's state is in executor_runs: one row, final, and a new server (a restart)
    // answers for it from there, with the sources it wrote.
    let rows = sql_json(
        &wh,
        &format!("SELECT run_mode, status, source_id FROM executor_runs WHERE run_id = '{id}'"),
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_mode": "api", "status": "succeeded", "source_id": "api_src"}])
    );
    drop(router);
    let router = app(start(config(&wh)).await);
    let (s, again, _) = call(&router, "GET", &format!("/jobs/{id}"), None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    for k in [
        "job_id",
        "workflow_id",
        "source_id",
        "status",
        "started_at",
        "finished_at",
    ] {
        assert_eq!(again[k], done[k], "{k}: {again} vs {done}");
    }
    assert_eq!(again["result"]["sources"][0]["tables_found"], 1, "{again}");
    assert_eq!(again["result"]["sources"][0]["files_found"], 1, "{again}");
    let (_, list, _) = call(&router, "GET", "/jobs?workflow_id=api_wf", None, Some(KEY)).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["jobs"][0]["status"], "succeeded");
    let (s, _, _) = call(&router, "DELETE", &format!("/jobs/{id}"), None, Some(KEY)).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A re-run through the API: once its final state is recorded, the first run's rows go
    // (the clean-up follows the record, so it is waited for, not raced).
    let (_, v, _) = call(&router, "POST", "/jobs/create", Some(&body), Some(KEY)).await;
    let again = v["job_id"].as_str().unwrap().to_string();
    assert_eq!(wait_done(&router, &again).await["status"], "succeeded");
    let q = "SELECT DISTINCT run_id FROM tables WHERE workflow_id = 'api_wf'";
    let mut runs = sql_json(&wh, q, &[]);
    for _ in 0..120 {
        if runs.as_array().unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        runs = sql_json(&wh, q, &[]);
    }
    assert_eq!(runs, serde_json::json!([{"run_id": again}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_limited_and_the_queue_is_bounded() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let mut cfg = config(&d.path().join("wh"));
    cfg.allow_local = false;
    cfg.allow_sources = vec!["abfss://lake@acct.dfs.core.windows.net/raw".into()];
    let router = app(start(cfg).await);
    for (path, expected) in [
        (lake.display().to_string(), "local paths are not allowed"),
        (
            "abfss://lake@acct.dfs.core.windows.net/other?sig=S3CRET".to_string(),
            "is not under an allowed prefix",
        ),
    ] {
        let body = serde_json::json!({"workflow_id": "w", "data_source_path": path}).to_string();
        let (s, v, _) = call(&router, "POST", "/jobs/create", Some(&body), Some(KEY)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(expected) && !msg.contains("S3CRET"), "{msg}");
    }

    // One job runs, two wait, the next is refused with Retry-After; cancelling a waiting job
    // frees its place.
    let router = app(start(config(&d.path().join("wh2"))).await);
    let body =
        serde_json::json!({"workflow_id": "q", "data_source_path": lake.display().to_string()})
            .to_string();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        let (s, v, h) = call(&router, "POST", "/jobs/create", Some(&body), Some(KEY)).await;
        match s {
            StatusCode::OK => accepted.push(v["job_id"].as_str().unwrap().to_string()),
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert_eq!(h.get("retry-after").unwrap(), "5");
                assert_eq!(v["error"], "too_many_jobs");
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert!(
        refused >= 1 && accepted.len() >= 2,
        "{} accepted, {refused} refused",
        accepted.len()
    );
    let last = accepted.last().unwrap().clone();
    let (s, v, _) = call(&router, "DELETE", &format!("/jobs/{last}"), None, Some(KEY)).await;
    if s == StatusCode::OK {
        assert_eq!(v["status"], "cancelled");
    }
    let mut finished = 0;
    for id in &accepted {
        let v = wait_done(&router, id).await;
        assert!(
            matches!(v["status"].as_str(), Some("succeeded" | "cancelled")),
            "{v}"
        );
        finished += 1;
    }
    assert_eq!(finished, accepted.len(), "no job lost");
}

/// A minimal HTTP/1.1 client (one request per connection), so the socket tests exercise a
/// real listener without another client library.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Up to a minute: a server readies its warehouse before it listens, and a fresh one on
    // Azurite takes the schema's migrations first (over 10 s once, on a loaded machine).
    for _ in 0..1200 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            let (head, rest) = out.split_once("\r\n\r\n").unwrap();
            let code: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            return (
                code,
                serde_json::from_str(rest).unwrap_or(serde_json::Value::Null),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no server at {addr}");
}

async fn http_wait(addr: std::net::SocketAddr, id: &str, want: Option<&str>) -> serde_json::Value {
    for _ in 0..2400 {
        let (_, v) = http(addr, "GET", &format!("/jobs/{id}"), "").await;
        let st = v["status"].as_str().unwrap_or_default();
        match want {
            Some(w) if st == w => return v,
            None if st != "created" && st != "running" => return v,
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("job {id} never became {want:?}");
}

/// Over a real socket: the server takes a job, runs it, and its rows are in Delta; the
/// shutdown then waits for running jobs and records queued ones as interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_socket_serves_real_jobs_and_drains_on_shutdown() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let big = d.path().join("big");
    big_lake(&big, 12);
    let wh = d.path().join("wh");
    let state = start(config(&wh)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nuvyn_executor::server::serve_on(state, listener, async {
        let _ = stop_rx.await;
    }));
    let (code, v) = http(addr, "POST", "/jobs/create", &job_body("sock_wf", &lake)).await;
    assert_eq!(code, 200, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    assert_eq!(http_wait(addr, &id, None).await["status"], "succeeded");
    let rows = sql_json(
        &wh,
        "SELECT run_mode, status FROM executor_runs WHERE workflow_id = 'sock_wf'",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_mode": "api", "status": "succeeded"}])
    );

    // One job running (a longer one), two waiting; then the shutdown.
    let mut ids = Vec::new();
    for wf in ["drain_a", "drain_b", "drain_c"] {
        let (code, v) = http(addr, "POST", "/jobs/create", &job_body(wf, &big)).await;
        assert_eq!(code, 200, "{v}");
        ids.push(v["job_id"].as_str().unwrap().to_string());
    }
    http_wait(addr, &ids[0], Some("running")).await;
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let rows = sql_json(
        &wh,
        "SELECT run_id, status, error_message FROM executor_runs WHERE workflow_id LIKE 'drain_%' ORDER BY run_id",
        &[],
    );
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    assert_eq!(rows[0]["run_id"], ids[0].as_str());
    assert_eq!(
        rows[0]["status"], "succeeded",
        "the running job finished: {rows}"
    );
    for r in &rows.as_array().unwrap()[1..] {
        assert_eq!(r["status"], "failed", "{rows}");
        assert_eq!(
            r["error_message"],
            "interrupted: the server shut down before the job started"
        );
    }
    let tables = sql_json(
        &wh,
        "SELECT workflow_id, COUNT(*) AS n FROM tables WHERE workflow_id LIKE 'drain_%' GROUP BY workflow_id",
        &[],
    );
    assert_eq!(
        tables,
        serde_json::json!([{"workflow_id": "drain_a", "n": 12}])
    );
}

/// A shutdown that outlasts its timeout stops the running job before it writes and records
/// it as interrupted; a running job can also be cancelled on request, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_jobs_are_cancelled_and_interrupted_without_writing() {
    let d = tmp();
    let big = d.path().join("big");
    big_lake(&big, 40);
    let wh = d.path().join("wh");
    let state = start(config(&wh)).await;
    let router = app(state.clone());

    let id = create(&router, &job_body("cancel_wf", &big)).await;
    wait_status(&router, &id, "running").await;
    let (s, v, _) = call(&router, "DELETE", &format!("/jobs/{id}"), None, Some(KEY)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["cancel_requested"], true);
    let v = wait_status(&router, &id, "cancelled").await;
    assert_eq!(v["error"], "cancelled before its results were written");

    let id2 = create(&router, &job_body("timeout_wf", &big)).await;
    wait_status(&router, &id2, "running").await;
    state.drain(std::time::Duration::from_millis(0)).await;
    let (_, v, _) = call(&router, "GET", &format!("/jobs/{id2}"), None, Some(KEY)).await;
    assert_eq!(v["status"], "failed");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("interrupted: still running"),
        "{v}"
    );
    let (s, v, _) = call(
        &router,
        "POST",
        "/jobs/create",
        Some(&job_body("late", &big)),
        Some(KEY),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );

    // Give the stopped job time to reach its write, then check nothing was written.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let rows = sql_json(
        &wh,
        "SELECT run_id, status FROM executor_runs ORDER BY run_id",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_id": id, "status": "cancelled"}, {"run_id": id2, "status": "failed"}])
    );
    for t in ["sources", "tables", "columns"] {
        assert_eq!(
            sql_json(&wh, &format!("SELECT COUNT(*) AS n FROM {t}"), &[]),
            serde_json::json!([{"n": 0}]),
            "{t}"
        );
    }
}

/// Notebooks and mappings over HTTP: the same store as `notebook`/`mapping`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notebooks_and_mappings() {
    let d = tmp();
    let router = app(start(config(&d.path().join("wh"))).await);
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/examples");
    let text = std::fs::read_to_string(ex.join("sales_analysis.ipynb")).unwrap();
    let mapping: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ex.join("sales_analysis.mapping.json")).unwrap(),
    )
    .unwrap();
    let workflow: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ex.join("sales_analysis.workflow.json")).unwrap(),
    )
    .unwrap();
    let base = "/workflows/nb_wf";

    let (s, v, _) = call(
        &router,
        "POST",
        &format!("{base}/notebooks?created_by=ana"),
        Some(&text),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["notebook_version"], 1);
    let (_, v, _) = call(
        &router,
        "POST",
        &format!("{base}/notebooks"),
        Some(&text),
        Some(KEY),
    )
    .await;
    assert_eq!(
        v["notebook_version"], 1,
        "identical content is not a new version: {v}"
    );

    // An edited cell makes version 2.
    let mut nb: serde_json::Value = serde_json::from_str(&text).unwrap();
    nb["cells"][3]["source"] = serde_json::json!(["sales = sales.dropna()\n"]);
    let edited = nb.to_string();
    let (_, v, _) = call(
        &router,
        "POST",
        &format!("{base}/notebooks"),
        Some(&edited),
        Some(KEY),
    )
    .await;
    assert_eq!(v["notebook_version"], 2, "{v}");
    let (s, v, _) = call(
        &router,
        "GET",
        &format!("{base}/notebooks"),
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["created_by"], "ana");

    // Get by number and latest: the stored text, its number in a header.
    let (s, got, h) = call(
        &router,
        "GET",
        &format!("{base}/notebooks/1"),
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.get("x-notebook-version").unwrap(), "1");
    assert_eq!(h.get("content-type").unwrap(), "application/x-ipynb+json");
    assert_eq!(
        got["cells"],
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["cells"]
    );
    let (_, got, h) = call(
        &router,
        "GET",
        &format!("{base}/notebooks/latest"),
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(h.get("x-notebook-version").unwrap(), "2");
    assert_eq!(got["cells"][3]["source"], nb["cells"][3]["source"]);
    let (s, v, _) = call(
        &router,
        "GET",
        &format!("{base}/notebooks/1/diff/2"),
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let changed_id = nb["cells"][3]["id"].as_str().unwrap();
    assert_eq!(v["changed"], serde_json::json!([changed_id]), "{v}");

    // Mappings: stored against version 2 (checked against the workflow), read back; a
    // later workflow version without its own falls back, marked stale.
    let body = serde_json::json!({"mapping": mapping, "workflow": workflow}).to_string();
    let (s, v, _) = call(
        &router,
        "PUT",
        &format!("{base}/mappings/1"),
        Some(&body),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["notebook_version"].as_i64()),
        (Some("valid"), Some(2))
    );
    let (s, v, _) = call(
        &router,
        "GET",
        &format!("{base}/mappings/1"),
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["mapping"]["cell_to_operator"],
        mapping["cell_to_operator"]
    );
    let (_, v, _) = call(
        &router,
        "GET",
        &format!("{base}/mappings/3"),
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(v["fallback_from_workflow_version"], 1, "{v}");
    // With the new workflow definition, the operators it no longer has are named.
    let mut newer = workflow.clone();
    let gone = newer["operators"][0]["operatorID"].clone();
    newer["operators"].as_array_mut().unwrap().remove(0);
    let resolve = serde_json::json!({"workflow": newer}).to_string();
    let (s, v, _) = call(
        &router,
        "POST",
        &format!("{base}/mappings/3/resolve"),
        Some(&resolve),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["fallback_from_workflow_version"], 1, "{v}");
    assert_eq!(v["missing_operators"], serde_json::json!([gone]), "{v}");
    let (s, v, _) = call(
        &router,
        "POST",
        &format!("{base}/mappings/3/resolve"),
        Some("{\"workflow\": {\"no\": []}}"),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("operators"), "{v}");
    let (s, v, _) = call(
        &router,
        "POST",
        &format!("{base}/mappings/check"),
        Some(&body),
        Some(KEY),
    )
    .await;
    assert_eq!(
        (s, v["valid"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );

    // Errors: each named, each in the one error format.
    let mut bad_mapping = mapping.clone();
    bad_mapping["cell_to_operator"]["load"] = serde_json::json!(["NoSuchOperator-9"]);
    bad_mapping["operator_to_cell"]["NoSuchOperator-9"] = serde_json::json!(["load"]);
    let bad_body = serde_json::json!({"mapping": bad_mapping, "workflow": workflow}).to_string();
    let bad_cell = {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["cells"][2]["cell_type"] = serde_json::json!("sql");
        v.to_string()
    };
    let too_big = format!("{{\"cells\": [], \"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let cases: Vec<(&str, String, Option<String>, StatusCode, &str)> = vec![
        (
            "POST",
            format!("{base}/notebooks"),
            Some(bad_cell),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cells[2].cell_type",
        ),
        (
            "POST",
            format!("{base}/notebooks"),
            Some("{".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not JSON",
        ),
        (
            "POST",
            format!("{base}/notebooks"),
            Some(too_big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            "POST",
            "/workflows/bad'id/notebooks".into(),
            Some(text.clone()),
            StatusCode::BAD_REQUEST,
            "invalid workflow_id",
        ),
        (
            "GET",
            format!("{base}/notebooks/9"),
            None,
            StatusCode::NOT_FOUND,
            "no notebook version 9",
        ),
        (
            "GET",
            format!("{base}/notebooks/zero"),
            None,
            StatusCode::BAD_REQUEST,
            "version must be a version number",
        ),
        (
            "GET",
            "/workflows/other/notebooks/latest".into(),
            None,
            StatusCode::NOT_FOUND,
            "has no notebook",
        ),
        (
            "PUT",
            format!("{base}/mappings/1"),
            Some(bad_body.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "NoSuchOperator-9",
        ),
        (
            "POST",
            format!("{base}/mappings/check"),
            Some(bad_body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "NoSuchOperator-9",
        ),
        (
            "PUT",
            format!("{base}/mappings/0"),
            Some(body.clone()),
            StatusCode::BAD_REQUEST,
            "workflow_version must be 1 or more",
        ),
        (
            "PUT",
            format!("{base}/mappings/1"),
            Some("{\"mapping\": 1, \"extra\": 2}".into()),
            StatusCode::BAD_REQUEST,
            "malformed mapping request",
        ),
        (
            "GET",
            "/workflows/other/mappings/1".into(),
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
    ];
    for (method, uri, body, status, expected) in cases {
        let (s, v, _) = call(&router, method, &uri, body.as_deref(), Some(KEY)).await;
        assert_eq!(s, status, "{method} {uri}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(expected),
            "{method} {uri}: {v}"
        );
    }
}

/// The binary: `serve` killed outright leaves queued and running jobs behind; the next
/// server marks them failed (interrupted) at start-up and answers for them. SIGTERM drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_binary_recovers_after_a_kill_and_drains_on_sigterm() {
    let d = tmp();
    let big = d.path().join("big");
    big_lake(&big, 40);
    let small = d.path().join("small");
    write(&small.join("people.csv"), PEOPLE_CSV);
    let wh = d.path().join("wh");
    let spawn = |extra: &[&str]| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = bin_std()
            .args([
                "serve",
                "--allow-local",
                "--max-concurrent-jobs",
                "1",
                "--listen",
            ])
            .arg(addr.to_string())
            .arg("--warehouse")
            .arg(&wh)
            .args(extra)
            .env("NUVYN_API_KEY", KEY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, addr)
    };

    let (mut child, addr) = spawn(&[]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let (code, v) = http(
            addr,
            "POST",
            "/jobs/create",
            &job_body(&format!("kill_{i}"), &big),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        ids.push(v["job_id"].as_str().unwrap().to_string());
    }
    http_wait(addr, &ids[0], Some("running")).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let (child, addr) = spawn(&["--shutdown-timeout-secs", "120"]);
    let (code, info) = http(addr, "GET", "/info", "").await;
    assert_eq!(code, 200);
    assert_eq!(info["jobs"]["recovered_as_interrupted"], 3, "{info}");
    for id in &ids {
        let (code, v) = http(addr, "GET", &format!("/jobs/{id}"), "").await;
        assert_eq!(code, 200);
        assert_eq!(v["status"], "failed", "{v}");
        assert_eq!(v["error"], nuvyn_executor::server::journal::INTERRUPTED);
    }
    let (_, list) = http(addr, "GET", "/jobs?status=failed", "").await;
    assert_eq!(list["total"], 3);
    // Pages, newest first.
    let mut pages = Vec::new();
    for n in [1, 2] {
        let uri = format!("/jobs?status=failed&page_size=2&page={n}");
        pages.push(http(addr, "GET", &uri, "").await.1);
    }
    let ids_of = |v: &serde_json::Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (p1, p2) = (&pages[0], &pages[1]);
    assert_eq!(ids_of(p1), [ids[2].clone(), ids[1].clone()]);
    assert_eq!(ids_of(p2), [ids[0].clone()]);
    assert_eq!(
        (p2["total"].as_u64(), p2["page"].as_u64()),
        (Some(3), Some(2))
    );

    // SIGTERM: the running job finishes, the waiting one is recorded, the process exits 0.
    let (_, a) = http(addr, "POST", "/jobs/create", &job_body("term_a", &small)).await;
    let (_, b) = http(addr, "POST", "/jobs/create", &job_body("term_b", &small)).await;
    let (a, b) = (
        a["job_id"].as_str().unwrap().to_string(),
        b["job_id"].as_str().unwrap().to_string(),
    );
    http_wait(addr, &a, Some("running")).await;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let rows = sql_json(
        &wh,
        "SELECT run_id, status FROM executor_runs WHERE workflow_id LIKE 'term_%' ORDER BY run_id",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_id": a, "status": "succeeded"}, {"run_id": b, "status": "failed"}])
    );
}

/// The API end to end on Azurite: source and warehouse in the emulator, credentials from
/// the server's environment, state read back by a restarted server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_on_azurite() {
    let Some(blob) = azurite() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let lake = format!("{blob}/lake/api_{run}");
    let wh = format!("{blob}/warehouse/api_{run}");
    let env = [
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("AZURE_STORAGE_ENDPOINT", blob.as_str()),
    ];
    // Upload through the emulator with the SDK-made SAS.
    let root = format!("{lake}?{}", sas(&["container", "lake"]));
    let loc = location::parse(&root).unwrap();
    for (rel, body) in [
        ("people.csv", PEOPLE_CSV.as_bytes()),
        (
            "orders/part-0.csv",
            b"order_id,amount\n1,10.5\n2,20\n".as_slice(),
        ),
    ] {
        let p = rel.split('/').fold(loc.prefix.clone(), |p, s| p.join(s));
        object_store::ObjectStoreExt::put(
            &loc.store,
            &p,
            object_store::PutPayload::from(body.to_vec()),
        )
        .await
        .unwrap();
    }
    let spawn = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = bin_std()
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--warehouse",
                &wh,
                "--allow-source",
                &format!("{blob}/lake/"),
                "--allow-emulator",
            ])
            .env("NUVYN_API_KEY", KEY)
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (child, addr)
    };
    let (mut child, addr) = spawn();
    let body =
        serde_json::json!({"workflow_id": "az_api", "source_id": "s1", "data_source_path": lake})
            .to_string();
    let (code, v) = http(addr, "POST", "/jobs/create", &body).await;
    assert_eq!(code, 200, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    let done = http_wait(addr, &id, None).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (code, v) = http(
        addr,
        "POST",
        "/jobs/create",
        &job_body("az_api", std::path::Path::new("/etc")),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, addr) = spawn();
    let (code, v) = http(addr, "GET", &format!("/jobs/{id}"), "").await;
    assert_eq!(code, 200);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["result"]["sources"][0]["tables_found"], 2, "{v}");
    let (_, meta) = http(addr, "GET", "/workflows/az_api/metadata?source_id=s1", "").await;
    let names: Vec<&str> = meta["sources"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "people"], "{meta}");
    child.kill().unwrap();
    child.wait().unwrap();
    let rows = sql_json_env(
        &wh,
        "SELECT run_id, run_mode, status FROM executor_runs",
        &[],
        &env,
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_id": id, "run_mode": "api", "status": "succeeded"}])
    );
}

#[test]
fn serve_refuses_an_open_non_loopback_address() {
    let out = bin()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("NUVYN_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without NUVYN_API_KEY"));
}

/// No CORS headers unless origins are configured; then only for those origins, and a
/// preflight needs no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_configured_origins() {
    let d = tmp();
    let send = |router: axum::Router, method: &'static str, origin: &'static str| async move {
        let mut req = Request::builder()
            .method(method)
            .uri("/info")
            .header("origin", origin);
        if method != "OPTIONS" {
            req = req.header("authorization", format!("Bearer {KEY}"));
        }
        let req = req.body(Body::empty()).unwrap();
        router.oneshot(req).await.unwrap()
    };
    let closed = app(start(config(&d.path().join("wh"))).await);
    let r = send(closed.clone(), "GET", "https://app.example.com").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let mut cfg = config(&d.path().join("wh"));
    cfg.cors_origins = vec!["https://app.example.com".into()];
    let open = app(start(cfg).await);
    let r = send(open.clone(), "GET", "https://app.example.com").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    let r = send(open.clone(), "OPTIONS", "https://app.example.com").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().get("access-control-allow-methods").is_some());
    let r = send(open, "GET", "https://evil.example.com").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
