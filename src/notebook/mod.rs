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

pub use mapping::{Carried, Mapping, carry, missing_operators, workflow_operators};
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
    /// Checks an uploaded `.ipynb`. Cells without ids (nbformat < 4.5) get ids written into
    /// the stored notebook: a cell matching one of `previous` (the version it replaces) keeps
    /// that cell's id, matched first by content (same type and source, in order) and then by
    /// position (an edited cell in the same place), so an edited copy of an old file keeps
    /// the ids, and the mapping entries, of the cells that did not change. Other cells get
    /// `cell-<index>-<hash of the source>`.
    pub fn parse(text: &str, previous: Option<&Notebook>) -> Result<Self, NotebookError> {
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
        let mut unassigned = Vec::new();
        if let Some(prev) = previous {
            let mut taken = vec![false; prev.cells.len()];
            let free = |j: usize, taken: &[bool], seen: &BTreeMap<String, usize>| {
                !taken[j] && !seen.contains_key(&prev.cells[j].id)
            };
            let mut by_content = Vec::new();
            for i in missing_ids {
                let same = (0..prev.cells.len()).find(|&j| {
                    free(j, &taken, &seen)
                        && prev.cells[j].cell_type == cells[i].cell_type
                        && prev.cells[j].source == cells[i].source
                });
                match same {
                    Some(j) => {
                        taken[j] = true;
                        seen.insert(prev.cells[j].id.clone(), i);
                        by_content.push((i, prev.cells[j].id.clone()));
                    }
                    None => unassigned.push(i),
                }
            }
            // By position: an unmatched cell takes the first unmatched previous cell between
            // the previous partners of its matched neighbours (an edited cell in its place).
            let partner: BTreeMap<usize, usize> = by_content
                .iter()
                .map(|(i, id)| {
                    (
                        *i,
                        prev.cells
                            .iter()
                            .position(|c| &c.id == id)
                            .expect("matched"),
                    )
                })
                .collect();
            let mut rest = Vec::new();
            for i in unassigned {
                let lo = partner
                    .range(..i)
                    .next_back()
                    .map(|(_, j)| j + 1)
                    .unwrap_or(0);
                let hi = partner
                    .range(i + 1..)
                    .next()
                    .map(|(_, j)| *j)
                    .unwrap_or(prev.cells.len());
                match (lo..hi.max(lo)).find(|&j| free(j, &taken, &seen)) {
                    Some(j) => {
                        taken[j] = true;
                        seen.insert(prev.cells[j].id.clone(), i);
                        by_content.push((i, prev.cells[j].id.clone()));
                    }
                    None => rest.push(i),
                }
            }
            for (i, id) in by_content {
                cells[i].id = id.clone();
                assigned_ids.push((i, id));
            }
            unassigned = rest;
        } else {
            unassigned = missing_ids;
        }
        for i in unassigned {
            let mut id = format!("cell-{i}-{}", &sha256_hex(&cells[i].source)[..8]);
            while seen.contains_key(&id) {
                id.push('x');
            }
            seen.insert(id.clone(), i);
            cells[i].id = id.clone();
            assigned_ids.push((i, id));
        }
        assigned_ids.sort();
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
    let changed: BTreeSet<&str> = d.changed.iter().map(String::as_str).collect();
    for (rank, id) in shared_new.iter().enumerate() {
        if shared_old.get(rank) != Some(id) && !changed.contains(id) {
            d.moved.push(id.to_string());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(cells: &[(&str, &str)]) -> String {
        let cells: Vec<Value> = cells
            .iter()
            .map(|(ty, src)| json!({"cell_type": ty, "source": src, "metadata": {}}))
            .collect();
        json!({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells}).to_string()
    }

    #[test]
    fn cells_without_ids_keep_the_ids_of_the_cells_they_were() {
        let v1 = Notebook::parse(
            &legacy(&[
                ("markdown", "# t"),
                ("code", "a"),
                ("code", "b"),
                ("code", "c"),
            ]),
            None,
        )
        .unwrap();
        let ids1: Vec<&str> = v1.cells.iter().map(|c| c.id.as_str()).collect();
        // A cell inserted first, "b" edited, "c" turned into markdown: every old cell keeps
        // its id (by content, then by its place between matched neighbours); the new one
        // gets a fresh id.
        let v2 = Notebook::parse(
            &legacy(&[
                ("markdown", "new"),
                ("markdown", "# t"),
                ("code", "a"),
                ("code", "b2"),
                ("markdown", "c"),
            ]),
            Some(&v1),
        )
        .unwrap();
        let ids2: Vec<&str> = v2.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(&ids2[1..], &ids1[..], "{ids2:?}");
        assert!(!ids1.contains(&ids2[0]));
        // Without the previous version, ids come from index and source, as before.
        let fresh = Notebook::parse(&legacy(&[("code", "a")]), None).unwrap();
        assert!(fresh.cells[0].id.starts_with("cell-0-"));
        // The same file uploaded again matches the version it made: same ids, same hash.
        let again = Notebook::parse(
            &legacy(&[
                ("markdown", "new"),
                ("markdown", "# t"),
                ("code", "a"),
                ("code", "b2"),
                ("markdown", "c"),
            ]),
            Some(&v2),
        )
        .unwrap();
        assert_eq!(again.sha256, v2.sha256);
    }
}
