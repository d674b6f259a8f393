//! The HTTP API (`nuvyn-executor serve`): the backend creates extraction jobs and follows
//! them, and stores notebooks and mappings. `app(state)` builds the router (tested with
//! `oneshot`), `serve` binds it and drains jobs on shutdown. Jobs run on the same code as the
//! CLI, in the background, a bounded number at once behind a bounded queue; their state is
//! written to `executor_runs` as it changes ([`crate::runs`]), so it outlives the process.
//! Every error is JSON `{error, message}` without internals. The OpenAPI document is
//! generated from the handlers' annotations (utoipa), so it cannot drift from the routes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::discover::Filters;
use crate::job::{self, CancelFlag, JobOptions, RunMode};
use crate::location::{self, Location, LocationKind};
use crate::metastore::{Warehouse, sql_literal};
use crate::notebook::{Mapping, NotebookError, Store};
use crate::payload::{self, CliJobArgs, PayloadError, RawPayload};
use crate::runs::{self, Journal, RunRow};

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
    /// Notebooks carry their outputs (images included): their bodies may be larger.
    pub notebook_body_limit: usize,
    /// How long a shutdown waits for running jobs before recording them as interrupted.
    pub shutdown_timeout: Duration,
    /// Origins allowed to call the API from a browser; empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
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
            .field("notebook_body_limit", &self.notebook_body_limit)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the warehouse {warehouse} is not ready: {reason}")]
    Warehouse { warehouse: String, reason: String },
    #[error("recovering the jobs a previous server left unfinished failed: {0}")]
    Recover(runs::RunsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("refusing to listen on {0} without NUVYN_API_KEY: only loopback addresses may be open")]
    OpenAddress(std::net::SocketAddr),
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// One error type for every endpoint: a status, a stable code, and a message safe to show.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    message: String,
    retry_after: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: bad_request, unauthorized, forbidden, not_found, conflict,
    /// payload_too_large, too_many_jobs, unavailable, internal.
    pub error: String,
    /// What went wrong, for a person; never internals or credentials.
    pub message: String,
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

    fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(5);
        e
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

/// A job as the API shows it.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
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
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set on a running job whose cancellation was asked for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// The job's report (per-source results) while this server holds it; after a restart,
    /// the sources it wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
}

impl JobRecord {
    fn of_row(r: &RunRow) -> Self {
        let mut rec = Self {
            job_id: r.run_id.clone(),
            workflow_id: r.workflow_id.clone(),
            source_id: r.source_id.clone(),
            status: r.status.clone(),
            created_at: runs::created_at_of(&r.run_id)
                .or(r.started_at)
                .unwrap_or_default(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: None,
            error: r.error.clone(),
            cancel_requested: false,
            result: None,
        };
        rec.set_duration();
        rec
    }

    fn set_duration(&mut self) {
        self.duration_ms = match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) => Some((f - s).num_milliseconds()),
            _ => None,
        };
    }

    fn without_result(&self) -> Self {
        Self {
            result: None,
            ..self.clone()
        }
    }
}

struct Job {
    /// What the API shows: the last state committed to `executor_runs` (a state is shown
    /// only once it is durable, so a caller who saw it finds it in the table).
    record: JobRecord,
    /// The newest change, queued for commit; decisions (cancel, start) look at this.
    next: Option<JobRecord>,
    /// Changes queued so far; the commit of the last one makes `next` visible.
    queued: u64,
    /// The job's `executor_runs` row id.
    row_id: i64,
    cancel: CancelFlag,
}

impl Job {
    /// The job's state including changes not yet committed.
    fn current(&self) -> &JobRecord {
        self.next.as_ref().unwrap_or(&self.record)
    }

