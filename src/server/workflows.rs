//! Workflow handlers: the nested metadata view, notebook versions and diffs, mappings.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::error::*;
use super::state::*;
use crate::job::payload::{self};
use crate::notebook::{Mapping, Store};

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MetadataQuery {
    /// Only this source's rows.
    source_id: Option<String>,
}

pub(super) fn check_workflow(workflow_id: &str) -> Result<(), ApiError> {
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
pub(super) async fn workflow_metadata(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    Query(q): Query<MetadataQuery>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    if let Some(sid) = &q.source_id {
        payload::validate_id("source_id", sid)?;
    }
    let v = crate::query::workflow_metadata(
        &s.0.warehouse,
        crate::warehouse::DEFAULT_CATALOG,
        &workflow_id,
        q.source_id.as_deref(),
    )
    .await?;
    Ok(Json(v))
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ChangesQuery {
    /// Only this source's changes.
    source_id: Option<String>,
    /// Only changes found from this time on (RFC 3339, or a date: UTC midnight).
    since: Option<String>,
}

/// What changed between the workflow's runs (the `changes` command's rows), oldest first.
#[utoipa::path(get, path = "/workflows/{workflow_id}/changes", tag = "workflows",
    params(("workflow_id" = String, Path, description = "The workflow"), ChangesQuery),
    responses(
        (status = 200, description = "Changes: table, column, change, severity, measure, threshold, values, detail", body = Value),
        (status = 400, description = "A bad id or time", body = ErrorBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
    ))]
pub(super) async fn workflow_changes(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    if let Some(sid) = &q.source_id {
        payload::validate_id("source_id", sid)?;
    }
    let since = q
        .since
        .as_deref()
        .map(payload::parse_since)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
    let batches = crate::query::workflow_changes(
        &s.0.warehouse,
        crate::warehouse::DEFAULT_CATALOG,
        &workflow_id,
        q.source_id.as_deref(),
        since,
    )
    .await?;
    let rows = crate::warehouse::to_json_rows(&batches).map_err(crate::query::QueryError::from)?;
    Ok(Json(json!({ "workflow_id": workflow_id, "changes": rows })))
}

pub(super) fn store(s: &AppState) -> Store {
    Store::new(s.0.warehouse.clone())
}

/// Runs a notebook-store call on a blocking thread, driven by the same runtime: parsing,
/// hashing and diffing notebooks of tens of megabytes is CPU work, and the async workers must
/// stay free to answer `/health` and the other requests meanwhile.
pub(super) async fn off_workers<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || rt.block_on(work))
        .await
        .map_err(ApiError::internal)
}

/// The workflow's notebook versions.
#[utoipa::path(get, path = "/workflows/{workflow_id}/notebooks", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow")),
    responses(
        (status = 200, description = "Versions, oldest first (number, sha256, cells, created)", body = Value),
        (status = 400, description = "A bad id", body = ErrorBody),
    ))]
