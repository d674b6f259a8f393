"""Checks of the Databricks side without a workspace (run by ci/test.sh):

1. every notebook in notebooks/ is a Databricks source notebook whose Python cells parse
   (SQL cells are parsed with sqlparser's Databricks dialect by tests/it/databricks.rs);
2. the job definition (databricks/nuvyn-executor.job.json, Jobs API 2.1) has its required
   keys, its task references and notebook paths resolve, and every parameter it passes is a
   widget of that notebook;
3. run_executor's logic runs locally, with a stub dbutils, against a real local warehouse:
   a good payload returns the result JSON, a bad one fails the task with the executor's error.

Usage: python3 ci/databricks-check.py EXECUTOR_BINARY
"""
import ast
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
failures = []


def cells(path):
    text = open(path).read()
    head = text.splitlines()[0]
    if head not in ("# Databricks notebook source", "-- Databricks notebook source"):
        failures.append(f"{path}: first line is {head!r}, not a Databricks source header")
    sep = "# COMMAND ----------" if head.startswith("#") else "-- COMMAND ----------"
    return text.split("\n" + sep + "\n")


def widgets(path):
    text = open(path).read()
    names = set(re.findall(r'dbutils\.widgets\.(?:text|dropdown)\("(\w+)"', text))
    names |= set(re.findall(r"CREATE WIDGET \w+ (\w+)", text))
    m = re.search(r"PARAMETERS = \{(.*?)\n\}", text, re.S)
    if m:
        names |= set(re.findall(r'"(\w+)":', m.group(1)))
    return names


# 1. notebooks
python_notebooks = [f for f in sorted(os.listdir(NOTEBOOKS)) if f.endswith(".py")]
for f in python_notebooks:
    path = os.path.join(NOTEBOOKS, f)
    for i, cell in enumerate(cells(path)):
        code = "\n".join(l for l in cell.splitlines() if not l.startswith("# MAGIC") and l != "# Databricks notebook source")
        try:
            ast.parse(code, filename=f"{f} cell {i}")
        except SyntaxError as e:
            failures.append(f"{f} cell {i}: {e}")
for required in ("run_executor.py", "register_tables.py", "query_metadata.sql", "apply_migrations.py"):
    if not os.path.exists(os.path.join(NOTEBOOKS, required)):
        failures.append(f"notebooks/{required} is missing")

# 2. the job definition
job = json.load(open(os.path.join(ROOT, "databricks", "nuvyn-executor.job.json")))
for key in ("name", "tasks", "parameters"):
    if key not in job:
        failures.append(f"job: `{key}` is missing")
params = {p["name"] for p in job.get("parameters", [])}
clusters = {c["job_cluster_key"] for c in job.get("job_clusters", [])}
keys = {t["task_key"] for t in job["tasks"]}
if len(keys) != len(job["tasks"]):
    failures.append("job: task keys are not unique")


def check_task(t, where, inputs=False):
    if "task_key" not in t:
        failures.append(f"{where}: no task_key")
    for d in t.get("depends_on", []):
        if d["task_key"] not in keys:
            failures.append(f"{where}: depends on unknown task {d['task_key']}")
    if "job_cluster_key" in t and t["job_cluster_key"] not in clusters:
        failures.append(f"{where}: unknown job cluster {t['job_cluster_key']}")
    if "for_each_task" in t:
        fe = t["for_each_task"]
        shards = json.loads(fe["inputs"])
        n = len(shards)
        if shards != [f"{i}/{n}" for i in range(n)]:
            failures.append(f"{where}: for_each inputs {shards} are not the shards 0/N .. N-1/N")
        check_task(fe["task"], f"{where}.for_each_task.task", inputs=True)
        return
    nb = t.get("notebook_task")
    if not nb:
        failures.append(f"{where}: neither notebook_task nor for_each_task")
        return
    rel = nb["notebook_path"].split("/notebooks/", 1)[-1]
    local = [os.path.join(NOTEBOOKS, rel + ext) for ext in (".py", ".sql")]
    local = [p for p in local if os.path.exists(p)]
    if not local:
        failures.append(f"{where}: notebook {nb['notebook_path']} is not in notebooks/")
        return
    declared = widgets(local[0])
    for name, value in nb.get("base_parameters", {}).items():
        if name not in declared:
            failures.append(f"{where}: parameter {name} is not a widget of {rel}")
        for ref in re.findall(r"\{\{job\.parameters\.(\w+)\}\}", value):
            if ref not in params:
                failures.append(f"{where}: {{{{job.parameters.{ref}}}}} is not a job parameter")
        if "{{input}}" in value and not inputs:
            failures.append(f"{where}: {{{{input}}}} outside a for_each task")


