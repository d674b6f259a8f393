-- V4: Delta keeps file statistics only of ids, names, counts and times (the columns queries
-- filter on), never of a profiled value: without it, sample values, min/max, error text and
-- notebook content were copied into the _delta_log JSON as file statistics, readable by
-- anyone who can list the tables. The lists are the catalogue's (src/warehouse/catalog.rs,
-- a test keeps them equal); files written from now on carry only these statistics.

ALTER TABLE hive_metastore._executor_metadata.sources
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,source_id,run_id,source_type,extraction_timestamp,files_found,total_size_bytes');

ALTER TABLE hive_metastore._executor_metadata.tables
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,source_id,run_id,table_name,file_type,row_count,column_count,size_bytes,status');

ALTER TABLE hive_metastore._executor_metadata.columns
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,source_id,run_id,table_name,column_name,data_type,position,is_nullable,null_count,distinct_count');

ALTER TABLE hive_metastore._executor_metadata.executor_runs
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'id,run_id,executor_version,source_id,run_mode,status,started_at,finished_at');

ALTER TABLE hive_metastore._executor_metadata.workflow_notebook_source
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'notebook_version,notebook_sha256,cell_count,created_at');

ALTER TABLE hive_metastore._executor_metadata.workflow_notebook_mapping
  SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = 'workflow_version,notebook_version,status,created_at');
