# Databricks notebook source
# MAGIC %md
# MAGIC # Register the warehouse tables
# MAGIC Creates `<catalog>._executor_metadata` and registers every warehouse table (the four
# MAGIC metadata tables and the notebook store's) as an external Delta table at its location,
# MAGIC for `hive_metastore` or a Unity Catalog catalog. The DDL comes from the executor itself
# MAGIC (`nuvyn-executor ddl`), so it always matches the tables it writes.

# COMMAND ----------

dbutils.widgets.text("warehouse", "", "Warehouse (abfss://...)")
dbutils.widgets.text("catalog", "hive_metastore", "Catalog (hive_metastore or a Unity Catalog catalog)")
dbutils.widgets.text("executor", "nuvyn-executor", "Executor binary")

# COMMAND ----------

import subprocess


def registration_statements(executor, catalog, warehouse):
    """The executor's registration DDL, one statement per item."""
    ddl = subprocess.run([executor, "ddl", "--catalog", catalog, "--warehouse", warehouse],
                         check=True, capture_output=True, text=True).stdout
    return [s.strip() for s in ddl.split(";") if s.strip()]

# COMMAND ----------

statements = registration_statements(dbutils.widgets.get("executor"), dbutils.widgets.get("catalog"),
                                     dbutils.widgets.get("warehouse"))
for statement in statements:
    print(statement.splitlines()[0])
    spark.sql(statement)
dbutils.notebook.exit(f"{len(statements)} statements run")