for t in job["tasks"]:
    check_task(t, f"task {t.get('task_key')}")

# 3. run_executor with a stub dbutils, against a real warehouse
executor = os.path.abspath(sys.argv[1])


class Exit(Exception):
    pass


class Widgets:
    def __init__(self, values):
        self.values = values

    def text(self, name, default, label=None):
        self.values.setdefault(name, default)

    def dropdown(self, name, default, choices, label=None):
        self.values.setdefault(name, default)

    def get(self, name):
        return self.values[name]


class Notebook:
    def exit(self, value):
        raise Exit(value)


class DbUtils:
    def __init__(self, values):
        self.widgets = Widgets(values)
        self.notebook = Notebook()


def run_notebook(path, values):
    dbutils = DbUtils(values)
    scope = {"dbutils": dbutils, "__name__": "__main__"}
    try:
        for cell in cells(path):
            code = "\n".join(l for l in cell.splitlines() if not l.startswith("# MAGIC"))
            exec(compile(code, path, "exec"), scope)
    except Exit as e:
        return e.args[0]
    raise AssertionError(f"{path} did not call dbutils.notebook.exit")


with tempfile.TemporaryDirectory() as tmp:
    wh = os.path.join(tmp, "warehouse")
    lake = os.path.join(ROOT, "tests", "data", "sample_lake")
    payload = {"job_metadata": {"workflow_id": "dbx_wf", "source_id": "dbx_src"}, "data_source_path": lake}
    env = {"payload": json.dumps(payload), "warehouse": wh, "executor": executor}
    os.environ["EXECUTOR_LOG_LEVEL"] = "warn"
    result = json.loads(run_notebook(os.path.join(NOTEBOOKS, "run_executor.py"), env))
    if result.get("status") != "succeeded" or result.get("workflow_id") != "dbx_wf":
        failures.append(f"run_executor: unexpected result {result}")
    rows = json.loads(subprocess.run([executor, "sql", "SELECT count(*) AS n FROM tables WHERE workflow_id = 'dbx_wf'",
                                      "--format", "json", "--warehouse", wh], check=True, capture_output=True, text=True).stdout)
    if rows != [{"n": len(result["sources"][0]["tables"])}] or rows[0]["n"] == 0:
        failures.append(f"run_executor: the warehouse holds {rows}")
    # Fields instead of a payload, as a shard.
    fields = {"payload": "", "workflow_id": "dbx_fields", "data_source_path": lake, "warehouse": wh,
              "executor": executor, "shard": "0/2"}
    result = json.loads(run_notebook(os.path.join(NOTEBOOKS, "run_executor.py"), fields))
    if result.get("shard") != {"index": 0, "count": 2}:
        failures.append(f"run_executor with fields: {result}")
    # A payload without workflow_id fails the task with the executor's own error.
    bad = {"payload": json.dumps({"data_source_path": lake}), "warehouse": wh, "executor": executor}
    try:
        run_notebook(os.path.join(NOTEBOOKS, "run_executor.py"), bad)
        failures.append("run_executor: a payload without workflow_id did not fail the task")
    except Exception as e:  # the notebook's ExecutorFailed
        if "workflow_id is required" not in str(e) or "exited 2" not in str(e):
            failures.append(f"run_executor: failure message {e}")
    # register_tables' statements come from the executor and name the warehouse.
    scope = {}
    exec(compile(cells(os.path.join(NOTEBOOKS, "register_tables.py"))[2], "register_tables", "exec"), scope)
    statements = scope["registration_statements"](executor, "main", "abfss://lake@acct.dfs.core.windows.net/wh")
    if len(statements) != 7 or not all("main._executor_metadata" in s for s in statements):
        failures.append(f"register_tables: {len(statements)} statements")

if failures:
    print("databricks check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"databricks check passed: {len(python_notebooks)} Python notebooks parse, the job's {len(keys)} tasks resolve, run_executor works with a stub dbutils", file=sys.stderr)
