//! The notebook migration store: versioned Jupyter notebooks per workflow
//! (`workflow_notebook_source`) and cell <-> operator mappings per (workflow version,
//! notebook version) (`workflow_notebook_mapping`), as Delta tables made by migration V3.
//!
//! The first design tied one notebook to a workflow, so editing the notebook broke every
//! mapping. Here a notebook edit is a new notebook version, and the mappings of the previous
//! version are carried to it: entries of unchanged cells are kept, entries of changed cells
//! are kept but listed as stale, entries of deleted cells are dropped. A workflow version
//! without a mapping of its own falls back to the newest earlier one's.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::metastore::{self, SqlType, Warehouse};

pub const SOURCE_TABLE: &str = "workflow_notebook_source";
pub const MAPPING_TABLE: &str = "workflow_notebook_mapping";

/// Default size limit of an uploaded notebook (`NUVYN_NOTEBOOK_MAX_BYTES` changes it).
pub const DEFAULT_MAX_BYTES: usize = 50 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    #[error("invalid notebook: {0}")]
    Invalid(String),
    #[error("invalid mapping: {0}")]
    Mapping(String),
    #[error("{what} not found: {detail}")]
    NotFound { what: &'static str, detail: String },
    #[error("the warehouse has no notebook tables (schema V3): run `nuvyn-executor migrate apply`")]
    NoTables,
    #[error(transparent)]
    Metastore(#[from] metastore::MetastoreError),
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> NotebookError {
    NotebookError::Other(crate::redact::text(&e.to_string()))
}

pub static SOURCE: metastore::TableDef = metastore::TableDef {
    name: SOURCE_TABLE,
    columns: &[
        metastore::ColumnDef {
            name: "workflow_id",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "notebook_version",
            ty: SqlType::Int,
        },
        metastore::ColumnDef {
            name: "notebook",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "notebook_sha256",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "cell_count",
            ty: SqlType::Int,
        },
        metastore::ColumnDef {
            name: "created_at",
            ty: SqlType::Timestamp,
        },
        metastore::ColumnDef {
            name: "created_by",
            ty: SqlType::String,
        },
    ],
    partition_by: &["workflow_id"],
};

pub static MAPPING: metastore::TableDef = metastore::TableDef {
    name: MAPPING_TABLE,
    columns: &[
        metastore::ColumnDef {
            name: "workflow_id",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "workflow_version",
            ty: SqlType::Int,
        },
        metastore::ColumnDef {
            name: "notebook_version",
            ty: SqlType::Int,
        },
        metastore::ColumnDef {
            name: "mapping",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "status",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "stale_cells",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "stale_operators",
            ty: SqlType::String,
        },
        metastore::ColumnDef {
            name: "created_at",
            ty: SqlType::Timestamp,
        },
    ],
    partition_by: &["workflow_id"],
};

// ---- notebooks --------------------------------------------------------------------------

/// One cell, as far as versions and mappings care.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cell {
    pub id: String,
    pub cell_type: String,
    pub source: String,
}

/// A checked notebook: its text as it will be stored, its cells, and its canonical hash.
#[derive(Debug, Clone)]
pub struct Notebook {
    pub text: String,
    pub cells: Vec<Cell>,
    pub sha256: String,
    /// Cell ids assigned on import (nbformat < 4.5 has none), by cell index.
    pub assigned_ids: Vec<(usize, String)>,
}

fn source_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|p| p.concat()),
        _ => None,
    }
}

