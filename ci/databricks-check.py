"""Checks of the Databricks side without a workspace (run by ci/test.sh):

1. every notebook in notebooks/ is a Databricks source notebook whose Python cells parse
   (SQL cells are parsed with sqlparser's Databricks dialect by tests/it/databricks.rs);
2. the Asset Bundle (databricks.yml): each job validates with the databricks-bundles
   package and the Databricks SDK's typed job settings, and its notebooks, widgets, job
   parameters, wheel artifact, retries, run_if, access modes, schedule and targets check out;
3. the notebooks' logic runs locally, with a stub dbutils, against a real local warehouse:
   run_executor (payloads, secrets, exit 3, the summary), the spark route of apply_migrations
   (a stub spark.sql), and run_executor_distributed on a local[2] SparkSession.

Usage: ci/databricks-venv.sh's python ci/databricks-check.py EXECUTOR_BINARY
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
evidence = []


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

# 2. the bundle (databricks.yml): every job through the databricks-bundles package's Job and
# the Databricks SDK's typed JobSettings (both refuse unknown fields or wrong types), then what
# those cannot know: notebooks and their widgets, job parameters, the wheel artifact, retries,
# run_if, Unity Catalog access modes, the schedule, the targets.
import yaml  # noqa: E402
from databricks.bundles.jobs import Job  # noqa: E402
from databricks.sdk.service.jobs import JobSettings, RunIf  # noqa: E402

bundle = yaml.safe_load(open(os.path.join(ROOT, "databricks.yml")))
variables = {k: v.get("default") for k, v in bundle.get("variables", {}).items()}


def resolve(value):
    """`${var.x}` as the variable's default (what `bundle validate` substitutes)."""
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, str):
        for name in re.findall(r"\$\{var\.(\w+)\}", value):
            if name not in variables:
                failures.append(f"databricks.yml: ${{var.{name}}} is not a declared variable")
                continue
            value = value.replace(f"${{var.{name}}}", str(variables[name]))
    return value


artifacts = bundle.get("artifacts", {})
wheel_build = [a for a in artifacts.values() if a.get("type") == "whl"]
if len(wheel_build) != 1:
    failures.append("databricks.yml: one whl artifact expected")
else:
    build = wheel_build[0].get("build", "")
    if "maturin build" not in build or "--compatibility manylinux_" not in build or '"maturin==' not in build:
        failures.append(f"databricks.yml: the wheel is not built by a pinned maturin for a manylinux target: {build}")
    maturin_pin = re.search(r'MATURIN_VERSION=(\S+)', open(os.path.join(ROOT, "ci", "wheel-check.sh")).read()).group(1)
    if f'"maturin=={maturin_pin}"' not in build:
        failures.append(f"databricks.yml: maturin is not pinned to ci/wheel-check.sh's {maturin_pin}")
    out_dir = re.search(r"--out (\S+)", build).group(1)
    compat = re.search(r'COMPATIBILITY=(\S+)', open(os.path.join(ROOT, "ci", "wheel-check.sh")).read()).group(1)
    if f"--compatibility {compat}" not in build:
        failures.append(f"databricks.yml: the wheel's compatibility is not ci/wheel-check.sh's {compat}")
targets = bundle.get("targets", {})
if set(targets) != {"dev", "prod"} or targets["dev"].get("mode") != "development" \
        or targets["prod"].get("mode") != "production":
    failures.append(f"databricks.yml: targets {sorted(targets)} are not dev (development) and prod (production)")
if "service_principal_name" not in targets.get("prod", {}).get("run_as", {}):
    failures.append("databricks.yml: prod does not run as a service principal")
if "notebooks/*.py" not in bundle.get("sync", {}).get("include", []):
    failures.append("databricks.yml: the notebooks are not synced")

