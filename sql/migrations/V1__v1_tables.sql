-- V1: the v1.0 metadata tables. source_id was the identifier (required, and the partition
-- column); there was no workflow_id. A warehouse created by a v1.0 executor is at this version.
CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.sources (
  id BIGINT,
  source_id STRING NOT NULL,
  source_path STRING,
  source_type STRING,
  extraction_timestamp TIMESTAMP,
  files_found INT,
  total_size_bytes BIGINT
) USING DELTA PARTITIONED BY (source_id);

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.tables (
  id BIGINT,
  source_id STRING NOT NULL,
  table_name STRING,
  file_path STRING,
  file_type STRING,
  row_count BIGINT,
  column_count INT,
  size_bytes BIGINT
) USING DELTA PARTITIONED BY (source_id);

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.columns (
  id BIGINT,
  source_id STRING NOT NULL,
  table_name STRING,
  column_name STRING,
  data_type STRING,
  position INT,
  is_nullable BOOLEAN,
  sample_values STRING
) USING DELTA PARTITIONED BY (source_id);

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.executor_runs (
  id BIGINT,
  run_id STRING,
  executor_version STRING,
  source_id STRING NOT NULL,
  run_mode STRING,
  status STRING,
  error_message STRING,
  started_at TIMESTAMP,
  finished_at TIMESTAMP
) USING DELTA PARTITIONED BY (source_id);
