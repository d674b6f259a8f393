//! The Delta-backed notebook store: notebook versions in `workflow_notebook_source`
//! (numbers claimed with a conditional write) and the mappings users put in
//! `workflow_notebook_mapping`.
//!
//! Mappings are carried on read: the table holds what users put, and `get_mapping` takes the
//! newest mapping made for the asked notebook version or an earlier one and carries it
//! through every notebook edit since. Nothing derived is stored, so no order of arrival
//! (a mapping for version 1 put after version 2 exists), failed write or retried put can
//! leave a carried entry missing or stale.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{
    DEFAULT_MAX_BYTES, Diff, Mapping, Notebook, NotebookError, carry, diff, other,
    workflow_operators,
};
use crate::warehouse::{self, NOTEBOOK_MAPPING as MAPPING, NOTEBOOK_SOURCE as SOURCE, Warehouse};

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
    /// The workflow versions whose mappings (made for an earlier notebook version) carry to
    /// this version.
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
    /// Operators whose every cell was deleted by the notebook edits since the mapping was
    /// made: that part of the workflow has no cells left.
    pub orphaned_operators: Vec<String>,
    pub created_at: String,
    /// Set when the mapping was made for this earlier notebook version and carried here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried_from_notebook_version: Option<i32>,
    /// Set when the workflow version asked for has no mapping of its own and this is the
    /// newest earlier workflow version's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_from_workflow_version: Option<i32>,
    /// With a workflow definition given: the mapping's operators it no longer has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_operators: Option<Vec<String>>,
}

pub struct Store {
    pub w: Warehouse,
    /// The largest notebook stored, in bytes.
    pub max_bytes: usize,
}

impl Store {
    pub fn new(w: Warehouse) -> Self {
        Self {
            w,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    async fn table(
        &self,
        def: &warehouse::TableDef,
    ) -> Result<deltalake::DeltaTable, NotebookError> {
        self.w.open(def).await?.ok_or(NotebookError::NoTables)
    }

    /// Rows of `sql` over table `def`; a warehouse without the table has no notebook store.
    async fn rows(
        &self,
        def: &warehouse::TableDef,
        sql: String,
    ) -> Result<Vec<Map<String, Value>>, NotebookError> {
        self.table(def).await?;
        Ok(self.w.select(&sql).await?)
    }

    pub async fn list(&self, workflow_id: &str) -> Result<Vec<VersionInfo>, NotebookError> {
        let rows = self
            .rows(
                &SOURCE,
                format!(
                    "SELECT notebook_version, notebook_sha256, cell_count, created_at, created_by FROM {} WHERE workflow_id = {} ORDER BY notebook_version",
                    SOURCE.name,
                    warehouse::sql_literal(workflow_id)
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
                    "SELECT notebook_version, notebook FROM {} WHERE workflow_id = {}{filter} ORDER BY notebook_version DESC LIMIT 1",
                    SOURCE.name,
                    warehouse::sql_literal(workflow_id)
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
        Notebook::parse(&text, None)
    }

    /// The stored versions from `from` to `to` (inclusive), oldest first.
    async fn notebooks(
        &self,
        workflow_id: &str,
        from: i32,
        to: i32,
    ) -> Result<Vec<(i32, Notebook)>, NotebookError> {
        let rows = self
            .rows(
                &SOURCE,
                format!(
                    "SELECT notebook_version, notebook FROM {} WHERE workflow_id = {} AND notebook_version BETWEEN {from} AND {to} ORDER BY notebook_version",
                    SOURCE.name,
                    warehouse::sql_literal(workflow_id)
                ),
            )
            .await?;
        rows.iter()
            .map(|r| {
                let v = r["notebook_version"].as_i64().unwrap_or(0) as i32;
                Ok((
                    v,
                    Notebook::parse(r["notebook"].as_str().unwrap_or("{}"), None)?,
                ))
            })
            .collect()
    }

    /// The workflow versions with a mapping made for a notebook version below `version`.
    async fn mappings_below(
        &self,
        workflow_id: &str,
        version: i32,
    ) -> Result<Vec<i32>, NotebookError> {
        let rows = self
            .rows(
                &MAPPING,
                format!(
                    "SELECT DISTINCT workflow_version FROM {} WHERE workflow_id = {} AND status = 'valid' AND notebook_version < {version} ORDER BY workflow_version",
                    MAPPING.name,
                    warehouse::sql_literal(workflow_id)
                ),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r["workflow_version"].as_i64().map(|v| v as i32))
            .collect())
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
        warehouse::validate_id("--workflow-id", workflow_id)
            .map_err(|e| NotebookError::Invalid(e.to_string()))?;
        if text.len() > self.max_bytes {
            return Err(NotebookError::Invalid(format!(
                "{} bytes is over the {} byte limit (NUVYN_NOTEBOOK_MAX_BYTES)",
                text.len(),
                self.max_bytes
            )));
        }
        // Cells without ids keep the ids of the matching cells of the latest version.
        let latest = self
            .list(workflow_id)
            .await?
            .last()
            .map(|v| v.notebook_version);
        let previous = match latest {
            Some(v) => Some(self.notebook(workflow_id, v).await?),
            None => None,
        };
        let nb = Notebook::parse(text, previous.as_ref())?;
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
                    carried_mappings: self.mappings_below(workflow_id, v.notebook_version).await?,
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
            let batch = warehouse::BatchBuilder::new(&SOURCE)
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
                warehouse::sql_literal(workflow_id)
            );
            let t = self.table(&SOURCE).await?;
            let written = t
                .write(vec![batch])
                .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
                .with_replace_where(predicate)
                .with_commit_properties(
                    warehouse::base_commit_properties().with_max_retries(warehouse::COMMIT_RETRIES),
                )
                .await;
            match written {
                Ok(_) => {
                    let carried = self.mappings_below(workflow_id, next).await?;
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
            .join(warehouse::SCHEMA_NAME)
            .join("_claims")
            .join(SOURCE.name)
            .join(workflow_id)
            .join(v.to_string());
        if let Some(d) = &self.w.root.local_dir {
            let dir = d
                .join(warehouse::SCHEMA_NAME)
                .join("_claims")
                .join(SOURCE.name)
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
                    "SELECT * FROM {} WHERE workflow_id = {}{filter} ORDER BY workflow_version DESC, notebook_version DESC",
                    MAPPING.name,
                    warehouse::sql_literal(workflow_id)
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
                    orphaned_operators: Vec::new(),
                    created_at: r["created_at"].as_str().unwrap_or_default().to_string(),
                    carried_from_notebook_version: None,
                    fallback_from_workflow_version: None,
                    missing_operators: None,
                })
            })
            .collect()
    }

    async fn write_mapping(&self, rec: &MappingRecord) -> Result<(), NotebookError> {
        let batch = warehouse::BatchBuilder::new(&MAPPING)
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
            warehouse::sql_literal(&rec.workflow_id),
            rec.workflow_version,
            rec.notebook_version
        );
        self.table(&MAPPING)
            .await?
            .write(vec![batch])
            .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_commit_properties(
                warehouse::base_commit_properties().with_max_retries(warehouse::COMMIT_RETRIES),
            )
            .await
            .map_err(other)?;
        Ok(())
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
        let nb = Notebook::parse(&text, None)?;
        let ops = workflow.map(workflow_operators).transpose()?;
        mapping.check(&nb, ops.as_ref())?;
        Ok(v)
    }

