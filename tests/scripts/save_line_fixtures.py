"""Save the fixtures of tests/test_spark_lines.py with the Spark line of this interpreter.

Run once per line (``.venv/bin/python tests/scripts/save_line_fixtures.py`` and
``.venv-spark3.5/bin/python ...``): it fits a small MLPClassifier and a
Pipeline (StandardScaler + MLPClassifier) on digits, saves both under
``tests/fixtures/saved-on-spark-<major.minor>/`` with the predictions and
rawPrediction they give on the first 40 digits (``expected.json``), so that
the other line can load them and must score the same.
"""

import json
import os
import shutil
import sys

import pyspark
from pyspark.ml import Pipeline
from pyspark.ml.feature import StandardScaler
from pyspark.ml.functions import array_to_vector

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from sparkneural.datasets import digits  # noqa: E402
from sparkneural.estimators import MLPClassifier  # noqa: E402
from sparkneural.session import get_spark  # noqa: E402

ROWS = 40


def main() -> None:
    line = ".".join(pyspark.__version__.split(".")[:2])
    target = os.path.join(os.path.dirname(__file__), "..", "fixtures", f"saved-on-spark-{line}")
    shutil.rmtree(target, ignore_errors=True)
    spark = get_spark("sparkneural-fixtures", master="local[2]")
    df = digits(spark).limit(300).select(array_to_vector("features").alias("pixels"), "label").cache()
    quiet = dict(backend="local", verbose=0, epochs=3, seed=1, hiddenLayers=[16])
    model = MLPClassifier(featuresCol="pixels", **quiet).fit(df)
    pipeline = Pipeline(stages=[StandardScaler(inputCol="pixels", outputCol="features", withMean=True),
                                MLPClassifier(**quiet)]).fit(df)
    model.write().save(os.path.join(target, "mlp"))
    pipeline.write().save(os.path.join(target, "pipeline"))
    first = df.limit(ROWS)
    expected = {}
    for name, fitted in (("mlp", model), ("pipeline", pipeline)):
        rows = fitted.transform(first).select("pixels", "prediction", "rawPrediction").collect()
        expected[name] = {"pixels": [r.pixels.toArray().tolist() for r in rows], "prediction": [r.prediction for r in rows],
                          "rawPrediction": [r.rawPrediction.toArray().tolist() for r in rows]}
    with open(os.path.join(target, "expected.json"), "w") as f:
        json.dump({"pyspark": pyspark.__version__, **expected}, f)
    spark.stop()
    print("saved", os.path.abspath(target))


if __name__ == "__main__":
    main()
