# Databricks notebook source
# MAGIC %md
# MAGIC # Apply schema migrations
# MAGIC The CI/CD path for schema changes. Two routes apply the same migration files (built into
# MAGIC the binary; `nuvyn-executor migrate export` prints them):
# MAGIC - `binary` (the default): `nuvyn-executor migrate apply` against the warehouse, with its
# MAGIC   lock and resumable steps. `dry_run=true` only plans.
# MAGIC - `spark`: for a warehouse the binary cannot write (created the v1.0 document's way as
# MAGIC   managed tables, identity columns, deletion vectors: the binary refuses such a table
# MAGIC   and names the feature), the pending migrations' statements run through `spark.sql`,
# MAGIC   in the catalog given, and each applied migration is recorded in the warehouse's
# MAGIC   `_schema_history` with the binary's checksum, so the binary takes over afterwards.
# MAGIC   `route=binary` falls back to it when the binary refuses a table's features.

# COMMAND ----------

dbutils.widgets.text("warehouse", "", "Warehouse (abfss://...)")
dbutils.widgets.dropdown("dry_run", "false", ["false", "true"], "Dry run")
dbutils.widgets.dropdown("route", "binary", ["binary", "spark"], "Route")
dbutils.widgets.text("catalog", "hive_metastore", "Catalog (the spark route's table names)")
dbutils.widgets.text("executor", "nuvyn-executor", "Executor binary")
dbutils.widgets.text("secret_scope", "", "Secret scope with the storage credentials (optional)")
dbutils.widgets.text("secret_keys", "", "ENV_NAME=secret-key,... read from the scope (optional)")

# COMMAND ----------

# MAGIC %run ./executor_lib

# COMMAND ----------

import json
import os
import re
import subprocess


class MigrationFailed(Exception):
    """A migration could not be applied; the message says which and why."""


class BinaryCannotWrite(MigrationFailed):
    """The binary refused a table whose Delta features it cannot write."""


def apply_migrations(executor, warehouse, dry_run, env=None):
    """The binary route: `migrate apply` (credentials in `env`); its JSON report."""
    args = [executor, "migrate", "apply", "--warehouse", warehouse]
    if dry_run:
        args.append("--dry-run")
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    print(done.stderr)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        message = f"migrate apply failed: {lines[-1]}"
        if "Delta feature" in done.stderr or "(the v1.0 layout)" in done.stderr:
            raise BinaryCannotWrite(message)
        raise MigrationFailed(message)
    return json.loads(done.stdout)


def exported_migrations(executor):
    """The migrations as the binary applies them (statements, checksums, history DDL)."""
    done = subprocess.run([executor, "migrate", "export"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def quote(name):
    return "`" + name.replace("`", "``") + "`"


def sql_string(value):
    return "NULL" if value is None else "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def in_catalog(sql, catalog):
    """A migration statement with its tables in `catalog` (the files name hive_metastore)."""
    return re.sub(r"\bhive_metastore\._executor_metadata\.", f"{quote(catalog)}.`_executor_metadata`.", sql)


def history_table(export, catalog):
    return f"{quote(catalog)}.`_executor_metadata`.{quote(export['history_table'])}"


def spark_route_statements(export, catalog, warehouse, history):
    """[(where, sql)]: what the spark route runs, in order. `history` holds the rows of the
    warehouse's `_schema_history` (version, checksum, success). A migration applied with
    another checksum than its file's (or one the file accepts) stops the route."""
    table = history_table(export, catalog)
    out = [("history table", export["history_ddl"].replace("${history_table}", table)
            .replace("${warehouse}", warehouse.rstrip("/")))]
    applied = {}
    for row in history:
        if row.get("success"):
            applied[row["version"]] = row["checksum"]
    for m in export["migrations"]:
        if m["version"] in applied:
            if applied[m["version"]] != m["checksum"] and applied[m["version"]] not in m.get("accepts", []):
                raise MigrationFailed(
                    f"{m['script']} (V{m['version']}) was changed after it was applied: checksum applied "
                    f"{applied[m['version']]}, file {m['checksum']}; run `nuvyn-executor migrate repair`")
            continue
        for s in m["statements"]:
            out.append((f"{m['script']} line {s['line']}", in_catalog(s["sql"], catalog)))
        values = ", ".join([str(m["version"]), sql_string(m["description"]), sql_string(m["script"]),
                            sql_string(m["checksum"]), "current_timestamp()", "NULL", "true",
                            str(len(m["statements"])), "NULL", "NULL",
                            sql_string(f"{export['executor_version']} (databricks route)")])
        out.append((f"{m['script']} history", f"INSERT INTO {table} VALUES ({values})"))
    return out


def read_history(sql, export, catalog):
    try:
        rows = sql(f"SELECT version, checksum, success FROM {history_table(export, catalog)}").collect()
    except Exception as e:  # no history table yet: nothing applied by either route
        if "TABLE_OR_VIEW_NOT_FOUND" in str(e) or "not found" in str(e).lower():
            return []
        raise
    return [r.asDict() if hasattr(r, "asDict") else dict(r) for r in rows]


def apply_with_spark(sql, export, catalog, warehouse, dry_run):
    """The spark route: runs the pending statements through `sql` (spark.sql)."""
    plan = spark_route_statements(export, catalog, warehouse, read_history(sql, export, catalog))
    report = {"route": "spark", "catalog": catalog, "dry_run": dry_run,
              "statements": [where for where, _ in plan]}
    if dry_run:
        return report
    for where, statement in plan:
        print(where)
        try:
            sql(statement)
        except Exception as e:
            raise MigrationFailed(f"{where}: {e}") from e
    return report

# COMMAND ----------

executor = dbutils.widgets.get("executor")
warehouse = dbutils.widgets.get("warehouse")
dry_run = dbutils.widgets.get("dry_run") == "true"
credentials = dict(os.environ, **secret_environment(dbutils.widgets.get, dbutils.secrets))
if dbutils.widgets.get("route") == "spark":
    report = apply_with_spark(spark.sql, exported_migrations(executor), dbutils.widgets.get("catalog"),
                              warehouse, dry_run)
else:
    try:
        report = apply_migrations(executor, warehouse, dry_run, env=credentials)
    except BinaryCannotWrite as e:
        print(f"{e}: applying through spark.sql instead")
        report = apply_with_spark(spark.sql, exported_migrations(executor), dbutils.widgets.get("catalog"),
                                  warehouse, dry_run)
dbutils.notebook.exit(json.dumps(report))