/// JSON with object keys sorted and no whitespace: two uploads of the same notebook hash the
/// same whatever their formatting or key order.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_cell_id(id: &str) -> bool {
    // nbformat 4.5: 1-64 characters of letters, digits, '-' and '_'.
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn max_bytes() -> usize {
    std::env::var("NUVYN_NOTEBOOK_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

impl Notebook {
    /// Checks an uploaded `.ipynb`. Notebooks without cell ids get deterministic ones
    /// (`cell-<index>-<hash of the source>`), written into the stored notebook.
    pub fn parse(text: &str) -> Result<Self, NotebookError> {
        let bad = |m: String| NotebookError::Invalid(m);
        if text.len() > max_bytes() {
            return Err(bad(format!(
                "{} bytes is over the {} byte limit (NUVYN_NOTEBOOK_MAX_BYTES)",
                text.len(),
                max_bytes()
            )));
        }
        let mut doc: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| bad("the top level must be an object".into()))?;
        match obj.get("nbformat").and_then(Value::as_u64) {
            Some(4) => {}
            Some(v) => {
                return Err(bad(format!(
                    "nbformat {v} is not supported (nbformat 4 only)"
                )));
            }
            None => {
                return Err(bad(
                    "`nbformat` is missing (nbformat 4 JSON expected)".into()
                ));
            }
        }
        let minor = obj
            .get("nbformat_minor")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cells_v = obj
            .get("cells")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("`cells` must be an array".into()))?;
        let mut cells = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut missing_ids = Vec::new();
        for (i, c) in cells_v.iter().enumerate() {
            let c = c
                .as_object()
                .ok_or_else(|| bad(format!("cells[{i}] is not an object")))?;
            let cell_type = c
                .get("cell_type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("cells[{i}].cell_type is missing")))?;
            if !matches!(cell_type, "code" | "markdown" | "raw") {
                return Err(bad(format!(
                    "cells[{i}].cell_type {cell_type:?} is not code, markdown or raw"
                )));
            }
            let source = c.get("source").and_then(source_text).ok_or_else(|| {
                bad(format!(
                    "cells[{i}].source must be a string or an array of strings"
                ))
            })?;
            let id = match c.get("id") {
                Some(Value::String(id)) => {
                    if !valid_cell_id(id) {
                        return Err(bad(format!(
                            "cells[{i}].id {id:?} is not 1-64 letters, digits, '-' or '_'"
                        )));
                    }
                    if let Some(first) = seen.insert(id.clone(), i) {
                        return Err(bad(format!(
                            "duplicate cell id {id:?} in cells[{first}] and cells[{i}]"
                        )));
                    }
                    Some(id.clone())
                }
                Some(_) => return Err(bad(format!("cells[{i}].id must be a string"))),
                None if minor >= 5 => {
                    return Err(bad(format!(
                        "cells[{i}].id is missing (nbformat 4.{minor} requires cell ids)"
                    )));
                }
                None => {
                    missing_ids.push(i);
                    None
                }
            };
            cells.push(Cell {
                id: id.unwrap_or_default(),
                cell_type: cell_type.to_string(),
                source,
            });
        }
        let mut assigned_ids = Vec::new();
        for i in missing_ids {
            let mut id = format!("cell-{i}-{}", &sha256_hex(&cells[i].source)[..8]);
            while seen.contains_key(&id) {
                id.push('x');
            }
            seen.insert(id.clone(), i);
            cells[i].id = id.clone();
            assigned_ids.push((i, id));
        }
        let text = if assigned_ids.is_empty() {
            // Stored as uploaded: `notebook get` gives back the same bytes.
            text.to_string()
        } else {
            let arr = doc["cells"].as_array_mut().expect("checked above");
            for (i, id) in &assigned_ids {
                arr[*i]
                    .as_object_mut()
                    .expect("checked above")
                    .insert("id".into(), Value::String(id.clone()));
            }
            doc["nbformat_minor"] = json!(minor.max(5));
            serde_json::to_string_pretty(&doc).map_err(other)?
        };
        let stored: Value = serde_json::from_str(&text).map_err(other)?;
        Ok(Self {
            sha256: sha256_hex(&canonical(&stored)),
            text,
            cells,
            assigned_ids,
        })
    }

    fn cell_ids(&self) -> BTreeSet<&str> {
        self.cells.iter().map(|c| c.id.as_str()).collect()
    }
}

/// What changed between two notebook versions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diff {
    pub from_version: i32,
    pub to_version: i32,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Cells present in both, same source, at another position relative to the others.
    pub moved: Vec<String>,
    pub unchanged: usize,
}