    fn row(&self) -> RunRow {
        let r = self.current();
        RunRow {
            id: self.row_id,
            run_id: r.job_id.clone(),
            workflow_id: r.workflow_id.clone(),
            source_id: r.source_id.clone(),
            status: r.status.clone(),
            error: r.error.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// A change queued for commit: which job, its number, and the commit's answer.
struct Pending {
    id: String,
    seq: u64,
    ack: tokio::sync::oneshot::Receiver<Result<(), String>>,
}

/// Now, to the microsecond Delta keeps: a job read back from the table after a restart shows
/// the same times as it did from memory.
fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// Finished jobs kept in memory (with their full reports); older ones are read from the table.
const KEPT_IN_MEMORY: usize = 10_000;

struct Inner {
    cfg: ServerConfig,
    warehouse: Warehouse,
    journal: Journal,
    jobs: Mutex<BTreeMap<String, Job>>,
    running: Semaphore,
    /// Jobs created and not yet in a final state (running + waiting).
    outstanding: AtomicUsize,
    accepting: AtomicBool,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    started: AtomicU64,
    finished: AtomicU64,
    recovered: usize,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Readies the warehouse (a fresh one gets the schema; one behind is refused), starts the
    /// run journal and marks jobs a previous server left unfinished as interrupted.
    pub async fn start(cfg: ServerConfig) -> Result<Self, ServerError> {
        let warehouse = Warehouse::new(cfg.warehouse.clone());
        crate::migrate::ensure_current(&warehouse, false)
            .await
            .map_err(|reason| ServerError::Warehouse {
                warehouse: warehouse.root.display.clone(),
                reason,
            })?;
        let journal = Journal::start(warehouse.clone());
        let recovered = runs::recover(&warehouse, &journal)
            .await
            .map_err(ServerError::Recover)?;
        if !recovered.is_empty() {
            tracing::warn!(
                jobs = recovered.len(),
                "jobs left queued or running by a previous server were marked failed (interrupted)"
            );
        }
        Ok(Self(Arc::new(Inner {
            running: Semaphore::new(cfg.max_concurrent_jobs.max(1)),
            cfg,
            warehouse,
            journal,
            jobs: Mutex::new(BTreeMap::new()),
            outstanding: AtomicUsize::new(0),
            accepting: AtomicBool::new(true),
            tasks: std::sync::Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            recovered: recovered.len(),
        })))
    }

    /// Changes a job that is not final yet and queues its row. Called under the jobs lock,
    /// so rows are queued in the order the changes happen; the change becomes visible when
    /// [`AppState::committed`] sees its commit. A change into a final state frees the job's
    /// place in the queue.
    fn change(
        &self,
        jobs: &mut BTreeMap<String, Job>,
        id: &str,
        f: impl FnOnce(&mut JobRecord),
    ) -> Option<Pending> {
        let job = jobs.get_mut(id)?;
        if runs::is_final(&job.current().status) {
            return None;
        }
        let mut next = job.current().clone();
        f(&mut next);
        next.set_duration();
        if runs::is_final(&next.status) {
            self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
            self.0.finished.fetch_add(1, Ordering::SeqCst);
        }
        job.next = Some(next);
        job.queued += 1;
        Some(Pending {
            id: id.to_string(),
            seq: job.queued,
            ack: self.0.journal.submit(job.row()),
        })
    }

    /// Waits for a change's commit and shows it (unless a later change is queued, whose
    /// commit will). A failed commit is logged and the change shown anyway: the job goes
    /// on, and a restart would mark it interrupted.
    async fn committed(&self, p: Option<Pending>) {
        let Some(p) = p else { return };
        if let Err(e) = runs::wait(p.ack).await {
            tracing::error!(job_id = %p.id, "the job's state could not be recorded: {e}");
        }
        let mut jobs = self.0.jobs.lock().await;
        if let Some(job) = jobs.get_mut(&p.id)
            && job.queued == p.seq
            && let Some(next) = job.next.take()
        {
            job.record = next;
        }
    }

    async fn set_final(
        &self,
        id: &str,
        status: &str,
        error: Option<String>,
        result: Option<Value>,
    ) {
        let p = {
            let mut jobs = self.0.jobs.lock().await;
            self.change(&mut jobs, id, |r| {
                r.status = status.to_string();
                r.error = error;
                r.result = result;
                r.finished_at = Some(now());
            })
        };
        self.committed(p).await;
    }

    /// Stops taking jobs (creates answer 503 from now on).
    pub fn stop_accepting(&self) {
        self.0.accepting.store(false, Ordering::SeqCst);
    }

    /// The shutdown: no new jobs; queued jobs are recorded as interrupted; running jobs get
    /// `timeout` to finish, then are asked to stop and recorded as interrupted. Returns when
    /// every state is committed.
    pub async fn drain(&self, timeout: Duration) {
        self.stop_accepting();
        self.0.running.close();
        let handles = std::mem::take(&mut *self.0.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let running = self.0.outstanding.load(Ordering::SeqCst);
        tracing::info!(
            jobs = running,
            ?timeout,
            "draining: waiting for running jobs"
        );
        if tokio::time::timeout(timeout, futures::future::join_all(handles))
            .await
            .is_err()
        {
            let acks: Vec<_> = {
                let mut jobs = self.0.jobs.lock().await;
                let ids: Vec<String> = jobs
                    .iter()
                    .filter(|(_, j)| !runs::is_final(&j.current().status))
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter()
                    .filter_map(|id| {
                        if let Some(j) = jobs.get(&id) {
                            j.cancel.cancel();
                        }
                        tracing::warn!(job_id = %id, "recorded as interrupted");
                        self.change(&mut jobs, &id, |r| {
                            r.error = Some(if r.status == "created" {
                                "interrupted: the server shut down before the job started".into()
                            } else {
                                format!(
                                    "interrupted: still running when the server shut down ({}s after the shutdown began)",
                                    timeout.as_secs()
                                )
                            });
                            r.status = "failed".into();
                            r.finished_at = Some(now());
                        })
                    })
                    .collect()
            };
            for p in acks {
                self.committed(Some(p)).await;
            }
        }
        tracing::info!("drained");
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nuvyn-executor",
        description = "Creates and follows extraction jobs that catalogue a data lake into Delta tables partitioned by workflow_id; stores workflow notebooks and their cell-to-operator mappings."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Extraction jobs"),
        (name = "workflows", description = "What the warehouse holds per workflow"),
        (name = "notebooks", description = "Versioned Jupyter notebooks and mappings per workflow"),
        (name = "service", description = "The server itself"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        openapi.info.version = crate::VERSION.to_string();
    }
}

/// The router and the OpenAPI document made from the same route list.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(info))
        .routes(routes!(openapi_json))
        .routes(routes!(create_job))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job, cancel_job))
        .routes(routes!(workflow_metadata))
        .routes(routes!(list_notebooks, put_notebook))
        .routes(routes!(get_notebook))
        .routes(routes!(diff_notebooks))
        .routes(routes!(get_mapping, put_mapping))
        .routes(routes!(check_mapping))
        .routes(routes!(health))
        .split_for_parts()
}

/// The OpenAPI 3 document of this server's API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = routes();
    // /health is the one open endpoint.
    if let Some(p) = api.paths.paths.get_mut("/health") {
        for op in [&mut p.get].into_iter().flatten() {
            op.security = Some(Vec::new());
        }
    }
    api
}

/// The router: `/health` is open, everything else needs the bearer token when one is set.
pub fn app(state: AppState) -> Router {
    let (router, _) = routes();
    let limit = state.0.cfg.body_limit;
    let notebook_limit = state.0.cfg.notebook_body_limit.max(limit);
    let mut router = router
        .layer(middleware::from_fn_with_state(
            (limit, notebook_limit),
            body_limit,
        ))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        // Outermost but CORS: nothing else runs (no body is read) for a caller without the
        // token, and unknown paths are not told apart from known ones.
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        // `body_limit` decides; axum's own 2 MB default would cut notebooks short.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(json_errors));
    if !state.0.cfg.cors_origins.is_empty() {
        router = router.layer(middleware::from_fn_with_state(state.clone(), cors));
    }
    router.with_state(state)
}

/// Limits request bodies (notebook uploads may be larger than everything else). The body is
/// read here, so a chunked body without a length is limited like any other.
async fn body_limit(
    State((limit, notebook_limit)): State<(usize, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let max = if req.uri().path().contains("/notebooks") {
        notebook_limit
    } else {
        limit
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return too_large(max);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, max).await else {
        return too_large(max);
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Errors axum answers itself (a query or path parameter that does not parse, a method the
/// route does not have) come as plain text or empty: they are given the one error format.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (error, fallback) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "bad request"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not take that method",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        s if s.is_server_error() => ("internal", "the request failed; see the server log"),
        _ => ("bad_request", "the request was refused"),
    };
    let message = if text.is_empty() || status.is_server_error() {
        fallback.to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, error, message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

fn too_large(max: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {max} bytes"),
    )
    .into_response()
}

/// CORS, only for the configured origins (and only when some are configured).
async fn cors(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let allowed = origin
        .as_deref()
        .filter(|o| s.0.cfg.cors_origins.iter().any(|a| a == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = req.method() == axum::http::Method::OPTIONS;
    let mut resp = if preflight && allowed.is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    if let Some(o) = allowed {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE"),
        );
    }
    resp
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
    if let Some(key) = &s.0.cfg.api_key
        && req.uri().path() != "/health"
    {
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

/// Liveness; the only endpoint open without a token.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The server is up", body = Value)))]
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Version, warehouse, schema version, and the job counters.
#[utoipa::path(get, path = "/info", tag = "service",
    responses((status = 200, description = "About this server", body = Value),
              (status = 401, description = "No or a wrong bearer token", body = ErrorBody)))]
async fn info(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let m = crate::migrate::Migrator::new(s.0.warehouse.clone());
    let schema = m.status().await.map(|st| st.schema_version).ok();
    Ok(Json(json!({
        "version": crate::VERSION,
        "warehouse": s.0.cfg.warehouse.display,
        "schema_version": schema,
        "binary_schema_version": crate::migrate::binary_version(),
        "max_concurrent_jobs": s.0.cfg.max_concurrent_jobs,
        "max_queued_jobs": s.0.cfg.max_queued_jobs,
        "accepting_jobs": s.0.accepting.load(Ordering::SeqCst),
        "jobs": {
            "outstanding": s.0.outstanding.load(Ordering::SeqCst),
            "started": s.0.started.load(Ordering::SeqCst),
            "finished": s.0.finished.load(Ordering::SeqCst),
            "recovered_as_interrupted": s.0.recovered,
        },
    })))
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3 document", body = Value)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
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

/// The job request, as in the workflow_id migration document (for the OpenAPI document;
/// the body is parsed by the same code as `NUVYN_JOB_PAYLOAD`).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct JobRequest {
    /// metadata_extraction (default), schema_validation
    job_type: Option<String>,
    /// The source to catalogue (or give `sources`).
    data_source_path: Option<String>,
    data_source_type: Option<String>,
    /// Required unless `job_metadata.workflow_id` is given (which takes priority).
    workflow_id: Option<String>,
    source_id: Option<String>,
    tenant_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    job_metadata: Option<Value>,
    /// Several sources: objects with data_source_path, source_id, data_source_type, storage_options.
    #[schema(value_type = Option<Vec<Object>>)]
    sources: Option<Vec<Value>>,
    /// Storage settings (credentials) for data_source_path; never stored or shown.
    #[schema(value_type = Option<Object>)]
    storage_options: Option<Value>,
}

/// The answer to a created job.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Created {
    pub job_id: String,
    /// Always "created".
    pub status: String,
    pub message: String,
}

/// Creates a job; it runs in the background.
#[utoipa::path(post, path = "/jobs/create", tag = "jobs",
    request_body(content = JobRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Created; its state is recorded before this answer", body = Created),
        (status = 400, description = "Malformed JSON or a missing/invalid field (`Missing required field: workflow_id`)", body = ErrorBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "data_source_path outside the allowed prefixes, or local", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "The queue is full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Shutting down, or the job could not be recorded; see Retry-After", body = ErrorBody),
    ))]
async fn create_job(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let raw = RawPayload::parse(text).map_err(payload_error)?;
    let spec = payload::resolve(Some(&raw), &CliJobArgs::default(), true).map_err(payload_error)?;
    for src in &spec.sources {
        check_source(&s.0.cfg, &src.path)?;
    }
    if !s.0.accepting.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable(
            "the server is shutting down; retry against another instance or later",
        ));
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
    let job_id = runs::new_job_id();
    let cancel = CancelFlag::default();
    let job = Job {
        record: JobRecord {
            job_id: job_id.clone(),
            workflow_id: spec.workflow_id.clone(),
            source_id: spec.source_id.clone(),
            status: "created".into(),
            created_at: runs::created_at_of(&job_id).unwrap_or_else(now),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: None,
            cancel_requested: false,
            result: None,
        },
        next: None,
        queued: 0,
        row_id: runs::new_row_id(),
        cancel: cancel.clone(),
    };
    // Recorded before the answer: a job the caller was told about survives a crash (as
    // interrupted, at worst).
    let ack = {
        let mut jobs = s.0.jobs.lock().await;
        let ack = s.0.journal.submit(job.row());
        jobs.insert(job_id.clone(), job);
        evict(&mut jobs);
        ack
    };
    if let Err(e) = runs::wait(ack).await {
        s.0.jobs.lock().await.remove(&job_id);
        s.0.outstanding.fetch_sub(1, Ordering::SeqCst);
        tracing::error!("a job could not be recorded: {e}");
        return Err(ApiError::unavailable(
            "the job could not be recorded in the warehouse; retry later",
        ));
    }
    let handle = tokio::spawn(run_job(s.clone(), job_id.clone(), spec, cancel));
    {
        let mut tasks = s.0.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }
    tracing::info!(job_id = %job_id, "job created");
    Ok((
        StatusCode::OK,
        Json(Created {
            job_id,
            status: "created".into(),
            message: "Job created successfully".into(),
        }),
    )
        .into_response())
}

/// Drops the oldest finished jobs from memory beyond [`KEPT_IN_MEMORY`]; they stay readable
/// from `executor_runs`.
fn evict(jobs: &mut BTreeMap<String, Job>) {
    if jobs.len() <= KEPT_IN_MEMORY {
        return;
    }
    let excess = jobs.len() - KEPT_IN_MEMORY;
    let old: Vec<String> = jobs
        .iter()
        .filter(|(_, j)| j.next.is_none() && runs::is_final(&j.record.status))
        .take(excess)
        .map(|(id, _)| id.clone())
        .collect();
    for id in old {
        jobs.remove(&id);
    }
}

/// One job's life: wait for a place, run, record the outcome.
async fn run_job(s: AppState, id: String, spec: payload::JobSpec, cancel: CancelFlag) {
    let Ok(_permit) = s.0.running.acquire().await else {
        // Closed: the server is shutting down before this job got a place.
        s.set_final(
            &id,
            "failed",
            Some("interrupted: the server shut down before the job started".into()),
            None,
        )
        .await;
        return;
    };
    let ack = {
        let mut jobs = s.0.jobs.lock().await;
        match jobs.get(&id) {
            Some(j) if j.current().status == "created" => {}
            _ => return, // cancelled while waiting
        }
        s.change(&mut jobs, &id, |r| {
            r.status = "running".into();
            r.started_at = Some(now());
        })
    };
    s.0.started.fetch_add(1, Ordering::SeqCst);
    s.committed(ack).await;
    let opts = JobOptions {
        spec,
        run_mode: RunMode::Api,
        warehouse: Some(s.0.cfg.warehouse.clone()),
        filters: Filters::default(),
        source_concurrency: 4,
        table_concurrency: 2,
        progress: false,
        migrate: false,
        run_id: Some(id.clone()),
        record_run: false,
        cancel,
    };
    // The job's future borrows across awaits in ways `tokio::spawn`'s Send check cannot
    // follow; it runs on a blocking thread driving the same runtime instead.
    let rt = tokio::runtime::Handle::current();
    let Ok(report) = tokio::task::spawn_blocking(move || rt.block_on(job::run(opts))).await else {
        s.set_final(&id, "failed", Some("the job crashed".into()), None)
            .await;
        return;
    };
    let result = serde_json::to_value(&report).ok();
    s.set_final(&id, report.status.as_str(), report.error.clone(), result)
        .await;
}

/// A job: from memory while this server holds it, else from `executor_runs`.
#[utoipa::path(get, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The id POST /jobs/create answered")),
    responses(
        (status = 200, description = "The job", body = JobRecord),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
async fn get_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    if let Some(j) = s.0.jobs.lock().await.get(&id) {
        return Ok(Json(j.record.clone()));
    }
    let mut rec = stored_job(&s, &id).await?;
    let sources = runs::written_sources(&s.0.warehouse, &id)
        .await
        .map_err(ApiError::internal)?;
    rec.result = Some(json!({ "sources": sources }));
    Ok(Json(rec))
}

async fn stored_job(s: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    let not_found = || ApiError::not_found(format!("no job {}", payload::printable(id)));
    if !id.starts_with("job_") || id.len() > 64 {
        return Err(not_found());
    }
    let rows = runs::read(&s.0.warehouse, &runs::by_id(id), None)
        .await
        .map_err(ApiError::internal)?;
    rows.first().map(JobRecord::of_row).ok_or_else(not_found)
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this workflow's jobs.
    workflow_id: Option<String>,
    /// Only jobs in this state.
    status: Option<String>,
    /// From 1.
    page: Option<usize>,
    /// 1 to 500; 50 by default.
    page_size: Option<usize>,
}

/// A page of jobs.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct JobList {
    /// Newest first, without their reports.
    pub jobs: Vec<JobRecord>,
    pub page: usize,
    pub page_size: usize,
    pub total: usize,
}

