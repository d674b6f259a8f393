-- Databricks notebook source
-- MAGIC %md
-- MAGIC # Query the executor's metadata
-- MAGIC The example queries of the workflow_id migration document, with `workflow_id`,
-- MAGIC `source_id` and `catalog` as widgets (`:workflow_id`, `:source_id`, `:catalog` parameter
-- MAGIC markers; `IDENTIFIER(:catalog || '._executor_metadata.sources')` names a table in the
-- MAGIC catalog the tables are registered in: `hive_metastore`, or a Unity Catalog catalog;
-- MAGIC a catalog name with a hyphen goes in backticks: `` `my-catalog` ``).
-- MAGIC Queries 1 and 4 are the document's, as written, followed by a corrected version: the
-- MAGIC document joins `sources`, `tables` and `columns` on `workflow_id` (and the table name)
-- MAGIC only, so a workflow with two sources repeats every column once per source, and query 4
-- MAGIC counts every source's tables. The corrected versions also join on `source_id` and the
-- MAGIC run (`run_id`).

-- COMMAND ----------

CREATE WIDGET TEXT catalog DEFAULT 'hive_metastore';
CREATE WIDGET TEXT workflow_id DEFAULT 'workflow_abc123';
CREATE WIDGET TEXT source_id DEFAULT 'source_xyz789';

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## All metadata of a workflow (the document's query 1)

-- COMMAND ----------

SELECT 
    s.workflow_id,
    s.source_id,
    s.source_path,
    s.extraction_timestamp,
    t.table_name,
    t.row_count,
    c.column_name,
    c.data_type
FROM IDENTIFIER(:catalog || '._executor_metadata.sources') s
JOIN IDENTIFIER(:catalog || '._executor_metadata.tables') t 
    ON s.workflow_id = t.workflow_id
JOIN IDENTIFIER(:catalog || '._executor_metadata.columns') c 
    ON t.workflow_id = c.workflow_id 
    AND t.table_name = c.table_name
WHERE s.workflow_id = :workflow_id
ORDER BY t.table_name, c.position;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## All metadata of a workflow, each column once under its own source (query 1 corrected)

-- COMMAND ----------

SELECT
    s.workflow_id,
    s.source_id,
    s.source_path,
    s.extraction_timestamp,
    t.table_name,
    t.row_count,
    c.column_name,
    c.data_type
FROM IDENTIFIER(:catalog || '._executor_metadata.sources') s
JOIN IDENTIFIER(:catalog || '._executor_metadata.tables') t
    ON s.workflow_id = t.workflow_id
    AND (s.source_id IS NOT DISTINCT FROM t.source_id)
    AND s.run_id = t.run_id
JOIN IDENTIFIER(:catalog || '._executor_metadata.columns') c
    ON t.workflow_id = c.workflow_id
    AND (t.source_id IS NOT DISTINCT FROM c.source_id)
    AND t.run_id = c.run_id
    AND t.table_name = c.table_name
WHERE s.workflow_id = :workflow_id
ORDER BY s.source_id, t.table_name, c.position;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## A workflow's columns, filtered by source (query 2)

-- COMMAND ----------

SELECT 
    c.workflow_id,
    c.source_id,
    c.table_name,
    c.column_name,
    c.data_type,
    c.position,
    c.is_nullable
FROM IDENTIFIER(:catalog || '._executor_metadata.columns') c
WHERE c.workflow_id = :workflow_id
  AND c.source_id = :source_id
ORDER BY c.table_name, c.position;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## Everything of one source, across workflows (query 3)

-- COMMAND ----------

SELECT 
    c.workflow_id,
    c.source_id,
    c.table_name,
    c.column_name,
    c.data_type
FROM IDENTIFIER(:catalog || '._executor_metadata.columns') c
WHERE c.source_id = :source_id
ORDER BY c.workflow_id, c.table_name, c.position;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## Latest extraction summary of a workflow (the document's query 4)

-- COMMAND ----------

SELECT 
    s.workflow_id,
    s.source_id,
    s.source_path,
    s.extraction_timestamp,
    s.files_found,
    COUNT(DISTINCT t.table_name) as table_count,
    COUNT(c.column_name) as total_columns
FROM IDENTIFIER(:catalog || '._executor_metadata.sources') s
LEFT JOIN IDENTIFIER(:catalog || '._executor_metadata.tables') t 
    ON s.workflow_id = t.workflow_id
LEFT JOIN IDENTIFIER(:catalog || '._executor_metadata.columns') c 
    ON t.workflow_id = c.workflow_id 
    AND t.table_name = c.table_name
WHERE s.workflow_id = :workflow_id
GROUP BY s.workflow_id, s.source_id, s.source_path, s.extraction_timestamp, s.files_found
ORDER BY s.extraction_timestamp DESC
LIMIT 1;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## Latest extraction summary, counting that source's own tables (query 4 corrected)

-- COMMAND ----------

SELECT
    s.workflow_id,
    s.source_id,
    s.source_path,
    s.extraction_timestamp,
    s.files_found,
    COUNT(DISTINCT t.table_name) as table_count,
    COUNT(c.column_name) as total_columns
FROM IDENTIFIER(:catalog || '._executor_metadata.sources') s
LEFT JOIN IDENTIFIER(:catalog || '._executor_metadata.tables') t
    ON s.workflow_id = t.workflow_id
    AND (s.source_id IS NOT DISTINCT FROM t.source_id)
    AND s.run_id = t.run_id
LEFT JOIN IDENTIFIER(:catalog || '._executor_metadata.columns') c
    ON t.workflow_id = c.workflow_id
    AND (t.source_id IS NOT DISTINCT FROM c.source_id)
    AND t.run_id = c.run_id
    AND t.table_name = c.table_name
WHERE s.workflow_id = :workflow_id
GROUP BY s.workflow_id, s.source_id, s.source_path, s.extraction_timestamp, s.files_found
ORDER BY s.extraction_timestamp DESC
LIMIT 1;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## Column profiles of a workflow
-- MAGIC Each column's statistics beside its table's quality score (README "Column profiles"):
-- MAGIC `quantiles` and `top_values` are JSON text (`from_json` or `:` paths read them);
-- MAGIC values of columns flagged `pii` are masked unless the job kept them raw.

-- COMMAND ----------

SELECT
    t.table_name,
    t.quality_score,
    c.column_name,
    c.data_type,
    c.semantic_type,
    c.pii,
    c.null_fraction,
    c.distinct_fraction,
    c.min_value,
    c.max_value,
    c.mean,
    c.stddev,
    c.quantiles,
    c.top_values
FROM IDENTIFIER(:catalog || '._executor_metadata.tables') t
JOIN IDENTIFIER(:catalog || '._executor_metadata.columns') c
    ON t.workflow_id = c.workflow_id
    AND (t.source_id IS NOT DISTINCT FROM c.source_id)
    AND t.run_id = c.run_id
    AND t.table_name = c.table_name
WHERE t.workflow_id = :workflow_id
ORDER BY t.table_name, c.position;
