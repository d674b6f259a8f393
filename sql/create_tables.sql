-- Registers the nuvyn-executor metadata and notebook tables as external Delta tables.
-- Generated from src/warehouse/catalog.rs (tests keep this file in step); replace ${warehouse}
-- with the warehouse location, e.g. abfss://lake@account.dfs.core.windows.net/warehouse.
CREATE SCHEMA IF NOT EXISTS `hive_metastore`.`_executor_metadata`;

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`sources` (
  `id` BIGINT,
  `workflow_id` STRING,
  `source_id` STRING,
  `source_path` STRING,
  `source_type` STRING,
  `extraction_timestamp` TIMESTAMP,
  `files_found` INT,
  `total_size_bytes` BIGINT,
  `run_id` STRING
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/sources';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`tables` (
  `id` BIGINT,
  `workflow_id` STRING,
  `source_id` STRING,
  `table_name` STRING,
  `file_path` STRING,
  `file_type` STRING,
  `row_count` BIGINT,
  `column_count` INT,
  `size_bytes` BIGINT,
  `run_id` STRING,
  `status` STRING,
  `error_message` STRING,
  `quality_score` DOUBLE,
  `quality` STRING,
  `candidate_keys` STRING,
  `duplicate_rows` BIGINT,
  `widened_columns` STRING,
  `profiled_fraction` DOUBLE,
  `fingerprint` STRING,
  `profile_run_id` STRING
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/tables';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`columns` (
  `id` BIGINT,
  `workflow_id` STRING,
  `source_id` STRING,
  `table_name` STRING,
  `column_name` STRING,
  `data_type` STRING,
  `position` INT,
  `is_nullable` BOOLEAN,
  `sample_values` STRING,
  `run_id` STRING,
  `null_count` BIGINT,
  `distinct_count` BIGINT,
  `min_value` STRING,
  `max_value` STRING,
  `null_fraction` DOUBLE,
  `distinct_fraction` DOUBLE,
  `mean` DOUBLE,
  `stddev` DOUBLE,
  `min_double` DOUBLE,
  `max_double` DOUBLE,
  `min_timestamp` TIMESTAMP,
  `max_timestamp` TIMESTAMP,
  `quantiles` STRING,
  `histogram` STRING,
  `zero_count` BIGINT,
  `negative_count` BIGINT,
  `min_length` BIGINT,
  `avg_length` DOUBLE,
  `max_length` BIGINT,
  `blank_count` BIGINT,
  `top_values` STRING,
  `top_values_error` BIGINT,
  `semantic_type` STRING,
  `semantic_fraction` DOUBLE,
  `pii` BOOLEAN,
  `profiled_fraction` DOUBLE
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/columns';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`executor_runs` (
  `id` BIGINT,
  `run_id` STRING,
  `executor_version` STRING,
  `workflow_id` STRING,
  `source_id` STRING,
  `run_mode` STRING,
  `status` STRING,
  `error_message` STRING,
  `started_at` TIMESTAMP,
  `finished_at` TIMESTAMP
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/executor_runs';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`workflow_notebook_source` (
  `workflow_id` STRING,
  `notebook_version` INT,
  `notebook` STRING,
  `notebook_sha256` STRING,
  `cell_count` INT,
  `created_at` TIMESTAMP,
  `created_by` STRING
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/workflow_notebook_source';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`workflow_notebook_mapping` (
  `workflow_id` STRING,
  `workflow_version` INT,
  `notebook_version` INT,
  `mapping` STRING,
  `status` STRING,
  `stale_cells` STRING,
  `stale_operators` STRING,
  `created_at` TIMESTAMP
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/workflow_notebook_mapping';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`table_history` (
  `id` BIGINT,
  `workflow_id` STRING,
  `source_id` STRING,
  `table_name` STRING,
  `file_path` STRING,
  `file_type` STRING,
  `row_count` BIGINT,
  `column_count` INT,
  `size_bytes` BIGINT,
  `run_id` STRING,
  `status` STRING,
  `error_message` STRING,
  `quality_score` DOUBLE,
  `quality` STRING,
  `candidate_keys` STRING,
  `duplicate_rows` BIGINT,
  `widened_columns` STRING,
  `profiled_fraction` DOUBLE,
  `profiled_at` TIMESTAMP,
  `fingerprint` STRING,
  `profile_run_id` STRING
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/table_history';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`column_history` (
  `id` BIGINT,
  `workflow_id` STRING,
  `source_id` STRING,
  `table_name` STRING,
  `column_name` STRING,
  `data_type` STRING,
  `position` INT,
  `is_nullable` BOOLEAN,
  `sample_values` STRING,
  `run_id` STRING,
  `null_count` BIGINT,
  `distinct_count` BIGINT,
  `min_value` STRING,
  `max_value` STRING,
  `null_fraction` DOUBLE,
  `distinct_fraction` DOUBLE,
  `mean` DOUBLE,
  `stddev` DOUBLE,
  `min_double` DOUBLE,
  `max_double` DOUBLE,
  `min_timestamp` TIMESTAMP,
  `max_timestamp` TIMESTAMP,
  `quantiles` STRING,
  `histogram` STRING,
  `zero_count` BIGINT,
  `negative_count` BIGINT,
  `min_length` BIGINT,
  `avg_length` DOUBLE,
  `max_length` BIGINT,
  `blank_count` BIGINT,
  `top_values` STRING,
  `top_values_error` BIGINT,
  `semantic_type` STRING,
  `semantic_fraction` DOUBLE,
  `pii` BOOLEAN,
  `profiled_fraction` DOUBLE,
  `profiled_at` TIMESTAMP
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/column_history';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`changes` (
  `id` BIGINT,
  `workflow_id` STRING,
  `source_id` STRING,
  `run_id` STRING,
  `previous_run_id` STRING,
  `table_name` STRING,
  `column_name` STRING,
  `change` STRING,
  `severity` STRING,
  `measure` DOUBLE,
  `threshold` DOUBLE,
  `previous_value` STRING,
  `current_value` STRING,
  `detail` STRING,
  `detected_at` TIMESTAMP
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/changes';

CREATE TABLE IF NOT EXISTS `hive_metastore`.`_executor_metadata`.`partition_sketches` (
  `id` BIGINT,
  `workflow_id` STRING,
  `source_id` STRING,
  `run_id` STRING,
  `table_name` STRING,
  `partition_path` STRING,
  `fingerprint` STRING,
  `schema_key` STRING,
  `row_count` BIGINT,
  `file_schema` BINARY,
  `sketch` BINARY,
  `computed_at` TIMESTAMP
) USING DELTA PARTITIONED BY (`workflow_id`) LOCATION '${warehouse}/_executor_metadata/partition_sketches';
