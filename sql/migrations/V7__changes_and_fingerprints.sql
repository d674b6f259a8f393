-- V7: changes and incremental runs (README "Profiles over time"). `changes` records what
-- differs from the previous recorded run of a (workflow_id, source_id): tables and columns
-- added, removed or renamed, type and nullability changes, and statistics beyond the
-- documented thresholds, each with a severity. `tables` and `table_history` gain the
-- table's fingerprint (its files' names, sizes and ETags or modification times, and the
-- profile settings) and the run its profile was computed in: a re-run carries an unchanged
-- table's profile instead of reading it again.

CREATE TABLE IF NOT EXISTS hive_metastore._executor_metadata.changes (
  id BIGINT, workflow_id STRING, source_id STRING, run_id STRING,
  previous_run_id STRING, table_name STRING, column_name STRING, change STRING,
  severity STRING, measure DOUBLE, threshold DOUBLE, previous_value STRING,
  current_value STRING, detail STRING, detected_at TIMESTAMP
) USING DELTA PARTITIONED BY (workflow_id);

ALTER TABLE hive_metastore._executor_metadata.changes
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,source_id,run_id,table_name,column_name,change,severity,detected_at');

ALTER TABLE hive_metastore._executor_metadata.tables
  ADD COLUMNS (fingerprint STRING, profile_run_id STRING);

ALTER TABLE hive_metastore._executor_metadata.table_history
  ADD COLUMNS (fingerprint STRING, profile_run_id STRING);