    /// Stores a checked mapping of a workflow version to a notebook version (latest when
    /// `None`). Later notebook versions get it by carry-forward when read.
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
            orphaned_operators: Vec::new(),
            created_at: String::new(),
            carried_from_notebook_version: None,
            fallback_from_workflow_version: None,
            missing_operators: workflow.map(|_| Vec::new()),
        };
        self.write_mapping(&rec).await?;
        Ok(rec)
    }

    /// The mapping for (workflow version, notebook version; latest when `None`): the newest
    /// mapping put for that workflow version and that notebook version or an earlier one,
    /// carried through every notebook edit since (status `valid` when made for this
    /// version, else `carried`); without one, the newest earlier workflow version's, found
    /// the same way (status `stale`). With the workflow definition, the operators it no
    /// longer has are listed.
    pub async fn get_mapping(
        &self,
        workflow_id: &str,
        workflow_version: i32,
        notebook_version: Option<i32>,
        workflow: Option<&str>,
    ) -> Result<MappingRecord, NotebookError> {
        let operators = workflow.map(workflow_operators).transpose()?;
        let nv = match notebook_version {
            Some(v) => v,
            None => self.get(workflow_id, None).await?.0,
        };
        // Only what users put: rows an earlier version of this store carried are derived.
        let rows = self
            .mapping_rows(
                workflow_id,
                &format!(
                    " AND status = 'valid' AND notebook_version <= {nv} AND workflow_version <= {workflow_version}"
                ),
            )
            .await?;
        let mut best = rows.into_iter().next().ok_or_else(|| NotebookError::NotFound {
            what: "mapping",
            detail: format!(
                "workflow {workflow_id} has no mapping for workflow version {workflow_version} or earlier with notebook version {nv} or earlier"
            ),
        })?;
        if best.notebook_version < nv {
            let chain = self
                .notebooks(workflow_id, best.notebook_version, nv)
                .await?;
            if chain.last().map(|(v, _)| *v) != Some(nv) {
                return Err(NotebookError::NotFound {
                    what: "notebook",
                    detail: format!("workflow {workflow_id} has no notebook version {nv}"),
                });
            }
            let mut carried = super::Carried {
                mapping: best.mapping.clone(),
                ..Default::default()
            };
            for pair in chain.windows(2) {
                let (old, new) = (&pair[0].1, &pair[1].1);
                carried = carry(&carried.mapping, old, new, &carried);
            }
            best.carried_from_notebook_version = Some(best.notebook_version);
            best.notebook_version = nv;
            best.status = "carried".into();
            best.mapping = carried.mapping;
            best.stale_cells = carried.stale_cells;
            best.stale_operators = carried.stale_operators;
            best.orphaned_operators = carried.orphaned_operators;
        }
        if best.workflow_version != workflow_version {
            // Made for an earlier workflow version: the workflow changed since, so its
            // operators may no longer match. Reported as `stale`, with where it came from.
            best.fallback_from_workflow_version = Some(best.workflow_version);
            best.status = "stale".into();
        }
        best.missing_operators = operators.map(|ops| super::missing_operators(&best.mapping, &ops));
        Ok(best)
    }
}
