# Databricks notebook source
# MAGIC %md
# MAGIC # Apply schema migrations
# MAGIC The CI/CD path for schema changes: runs `nuvyn-executor migrate apply` against the
# MAGIC warehouse and fails the task when a migration fails. `dry_run=true` only plans.

# COMMAND ----------

dbutils.widgets.text("warehouse", "", "Warehouse (abfss://...)")
dbutils.widgets.dropdown("dry_run", "false", ["false", "true"], "Dry run")
dbutils.widgets.text("executor", "nuvyn-executor", "Executor binary")

# COMMAND ----------

import json
import subprocess


def apply_migrations(executor, warehouse, dry_run):
    args = [executor, "migrate", "apply", "--warehouse", warehouse]
    if dry_run:
        args.append("--dry-run")
    done = subprocess.run(args, capture_output=True, text=True)
    print(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"migrate apply failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)

# COMMAND ----------

report = apply_migrations(dbutils.widgets.get("executor"), dbutils.widgets.get("warehouse"),
                          dbutils.widgets.get("dry_run") == "true")
dbutils.notebook.exit(json.dumps(report))