jobs = bundle["resources"]["jobs"]
used_notebooks = set()
for key, raw in jobs.items():
    where = f"job {key}"
    job_dict = resolve(raw)
    try:
        Job.from_dict(raw)  # with ${var.x} references, as the bundle holds them
        settings = JobSettings.from_dict(job_dict)
    except Exception as e:  # an unknown field, a wrong type
        failures.append(f"{where}: {type(e).__name__}: {e}")
        continue
    params = {p.name for p in settings.parameters or []}
    clusters = {c.job_cluster_key: c for c in settings.job_clusters or []}
    for c in clusters.values():
        if c.new_cluster.data_security_mode is None:
            failures.append(f"{where}: cluster {c.job_cluster_key} has no explicit data_security_mode")
    keys = {t.task_key for t in settings.tasks}
    if len(keys) != len(settings.tasks):
        failures.append(f"{where}: task keys are not unique")

    def check_task(t, where, inputs=False):
        for d in t.depends_on or []:
            if d.task_key not in keys:
                failures.append(f"{where}: depends on unknown task {d.task_key}")
        if t.job_cluster_key and t.job_cluster_key not in clusters:
            failures.append(f"{where}: unknown job cluster {t.job_cluster_key}")
        if t.for_each_task:
            shards = json.loads(t.for_each_task.inputs)
            n = len(shards)
            if shards != [f"{i}/{n}" for i in range(n)]:
                failures.append(f"{where}: for_each inputs {shards} are not the shards 0/N .. N-1/N")
            inner = t.for_each_task.task
            if not inner.max_retries:
                failures.append(f"{where}: the idempotent shard task has no retries")
            check_task(inner, f"{where}.for_each_task.task", inputs=True)
            return
        nb = t.notebook_task
        if not nb:
            failures.append(f"{where}: neither notebook_task nor for_each_task")
            return
        local = os.path.normpath(os.path.join(ROOT, nb.notebook_path))
        if not os.path.exists(local):
            failures.append(f"{where}: notebook {nb.notebook_path} is not in notebooks/")
            return
        used_notebooks.add(os.path.basename(local))
        for lib in t.libraries or []:
            if not lib.whl or not lib.whl.startswith(f"./{out_dir}/") or not lib.whl.endswith("*.whl"):
                failures.append(f"{where}: library {lib.whl} is not the wheel artifact's {out_dir}/*.whl")
        if not t.libraries:
            failures.append(f"{where}: the task does not install the wheel")
        declared = widgets(local)
        for name, value in (nb.base_parameters or {}).items():
            if name not in declared:
                failures.append(f"{where}: parameter {name} is not a widget of {os.path.basename(local)}")
            for ref in re.findall(r"\{\{job\.parameters\.(\w+)\}\}", value):
                if ref not in params:
                    failures.append(f"{where}: {{{{job.parameters.{ref}}}}} is not a job parameter")
            if "{{input}}" in value and not inputs:
                failures.append(f"{where}: {{{{input}}}} outside a for_each task")
            if "secret" in name and value and "${" in value:
                failures.append(f"{where}: {name} is unresolved")
        if "secret_scope" in declared and "secret_scope" not in (nb.base_parameters or {}) \
                and os.path.basename(local) != "register_tables.py":
            failures.append(f"{where}: {os.path.basename(local)} gets no secret scope")

    for t in settings.tasks:
        check_task(t, f"{where} task {t.task_key}")
        if t.task_key == "register_tables" and t.run_if != RunIf.ALL_DONE:
            failures.append(f"{where}: register_tables does not run when a shard failed (run_if ALL_DONE)")
    if key.endswith("maintain") and not (settings.schedule and settings.schedule.quartz_cron_expression):
        failures.append(f"{where}: maintain is not scheduled")
for required in ("run_executor.py", "run_executor_distributed.py", "apply_migrations.py", "register_tables.py",
                 "maintain.py"):
    if required not in used_notebooks:
        failures.append(f"databricks.yml: no job runs notebooks/{required}")
if not any(k.endswith("maintain") for k in jobs):
    failures.append("databricks.yml: no scheduled maintain job")

# 3. the notebooks' logic with a stub dbutils, against a real warehouse
executor = os.path.abspath(sys.argv[1])
SECRET = "s3cr3t-" + os.urandom(8).hex()


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


class Secrets:
    def __init__(self, values):
        self.values, self.read = values, []

    def get(self, scope, key):
        self.read.append((scope, key))
        return self.values[(scope, key)]


class TaskValues:
    def __init__(self):
        self.values = {}

    def set(self, key, value):
        json.dumps(value)  # task values must be JSON
        self.values[key] = value


class Jobs:
    def __init__(self):
        self.taskValues = TaskValues()


class DbUtils:
    def __init__(self, values, secrets=None):
        self.widgets = Widgets(values)
        self.notebook = Notebook()
        self.secrets = Secrets(secrets or {})
        self.jobs = Jobs()