pub(super) async fn list_notebooks(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let v = store(&s).list(&workflow_id).await?;
    Ok(Json(json!({ "workflow_id": workflow_id, "versions": v })))
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PutNotebookQuery {
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
pub(super) async fn put_notebook(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    Query(q): Query<PutNotebookQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let st = store(&s);
    let r = off_workers(async move {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        Ok::<_, ApiError>(st.put(&workflow_id, text, q.created_by.as_deref()).await?)
    })
    .await??;
    Ok(Json(serde_json::to_value(r)?))
}

pub(super) fn version_of(v: &str, what: &str) -> Result<Option<i32>, ApiError> {
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
pub(super) async fn get_notebook(
    State(s): State<AppState>,
    Path((workflow_id, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_workflow(&workflow_id)?;
    let v = version_of(&version, "version")?;
    let (n, text) = store(&s).get(&workflow_id, v).await?;
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
pub(super) async fn diff_notebooks(
    State(s): State<AppState>,
    Path((workflow_id, from, to)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let from =
        version_of(&from, "from")?.ok_or_else(|| ApiError::bad_request("from must be a number"))?;
    let to = version_of(&to, "to")?.ok_or_else(|| ApiError::bad_request("to must be a number"))?;
    let st = store(&s);
    let d = off_workers(async move { st.diff(&workflow_id, from, to).await }).await??;
    Ok(Json(serde_json::to_value(d)?))
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

pub(super) fn mapping_body(
    body: &Bytes,
) -> Result<(Option<i32>, Mapping, Option<String>), ApiError> {
    let b: MappingBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed mapping request: {e}")))?;
    let m = Mapping::parse(&b.mapping.to_string())?;
    Ok((b.notebook_version, m, b.workflow.map(|w| w.to_string())))
}

/// Named (not a tuple) so that a bad number is reported with the parameter's name.
#[derive(Debug, serde::Deserialize)]
pub(super) struct MappingPath {
    workflow_id: String,
    workflow_version: i32,
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MappingQuery {
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
pub(super) async fn get_mapping(
    State(s): State<AppState>,
    Path(MappingPath {
        workflow_id,
        workflow_version,
    }): Path<MappingPath>,
    Query(q): Query<MappingQuery>,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let st = store(&s);
    let r = off_workers(async move {
        st.get_mapping(&workflow_id, workflow_version, q.notebook_version, None)
            .await
    })
    .await??;
    Ok(Json(serde_json::to_value(r)?))
}

/// What `POST .../mappings/{workflow_version}/resolve` takes.
#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct ResolveBody {
    /// The notebook version (default: the latest).
    pub notebook_version: Option<i32>,
    /// The workflow definition: the mapping's operators it no longer has are listed.
    #[schema(value_type = Option<Object>)]
    pub workflow: Option<Value>,
}

/// The mapping for a workflow version as `GET` finds it, checked against the workflow
/// definition given: `missing_operators` lists the operators it no longer has.
#[utoipa::path(post, path = "/workflows/{workflow_id}/mappings/{workflow_version}/resolve", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow"),
           ("workflow_version" = i32, Path, description = "The workflow version")),
    request_body(content = ResolveBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The mapping record", body = Value),
        (status = 404, description = "No mapping", body = ErrorBody),
        (status = 422, description = "The workflow definition is not usable", body = ErrorBody),
    ))]
pub(super) async fn resolve_mapping(
    State(s): State<AppState>,
    Path(MappingPath {
        workflow_id,
        workflow_version,
    }): Path<MappingPath>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let b: ResolveBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed resolve request: {e}")))?;
    let wf = b.workflow.map(|w| w.to_string());
    let st = store(&s);
    let r = off_workers(async move {
        st.get_mapping(
            &workflow_id,
            workflow_version,
            b.notebook_version,
            wf.as_deref(),
        )
        .await
    })
    .await??;
    Ok(Json(serde_json::to_value(r)?))
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
pub(super) async fn put_mapping(
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
    let st = store(&s);
    let r = off_workers(async move {
        st.put_mapping(&workflow_id, workflow_version, nv, m, wf.as_deref())
            .await
    })
    .await??;
    Ok(Json(serde_json::to_value(r)?))
}

/// Checks a mapping without storing it.
#[utoipa::path(post, path = "/workflows/{workflow_id}/mappings/check", tag = "notebooks",
    params(("workflow_id" = String, Path, description = "The workflow")),
    request_body(content = MappingBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Valid: {valid: true, notebook_version}", body = Value),
        (status = 422, description = "Invalid, with the first problem named", body = ErrorBody),
    ))]
pub(super) async fn check_mapping(
    State(s): State<AppState>,
    Path(workflow_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_workflow(&workflow_id)?;
    let (nv, m, wf) = mapping_body(&body)?;
    let st = store(&s);
    let v = off_workers(async move { st.check_mapping(&workflow_id, nv, &m, wf.as_deref()).await })
        .await??;
    Ok(Json(json!({"valid": true, "notebook_version": v})))
}
