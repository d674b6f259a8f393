//! The HTTP API (`nuvyn-executor serve`): the backend creates extraction jobs and follows
//! them, and stores notebooks and mappings. `app(state)` builds the router (tested with
//! `oneshot`), `serve` binds it and drains jobs on shutdown. Jobs run on the same code as the
//! CLI, in the background, a bounded number at once behind a bounded queue; their state is
//! written to `executor_runs` as it changes ([`crate::server::journal`]), so it outlives the process.
//! Every error is JSON `{error, message}` without internals. The OpenAPI document is
//! generated from the handlers' annotations (utoipa), so it cannot drift from the routes.

mod error;
mod jobs;
pub mod journal;
mod middleware;
mod state;
mod workflows;

pub use error::{ApiError, ErrorBody};
use jobs::*;
pub use jobs::{Created, JobList, JobRequest};
pub use journal::JobState;
use middleware::*;
pub use state::{AppState, JobRecord};
use workflows::*;
pub use workflows::{MappingBody, ResolveBody};

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware::from_fn;
use axum::middleware::from_fn_with_state;

use axum::{Json, Router};
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::storage::location::Location;

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
    /// Storage endpoints (other than Azure's own) a payload may name, and to which the
    /// server's credentials may go.
    pub allow_endpoints: Vec<String>,
    /// Whether emulator URLs (`http://127.0.0.1:10000/<account>/...`) may be read.
    pub allow_emulator: bool,
    /// The most files one source of an API job may list (`None`: no bound).
    pub max_files: Option<usize>,
    pub max_concurrent_jobs: usize,
    pub max_queued_jobs: usize,
    pub body_limit: usize,
    /// Notebooks carry their outputs (images included): their bodies may be larger.
    pub notebook_body_limit: usize,
    /// How long a shutdown waits for running jobs before recording them as interrupted.
    pub shutdown_timeout: Duration,
    /// Origins allowed to call the API from a browser; empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Migrations at start-up and in jobs: a warehouse behind is refused, not migrated.
    pub migrate: crate::migrate::MigratePolicy,
    /// Memory and record-size limits of profiling, shared by every job.
    pub limits: crate::profile::Limits,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("warehouse", &self.warehouse.display)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("allow_sources", &self.allow_sources)
            .field("allow_local", &self.allow_local)
            .field("allow_endpoints", &self.allow_endpoints)
            .field("allow_emulator", &self.allow_emulator)
            .field("max_files", &self.max_files)
            .field("max_concurrent_jobs", &self.max_concurrent_jobs)
            .field("max_queued_jobs", &self.max_queued_jobs)
            .field("body_limit", &self.body_limit)
            .field("notebook_body_limit", &self.notebook_body_limit)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("cors_origins", &self.cors_origins)
            .field("migrate", &self.migrate)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the warehouse {warehouse} is not ready: {reason}")]
    Warehouse { warehouse: String, reason: String },
    #[error("recovering the jobs a previous server left unfinished failed: {0}")]
    Recover(journal::RunsError),
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
        .routes(routes!(workflow_changes))
        .routes(routes!(list_notebooks, put_notebook))
        .routes(routes!(get_notebook))
        .routes(routes!(diff_notebooks))
        .routes(routes!(get_mapping, put_mapping))
        .routes(routes!(check_mapping))
        .routes(routes!(resolve_mapping))
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
        .layer(from_fn_with_state((limit, notebook_limit), body_limit))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(from_fn_with_state(state.clone(), request_guard))
        // Outermost but CORS: nothing else runs (no body is read) for a caller without the
        // token, and unknown paths are not told apart from known ones.
        .layer(from_fn_with_state(state.clone(), auth))
        // `body_limit` decides; axum's own 2 MB default would cut notebooks short.
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn(json_errors));
    if !state.0.cfg.cors_origins.is_empty() {
        router = router.layer(from_fn_with_state(state.clone(), cors));
    }
    router.with_state(state)
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
            "/workflows/{workflow_id}/mappings/{workflow_version}/resolve",
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
