//! The HTTP API (`nuvyn-executor serve`): the backend creates extraction jobs and follows
//! them. `app(state)` builds the router (tested with `oneshot`), `serve` binds it. Jobs run
//! on the same code as the CLI, in the background, a bounded number at once behind a bounded
//! queue. Every error is JSON `{error, message}` without internals.
//!
//! Not yet here (issue 6 continues): job state in `executor_runs` across restarts, the
//! notebook/mapping endpoints, the OpenAPI document, graceful shutdown's job draining.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

use crate::discover::Filters;
use crate::job::{self, JobOptions, RunMode};
use crate::location::{self, Location, LocationKind};
use crate::metastore::Warehouse;
use crate::payload::{self, CliJobArgs, PayloadError, RawPayload};

/// What the server is allowed to do. Its `Debug` hides the API key.
#[derive(Clone)]
pub struct ServerConfig {
    pub warehouse: Location,
    /// Bearer token; `None` only on loopback.
    pub api_key: Option<String>,
    /// `data_source_path` must start with one of these.
    pub allow_sources: Vec<String>,
    /// Whether local paths may be read (off by default: callers must not read the server's files).
    pub allow_local: bool,
    pub max_concurrent_jobs: usize,
    pub max_queued_jobs: usize,
    pub body_limit: usize,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("warehouse", &self.warehouse.display)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("allow_sources", &self.allow_sources)
            .field("allow_local", &self.allow_local)
            .field("max_concurrent_jobs", &self.max_concurrent_jobs)
            .field("max_queued_jobs", &self.max_queued_jobs)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// One error type for every endpoint: a status, a stable code, and a message safe to show.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: crate::redact::text(&message.into()),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        // The detail goes to the log, not to the caller.
        tracing::error!("request failed: {}", crate::redact::text(&e.to_string()));
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.error, "message": self.message})),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRecord {
    pub job_id: String,
    pub workflow_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// created, running, succeeded, partial, failed, cancelled
    pub status: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

struct Inner {
    cfg: ServerConfig,
    jobs: Mutex<BTreeMap<String, (JobRecord, Option<tokio::task::AbortHandle>)>>,
    running: Semaphore,
    /// Jobs created and not yet finished or cancelled (running + waiting).
    outstanding: AtomicUsize,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(cfg: ServerConfig) -> Self {
        Self(Arc::new(Inner {
            running: Semaphore::new(cfg.max_concurrent_jobs.max(1)),
            cfg,
            jobs: Mutex::new(BTreeMap::new()),
            outstanding: AtomicUsize::new(0),
        }))
    }
}

/// The router: `/health` is open, everything else needs the bearer token when one is set.
pub fn app(state: AppState) -> Router {
    let limit = state.0.cfg.body_limit;
    let protected = Router::new()
        .route("/info", get(info))
        .route("/jobs/create", post(create_job))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{job_id}", get(get_job).delete(cancel_job))
        .route("/workflows/{workflow_id}/metadata", get(workflow_metadata))
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.0.cfg.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), key.as_bytes()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn info(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let m = crate::migrate::Migrator::new(Warehouse::new(s.0.cfg.warehouse.clone()));
    let schema = m.status().await.map(|st| st.schema_version).ok();
    Ok(Json(json!({
        "version": crate::VERSION,
        "warehouse": s.0.cfg.warehouse.display,
        "schema_version": schema,
        "binary_schema_version": crate::migrate::binary_version(),
        "max_concurrent_jobs": s.0.cfg.max_concurrent_jobs,
    })))
}

fn payload_error(e: PayloadError) -> ApiError {
    match e {
        PayloadError::MissingWorkflowId { .. } => {
            ApiError::bad_request("Missing required field: workflow_id")
        }
        PayloadError::InvalidJson(m) => ApiError::bad_request(format!("malformed JSON: {m}")),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Where a request may read from: the configured prefixes, and local paths only if allowed.
fn check_source(cfg: &ServerConfig, path: &str) -> Result<(), ApiError> {
    let loc = location::check(path).and_then(|()| {
        // Only the kind is needed; local parsing does no I/O.
        if path.contains("://") && !path.starts_with("file://") {
            Ok(None)
        } else {
            location::parse(path).map(|l| Some(l.kind))
        }
    });
    let kind = loc.map_err(|e| ApiError::bad_request(format!("data_source_path: {e}")))?;
    let local = matches!(
        kind,
        Some(LocationKind::Local | LocationKind::Dbfs | LocationKind::Volumes)
    );
    if local && !cfg.allow_local {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "data_source_path: local paths are not allowed on this server",
        ));
    }
    let shown = crate::redact::url(path);
    if !cfg.allow_sources.is_empty()
        && !cfg
            .allow_sources
            .iter()
            .any(|p| shown.starts_with(p.as_str()))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("data_source_path {shown} is not under an allowed prefix"),
        ));
    }
    Ok(())
}