const STATUSES: [&str; 6] = [
    "created",
    "running",
    "succeeded",
    "partial",
    "failed",
    "cancelled",
];

/// The API's jobs, newest first, from `executor_runs` (so jobs of earlier server runs too).
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "A bad filter or page", body = ErrorBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
    ))]
async fn list_jobs(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let size = q.page_size.unwrap_or(50);
    if size == 0 || size > 500 {
        return Err(ApiError::bad_request("page_size must be from 1 to 500"));
    }
    let page = q.page.unwrap_or(1).max(1);
    let mut filter = vec!["TRUE".to_string()];
    if let Some(w) = &q.workflow_id {
        payload::validate_id("workflow_id", w).map_err(|e| ApiError::bad_request(e.to_string()))?;
        filter.push(format!("workflow_id = {}", sql_literal(w)));
    }
    if let Some(st) = &q.status {
        if !STATUSES.contains(&st.as_str()) {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
        filter.push(format!("status = {}", sql_literal(st)));
    }
    let filter = filter.join(" AND ");
    let w = &s.0.warehouse;
    let total = runs::count(w, &filter).await.map_err(ApiError::internal)?;
    let offset = (page - 1).saturating_mul(size);
    let rows = if offset >= total {
        Vec::new() // past the end (also keeps an absurd page number out of the SQL)
    } else {
        runs::read(w, &filter, Some((offset, size)))
            .await
            .map_err(ApiError::internal)?
    };
    let jobs = s.0.jobs.lock().await;
    // Memory may be a moment ahead of the table (a change is committed after it is made).
    let items = rows
        .iter()
        .map(|r| {
            jobs.get(&r.run_id)
                .map(|j| j.record.without_result())
                .unwrap_or_else(|| JobRecord::of_row(r))
        })
        .collect();
    Ok(Json(JobList {
        jobs: items,
        page,
        page_size: size,
        total,
    }))
}

/// Cancels a job: a queued one at once (200); a running one is asked to stop (202) and ends
/// `cancelled` if it had not started writing, else with its own outcome.
#[utoipa::path(delete, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job")),
    responses(
        (status = 200, description = "Cancelled", body = JobRecord),
        (status = 202, description = "Running: asked to stop", body = JobRecord),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
    ))]
