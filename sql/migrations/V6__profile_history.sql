-- V6: profile history (README "Profiles over time"). Every run's table and column profiles,
-- appended and never replaced: `tables` and `columns` as they are, plus the time the run
-- started. The current tables keep one run per (workflow_id, source_id), as before.
-- `maintain --history-days N` trims them.

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.table_history (
  id BIGINT, workflow_id STRING, source_id STRING, table_name STRING,
  file_path STRING, file_type STRING, row_count BIGINT, column_count INT,
  size_bytes BIGINT, run_id STRING, status STRING, error_message STRING,
  quality_score DOUBLE, quality STRING, candidate_keys STRING,
  duplicate_rows BIGINT, widened_columns STRING, profiled_fraction DOUBLE,
  profiled_at TIMESTAMP
) USING DELTA PARTITIONED BY (workflow_id);

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.column_history (
  id BIGINT, workflow_id STRING, source_id STRING, table_name STRING,
  column_name STRING, data_type STRING, position INT, is_nullable BOOLEAN,
  sample_values STRING, run_id STRING, null_count BIGINT, distinct_count BIGINT,
  min_value STRING, max_value STRING,
  null_fraction DOUBLE, distinct_fraction DOUBLE, mean DOUBLE, stddev DOUBLE,
  min_double DOUBLE, max_double DOUBLE, min_timestamp TIMESTAMP,
  max_timestamp TIMESTAMP, quantiles STRING, histogram STRING, zero_count BIGINT,
  negative_count BIGINT, min_length BIGINT, avg_length DOUBLE, max_length BIGINT,
  blank_count BIGINT, top_values STRING, top_values_error BIGINT,
  semantic_type STRING, semantic_fraction DOUBLE, pii BOOLEAN,
  profiled_fraction DOUBLE, profiled_at TIMESTAMP
) USING DELTA PARTITIONED BY (workflow_id);

ALTER TABLE hive_metastore._executor_metadata.table_history
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,source_id,run_id,table_name,file_type,row_count,column_count,size_bytes,status,profiled_at');

ALTER TABLE hive_metastore._executor_metadata.column_history
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,source_id,run_id,table_name,column_name,data_type,position,is_nullable,null_count,distinct_count,profiled_at');