async fn create_job(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let raw = RawPayload::parse(text).map_err(payload_error)?;
    let spec = payload::resolve(Some(&raw), &CliJobArgs::default(), true).map_err(payload_error)?;
    for src in &spec.sources {
        check_source(&s.0.cfg, &src.path)?;
    }
    // Bounded: running plus waiting jobs may not exceed the two limits together.
    let capacity = s.0.cfg.max_concurrent_jobs.max(1) + s.0.cfg.max_queued_jobs;
    if s.0.outstanding.fetch_add(1, Ordering::SeqCst) >= capacity {
        s.0.outstanding.fetch_sub(1, Ordering::SeqCst);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_jobs",
            "the job queue is full; retry later",
        );
        e.retry_after = Some(5);
        return Err(e);
    }
    let job_id = format!("job_{}", uuid::Uuid::new_v4().simple());
    let record = JobRecord {
        job_id: job_id.clone(),
        workflow_id: spec.workflow_id.clone(),
        source_id: spec.source_id.clone(),
        status: "created".into(),
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        error: None,
        result: None,
    };
    let state = s.clone();
    let id = job_id.clone();
    let mut jobs = s.0.jobs.lock().await;
    let handle = tokio::spawn(async move {
        let Ok(_permit) = state.0.running.acquire().await else {
            return;
        };
        state
            .update(&id, |r| {
                r.status = "running".into();
                r.started_at = Some(Utc::now());
            })
            .await;
        let opts = JobOptions {
            spec,
            run_mode: RunMode::Api,
            warehouse: Some(state.0.cfg.warehouse.clone()),
            filters: Filters::default(),
            source_concurrency: 4,
            table_concurrency: 2,
            progress: false,
            migrate: false,
        };
        // The job's future borrows across awaits in ways `tokio::spawn`'s Send check cannot
        // follow; it runs on a blocking thread driving the same runtime instead.
        let rt = tokio::runtime::Handle::current();
        let Ok(report) = tokio::task::spawn_blocking(move || rt.block_on(job::run(opts))).await
        else {
            state
                .update(&id, |r| {
                    r.status = "failed".into();
                    r.error = Some("the job crashed".into());
                })
                .await;
            return;
        };
        let result = serde_json::to_value(&report).ok();
        state
            .update(&id, |r| {
                r.status = report.status.as_str().to_string();
                r.finished_at = Some(Utc::now());
                r.error = report.error.clone();
                r.result = result;
            })
            .await;
    });
    jobs.insert(job_id.clone(), (record, Some(handle.abort_handle())));
    drop(jobs);
    Ok((
        StatusCode::OK,
        Json(json!({"job_id": job_id, "status": "created", "message": "Job created successfully"})),
    )
        .into_response())
}

impl AppState {
    /// Changes a job's record unless it was cancelled; a change into a final state frees its
    /// place in the queue (exactly once: cancelling does the same under the same lock).
    async fn update(&self, id: &str, f: impl FnOnce(&mut JobRecord)) {
        if let Some((r, _)) = self.0.jobs.lock().await.get_mut(id)
            && r.status != "cancelled"
        {
            f(r);
            if !matches!(r.status.as_str(), "created" | "running") {
                self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

async fn get_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    s.0.jobs
        .lock()
        .await
        .get(&id)
        .map(|(r, _)| Json(r.clone()))
        .ok_or_else(|| ApiError::not_found(format!("no job {}", payload::printable(&id))))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    workflow_id: Option<String>,
    status: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

async fn list_jobs(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let size = q.page_size.unwrap_or(50);
    if size == 0 || size > 500 {
        return Err(ApiError::bad_request("page_size must be from 1 to 500"));
    }
    let page = q.page.unwrap_or(1).max(1);
    let jobs = s.0.jobs.lock().await;
    let mut all: Vec<&JobRecord> = jobs
        .values()
        .map(|(r, _)| r)
        .filter(|r| q.workflow_id.as_ref().is_none_or(|w| &r.workflow_id == w))
        .filter(|r| q.status.as_ref().is_none_or(|st| &r.status == st))
        .collect();
    all.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let total = all.len();
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v.as_object_mut().map(|o| o.remove("result"));
            v
        })
        .collect();
    Ok(Json(
        json!({"jobs": items, "page": page, "page_size": size, "total": total}),
    ))
}

async fn cancel_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    let mut jobs = s.0.jobs.lock().await;
    let (r, handle) = jobs
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found(format!("no job {}", payload::printable(&id))))?;
    if matches!(r.status.as_str(), "created" | "running") {
        if let Some(h) = handle.take() {
            h.abort();
        }
        s.0.outstanding.fetch_sub(1, Ordering::SeqCst);
        r.status = "cancelled".into();
        r.finished_at = Some(Utc::now());
        Ok(Json(r.clone()))
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("job {id} is already {}", r.status),
        ))
    }
}

#[derive(Debug, serde::Deserialize)]
struct MetadataQuery {
    source_id: Option<String>,
}

async fn workflow_metadata(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    Query(q): Query<MetadataQuery>,
    _headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    payload::validate_id("workflow_id", &workflow_id)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(sid) = &q.source_id {
        payload::validate_id("source_id", sid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let w = Warehouse::new(s.0.cfg.warehouse.clone());
    let ctx = crate::query::session(&w, crate::query::DEFAULT_CATALOG)
        .await
        .map_err(ApiError::internal)?;
    let v = crate::query::workflow_metadata(&ctx, &workflow_id, q.source_id.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(v))
}

/// Binds and serves until `shutdown` resolves. Refuses a non-loopback address without a key.
pub async fn serve(
    state: AppState,
    addr: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if state.0.cfg.api_key.is_none() && !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "refusing to listen on {addr} without NUVYN_API_KEY: only loopback addresses may be open"
            ),
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
