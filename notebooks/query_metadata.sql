-- Databricks notebook source
-- MAGIC %md
-- MAGIC # Query the executor's metadata
-- MAGIC The example queries of the workflow_id migration document, with `workflow_id` and
-- MAGIC `source_id` as widgets (`:workflow_id`, `:source_id` parameter markers).

-- COMMAND ----------

CREATE WIDGET TEXT workflow_id DEFAULT 'workflow_abc123';
CREATE WIDGET TEXT source_id DEFAULT 'source_xyz789';

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## All metadata of a workflow

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
FROM hive_metastore._executor_metadata.sources s
JOIN hive_metastore._executor_metadata.tables t 
    ON s.workflow_id = t.workflow_id
JOIN hive_metastore._executor_metadata.columns c 
    ON t.workflow_id = c.workflow_id 
    AND t.table_name = c.table_name
WHERE s.workflow_id = :workflow_id
ORDER BY t.table_name, c.position;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## A workflow's columns, filtered by source

-- COMMAND ----------

SELECT 
    c.workflow_id,
    c.source_id,
    c.table_name,
    c.column_name,
    c.data_type,
    c.position,
    c.is_nullable
FROM hive_metastore._executor_metadata.columns c
WHERE c.workflow_id = :workflow_id
  AND c.source_id = :source_id
ORDER BY c.table_name, c.position;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## Everything of one source, across workflows

-- COMMAND ----------

SELECT 
    c.workflow_id,
    c.source_id,
    c.table_name,
    c.column_name,
    c.data_type
FROM hive_metastore._executor_metadata.columns c
WHERE c.source_id = :source_id
ORDER BY c.workflow_id, c.table_name, c.position;

-- COMMAND ----------

-- MAGIC %md
-- MAGIC ## Latest extraction summary of a workflow

-- COMMAND ----------

SELECT 
    s.workflow_id,
    s.source_id,
    s.source_path,
    s.extraction_timestamp,
    s.files_found,
    COUNT(DISTINCT t.table_name) as table_count,
    COUNT(c.column_name) as total_columns
FROM hive_metastore._executor_metadata.sources s
LEFT JOIN hive_metastore._executor_metadata.tables t 
    ON s.workflow_id = t.workflow_id
LEFT JOIN hive_metastore._executor_metadata.columns c 
    ON t.workflow_id = c.workflow_id 
    AND t.table_name = c.table_name
WHERE s.workflow_id = :workflow_id
GROUP BY s.workflow_id, s.source_id, s.source_path, s.extraction_timestamp, s.files_found
ORDER BY s.extraction_timestamp DESC
LIMIT 1;
