//! Cell <-> operator mappings: their checks against a notebook version and a workflow
//! definition, and how they are carried to a new notebook version (no I/O).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Notebook, NotebookError};

/// `{"cell_to_operator": {cell: [operator, ...]}, "operator_to_cell": {operator: [cell, ...]}}`
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
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

    pub(super) fn from_pairs(pairs: &BTreeSet<(String, String)>) -> Self {
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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Carried {
    pub mapping: Mapping,
    /// Cells whose source or type changed since the mapping was made.
    pub stale_cells: Vec<String>,
    /// Operators mapped to a stale cell.
    pub stale_operators: Vec<String>,
    /// Operators whose every cell was deleted: that part of the workflow has no cells left.
    pub orphaned_operators: Vec<String>,
}

/// Carries `m` (valid for `old`) to `new`: entries of unchanged cells stay; entries of cells
/// whose source or type changed stay but are stale (and so are their operators); entries of
/// deleted cells go, and an operator left with no cell is listed as orphaned. `before` is
/// what earlier carries already found (staleness and orphans carry on).
pub fn carry(m: &Mapping, old: &Notebook, new: &Notebook, before: &Carried) -> Carried {
    let cells = |nb: &Notebook| -> BTreeMap<String, (String, String)> {
        nb.cells
            .iter()
            .map(|c| (c.id.clone(), (c.cell_type.clone(), c.source.clone())))
            .collect()
    };
    let (old_cells, new_cells) = (cells(old), cells(new));
    let mut kept = BTreeSet::new();
    let mut stale_cells: BTreeSet<String> = BTreeSet::new();
    let mut stale_ops: BTreeSet<String> = before.stale_operators.iter().cloned().collect();
    let mut orphaned: BTreeSet<String> = before.orphaned_operators.iter().cloned().collect();
    let mut dropped_ops: BTreeSet<String> = BTreeSet::new();
    for (c, o) in m.pairs_c2o() {
        let Some(now) = new_cells.get(&c) else {
            dropped_ops.insert(o);
            continue;
        };
        if old_cells.get(&c) != Some(now) || before.stale_cells.contains(&c) {
            stale_cells.insert(c.clone());
            stale_ops.insert(o.clone());
        }
        kept.insert((c, o));
    }
    let mapping = Mapping::from_pairs(&kept);
    for o in dropped_ops {
        if !mapping.operator_to_cell.contains_key(&o) {
            orphaned.insert(o);
        }
    }
    // An operator mapped again (to another cell) is no longer an orphan.
    orphaned.retain(|o| !mapping.operator_to_cell.contains_key(o));
    stale_ops.retain(|o| mapping.operator_to_cell.contains_key(o));
    Carried {
        mapping,
        stale_cells: stale_cells.into_iter().collect(),
        stale_operators: stale_ops.into_iter().collect(),
        orphaned_operators: orphaned.into_iter().collect(),
    }
}

/// The operators of `m` that the workflow `operators` no longer has.
pub fn missing_operators(m: &Mapping, operators: &BTreeSet<String>) -> Vec<String> {
    m.operator_to_cell
        .keys()
        .filter(|o| !operators.contains(*o))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(cells: &[(&str, &str, &str)]) -> Notebook {
        let cells: Vec<Value> = cells
            .iter()
            .map(|(id, ty, src)| serde_json::json!({"id": id, "cell_type": ty, "source": src, "metadata": {}}))
            .collect();
        Notebook::parse(
            &serde_json::json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells})
                .to_string(),
            None,
        )
        .unwrap()
    }

    fn mapping(pairs: &[(&str, &str)]) -> Mapping {
        Mapping::from_pairs(
            &pairs
                .iter()
                .map(|(c, o)| (c.to_string(), o.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_type_change_is_stale_and_a_deleted_only_cell_orphans_its_operator() {
        let old = nb(&[
            ("a", "code", "x = 1"),
            ("b", "code", "y = 2"),
            ("c", "code", "z"),
        ]);
        let new = nb(&[("a", "markdown", "x = 1"), ("c", "code", "z")]);
        let m = mapping(&[("a", "op1"), ("b", "op2"), ("c", "op3"), ("b", "op3")]);
        let c = carry(&m, &old, &new, &Carried::default());
        assert_eq!(c.stale_cells, ["a"]);
        assert_eq!(c.stale_operators, ["op1"]);
        // op3 lost cell b but keeps c: not an orphan.
        assert_eq!(c.orphaned_operators, ["op2"]);
        assert_eq!(c.mapping, mapping(&[("a", "op1"), ("c", "op3")]));
        // Through a second edit, what was found stays found.
        let newer = nb(&[
            ("a", "markdown", "x = 1"),
            ("c", "code", "z"),
            ("d", "code", "w"),
        ]);
        let c2 = carry(&c.mapping, &new, &newer, &c);
        assert_eq!(c2.stale_cells, ["a"]);
        assert_eq!(c2.orphaned_operators, ["op2"]);
        assert_eq!(
            missing_operators(&c2.mapping, &["op3".to_string()].into()),
            ["op1"]
        );
    }
}
