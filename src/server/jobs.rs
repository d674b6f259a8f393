//! Job handlers: create (validated, sources checked against the allow-lists), get, list
//! with filters and pages, cancel.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::ServerConfig;
use super::error::*;
use super::journal::{self, JobState};
use super::state::*;
use crate::job::payload::{self, CliJobArgs, RawPayload};
use crate::job::{CancelFlag, RunStatus};
use crate::storage::location;
use crate::warehouse::sql_literal;

/// Where a request may read from: under a configured prefix, compared as the parsed,
/// normalised location that will be read (kind, account, container, path segments; a local
/// path resolved through `..` and symbolic links), and local paths only if allowed.
pub(super) fn check_source(cfg: &ServerConfig, path: &str) -> Result<(), ApiError> {
    let forbidden = |m: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", m);
    let addr = location::address(path)
        .map_err(|e| ApiError::bad_request(format!("data_source_path: {e}")))?;
    let shown = crate::redact::url(path.trim());
    if addr.is_local() && !cfg.allow_local {
        return Err(forbidden(
            "data_source_path: local paths are not allowed on this server".into(),
        ));
    }
    if cfg.allow_sources.is_empty() {
        return Ok(());
    }
    let roots: Vec<location::Address> = cfg
        .allow_sources
        .iter()
        .filter_map(|p| location::address(p).ok())
        .collect();
    if !roots.iter().any(|r| addr.is_within(r)) {
        return Err(forbidden(format!(
            "data_source_path {shown} is not under an allowed prefix"
        )));
    }
    // A symbolic link under an allowed root may point anywhere: what is read is where it
    // leads, so that is what must lie under a root.
    if addr.is_local() {
        let real = addr.resolved();
        if !roots.iter().any(|r| real.is_within(&r.resolved())) {
            return Err(forbidden(format!(
                "data_source_path {shown} leads (through a symbolic link) outside the allowed prefixes"
            )));
        }
    }
    Ok(())
}

/// Options that make the server use an identity of its host (or read a file it names):
/// the CLI and the environment may use them, an API caller may not.
const HOST_IDENTITY_OPTIONS: [&str; 4] = [
    "msi_endpoint",
    "federated_token_file",
    "use_azure_cli",
    "use_managed_identity",
];

/// Options that are a credential of the payload's own.
const OWN_CREDENTIALS: [&str; 6] = [
    "account_key",
    "sas_token",
    "connection_string",
    "bearer_token",
    "client_secret",
    "skip_signature",
];

/// The server's credentials go only to Azure's own endpoints of the URL's account, or to
/// endpoints the operator listed: a payload may name an endpoint only with a credential of
/// its own (and only https unless allowed), never an identity of the server's host, and an
/// emulator URL only with `--allow-emulator`.
pub(super) fn check_credentials(
    cfg: &ServerConfig,
    src: &payload::SourceSpec,
    field: &str,
) -> Result<(), ApiError> {
    let opts = &src.storage_options;
    for k in HOST_IDENTITY_OPTIONS {
        if opts.has(k) {
            return Err(ApiError::bad_request(format!(
                "{field}storage_options.{k}: selects an identity of the server's host; not accepted from the API (in any spelling)"
            )));
        }
    }
    let allowed = |ep: &str| {
        let ep = ep.trim().trim_end_matches('/');
        cfg.allow_endpoints.iter().any(|a| a == ep)
    };
    let url = location::azure_url(&src.path)
        .map_err(|e| ApiError::bad_request(format!("{field}data_source_path: {e}")))?;
    let own = OWN_CREDENTIALS.iter().any(|k| opts.get(k).is_some())
        || url.as_ref().is_some_and(|u| u.sas.is_some());
    let mut named = Vec::new();
    if let Some(ep) = opts.get("endpoint") {
        named.push(("storage_options.endpoint", ep.to_string()));
    }
    if let Some(ep) = opts
        .get("connection_string")
        .and_then(|c| crate::storage::azure::parse_connection_string(c).blob_endpoint)
    {
        named.push(("storage_options.connection_string (BlobEndpoint)", ep));
    }
    for (what, ep) in named {
        if allowed(&ep) {
            continue;
        }
        if !own {
            return Err(ApiError::bad_request(format!(
                "{field}{what}: an endpoint the payload names needs a credential of its own in storage_options (the server's credentials go only to Azure's endpoints and --allow-endpoint ones)"
            )));
        }
        if !ep.trim().to_ascii_lowercase().starts_with("https://") {
            return Err(ApiError::bad_request(format!(
                "{field}{what}: only https:// endpoints, unless the operator allows this one with --allow-endpoint"
            )));
        }
    }
    if let Some(ep) = url.as_ref().and_then(|u| u.endpoint.as_deref())
        && !cfg.allow_emulator
        && !allowed(ep)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{field}data_source_path: emulator URLs are not allowed on this server (--allow-emulator)"
            ),
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
    /// Profiling: `samples` ("masked" (default), "none", "raw": what is kept of profiled
    /// values) and `sample` (`{"rows": N}` or `{"fraction": F}`: profile a random share of
    /// big tables).
    #[schema(value_type = Option<Object>)]
    profile: Option<Value>,
}