async fn cancel_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut jobs = s.0.jobs.lock().await;
    let Some(job) = jobs.get_mut(&id) else {
        drop(jobs);
        let rec = stored_job(&s, &id).await?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("job {id} is already {}", rec.status),
        ));
    };
    match job.current().status.clone().as_str() {
        "created" => {
            job.cancel.cancel();
            let p = s.change(&mut jobs, &id, |r| {
                r.status = "cancelled".into();
                r.finished_at = Some(now());
            });
            drop(jobs);
            s.committed(p).await;
            let rec = s.0.jobs.lock().await.get(&id).map(|j| j.record.clone());
            Ok((StatusCode::OK, Json(rec)).into_response())
        }
        "running" => {
            job.cancel.cancel();
            job.record.cancel_requested = true;
            if let Some(n) = job.next.as_mut() {
                n.cancel_requested = true;
            }
            Ok((StatusCode::ACCEPTED, Json(job.record.clone())).into_response())
        }
        other => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("job {id} is already {other}"),
        )),
    }
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MetadataQuery {
    /// Only this source's rows.
    source_id: Option<String>,
}

fn check_workflow(workflow_id: &str) -> Result<(), ApiError> {
    payload::validate_id("workflow_id", workflow_id)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Everything the warehouse holds for a workflow (the `query` command's result).
#[utoipa::path(get, path = "/workflows/{workflow_id}/metadata", tag = "workflows",
    params(("workflow_id" = String, Path, description = "The workflow"), MetadataQuery),
    responses(
        (status = 200, description = "Latest run, sources with their tables and columns", body = Value),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
    ))]
