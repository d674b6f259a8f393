-- V3: the notebook migration store (NOTEBOOK_MIGRATION_SCHEMA_DISCUSSION.md): one row per
-- notebook version, and one mapping per (workflow version, notebook version), so that editing
-- a notebook after a workflow was generated from it no longer breaks the mapping.
CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.workflow_notebook_source (
  workflow_id STRING,
  notebook_version INT,
  notebook STRING,
  notebook_sha256 STRING,
  cell_count INT,
  created_at TIMESTAMP,
  created_by STRING
) USING DELTA PARTITIONED BY (workflow_id);

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.workflow_notebook_mapping (
  workflow_id STRING,
  workflow_version INT,
  notebook_version INT,
  mapping STRING,
  status STRING,
  stale_cells STRING,
  stale_operators STRING,
  created_at TIMESTAMP
) USING DELTA PARTITIONED BY (workflow_id);