pub fn diff(from: &Notebook, to: &Notebook, from_version: i32, to_version: i32) -> Diff {
    let old: BTreeMap<&str, (usize, &Cell)> = from
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), (i, c)))
        .collect();
    let new: BTreeMap<&str, (usize, &Cell)> = to
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), (i, c)))
        .collect();
    let mut d = Diff {
        from_version,
        to_version,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        moved: Vec::new(),
        unchanged: 0,
    };
    for c in &to.cells {
        match old.get(c.id.as_str()) {
            None => d.added.push(c.id.clone()),
            Some((_, o)) if o.source != c.source || o.cell_type != c.cell_type => {
                d.changed.push(c.id.clone())
            }
            Some(_) => d.unchanged += 1,
        }
    }
    for c in &from.cells {
        if !new.contains_key(c.id.as_str()) {
            d.removed.push(c.id.clone());
        }
    }
    // Order among the cells both versions share: a cell moved when its rank differs.
    let shared_old: Vec<&str> = from
        .cells
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| new.contains_key(id))
        .collect();
    let shared_new: Vec<&str> = to
        .cells
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| old.contains_key(id))
        .collect();
    for (rank, id) in shared_new.iter().enumerate() {
        if shared_old.get(rank) != Some(id) && !d.changed.iter().any(|c| c == id) {
            d.moved.push(id.to_string());
        }
    }
    d
}

// ---- mappings ---------------------------------------------------------------------------

/// `{"cell_to_operator": {cell: [operator, ...]}, "operator_to_cell": {operator: [cell, ...]}}`
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mapping {
    pub cell_to_operator: BTreeMap<String, Vec<String>>,
    pub operator_to_cell: BTreeMap<String, Vec<String>>,
}