async fn workflow_metadata(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    Query(q): Query<MetadataQuery>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    if let Some(sid) = &q.source_id {
        payload::validate_id("source_id", sid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let ctx = crate::query::session(&s.0.warehouse, crate::query::DEFAULT_CATALOG)
        .await
        .map_err(ApiError::internal)?;
    let v = crate::query::workflow_metadata(&ctx, &workflow_id, q.source_id.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(v))
}

fn notebook_error(e: NotebookError) -> ApiError {
    match e {
        NotebookError::Invalid(_) | NotebookError::Mapping(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
        }
        NotebookError::NotFound { .. } => ApiError::not_found(e.to_string()),
        other => ApiError::internal(other),
    }
}

fn store(s: &AppState) -> Store {
    Store::new(s.0.warehouse.clone())
}

/// The workflow's notebook versions.
#[utoipa::path(get, path = "/workflows/{workflow_id}/notebooks", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow")),
    responses(
        (status = 200, description = "Versions, oldest first (number, sha256, cells, created)", body = Value),
        (status = 400, description = "A bad id", body = ErrorBody),
    ))]
async fn list_notebooks(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let v = store(&s).list(&workflow_id).await.map_err(notebook_error)?;
    Ok(Json(json!({ "workflow_id": workflow_id, "versions": v })))
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PutNotebookQuery {
    /// Who stores it (recorded with the version).
    created_by: Option<String>,
}

/// Stores a Jupyter notebook (the body, .ipynb JSON) as the workflow's next version, or
/// answers the version that holds identical content; mappings are carried forward.
#[utoipa::path(post, path = "/workflows/{workflow_id}/notebooks", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow"), PutNotebookQuery),
    request_body(content = Value, content_type = "application/json", description = "The .ipynb document"),
    responses(
        (status = 200, description = "Stored (or already there)", body = Value),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Not a valid notebook (the cell is named)", body = ErrorBody),
    ))]
