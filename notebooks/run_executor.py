# Databricks notebook source
# MAGIC %md
# MAGIC # nuvyn-executor: job task
# MAGIC Runs `nuvyn-executor` for the job's payload. Parameters (job parameters or widgets):
# MAGIC `payload` (the whole job payload JSON), or its fields `workflow_id`, `source_id`,
# MAGIC `data_source_path`, `data_source_type`; `warehouse` (an `abfss://` URL: a warehouse on
# MAGIC `/Volumes` cannot take Delta commits from delta-rs); `shard` (`I/N`, for fan-out);
# MAGIC `executor` (the binary; the `nuvyn-executor` wheel puts it on the PATH).
# MAGIC The executor's log lines stream into this task's output; a non-zero exit fails the task
# MAGIC with the executor's error, and the result JSON is the notebook's exit value.

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
}
for name, label in PARAMETERS.items():
    dbutils.widgets.text(name, "nuvyn-executor" if name == "executor" else "", label)

# COMMAND ----------

import json
import os
import subprocess
import sys
import threading


class ExecutorFailed(Exception):
    """The executor exited non-zero; the message is its error."""


def build_payload(get):
    """The job payload: the `payload` parameter, or one built from the single fields."""
    raw = get("payload").strip()
    if raw:
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("the payload parameter must be a JSON object")
    else:
        payload = {"job_type": "metadata_extraction"}
        for field in ("workflow_id", "source_id", "data_source_path", "data_source_type"):
            value = get(field).strip()
            if value:
                payload[field] = value
    shard = get("shard").strip()
    if shard:
        payload["shard"] = shard
    return payload


def run_executor(get, environ=None, popen=subprocess.Popen, log=sys.stderr):
    """Runs the executor, streams its log lines, returns the result JSON or raises."""
    env = dict(os.environ if environ is None else environ)
    env["NUVYN_JOB_PAYLOAD"] = json.dumps(build_payload(get))
    env.setdefault("NUVYN_LOG_FORMAT", "json")
    warehouse = get("warehouse").strip()
    if warehouse:
        env["NUVYN_WAREHOUSE"] = warehouse
    proc = popen([get("executor").strip() or "nuvyn-executor"], env=env,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The result JSON is read on its own thread, so a large one cannot block the log stream.
    stdout = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()))
    reader.start()
    errors = []
    for line in proc.stderr:
        log.write(line)
        try:
            record = json.loads(line)
            if record.get("level") == "ERROR":
                errors.append(record.get("message", line.strip()))
        except ValueError:
            if line.startswith("error:"):
                errors.append(line[len("error:"):].strip())
    reader.join()
    out = stdout[0] if stdout else ""
    code = proc.wait()
    result = json.loads(out) if out.strip() else {}
    if code != 0:
        message = result.get("error") or "; ".join(errors) or f"exit code {code}"
        raise ExecutorFailed(f"nuvyn-executor exited {code}: {message}")
    return result

# COMMAND ----------

result = run_executor(dbutils.widgets.get)
dbutils.notebook.exit(json.dumps(result))