def exec_notebook(path, scope):
    """Runs a notebook's cells in `scope`; `%run ./other` runs that notebook's cells there."""
    for cell in cells(path):
        run = re.match(r"\s*# MAGIC %run (\S+)\s*$", cell)
        if run:
            exec_notebook(os.path.join(os.path.dirname(path), run.group(1) + ".py"), scope)
            continue
        code = "\n".join(l for l in cell.splitlines() if not l.startswith("# MAGIC"))
        exec(compile(code, path, "exec"), scope)


def run_notebook(path, values, secrets=None, extra=None):
    """(exit value, dbutils, captured stderr) of a notebook run with a stub dbutils."""
    import contextlib
    import io
    dbutils = DbUtils(values, secrets)
    scope = {"dbutils": dbutils, "__name__": "__main__", **(extra or {})}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            exec_notebook(path, scope)
    except Exit as e:
        return e.args[0], dbutils, err.getvalue()
    raise AssertionError(f"{path} did not call dbutils.notebook.exit")


def sql(wh, q):
    return json.loads(subprocess.run([executor, "sql", q, "--format", "json", "--warehouse", wh],
                                     check=True, capture_output=True, text=True).stdout)


def values_of(insert):
    """The literals of `INSERT INTO t VALUES (...)`, as Python values."""
    inner = insert[insert.index("VALUES (") + len("VALUES ("):-1]
    out = []
    for quoted, bare in re.findall(r"'((?:[^'\\]|\\.)*)'|([^,\s][^,]*)", inner):
        if quoted or bare == "":
            out.append(re.sub(r"\\(.)", r"\1", quoted))
        else:
            bare = bare.strip()
            out.append({"NULL": None, "true": True, "false": False}.get(bare, bare))
    return out


class StubSpark:
    """spark.sql that records statements; the history query answers `history`."""

    def __init__(self, history):
        self.history, self.statements = history, []

    def sql(self, statement):
        if statement.startswith("SELECT version, checksum, success FROM"):
            if self.history is None:
                raise RuntimeError("[TABLE_OR_VIEW_NOT_FOUND] The table or view cannot be found")
            rows = self.history

            class Result:
                def collect(self):
                    return [dict(r) for r in rows]
            return Result()
        self.statements.append(statement)
        return None


def check_spark_route(tmp):
    scope = {}
    exec(compile(cells(os.path.join(NOTEBOOKS, "apply_migrations.py"))[3], "apply_migrations", "exec"), scope)
    export = scope["exported_migrations"](executor)
    wh = os.path.join(tmp, "route_wh")
    ms = export["migrations"]
    # A fresh catalog: the history table, every statement, one history row per migration.
    spark = StubSpark(None)
    report = scope["apply_with_spark"](spark.sql, export, "main", "abfss://lake@acct.dfs.core.windows.net/wh", False)
    want = 1 + sum(len(m["statements"]) for m in ms) + len(ms)
    inserts = [st for st in spark.statements if st.startswith("INSERT INTO")]
    if len(spark.statements) != want or len(report["statements"]) != want:
        failures.append(f"spark route: {len(spark.statements)} statements run, {want} expected")
    if [values_of(i)[3] for i in inserts] != [m["checksum"] for m in ms]:
        failures.append("spark route: the history rows do not carry the binary's checksums")
    if any("hive_metastore" in st for st in spark.statements) or \
            "LOCATION 'abfss://lake@acct.dfs.core.windows.net/wh/_executor_metadata/_schema_history'" not in spark.statements[0]:
        failures.append(f"spark route: statements not in catalog main or history elsewhere: {spark.statements[0][:200]}")
    # V1 applied, V2 applied from its earlier text (an accepted checksum): V3 onwards run.
    v2_old = ms[1]["accepts"][0]
    spark = StubSpark([{"version": 1, "checksum": ms[0]["checksum"], "success": True},
                       {"version": 2, "checksum": v2_old, "success": True}])
    scope["apply_with_spark"](spark.sql, export, "hive_metastore", wh, False)
    later = ms[2:]
    if len(spark.statements) != 1 + sum(len(m["statements"]) + 1 for m in later) \
            or "workflow_notebook_source" not in spark.statements[1]:
        failures.append(f"spark route after V2: {[st[:60] for st in spark.statements]}")
    # An applied migration whose file changed stops the route before any statement.
    spark = StubSpark([{"version": 1, "checksum": "0" * 64, "success": True}])
    try:
        scope["apply_with_spark"](spark.sql, export, "hive_metastore", wh, False)
        failures.append("spark route: a changed V1 was not refused")
    except scope["MigrationFailed"] as e:
        if "V1__v1_tables.sql (V1) was changed" not in str(e) or spark.statements:
            failures.append(f"spark route: changed V1: {e}, {len(spark.statements)} statements run")
    # The binary takes over: the history rows the route writes (here by an independent Delta
    # writer, as Spark would) are the binary's applied migrations.
    subprocess.run([executor, "migrate", "apply", "--target", "1", "--warehouse", wh], check=True, capture_output=True)
    spark = StubSpark([{"version": 1, "checksum": ms[0]["checksum"], "success": True}])
    scope["apply_with_spark"](spark.sql, export, "hive_metastore", wh, False)
    import datetime
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake
    history = os.path.join(wh, "_executor_metadata", "_schema_history")
    schema = DeltaTable(history).schema().to_arrow()
    rows = []
    for insert in (st for st in spark.statements if st.startswith("INSERT INTO")):
        v = values_of(insert)
        rows.append({"version": int(v[0]), "description": v[1], "script": v[2], "checksum": v[3],
                     "applied_at": datetime.datetime.now(datetime.timezone.utc), "execution_ms": None,
                     "success": True, "steps_done": int(v[7]), "table_versions": None, "error_message": None,
                     "executor_version": v[10]})
    write_deltalake(history, pa.Table.from_pylist(rows, schema=pa.schema(schema)), mode="append")
    status = json.loads(subprocess.run([executor, "migrate", "status", "--warehouse", wh],
                                       capture_output=True, text=True).stdout)
    states = [m["state"] for m in status["migrations"]]
    if states != ["applied"] * len(ms) or status.get("schema_version") != len(ms):
        failures.append(f"spark route: the binary sees {states} after the route recorded V2 onwards")
    evidence.append(f"spark route: {want} statements; the binary then sees {states}")