async fn put_notebook(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    Query(q): Query<PutNotebookQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let r = store(&s)
        .put(&workflow_id, text, q.created_by.as_deref())
        .await
        .map_err(notebook_error)?;
    Ok(Json(serde_json::to_value(r).map_err(ApiError::internal)?))
}

fn version_of(v: &str, what: &str) -> Result<Option<i32>, ApiError> {
    if v == "latest" {
        return Ok(None);
    }
    match v.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "{what} must be a version number from 1, or latest (got {})",
            payload::printable(v)
        ))),
    }
}

/// One notebook version as stored (.ipynb JSON); `latest` for the newest.
#[utoipa::path(get, path = "/workflows/{workflow_id}/notebooks/{version}", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow"),
           ("version" = String, Path, description = "A version number, or latest")),
    responses(
        (status = 200, description = "The notebook; its number is in the X-Notebook-Version header", body = Value, content_type = "application/x-ipynb+json"),
        (status = 404, description = "No such version", body = ErrorBody),
    ))]
async fn get_notebook(
    State(s): State<AppState>,
    Path((workflow_id, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_workflow(&workflow_id)?;
    let v = version_of(&version, "version")?;
    let (n, text) = store(&s)
        .get(&workflow_id, v)
        .await
        .map_err(notebook_error)?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ipynb+json"),
    );
    r.headers_mut()
        .insert("x-notebook-version", HeaderValue::from(n));
    Ok(r)
}

/// Cells added, removed, changed and moved between two versions.
#[utoipa::path(get, path = "/workflows/{workflow_id}/notebooks/{from}/diff/{to}", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow"),
           ("from" = i32, Path, description = "The older version"),
           ("to" = i32, Path, description = "The newer version")),
    responses(
        (status = 200, description = "The differences, by cell id", body = Value),
        (status = 404, description = "No such version", body = ErrorBody),
    ))]
