-- V5: richer profiles (README "Column profiles"). Every new column is nullable and added
-- with Spark's ADD COLUMNS, so rows written before stay as they were (NULL: not profiled
-- then). They are values of the profiled data, so none joins V4's statistics columns.

ALTER TABLE hive_metastore._executor_metadata.columns
  ADD COLUMNS (null_fraction DOUBLE, distinct_fraction DOUBLE, mean DOUBLE, stddev DOUBLE,
               min_double DOUBLE, max_double DOUBLE, min_timestamp TIMESTAMP,
               max_timestamp TIMESTAMP, quantiles STRING, histogram STRING,
               zero_count BIGINT, negative_count BIGINT, min_length BIGINT,
               avg_length DOUBLE, max_length BIGINT, blank_count BIGINT,
               top_values STRING, top_values_error BIGINT, semantic_type STRING,
               semantic_fraction DOUBLE, pii BOOLEAN, profiled_fraction DOUBLE);

ALTER TABLE hive_metastore._executor_metadata.tables
  ADD COLUMNS (quality_score DOUBLE, quality STRING, candidate_keys STRING,
               duplicate_rows BIGINT, widened_columns STRING, profiled_fraction DOUBLE);
