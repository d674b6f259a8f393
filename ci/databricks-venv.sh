#!/usr/bin/env bash
# The Python environment of the Databricks checks (ci/spark-sql-check.py,
# ci/databricks-check.py): pyspark (a local Spark: its SQL parser is the judge of the SQL we
# ship, and a local[2] session runs the distributed notebook), the Databricks Asset Bundles
# Python package and the Databricks SDK (typed job settings), pinned. Prints the venv's python.
# SPARK_LOCAL_IP keeps Spark on loopback.
# pyspark 3.5 is the Spark of Databricks Runtime 15.4 LTS, the runtime our bundle's clusters use.
set -euo pipefail
PYSPARK_VERSION=3.5.7
DATABRICKS_BUNDLES_VERSION=1.22.1
DATABRICKS_SDK_VERSION=0.150.0
PYYAML_VERSION=6.0.3
# The independent Delta writer the check uses where Spark would write (the interop pins).
DELTALAKE_VERSION=1.6.6
PYARROW_VERSION=26.0.1
VENV="${HOME}/.cache/nuvyn-executor/databricks-venv"
STAMP="$VENV/.pins-$PYSPARK_VERSION-$DATABRICKS_BUNDLES_VERSION-$DATABRICKS_SDK_VERSION-$PYYAML_VERSION-$DELTALAKE_VERSION-$PYARROW_VERSION"
if [ ! -e "$STAMP" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "pyspark==${PYSPARK_VERSION}" "databricks-bundles==${DATABRICKS_BUNDLES_VERSION}" \
    "databricks-sdk==${DATABRICKS_SDK_VERSION}" "pyyaml==${PYYAML_VERSION}" \
    "deltalake==${DELTALAKE_VERSION}" "pyarrow==${PYARROW_VERSION}" >&2
  touch "$STAMP"
fi
# Spark needs a JVM: Java 17 from Debian's packages where it is missing (never a silent pass).
if ! command -v java > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing Java 17 (openjdk-17-jre-headless) for pyspark" >&2
    apt-get update -qq >&2 && apt-get install -y -qq openjdk-17-jre-headless >&2
  else
    echo "error: pyspark needs Java 17 and none is on PATH: install openjdk-17-jre-headless" >&2
    exit 1
  fi
fi
echo "$VENV/bin/python"