async fn diff_notebooks(
    State(s): State<AppState>,
    Path((workflow_id, from, to)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let from =
        version_of(&from, "from")?.ok_or_else(|| ApiError::bad_request("from must be a number"))?;
    let to = version_of(&to, "to")?.ok_or_else(|| ApiError::bad_request("to must be a number"))?;
    let d = store(&s)
        .diff(&workflow_id, from, to)
        .await
        .map_err(notebook_error)?;
    Ok(Json(serde_json::to_value(d).map_err(ApiError::internal)?))
}

/// A mapping, and what to check it against.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingBody {
    /// The notebook version it maps (default: the latest).
    pub notebook_version: Option<i32>,
    /// The cell <-> operator mapping.
    #[schema(value_type = Object)]
    pub mapping: Value,
    /// The workflow definition; when given, every operator must exist in it.
    #[schema(value_type = Option<Object>)]
    pub workflow: Option<Value>,
}

fn mapping_body(body: &Bytes) -> Result<(Option<i32>, Mapping, Option<String>), ApiError> {
    let b: MappingBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed mapping request: {e}")))?;
    let m = Mapping::parse(&b.mapping.to_string()).map_err(notebook_error)?;
    Ok((b.notebook_version, m, b.workflow.map(|w| w.to_string())))
}

