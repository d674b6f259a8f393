"""Every SQL statement the project ships or generates is parsed by Apache Spark's own SQL
parser (pyspark, pinned in ci/databricks-venv.sh; a local Spark, no network): what Spark's
parser rejects would fail on Databricks. Run by ci/test.sh.

Checked: the migrations (sql/migrations), sql/create_tables.sql, the `ddl` command's output
for every warehouse URL form and catalog kind, the SQL notebooks (with their `:parameter`
markers), the migration document's queries and their corrected versions
(tests/fixtures/doc_queries), the README's SQL, and the statements the apply_migrations
notebook runs through spark.sql on the Databricks route.

Delta's own statements (OPTIMIZE, VACUUM, ... ZORDER BY) are not in vanilla Spark's grammar
and notebook syntax (CREATE WIDGET) is not SQL: they are listed apart; sqlparser's Databricks
dialect parses them in the cargo tests (migrate::parse, it::databricks). The README's Unity
Catalog set-up (CREATE EXTERNAL LOCATION, GRANT) is listed apart and not checked.

Usage: ci/databricks-venv.sh's python ci/spark-sql-check.py EXECUTOR_BINARY
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "ci"))
from sql_split import split_statements  # noqa: E402

DELTA_ONLY = ("OPTIMIZE", "VACUUM", "RESTORE", "DESCRIBE HISTORY", "FSCK")
NOTEBOOK_ONLY = ("CREATE WIDGET",)
# Unity Catalog's own statements (the README's set-up): no parser outside Databricks knows
# them; listed apart and not checked.
UNITY_CATALOG = ("CREATE EXTERNAL LOCATION", "CREATE STORAGE CREDENTIAL", "GRANT ")


def statements_of(path, text=None, strip_magic=False):
    text = open(path).read() if text is None else text
    if strip_magic:
        text = "\n".join("" if l.startswith("-- MAGIC") or l.startswith("-- Databricks") else l
                         for l in text.splitlines())
    return [(f"{os.path.relpath(path, ROOT)}:{line}", sql) for line, sql in split_statements(text)]


def collect(executor):
    out = []
    for f in sorted(glob.glob(os.path.join(ROOT, "sql", "migrations", "*.sql"))):
        out += statements_of(f)
    ddl = open(os.path.join(ROOT, "sql", "create_tables.sql")).read()
    out += statements_of(os.path.join(ROOT, "sql", "create_tables.sql"),
                         ddl.replace("${warehouse}", "abfss://lake@acct.dfs.core.windows.net/wh"))
    forms = [
        "abfss://lake@acct.dfs.core.windows.net/wh",
        "https://acct.blob.core.windows.net/lake/wh?sv=2022-11-02&sig=SECRET",
        "https://acct.dfs.core.usgovcloudapi.net/lake/wh",
        "wasbs://lake@acct.blob.core.chinacloudapi.cn/wh",
        "az://lake/wh",
        "dbfs:/mnt/lake/wh",
        "/dbfs/mnt/lake/wh",
    ]
    env = dict(os.environ, AZURE_STORAGE_ACCOUNT_NAME="acct")
    for catalog in ("hive_metastore", "main", "my-catalog"):
        for form in forms:
            done = subprocess.run([executor, "ddl", "--catalog", catalog, "--warehouse", form],
                                  capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"ddl --catalog {catalog} --warehouse {form} failed: {done.stderr}")
            if "SECRET" in done.stdout or "LOCATION 'abfss://" not in done.stdout and "LOCATION 'dbfs:/" not in done.stdout:
                raise SystemExit(f"ddl --warehouse {form}: unexpected LOCATION\n{done.stdout}")
            out += [(f"ddl --catalog {catalog} --warehouse {form} #{i}", s)
                    for i, (_, s) in enumerate(split_statements(done.stdout))]
    for f in sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.sql"))):
        out += statements_of(f, strip_magic=True)
    for f in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "doc_queries", "*.sql"))):
        out += statements_of(f)
    readme = open(os.path.join(ROOT, "README.md")).read()
    for m in re.finditer(r"```sql\n(.*?)```", readme, re.S):
        line = readme[: m.start()].count("\n") + 2
        out += [(f"README.md:{line + l - 1}", s) for l, s in split_statements(m.group(1))]
    # The Databricks route of apply_migrations: the statements it gives spark.sql.
    scope = {}
    nb = open(os.path.join(ROOT, "notebooks", "apply_migrations.py")).read()
    code = nb.split("\n# COMMAND ----------\n")[3]
    exec(compile(code, "apply_migrations", "exec"), scope)
    export = scope["exported_migrations"](executor)
    for catalog in ("hive_metastore", "main", "my-catalog"):
        plan = scope["spark_route_statements"](export, catalog, "abfss://lake@acct.dfs.core.windows.net/wh", [])
        out += [(f"apply_migrations (spark route, {catalog}) {where}", s) for where, s in plan]
    return out


def main():
    executor = os.path.abspath(sys.argv[1])
    statements = collect(executor)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("spark-sql-check")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    parser = spark._jsparkSession.sessionState().sqlParser()
    failures, apart, unity, parsed = [], [], [], 0
    for where, sql in statements:
        head = " ".join(sql.split()).upper()
        if head.startswith(NOTEBOOK_ONLY) or head.startswith(DELTA_ONLY):
            apart.append((where, " ".join(sql.split())[:90]))
            continue
        if head.startswith(UNITY_CATALOG) and where.startswith("README.md"):
            unity.append((where, " ".join(sql.split())[:90]))
            continue
        try:
            parser.parsePlan(sql)
            parsed += 1
        except Exception as e:  # py4j's error carries Spark's ParseException text
            message = " ".join(str(e).split())
            failures.append(f"{where}: Spark's parser rejects it: {message[:400]}\n    {' '.join(sql.split())[:200]}")
    spark.stop()
    print(f"Delta's own and notebook statements, parsed by sqlparser's Databricks dialect in the cargo tests ({len(apart)}):",
          file=sys.stderr)
    for where, s in apart:
        print(f"  {where}: {s}", file=sys.stderr)
    print(f"Unity Catalog set-up statements, not checked (no parser outside Databricks) ({len(unity)}):",
          file=sys.stderr)
    for where, s in unity:
        print(f"  {where}: {s}", file=sys.stderr)
    if failures:
        print("spark SQL check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    if parsed < 100:
        print(f"spark SQL check FAILED: only {parsed} statements found", file=sys.stderr)
        sys.exit(1)
    print(f"spark SQL check passed: {parsed} statements parse with Spark {spark.version}'s parser", file=sys.stderr)


if __name__ == "__main__":
    main()
