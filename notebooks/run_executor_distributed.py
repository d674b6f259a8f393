# Databricks notebook source
# MAGIC %md
# MAGIC # nuvyn-executor: fan-out on the cluster's executors
# MAGIC Adds machines, not only concurrency: Spark itself is the engine. The driver starts
# MAGIC `shards` Spark tasks (`spark.sparkContext.parallelize(range(N), N)`); each runs
# MAGIC `nuvyn-executor` for shard `i/N` of the job on the executor it lands on (install the
# MAGIC wheel as a cluster library: it puts the binary on every node's PATH). The shards write
# MAGIC the same warehouse concurrently, as the for-each fan-out does. The per-shard reports are
# MAGIC collected on the driver; a shard that fails (exit 1 or 2) fails this task, naming the
# MAGIC shard and its error, after every shard finished. Exit 3 of a shard is partial, as in
# MAGIC `run_executor`.
# MAGIC
# MAGIC Parameters: those of `run_executor` (without `shard`), and `shards` (default: the
# MAGIC cluster's default parallelism). Secrets from the scope travel inside the Spark task to
# MAGIC the executor process's environment, never to output, logs or task values.

# COMMAND ----------

PARAMETERS = {
    "payload": "Job payload JSON (NUVYN_JOB_PAYLOAD)",
    "workflow_id": "workflow_id (without a payload)",
    "source_id": "source_id (optional)",
    "data_source_path": "Data source (without a payload)",
    "data_source_type": "Data source type (optional)",
    "warehouse": "Warehouse (abfss://...)",
    "shards": "Number of shards (default: the cluster's parallelism)",
    "executor": "Executor binary",
    "secret_scope": "Secret scope with the storage credentials (optional)",
    "secret_keys": "ENV_NAME=secret-key,... read from the scope (optional)",
}
for name, label in PARAMETERS.items():
    dbutils.widgets.text(name, "nuvyn-executor" if name == "executor" else "", label)

# COMMAND ----------

# MAGIC %run ./executor_lib

# COMMAND ----------


class ShardFailed(Exception):
    """One or more shards failed; the message names each with its error."""


def run_shard(executor, payload, warehouse, env, index, count):
    """Runs shard `index`/`count` on the executor this Spark task landed on."""
    import json as _json
    import os as _os
    import subprocess as _subprocess

    child = dict(_os.environ)
    child.update(env)
    child["NUVYN_JOB_PAYLOAD"] = _json.dumps(dict(payload, shard=f"{index}/{count}"))
    child["NUVYN_LOG_FORMAT"] = "json"
    if warehouse:
        child["NUVYN_WAREHOUSE"] = warehouse
    done = _subprocess.run([executor], env=child, capture_output=True, text=True)
    try:
        result = _json.loads(done.stdout) if done.stdout.strip() else {}
    except ValueError:
        result = {}
    # Only the tail of the log travels back: the driver needs the error, not the whole log.
    return {"index": index, "code": done.returncode, "result": result, "log_tail": done.stderr[-2000:]}


def run_distributed(spark_context, get, secrets=None, log=sys.stderr):
    """Runs every shard as a Spark task; returns (exit code, merged result) or raises."""
    # The shard is this notebook's to set, per Spark task.
    payload = build_payload(lambda name: "" if name == "shard" else get(name))
    raw = get("shards").strip()
    try:
        count = int(raw) if raw else spark_context.defaultParallelism
    except ValueError:
        raise ValueError(f"shards must be a whole number of shards, not {raw!r}") from None
    if count < 1:
        raise ValueError(f"shards must be at least 1, not {count}")
    executor = get("executor").strip() or "nuvyn-executor"
    warehouse = get("warehouse").strip()
    env = secret_environment(get, secrets) if secrets is not None else {}
    reports = (spark_context.parallelize(range(count), count)
               .map(lambda i: run_shard(executor, payload, warehouse, env, i, count))
               .collect())
    reports.sort(key=lambda r: r["index"])
    failed = [r for r in reports if r["code"] not in (0, PARTIAL)]
    if failed:
        lines = []
        for r in failed:
            error = r["result"].get("error") or r["log_tail"].strip().splitlines()[-1:] or [""]
            lines.append(f"shard {r['index']}/{count} exited {r['code']}: {error if isinstance(error, str) else error[0]}")
        raise ShardFailed(f"{len(failed)} of {count} shards failed: " + "; ".join(lines))
    merged = {
        "status": "partial" if any(r["code"] == PARTIAL for r in reports) else "succeeded",
        "workflow_id": reports[0]["result"].get("workflow_id"),
        "run_id": ",".join(r["result"].get("run_id", "") for r in reports),
        "written": all(r["result"].get("written") for r in reports),
        "shards": [{"index": r["index"], "code": r["code"], "status": r["result"].get("status")} for r in reports],
        "sources": [s for r in reports for s in r["result"].get("sources", [])],
    }
    for r in reports:
        log.write(f"shard {r['index']}/{count}: {r['result'].get('status')} (exit {r['code']})\n")
    return (PARTIAL if merged["status"] == "partial" else 0), merged

# COMMAND ----------

try:
    code, result = run_distributed(spark.sparkContext, dbutils.widgets.get, secrets=dbutils.secrets)
except (ShardFailed, ExecutorFailed):
    dbutils.jobs.taskValues.set(key="status", value="failed")
    raise
dbutils.notebook.exit(finish(code, result, dbutils.jobs.taskValues))
