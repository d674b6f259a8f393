//! The HTTP API: router tests with `tower::ServiceExt::oneshot` for each endpoint and error
//! case, and a real socket with real jobs writing real Delta tables.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use nuvyn_executor::location;
use nuvyn_executor::server::{AppState, ServerConfig, app};
use tower::ServiceExt;

const KEY: &str = "test-key-0123456789";

fn config(wh: &std::path::Path) -> ServerConfig {
    ServerConfig {
        warehouse: location::parse(&wh.display().to_string()).unwrap(),
        api_key: Some(KEY.into()),
        allow_sources: Vec::new(),
        allow_local: true,
        max_concurrent_jobs: 1,
        max_queued_jobs: 2,
        body_limit: 64 * 1024,
    }
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
    let router = app(AppState::new(config(&d.path().join("wh"))));

    // Open and closed endpoints.
    let (s, v, _) = call(&router, "GET", "/health", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    for (method, uri) in [
        ("GET", "/info"),
        ("GET", "/jobs"),
        ("POST", "/jobs/create"),
        ("GET", "/jobs/x"),
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
    let (s, _, _) = call(&router, "GET", "/jobs?page_size=0", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, meta, _) = call(
        &router,
        "GET",
        "/workflows/api_wf/metadata?source_id=api_src",
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(meta["sources"][0]["tables"][0]["table_name"], "people");
    let (s, _, _) = call(
        &router,
        "GET",
        "/workflows/bad'id/metadata",
        None,
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Unknown job, finished job cannot be cancelled, unknown endpoint.
    let (s, v, _) = call(&router, "GET", "/jobs/job_nope", None, Some(KEY)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _, _) = call(&router, "DELETE", &format!("/jobs/{id}"), None, Some(KEY)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _, _) = call(&router, "GET", "/nope", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_limited_and_the_queue_is_bounded() {
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let mut cfg = config(&d.path().join("wh"));
    cfg.allow_local = false;
    cfg.allow_sources = vec!["abfss://lake@acct.dfs.core.windows.net/raw".into()];
    let router = app(AppState::new(cfg));
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
    let router = app(AppState::new(config(&d.path().join("wh2"))));
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

/// Over a real socket: the served binary takes a job, runs it, and its rows are in Delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_socket_serves_real_jobs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = tmp();
    let lake = d.path().join("lake");
    write(&lake.join("people.csv"), PEOPLE_CSV);
    let wh = d.path().join("wh");
    let state = AppState::new(config(&wh));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nuvyn_executor::server::serve(state, addr, async {
        let _ = stop_rx.await;
    }));
    async fn http(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        for _ in 0..50 {
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
        panic!("server did not start");
    }
    let body = serde_json::json!({"workflow_id": "sock_wf", "data_source_path": lake.display().to_string()}).to_string();
    let (code, v) = http(addr, "POST", "/jobs/create", &body).await;
    assert_eq!(code, 200, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    let mut status = String::new();
    for _ in 0..600 {
        let (_, v) = http(addr, "GET", &format!("/jobs/{id}"), "").await;
        status = v["status"].as_str().unwrap().to_string();
        if status != "created" && status != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded");
    let rows = sql_json(
        &wh,
        "SELECT run_mode, status FROM executor_runs WHERE workflow_id = 'sock_wf'",
        &[],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"run_mode": "api", "status": "succeeded"}])
    );
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
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
