# Databricks notebook source
# MAGIC %md
# MAGIC # Warehouse housekeeping
# MAGIC Runs `nuvyn-executor maintain` on the warehouse: compaction (OPTIMIZE), checkpoints,
# MAGIC expired commit files removed, VACUUM of data files older than `vacuum_hours`
# MAGIC (empty: no VACUUM), and profile history older than `history_days` removed (empty:
# MAGIC keep all). Jobs never clean the Delta log themselves: the bundle schedules this
# MAGIC notebook daily (`nuvyn_executor_maintain`). Credentials as in `run_executor`.

# COMMAND ----------

dbutils.widgets.text("warehouse", "", "Warehouse (abfss://...)")
dbutils.widgets.text("vacuum_hours", "168", "VACUUM files older than (hours; empty: no VACUUM)")
dbutils.widgets.text("history_days", "", "Remove profile history older than (days; empty: keep all)")
dbutils.widgets.text("executor", "nuvyn-executor", "Executor binary")
dbutils.widgets.text("secret_scope", "", "Secret scope with the storage credentials (optional)")
dbutils.widgets.text("secret_keys", "", "ENV_NAME=secret-key,... read from the scope (optional)")

# COMMAND ----------

# MAGIC %run ./executor_lib

# COMMAND ----------


def maintain_args(executor, warehouse, vacuum_hours, history_days=""):
    args = [executor, "maintain", "--warehouse", warehouse]
    for name, value, flag, what in [("vacuum_hours", vacuum_hours, "--vacuum-hours", "hours"),
                                    ("history_days", history_days, "--history-days", "days")]:
        if value.strip():
            if not value.strip().isdigit():
                raise ValueError(f"{name} must be a whole number of {what} or empty, not {value!r}")
            args += [flag, value.strip()]
    return args


def run_maintain(get, secrets=None, run=subprocess.run):
    env = dict(os.environ)
    if secrets is not None:
        env.update(secret_environment(get, secrets))
    done = run(maintain_args(get("executor").strip() or "nuvyn-executor", get("warehouse").strip(),
                             get("vacuum_hours"), get("history_days")),
               env=env, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise ExecutorFailed(f"nuvyn-executor maintain exited {done.returncode}: {lines[-1]}")
    return json.loads(done.stdout)

# COMMAND ----------

report = run_maintain(dbutils.widgets.get, secrets=dbutils.secrets)
dbutils.notebook.exit(json.dumps({"warehouse": report.get("warehouse"),
                                  "tables": [t.get("table") for t in report.get("tables", [])]}))
