# Databricks notebook source
# MAGIC %md
# MAGIC # nuvyn-executor: job task
# MAGIC Runs `nuvyn-executor` for the job's payload. Parameters (job parameters or widgets):
# MAGIC `payload` (the whole job payload JSON), or its fields `workflow_id`, `source_id`,
# MAGIC `data_source_path`, `data_source_type`; `warehouse` (an `abfss://` URL: a warehouse on
# MAGIC `/Volumes` cannot take Delta commits from delta-rs); `shard` (`I/N`, for fan-out);
# MAGIC `executor` (the binary; the `nuvyn-executor` wheel puts it on the PATH).
# MAGIC
# MAGIC Credentials: `secret_scope` and `secret_keys` (`ENV_NAME=secret-key,...`, e.g.
# MAGIC `AZURE_CLIENT_ID=sp-id,AZURE_CLIENT_SECRET=sp-secret,AZURE_TENANT_ID=sp-tenant` for a
# MAGIC service principal, or `AZURE_STORAGE_SAS_TOKEN=sas`) read the secrets with
# MAGIC `dbutils.secrets.get` and hand them to the executor's process environment only: never to
# MAGIC the notebook's output, its logs, its exit value or its task values.
# MAGIC
# MAGIC The executor's log lines stream into this task's output. Exit 1 or 2 fails the task with
# MAGIC the executor's error (task value `status` = `failed`). Exit 3 (some tables or sources
# MAGIC failed, the rest was written) is not a failed task: the task ends with a warning. The
# MAGIC task values `status`, `tables`, `failed_tables` (the first 100 names) and `run_id` are
# MAGIC set for the tasks after it, and the exit value is a short summary (the full result is in
# MAGIC the warehouse).

# COMMAND ----------

PARAMETERS = {
    "payload": "Job payload JSON (NUVYN_JOB_PAYLOAD)",
    "workflow_id": "workflow_id (without a payload)",
    "source_id": "source_id (optional)",
    "data_source_path": "Data source (without a payload)",
    "data_source_type": "Data source type (optional)",
    "warehouse": "Warehouse (abfss://...)",
    "shard": "Shard I/N (optional)",
    "executor": "Executor binary",
    "secret_scope": "Secret scope with the storage credentials (optional)",
    "secret_keys": "ENV_NAME=secret-key,... read from the scope (optional)",
}
for name, label in PARAMETERS.items():
    dbutils.widgets.text(name, "nuvyn-executor" if name == "executor" else "", label)

# COMMAND ----------

# MAGIC %run ./executor_lib

# COMMAND ----------

try:
    code, result = run_executor(dbutils.widgets.get, secrets=dbutils.secrets)
except ExecutorFailed:
    dbutils.jobs.taskValues.set(key="status", value="failed")
    raise
dbutils.notebook.exit(finish(code, result, dbutils.jobs.taskValues))