/// Named (not a tuple) so that a bad number is reported with the parameter's name.
#[derive(Debug, serde::Deserialize)]
struct MappingPath {
    workflow_id: String,
    workflow_version: i32,
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MappingQuery {
    /// The notebook version (default: the latest).
    notebook_version: Option<i32>,
}

/// The mapping for a workflow version: its own, or an earlier version's (status `stale`).
#[utoipa::path(get, path = "/workflows/{workflow_id}/mappings/{workflow_version}", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow"),
           ("workflow_version" = i32, Path, description = "The workflow version"), MappingQuery),
    responses(
        (status = 200, description = "The mapping record", body = Value),
        (status = 404, description = "No mapping", body = ErrorBody),
    ))]
async fn get_mapping(
    State(s): State<AppState>,
    Path(MappingPath {
        workflow_id,
        workflow_version,
    }): Path<MappingPath>,
    Query(q): Query<MappingQuery>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let r = store(&s)
        .get_mapping(&workflow_id, workflow_version, q.notebook_version)
        .await
        .map_err(notebook_error)?;
    Ok(Json(serde_json::to_value(r).map_err(ApiError::internal)?))
}

/// Stores the mapping of a workflow version to a notebook version, after checking it.
#[utoipa::path(put, path = "/workflows/{workflow_id}/mappings/{workflow_version}", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow"),
           ("workflow_version" = i32, Path, description = "The workflow version, from 1")),
    request_body(content = MappingBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = Value),
        (status = 404, description = "No such notebook version", body = ErrorBody),
        (status = 422, description = "The mapping does not fit the notebook or workflow", body = ErrorBody),
    ))]
async fn put_mapping(
    State(s): State<AppState>,
    Path(MappingPath {
        workflow_id,
        workflow_version,
    }): Path<MappingPath>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    if workflow_version < 1 {
        return Err(ApiError::bad_request("workflow_version must be 1 or more"));
    }
    let (nv, m, wf) = mapping_body(&body)?;
    let r = store(&s)
        .put_mapping(&workflow_id, workflow_version, nv, m, wf.as_deref())
        .await
        .map_err(notebook_error)?;
    Ok(Json(serde_json::to_value(r).map_err(ApiError::internal)?))
}

/// Checks a mapping without storing it.
#[utoipa::path(post, path = "/workflows/{workflow_id}/mappings/check", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow")),
    request_body(content = MappingBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Valid: {valid: true, notebook_version}", body = Value),
        (status = 422, description = "Invalid, with the first problem named", body = ErrorBody),
    ))]
async fn check_mapping(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let (nv, m, wf) = mapping_body(&body)?;
    let v = store(&s)
        .check_mapping(&workflow_id, nv, &m, wf.as_deref())
        .await
        .map_err(notebook_error)?;
    Ok(Json(json!({"valid": true, "notebook_version": v})))
}

/// Binds and serves until `shutdown` resolves, then drains the jobs (see
/// [`AppState::drain`]). Refuses a non-loopback address without a key.
pub async fn serve(
    state: AppState,
    addr: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if state.0.cfg.api_key.is_none() && !addr.ip().is_loopback() {
        return Err(ServerError::OpenAddress(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(addr = %local, "serving");
    serve_on(state, listener, shutdown).await
}

/// [`serve`] on a bound listener (tests bind port 0 and read the address first).
pub async fn serve_on(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let s = state.clone();
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new jobs");
            s.stop_accepting();
        })
        .await
        .map_err(ServerError::Serve)?;
    state.drain(state.0.cfg.shutdown_timeout).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
        assert!(same(b"", b""));
    }

    #[test]
    fn the_openapi_document_lists_every_route() {
        let api = openapi();
        let paths: Vec<&String> = api.paths.paths.keys().collect();
        for p in [
            "/health",
            "/info",
            "/openapi.json",
            "/jobs/create",
            "/jobs",
            "/jobs/{job_id}",
            "/workflows/{workflow_id}/metadata",
            "/workflows/{workflow_id}/notebooks",
            "/workflows/{workflow_id}/notebooks/{version}",
            "/workflows/{workflow_id}/notebooks/{from}/diff/{to}",
            "/workflows/{workflow_id}/mappings/{workflow_version}",
            "/workflows/{workflow_id}/mappings/check",
        ] {
            assert!(paths.iter().any(|k| *k == p), "{p} missing from {paths:?}");
        }
        let v = serde_json::to_value(&api).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(v["info"]["version"], crate::VERSION);
        assert_eq!(
            v["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(v["paths"]["/health"]["get"]["security"], json!([]));
        assert!(v["paths"]["/jobs/{job_id}"]["delete"].is_object());
        assert!(v["components"]["schemas"]["JobRecord"].is_object());
    }
}
