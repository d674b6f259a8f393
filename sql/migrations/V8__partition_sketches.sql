-- V8: per-partition sketches (README "Profiles over time"). A table partitioned by
-- `key=value` folders keeps, per partition, the mergeable state of its profile aggregate
-- (counts, null counts, min/max, moments, distinct-count and quantile sketches, value
-- counts) with the fingerprint of the partition's files: a re-run reads only new or
-- changed partitions, drops removed ones and merges the rest. The sketches hold sampled
-- values as read, so only jobs that keep raw values (`--samples raw`) write them.
-- Every table also gets a checkpoint every 10 commits (Delta's default is 100): opening a
-- table reads its log since the last checkpoint, and a job opens each table it writes.

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.partition_sketches (
  id BIGINT, workflow_id STRING, source_id STRING, run_id STRING, table_name STRING,
  partition_path STRING, fingerprint STRING, schema_key STRING, row_count BIGINT,
  file_schema BINARY, sketch BINARY, computed_at TIMESTAMP
) USING DELTA PARTITIONED BY (workflow_id);

ALTER TABLE hive_metastore._executor_metadata.partition_sketches
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,source_id,run_id,table_name,partition_path,row_count,computed_at');

ALTER TABLE hive_metastore._executor_metadata.sources
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.tables
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.columns
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.executor_runs
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.workflow_notebook_source
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.workflow_notebook_mapping
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.table_history
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.column_history
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.changes
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');

ALTER TABLE hive_metastore._executor_metadata.partition_sketches
  SET TBLPROPERTIES ('delta.checkpointInterval' = '10');