/// The answer to a created job.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Created {
    pub job_id: String,
    /// Always "created".
    #[schema(value_type = String)]
    pub status: JobState,
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
pub(super) async fn create_job(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let raw = RawPayload::parse(text)?;
    let spec = payload::resolve(Some(&raw), &CliJobArgs::default(), true)?;
    for (i, src) in spec.sources.iter().enumerate() {
        let field = if spec.sources.len() > 1 {
            format!("sources[{i}].")
        } else {
            String::new()
        };
        check_source(&s.0.cfg, &src.path)?;
        check_credentials(&s.0.cfg, src, &field)?;
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
    let job_id = journal::new_job_id();
    let cancel = CancelFlag::default();
    let job = Job {
        record: JobRecord {
            job_id: job_id.clone(),
            workflow_id: spec.workflow_id.clone(),
            source_id: spec.source_id.clone(),
            status: JobState::Created,
            created_at: journal::created_at_of(&job_id).unwrap_or_else(now),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: None,
            cancel_requested: false,
            result: None,
            result_bytes: 0,
        },
        next: None,
        queued: 0,
        row_id: journal::new_row_id(),
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
    if let Err(e) = journal::wait(ack).await {
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
            status: JobState::Created,
            message: "Job created successfully".into(),
        }),
    )
        .into_response())
}

/// A job: from memory while this server holds it, else from `executor_runs`.
#[utoipa::path(get, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The id POST /jobs/create answered")),
    responses(
        (status = 200, description = "The job", body = JobRecord),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub(super) async fn get_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    if let Some(j) = s.0.jobs.lock().await.get(&id) {
        return Ok(Json(j.record.clone()));
    }
    let mut rec = stored_job(&s, &id).await?;
    let sources = journal::written_sources(&s.0.warehouse, &id).await?;
    rec.result = Some(json!({ "sources": sources }));
    Ok(Json(rec))
}

pub(super) async fn stored_job(s: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    let not_found = || ApiError::not_found(format!("no job {}", payload::printable(id)));
    if !id.starts_with("job_") || id.len() > 64 {
        return Err(not_found());
    }
    let rows = journal::read(&s.0.warehouse, &journal::by_id(id)).await?;
    rows.first().map(JobRecord::of_row).ok_or_else(not_found)
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
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

/// The API's jobs, newest first, from `executor_runs` (so jobs of earlier server runs too).
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "A bad filter or page", body = ErrorBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
    ))]
pub(super) async fn list_jobs(
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
        payload::validate_id("workflow_id", w)?;
        filter.push(format!("workflow_id = {}", sql_literal(w)));
    }
    if let Some(st) = &q.status {
        if JobState::parse(st).is_none() {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}",
                JobState::ALL.map(JobState::as_str).join(", ")
            )));
        }
        filter.push(format!("status = {}", sql_literal(st)));
    }
    let filter = filter.join(" AND ");
    let (total, rows) = journal::page(&s.0.warehouse, &filter, page, size).await?;
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
pub(super) async fn cancel_job(
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
    match job.current().status {
        JobState::Created => {
            job.cancel.cancel();
            let p = s.change(&mut jobs, &id, |r| {
                r.status = JobState::Finished(RunStatus::Cancelled);
                r.finished_at = Some(now());
            });
            drop(jobs);
            s.committed(p).await;
            let rec = s.0.jobs.lock().await.get(&id).map(|j| j.record.clone());
            Ok((StatusCode::OK, Json(rec)).into_response())
        }
        JobState::Running => {
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