impl Mapping {
    pub fn parse(text: &str) -> Result<Self, NotebookError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| NotebookError::Mapping(format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| NotebookError::Mapping("the top level must be an object".into()))?;
        let side = |key: &str| -> Result<BTreeMap<String, Vec<String>>, NotebookError> {
            let m = obj.get(key).and_then(Value::as_object).ok_or_else(|| {
                NotebookError::Mapping(format!("`{key}` must be an object of id -> [ids]"))
            })?;
            m.iter()
                .map(|(k, v)| {
                    let ids = v
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|x| x.as_str().map(str::to_string))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| {
                            NotebookError::Mapping(format!(
                                "`{key}.{k}` must be an array of strings"
                            ))
                        })?;
                    Ok((k.clone(), ids))
                })
                .collect()
        };
        Ok(Self {
            cell_to_operator: side("cell_to_operator")?,
            operator_to_cell: side("operator_to_cell")?,
        })
    }

    fn pairs_c2o(&self) -> BTreeSet<(String, String)> {
        self.cell_to_operator
            .iter()
            .flat_map(|(c, os)| os.iter().map(move |o| (c.clone(), o.clone())))
            .collect()
    }

    fn pairs_o2c(&self) -> BTreeSet<(String, String)> {
        self.operator_to_cell
            .iter()
            .flat_map(|(o, cs)| cs.iter().map(move |c| (c.clone(), o.clone())))
            .collect()
    }

    fn from_pairs(pairs: &BTreeSet<(String, String)>) -> Self {
        let mut m = Self {
            cell_to_operator: BTreeMap::new(),
            operator_to_cell: BTreeMap::new(),
        };
        for (c, o) in pairs {
            m.cell_to_operator
                .entry(c.clone())
                .or_default()
                .push(o.clone());
            m.operator_to_cell
                .entry(o.clone())
                .or_default()
                .push(c.clone());
        }
        m
    }

    /// Checks the two directions agree, and the ids exist in the notebook (and workflow).
    pub fn check(
        &self,
        nb: &Notebook,
        operators: Option<&BTreeSet<String>>,
    ) -> Result<(), NotebookError> {
        let (a, b) = (self.pairs_c2o(), self.pairs_o2c());
        let mut problems = Vec::new();
        let only_a: Vec<String> = a.difference(&b).map(|(c, o)| format!("{c}->{o}")).collect();
        let only_b: Vec<String> = b.difference(&a).map(|(c, o)| format!("{o}->{c}")).collect();
        if !only_a.is_empty() {
            problems.push(format!(
                "cell_to_operator entries missing from operator_to_cell: {}",
                only_a.join(", ")
            ));
        }
        if !only_b.is_empty() {
            problems.push(format!(
                "operator_to_cell entries missing from cell_to_operator: {}",
                only_b.join(", ")
            ));
        }
        let cells = nb.cell_ids();
        let unknown: BTreeSet<&str> = a
            .iter()
            .chain(b.iter())
            .map(|(c, _)| c.as_str())
            .filter(|c| !cells.contains(c))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!(
                "cells not in the notebook: {}",
                unknown.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(ops) = operators {
            let unknown: BTreeSet<&str> = a
                .iter()
                .chain(b.iter())
                .map(|(_, o)| o.as_str())
                .filter(|o| !ops.contains(*o))
                .collect();
            if !unknown.is_empty() {
                problems.push(format!(
                    "operators not in the workflow: {}",
                    unknown.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(NotebookError::Mapping(problems.join("; ")))
        }
    }
}

/// The operator ids of a workflow JSON (`operators[].operatorID`, as Texera writes them;
/// `operatorId` and `id` are accepted too).
pub fn workflow_operators(text: &str) -> Result<BTreeSet<String>, NotebookError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| NotebookError::Mapping(format!("workflow is not JSON: {e}")))?;
    let ops = v
        .get("operators")
        .or_else(|| v.get("content").and_then(|c| c.get("operators")))
        .and_then(Value::as_array)
        .ok_or_else(|| NotebookError::Mapping("the workflow has no `operators` array".into()))?;
    ops.iter()
        .enumerate()
        .map(|(i, o)| {
            ["operatorID", "operatorId", "id"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .map(str::to_string)
                .ok_or_else(|| {
                    NotebookError::Mapping(format!("workflow operators[{i}] has no operatorID"))
                })
        })
        .collect()
}

/// A mapping carried from one notebook version to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    pub mapping: Mapping,
    pub stale_cells: Vec<String>,
    pub stale_operators: Vec<String>,
}

/// Carries `m` (valid for `old`) to `new`: entries of unchanged cells stay, entries of
/// changed cells stay but are stale (and so are their operators), entries of deleted cells go.
pub fn carry(m: &Mapping, old: &Notebook, new: &Notebook, stale_before: &[String]) -> Carried {
    let old_src: BTreeMap<&str, &str> = old
        .cells
        .iter()
        .map(|c| (c.id.as_str(), c.source.as_str()))
        .collect();
    let new_src: BTreeMap<&str, &str> = new
        .cells
        .iter()
        .map(|c| (c.id.as_str(), c.source.as_str()))
        .collect();
    let mut kept = BTreeSet::new();
    let mut stale_cells: BTreeSet<String> = BTreeSet::new();
    let mut stale_ops: BTreeSet<String> = BTreeSet::new();
    for (c, o) in m.pairs_c2o() {
        let Some(now) = new_src.get(c.as_str()) else {
            continue;
        };
        if old_src.get(c.as_str()) != Some(now) || stale_before.contains(&c) {
            stale_cells.insert(c.clone());
            stale_ops.insert(o.clone());
        }
        kept.insert((c, o));
    }
    Carried {
        mapping: Mapping::from_pairs(&kept),
        stale_cells: stale_cells.into_iter().collect(),
        stale_operators: stale_ops.into_iter().collect(),
    }
}

// ---- the store --------------------------------------------------------------------------

#[derive(Debug, Clone, serde::Serialize)]
pub struct PutResult {
    pub workflow_id: String,
    pub notebook_version: i32,
    /// False when identical content was already stored (that version is returned).
    pub created: bool,
    pub cell_count: usize,
    pub notebook_sha256: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assigned_cell_ids: Vec<(usize, String)>,
    /// Mappings carried from the previous notebook version, by workflow version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub carried_mappings: Vec<i32>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VersionInfo {
    pub notebook_version: i32,
    pub notebook_sha256: String,
    pub cell_count: i32,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MappingRecord {
    pub workflow_id: String,
    pub workflow_version: i32,
    pub notebook_version: i32,
    pub status: String,
    pub mapping: Mapping,
    pub stale_cells: Vec<String>,
    pub stale_operators: Vec<String>,
    pub created_at: String,
    /// Set when the workflow version asked for has no mapping of its own and this is the
    /// newest earlier workflow version's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_from_workflow_version: Option<i32>,
}

pub struct Store {
    pub w: Warehouse,
}

impl Store {
    pub fn new(w: Warehouse) -> Self {
        Self { w }
    }

    async fn table(
        &self,
        def: &metastore::TableDef,
    ) -> Result<deltalake::DeltaTable, NotebookError> {
        self.w.open(def).await?.ok_or(NotebookError::NoTables)
    }

    async fn rows(
        &self,
        def: &metastore::TableDef,
        sql: String,
    ) -> Result<Vec<Map<String, Value>>, NotebookError> {
        let t = self.table(def).await?;
        let provider = t.table_provider().await.map_err(other)?;
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table(def.name, provider).map_err(other)?;
        let batches = ctx
            .sql(&sql)
            .await
            .map_err(other)?
            .collect()
            .await
            .map_err(other)?;
        crate::query::to_json_rows(&batches).map_err(other)
    }

    pub async fn list(&self, workflow_id: &str) -> Result<Vec<VersionInfo>, NotebookError> {
        let rows = self
            .rows(
                &SOURCE,
                format!(
                    "SELECT notebook_version, notebook_sha256, cell_count, created_at, created_by FROM {SOURCE_TABLE} WHERE workflow_id = {} ORDER BY notebook_version",
                    metastore::sql_literal(workflow_id)
                ),
            )
            .await?;
        rows.into_iter()
            .map(|r| serde_json::from_value(Value::Object(r)).map_err(other))
            .collect()
    }

    /// The stored notebook text of a version (latest when `None`) and its number.
    pub async fn get(
        &self,
        workflow_id: &str,
        version: Option<i32>,
    ) -> Result<(i32, String), NotebookError> {
        let filter = match version {
            Some(v) => format!(" AND notebook_version = {v}"),
            None => String::new(),
        };
        let rows = self
            .rows(
                &SOURCE,
                format!(
                    "SELECT notebook_version, notebook FROM {SOURCE_TABLE} WHERE workflow_id = {}{filter} ORDER BY notebook_version DESC LIMIT 1",
                    metastore::sql_literal(workflow_id)
                ),
            )
            .await?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| NotebookError::NotFound {
                what: "notebook",
                detail: match version {
                    Some(v) => format!("workflow {workflow_id} has no notebook version {v}"),
                    None => format!("workflow {workflow_id} has no notebook"),
                },
            })?;
        Ok((
            r["notebook_version"].as_i64().unwrap_or(0) as i32,
            r["notebook"].as_str().unwrap_or_default().to_string(),
        ))
    }

    async fn notebook(&self, workflow_id: &str, version: i32) -> Result<Notebook, NotebookError> {
        let (_, text) = self.get(workflow_id, Some(version)).await?;
        Notebook::parse(&text)
    }

    /// Stores a notebook as the workflow's next version (or returns the version holding the
    /// same content), and carries the previous version's mappings to it. Two concurrent puts
    /// cannot take one number: the insert replaces `(workflow_id, notebook_version)`, so a
    /// concurrent insert of that number is a Delta conflict, and the loser tries the next.
    pub async fn put(
        &self,
        workflow_id: &str,
        text: &str,
        created_by: Option<&str>,
    ) -> Result<PutResult, NotebookError> {
        crate::payload::validate_id("--workflow-id", workflow_id)
            .map_err(|e| NotebookError::Invalid(e.to_string()))?;
        let nb = Notebook::parse(text)?;
        let mut tried = 0;
        for _attempt in 0..50 {
            let versions = self.list(workflow_id).await?;
            if let Some(v) = versions.iter().find(|v| v.notebook_sha256 == nb.sha256) {
                return Ok(PutResult {
                    workflow_id: workflow_id.to_string(),
                    notebook_version: v.notebook_version,
                    created: false,
                    cell_count: nb.cells.len(),
                    notebook_sha256: nb.sha256.clone(),
                    assigned_cell_ids: nb.assigned_ids.clone(),
                    carried_mappings: Vec::new(),
                });
            }
            let next = (versions
                .iter()
                .map(|v| v.notebook_version)
                .max()
                .unwrap_or(0)
                + 1)
            .max(tried + 1);
            tried = next;
            // The number is claimed with a conditional write first: two writers cannot both
            // create the claim, and delta-rs does not report two appends of one
            // (workflow_id, notebook_version) as a conflict. A writer that dies after
            // claiming leaves a gap in the numbers, never a duplicate.
            if !self.claim(workflow_id, next).await? {
                continue;
            }
            let batch = metastore::BatchBuilder::new(&SOURCE)
                .strings("workflow_id", [Some(workflow_id)])
                .i32s("notebook_version", [Some(next)])
                .strings("notebook", [Some(nb.text.as_str())])
                .strings("notebook_sha256", [Some(nb.sha256.as_str())])
                .i32s("cell_count", [Some(nb.cells.len() as i32)])
                .timestamps("created_at", [Some(Utc::now())])
                .strings("created_by", [created_by])
                .build()?;
            let predicate = format!(
                "workflow_id = {} AND notebook_version = {next}",
                metastore::sql_literal(workflow_id)
            );
            let t = self.table(&SOURCE).await?;
            let written = t
                .write(vec![batch])
                .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
                .with_replace_where(predicate)
                .with_commit_properties(
                    metastore::base_commit_properties().with_max_retries(metastore::COMMIT_RETRIES),
                )
                .await;
            match written {
                Ok(_) => {
                    // Carried from the newest stored version below this one (with
                    // concurrent writers, a lower number may be claimed but not yet stored).
                    let prev_v = self
                        .list(workflow_id)
                        .await?
                        .into_iter()
                        .map(|v| v.notebook_version)
                        .filter(|v| *v < next)
                        .max();
                    let carried = match prev_v {
                        Some(pv) => {
                            let prev = self.notebook(workflow_id, pv).await?;
                            self.carry_forward(workflow_id, &prev, pv, &nb, next)
                                .await?
                        }
                        None => Vec::new(),
                    };
                    return Ok(PutResult {
                        workflow_id: workflow_id.to_string(),
                        notebook_version: next,
                        created: true,
                        cell_count: nb.cells.len(),
                        notebook_sha256: nb.sha256.clone(),
                        assigned_cell_ids: nb.assigned_ids.clone(),
                        carried_mappings: carried,
                    });
                }
                Err(e) => return Err(other(format!("storing notebook version {next}: {e}"))),
            }
        }
        Err(NotebookError::Other(format!(
            "could not store a notebook version for {workflow_id}: too many concurrent writers"
        )))
    }

    /// Claims notebook version `v` of a workflow; false when another writer has it.
    async fn claim(&self, workflow_id: &str, v: i32) -> Result<bool, NotebookError> {
        use object_store::{PutMode, PutOptions, PutPayload};
        let path = self
            .w
            .root
            .prefix
            .clone()
            .join(metastore::SCHEMA_NAME)
            .join("_claims")
            .join(SOURCE_TABLE)
            .join(workflow_id)
            .join(v.to_string());
        if let Some(d) = &self.w.root.local_dir {
            let dir = d
                .join(metastore::SCHEMA_NAME)
                .join("_claims")
                .join(SOURCE_TABLE)
                .join(workflow_id);
            std::fs::create_dir_all(&dir).map_err(other)?;
        }
        let body = json!({"pid": std::process::id(), "at": Utc::now().to_rfc3339()}).to_string();
        match self
            .w
            .root
            .store
            .put_opts(
                &path,
                PutPayload::from(body.into_bytes()),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => {
                tracing::info!(
                    version = v,
                    "notebook version taken by a concurrent writer, trying the next"
                );
                Ok(false)
            }
            Err(e) => Err(NotebookError::Other(self.w.root.explain(&e))),
        }
    }

    pub async fn diff(&self, workflow_id: &str, from: i32, to: i32) -> Result<Diff, NotebookError> {
        let a = self.notebook(workflow_id, from).await?;
        let b = self.notebook(workflow_id, to).await?;
        Ok(diff(&a, &b, from, to))
    }

    async fn mapping_rows(
        &self,
        workflow_id: &str,
        filter: &str,
    ) -> Result<Vec<MappingRecord>, NotebookError> {
        let rows = self
            .rows(
                &MAPPING,
                format!(
                    "SELECT * FROM {MAPPING_TABLE} WHERE workflow_id = {}{filter} ORDER BY workflow_version DESC, notebook_version DESC",
                    metastore::sql_literal(workflow_id)
                ),
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                let list = |k: &str| -> Vec<String> {
                    r.get(k)
                        .and_then(Value::as_str)
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or_default()
                };
                Ok(MappingRecord {
                    workflow_id: workflow_id.to_string(),
                    workflow_version: r["workflow_version"].as_i64().unwrap_or(0) as i32,
                    notebook_version: r["notebook_version"].as_i64().unwrap_or(0) as i32,
                    status: r["status"].as_str().unwrap_or_default().to_string(),
                    mapping: Mapping::parse(r["mapping"].as_str().unwrap_or("{}"))?,
                    stale_cells: list("stale_cells"),
                    stale_operators: list("stale_operators"),
                    created_at: r["created_at"].as_str().unwrap_or_default().to_string(),
                    fallback_from_workflow_version: None,
                })
            })
            .collect()
    }

    async fn write_mapping(&self, rec: &MappingRecord) -> Result<(), NotebookError> {
        let batch = metastore::BatchBuilder::new(&MAPPING)
            .strings("workflow_id", [Some(rec.workflow_id.as_str())])
            .i32s("workflow_version", [Some(rec.workflow_version)])
            .i32s("notebook_version", [Some(rec.notebook_version)])
            .strings(
                "mapping",
                [Some(serde_json::to_string(&rec.mapping).map_err(other)?)],
            )
            .strings("status", [Some(rec.status.as_str())])
            .strings(
                "stale_cells",
                [Some(
                    serde_json::to_string(&rec.stale_cells).map_err(other)?,
                )],
            )
            .strings(
                "stale_operators",
                [Some(
                    serde_json::to_string(&rec.stale_operators).map_err(other)?,
                )],
            )
            .timestamps("created_at", [Some(Utc::now())])
            .build()?;
        let predicate = format!(
            "workflow_id = {} AND workflow_version = {} AND notebook_version = {}",
            metastore::sql_literal(&rec.workflow_id),
            rec.workflow_version,
            rec.notebook_version
        );
        self.table(&MAPPING)
            .await?
            .write(vec![batch])
            .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_commit_properties(
                metastore::base_commit_properties().with_max_retries(metastore::COMMIT_RETRIES),
            )
            .await
            .map_err(other)?;
        Ok(())
    }

    /// Carries every mapping of notebook version `from_v` to `to_v` (status `carried`).
    async fn carry_forward(
        &self,
        workflow_id: &str,
        old: &Notebook,
        from_v: i32,
        new: &Notebook,
        to_v: i32,
    ) -> Result<Vec<i32>, NotebookError> {
        let rows = self
            .mapping_rows(workflow_id, &format!(" AND notebook_version = {from_v}"))
            .await?;
        let mut done = Vec::new();
        for r in rows {
            let c = carry(&r.mapping, old, new, &r.stale_cells);
            self.write_mapping(&MappingRecord {
                workflow_id: workflow_id.to_string(),
                workflow_version: r.workflow_version,
                notebook_version: to_v,
                status: "carried".into(),
                mapping: c.mapping,
                stale_cells: c.stale_cells,
                stale_operators: c.stale_operators,
                created_at: String::new(),
                fallback_from_workflow_version: None,
            })
            .await?;
            done.push(r.workflow_version);
        }
        Ok(done)
    }

    /// Checks a mapping against a notebook version (latest when `None`) and, when given, the
    /// workflow's operators. Returns the notebook version it was checked against.
    pub async fn check_mapping(
        &self,
        workflow_id: &str,
        notebook_version: Option<i32>,
        mapping: &Mapping,
        workflow: Option<&str>,
    ) -> Result<i32, NotebookError> {
        let (v, text) = self.get(workflow_id, notebook_version).await?;
        let nb = Notebook::parse(&text)?;
        let ops = workflow.map(workflow_operators).transpose()?;
        mapping.check(&nb, ops.as_ref())?;
        Ok(v)
    }

    pub async fn put_mapping(
        &self,
        workflow_id: &str,
        workflow_version: i32,
        notebook_version: Option<i32>,
        mapping: Mapping,
        workflow: Option<&str>,
    ) -> Result<MappingRecord, NotebookError> {
        if workflow_version < 1 {
            return Err(NotebookError::Mapping(
                "--workflow-version must be 1 or more".into(),
            ));
        }
        let nv = self
            .check_mapping(workflow_id, notebook_version, &mapping, workflow)
            .await?;
        let rec = MappingRecord {
            workflow_id: workflow_id.to_string(),
            workflow_version,
            notebook_version: nv,
            status: "valid".into(),
            mapping,
            stale_cells: Vec::new(),
            stale_operators: Vec::new(),
            created_at: String::new(),
            fallback_from_workflow_version: None,
        };
        self.write_mapping(&rec).await?;
        Ok(rec)
    }

    /// The best mapping for (workflow version, notebook version): its own (valid or carried),
    /// else the newest earlier workflow version's for that notebook version.
    pub async fn get_mapping(
        &self,
        workflow_id: &str,
        workflow_version: i32,
        notebook_version: Option<i32>,
    ) -> Result<MappingRecord, NotebookError> {
        let nv = match notebook_version {
            Some(v) => v,
            None => self.get(workflow_id, None).await?.0,
        };
        let rows = self
            .mapping_rows(
                workflow_id,
                &format!(" AND notebook_version = {nv} AND workflow_version <= {workflow_version}"),
            )
            .await?;
        let mut best = rows.into_iter().next().ok_or_else(|| NotebookError::NotFound {
            what: "mapping",
            detail: format!(
                "workflow {workflow_id} has no mapping for workflow version {workflow_version} or earlier with notebook version {nv}"
            ),
        })?;
        if best.workflow_version != workflow_version {
            // Made for an earlier workflow version: the workflow changed since, so its
            // operators may no longer match. Reported as `stale`, with where it came from.
            best.fallback_from_workflow_version = Some(best.workflow_version);
            best.status = "stale".into();
        }
        Ok(best)
    }
}
