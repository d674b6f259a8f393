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

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::warehouse;

pub mod mapping;
pub mod store;

pub use mapping::{Carried, Mapping, carry, workflow_operators};
pub use store::{MappingRecord, PutResult, Store, VersionInfo};

/// Default size limit of a stored notebook (`NUVYN_NOTEBOOK_MAX_BYTES` changes it).
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
    Metastore(#[from] warehouse::WarehouseError),
    #[error("{0}")]
    Other(String),
}

pub(crate) fn other(e: impl std::fmt::Display) -> NotebookError {
    NotebookError::Other(crate::redact::text(&e.to_string()))
}

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

impl Notebook {
    /// Checks an uploaded `.ipynb`. Notebooks without cell ids get deterministic ones
    /// (`cell-<index>-<hash of the source>`), written into the stored notebook.
    pub fn parse(text: &str) -> Result<Self, NotebookError> {
        let bad = |m: String| NotebookError::Invalid(m);
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
