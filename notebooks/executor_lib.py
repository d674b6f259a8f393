# Databricks notebook source
# MAGIC %md
# MAGIC # nuvyn-executor: shared task logic
# MAGIC Definitions only, for `%run ./executor_lib` in `run_executor` and
# MAGIC `run_executor_distributed`: the job payload from parameters, credentials from a secret
# MAGIC scope (to the executor's environment only), running the binary, and the short summary
# MAGIC and task values a task hands on.

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


# The variables the executor reads credentials from (its --help, AZURE CREDENTIALS): a
# secret can only become one of these, so a typo cannot leak it into another variable.
CREDENTIAL_VARIABLES = {
    "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
}
PARTIAL = 3
MAX_NAMES = 100


def secret_environment(get, secrets):
    """{ENV_NAME: secret value} from the `secret_scope` / `secret_keys` parameters."""
    scope = get("secret_scope").strip()
    spec = get("secret_keys").strip()
    if not scope and not spec:
        return {}
    if not scope or not spec:
        raise ValueError("secret_scope and secret_keys go together (secret_keys: ENV_NAME=secret-key,...)")
    env = {}
    for item in spec.split(","):
        name, sep, key = item.strip().partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise ValueError(f"secret_keys item {item.strip()!r} is not ENV_NAME=secret-key")
        if name not in CREDENTIAL_VARIABLES:
            raise ValueError(f"secret_keys: {name} is not a credential variable the executor reads "
                             f"({', '.join(sorted(CREDENTIAL_VARIABLES))})")
        try:
            env[name] = secrets.get(scope=scope, key=key)
        except Exception as e:  # the message names scope and key, never a value
            raise ValueError(f"cannot read secret {key!r} of scope {scope!r} for {name}: {type(e).__name__}") from None
    return env


def run_executor(get, environ=None, popen=subprocess.Popen, log=sys.stderr, secrets=None):
    """Runs the executor, streams its log lines; returns (exit code, result JSON), or raises
    ExecutorFailed for a failed job (exit 1, 2)."""
    env = dict(os.environ if environ is None else environ)
    if secrets is not None:
        env.update(secret_environment(get, secrets))
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
    if code not in (0, PARTIAL):
        message = result.get("error") or "; ".join(errors) or f"exit code {code}"
        raise ExecutorFailed(f"nuvyn-executor exited {code}: {message}")
    return code, result


def summary(result):
    """What the task hands on: counts and failed table names, far under the 5 MB limit of
    `get-output` (and the task values' own limit), whatever the size of the lake."""
    tables, failed = 0, []
    for source in result.get("sources", []):
        for t in source.get("tables", []):
            tables += 1
            if t.get("status") == "failed":
                failed.append(f"{source.get('source_id') or source.get('source_path')}:{t.get('table_name')}")
        if source.get("status") == "failed":
            failed.append(f"{source.get('source_id') or source.get('source_path')}:*")
    return {
        "status": result.get("status"),
        "workflow_id": result.get("workflow_id"),
        "run_id": result.get("run_id"),
        "shard": result.get("shard"),
        "written": result.get("written"),
        "tables": tables,
        "failed_count": len(failed),
        "failed_tables": failed[:MAX_NAMES],
    }


def finish(code, result, task_values, log=sys.stderr):
    """Sets the task values and returns the exit value; a partial run warns."""
    s = summary(result)
    for key in ("status", "tables", "failed_tables", "run_id"):
        task_values.set(key=key, value=s[key])
    if code == PARTIAL:
        log.write(f"WARNING: nuvyn-executor finished partially: {s['failed_count']} of {s['tables']} "
                  f"tables or sources failed (first: {', '.join(s['failed_tables'][:5])}); the rest was written\n")
    return json.dumps(s)
