"""The feature query on Spark SQL, the port that :mod:`keyltv.features.definitions` promises.

keyltv does not depend on Spark, so this test is skipped where PySpark or a Java
runtime is missing; ``make test-spark`` installs the pinned PySpark (the ``spark``
extra) and runs it, in about 25 s with a JDK 17.
"""

import os
import re
import shutil
import sys
from datetime import date

import pandas as pd
import pytest

from keyltv.data.transactions import load_transactions
from keyltv.features import account_features
from keyltv.features.definitions import feature_sql
from tests.conftest import random_frame

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("no Java runtime for Spark", allow_module_level=True)

pytestmark = pytest.mark.slow

AS_OF = date(2024, 12, 1)
HORIZON = 365


def spark_sql(as_of: date, horizon_days: int) -> str:
    """The feature query with the two DuckDB spellings the module docstring names."""
    literal = f"DATE'{as_of.isoformat()}'"
    sql = re.sub(r"date_diff\('day', (\w+), \$as_of\)", rf"datediff({literal}, \1)", feature_sql())
    return sql.replace("$as_of", literal).replace("$h", str(horizon_days))


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_feature_query_gives_the_same_table_on_spark_sql(spark):
    # Returns, margins and several orders a day, so that every feature is exercised.
    log = load_transactions(random_frame(20_000, 800, seed=5, margin=True))
    expected = account_features(log, AS_OF, HORIZON)

    daily = log.con.execute("SELECT * FROM daily").df()
    days = {column: [None if pd.isna(d) else d.date() for d in pd.to_datetime(daily[column])]
            for column in ("day", "previous_order_day")}
    table = spark.createDataFrame(daily.assign(**days).astype({"previous_order_day": object}))
    # Exact decimals as in DuckDB (DECIMAL(18, 6) or (38, 6) there; sums are (38, 6) in both)
    for money in ("amount", "margin", "returns"):
        table = table.withColumn(money, table[money].cast("decimal(38,6)"))
    table.createOrReplaceTempView("daily")
    got = spark.sql(spark_sql(AS_OF, HORIZON)).toPandas().set_index("customer_id").astype(float)
    got.index = got.index.astype(str)

    pd.testing.assert_frame_equal(got, expected, rtol=1e-9, check_names=False)