def check_distributed(tmp, lake):
    from pyspark.sql import SparkSession
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master("local[2]").appName("databricks-check")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    dist = os.path.join(NOTEBOOKS, "run_executor_distributed.py")
    try:
        wh_a, wh_b = os.path.join(tmp, "dist_wh"), os.path.join(tmp, "single_wh")
        payload = json.dumps({"workflow_id": "dist_wf", "source_id": "src", "data_source_path": lake})
        common = {"payload": payload, "executor": executor, "secret_scope": "", "secret_keys": ""}
        out, dbutils, err = run_notebook(dist, dict(common, warehouse=wh_a, shards="3"), extra={"spark": spark})
        s = json.loads(out)
        runs = sql(wh_a, "SELECT count(DISTINCT run_id) AS n FROM executor_runs WHERE workflow_id = 'dist_wf'")
        if s["status"] != "succeeded" or runs != [{"n": 3}] or dbutils.jobs.taskValues.values.get("tables") != s["tables"]:
            failures.append(f"distributed: summary {s}, runs {runs}")
        run_notebook(RUN, dict(common, warehouse=wh_b))
        for q in ["SELECT source_id, table_name, file_path, file_type, row_count, column_count, size_bytes, "
                  "status, error_message FROM tables WHERE workflow_id = 'dist_wf' ORDER BY table_name",
                  "SELECT source_id, table_name, column_name, data_type, position, is_nullable, sample_values, "
                  "null_count, distinct_count, min_value, max_value FROM columns WHERE workflow_id = 'dist_wf' "
                  "ORDER BY table_name, position"]:
            a, b = sql(wh_a, q), sql(wh_b, q)
            if a != b or not a:
                diff = [(x, y) for x, y in zip(a, b) if x != y][:2]
                failures.append(f"distributed: {len(a)} rows differ from the unsharded run's {len(b)}: {q[:60]}: {diff}")
            evidence.append(f"3 shards on local[2] = one run: {len(a)} {q.split(' FROM ')[1].split()[0]} rows")
        try:
            run_notebook(dist, dict(common, warehouse=wh_a, shards="four"), extra={"spark": spark})
            failures.append("distributed: shards 'four' was accepted")
        except ValueError as e:
            if "shards must be a whole number of shards, not 'four'" not in str(e):
                failures.append(f"distributed: bad shards: {e}")
        # One failing shard fails the task, naming it, after every shard ran.
        wrapper = os.path.join(tmp, "failing-shard")
        open(wrapper, "w").write(f"""#!/bin/sh
case "$NUVYN_JOB_PAYLOAD" in
  *'"shard": "1/3"'*) echo '{{"status": "failed", "error": "storage refused shard 1"}}'; exit 1;;
esac
exec {executor} "$@"
""")
        os.chmod(wrapper, 0o755)
        try:
            run_notebook(dist, dict(common, executor=wrapper, warehouse=os.path.join(tmp, "fail_wh"), shards="3"),
                         extra={"spark": spark})
            failures.append("distributed: a failed shard did not fail the task")
        except Exception as e:
            if type(e).__name__ != "ShardFailed" or "1 of 3 shards failed: shard 1/3 exited 1: storage refused shard 1" not in str(e):
                failures.append(f"distributed: failure message {type(e).__name__}: {e}")
    finally:
        spark.stop()


