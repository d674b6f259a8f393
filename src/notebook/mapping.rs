//! Cell <-> operator mappings: their checks against a notebook version and a workflow
//! definition, and how they are carried to a new notebook version (no I/O).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Notebook, NotebookError};

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