RUN = os.path.join(NOTEBOOKS, "run_executor.py")
with tempfile.TemporaryDirectory() as tmp:
    wh = os.path.join(tmp, "warehouse")
    lake = os.path.join(ROOT, "tests", "data", "sample_lake")
    payload = {"job_metadata": {"workflow_id": "dbx_wf", "source_id": "dbx_src"}, "data_source_path": lake}
    env = {"payload": json.dumps(payload), "warehouse": wh, "executor": executor,
           "secret_scope": "", "secret_keys": ""}
    os.environ["EXECUTOR_LOG_LEVEL"] = "warn"
    out, dbutils, _ = run_notebook(RUN, env)
    result = json.loads(out)
    rows = sql(wh, "SELECT count(*) AS n FROM tables WHERE workflow_id = 'dbx_wf'")
    if result.get("status") != "succeeded" or result.get("workflow_id") != "dbx_wf" or rows != [{"n": result["tables"]}] \
            or rows[0]["n"] == 0:
        failures.append(f"run_executor: result {result}, warehouse {rows}")
    tv = dbutils.jobs.taskValues.values
    if tv.get("status") != "succeeded" or tv.get("tables") != rows[0]["n"] or tv.get("failed_tables") != []:
        failures.append(f"run_executor: task values {tv}")
    # Fields instead of a payload, as a shard.
    fields = {"payload": "", "workflow_id": "dbx_fields", "data_source_path": lake, "warehouse": wh,
              "executor": executor, "shard": "0/2"}
    out, _, _ = run_notebook(RUN, fields)
    if json.loads(out).get("shard") != {"index": 0, "count": 2}:
        failures.append(f"run_executor with fields: {out}")
    # A payload without workflow_id fails the task with the executor's own error.
    bad = {"payload": json.dumps({"data_source_path": lake}), "warehouse": wh, "executor": executor}
    try:
        run_notebook(RUN, bad)
        failures.append("run_executor: a payload without workflow_id did not fail the task")
    except Exception as e:  # the notebook's ExecutorFailed
        if "workflow_id is required" not in str(e) or "exited 2" not in str(e):
            failures.append(f"run_executor: failure message {e}")

    # Exit 3 (a broken table beside a good one) is a successful task with a warning.
    partial_lake = os.path.join(tmp, "partial_lake")
    os.makedirs(partial_lake)
    open(os.path.join(partial_lake, "ok.csv"), "w").write("id,name\n1,ann\n2,bob\n")
    open(os.path.join(partial_lake, "broken.parquet"), "wb").write(b"PAR1 garbage")
    part = {"payload": json.dumps({"workflow_id": "dbx_partial", "data_source_path": partial_lake}),
            "warehouse": wh, "executor": executor}
    try:
        out, dbutils, err = run_notebook(RUN, part)
        s = json.loads(out)
        tv = dbutils.jobs.taskValues.values
        if s["status"] != "partial" or s["failed_count"] != 1 or tv.get("status") != "partial" \
                or tv.get("failed_tables") != [f"{partial_lake}:broken"] or "WARNING: nuvyn-executor finished partially" not in err:
            failures.append(f"run_executor partial: summary {s}, task values {tv}, log {err[-300:]}")
    except Exception as e:
        failures.append(f"run_executor: exit 3 failed the task: {e}")

    # The exit value stays small whatever the lake: a summary, not the result.
    scope = {}
    exec_notebook(os.path.join(NOTEBOOKS, "executor_lib.py"), scope)
    huge = {"status": "partial", "sources": [{"source_id": "s", "tables": [
        {"table_name": f"t{i:06}", "status": "failed" if i % 2 else "succeeded", "columns": [{"name": "x" * 50}] * 20}
        for i in range(50_000)]}]}
    tv = TaskValues()
    value = scope["finish"](3, huge, tv, log=open(os.devnull, "w"))
    if len(value) > 64 * 1024 or len(tv.values["failed_tables"]) != 100 or json.loads(value)["failed_count"] != 25_000:
        failures.append(f"run_executor: the exit value of a 50,000-table result is {len(value)} bytes")

    # Credentials from a secret scope reach the executor's environment, and nothing else.
    secrets = {("nuvyn", "sp-id"): "client-id-1", ("nuvyn", "sp-secret"): SECRET, ("nuvyn", "sp-tenant"): "tenant-1"}
    seen = {}

    def recording_popen(args, env=None, **kw):
        seen.update(env)
        return subprocess.Popen(args, env=env, **kw)

    with_secrets = dict(env, secret_scope="nuvyn",
                        secret_keys="AZURE_CLIENT_ID=sp-id, AZURE_CLIENT_SECRET=sp-secret,AZURE_TENANT_ID=sp-tenant")
    import io
    log = io.StringIO()
    code, result = scope["run_executor"](lambda k: with_secrets.get(k, ""), popen=recording_popen, log=log,
                                         secrets=Secrets(secrets))
    tv = TaskValues()
    value = scope["finish"](code, result, tv, log=log)
    if seen.get("AZURE_CLIENT_SECRET") != SECRET or seen.get("AZURE_CLIENT_ID") != "client-id-1":
        failures.append("run_executor: the secret scope's credentials did not reach the executor's environment")
    if SECRET in log.getvalue() or SECRET in value or SECRET in json.dumps(tv.values) or SECRET in json.dumps(result):
        failures.append("run_executor: a secret reached the log, the exit value or the task values")
    if SECRET in os.environ.values():
        failures.append("run_executor: a secret reached the notebook's own environment")
    for spec, why in [("AZURE_CLIENT_SECRET", "is not ENV_NAME=secret-key"),
                      ("PATH=sp-secret", "is not a credential variable")]:
        try:
            scope["secret_environment"](lambda k: {"secret_scope": "nuvyn", "secret_keys": spec}[k], Secrets(secrets))
            failures.append(f"secret_keys {spec!r} was accepted")
        except ValueError as e:
            if why not in str(e) or SECRET in str(e):
                failures.append(f"secret_keys {spec!r}: {e}")

    # maintain: the scheduled job's notebook, against the same warehouse; bad input names its field.
    maint = os.path.join(NOTEBOOKS, "maintain.py")
    out, _, _ = run_notebook(maint, {"warehouse": wh, "executor": executor, "vacuum_hours": "",
                                     "history_days": "400", "secret_scope": "", "secret_keys": ""})
    maintained = json.loads(out)
    if sorted(maintained.get("tables", [])) != sorted(["sources", "tables", "columns", "executor_runs",
                                                       "table_history", "column_history", "changes",
                                                       "partition_sketches"]):
        failures.append(f"maintain: {maintained}")
    for widget, bad in [("vacuum_hours", "a week"), ("history_days", "-3")]:
        try:
            run_notebook(maint, {"warehouse": wh, "executor": executor, "vacuum_hours": "", "history_days": "",
                                 widget: bad, "secret_scope": "", "secret_keys": ""})
            failures.append(f"maintain: {widget} {bad!r} was accepted")
        except ValueError as e:
            if f"{widget} must be a whole number" not in str(e):
                failures.append(f"maintain: bad {widget}: {e}")

    # register_tables' statements come from the executor and name the warehouse.
    scope = {}
    exec(compile(cells(os.path.join(NOTEBOOKS, "register_tables.py"))[2], "register_tables", "exec"), scope)
    statements = scope["registration_statements"](executor, "main", "abfss://lake@acct.dfs.core.windows.net/wh")
    if len(statements) != 11 or not all("`main`.`_executor_metadata`" in s for s in statements):
        failures.append(f"register_tables: {len(statements)} statements")

    # apply_migrations' Databricks route, with a stub spark.sql that records statements.
    check_spark_route(tmp)

    # run_executor_distributed on a local[2] Spark: equal, row for row, to one unsharded run.
    check_distributed(tmp, lake)

if failures:
    print("databricks check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"databricks check passed: {len(python_notebooks)} Python notebooks parse, the bundle's jobs validate, "
      "run_executor (secrets, exit 3, summary), the spark route of apply_migrations and the distributed "
      "fan-out work:\n  " + "\n  ".join(evidence), file=sys.stderr)
