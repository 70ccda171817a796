"""Time series forecasting: SequenceWindower windows per sensor -> RNNRegressor (LSTM), RMSE vs naive.

    sparkneural run timeseries_lstm --conf conf/timeseries_lstm.yaml

Generates noisy periodic readings for several sensors in long format
(sensor, t, value) as a Spark job, cuts them into windows per sensor (never
across two), trains an LSTM to predict the value ``horizon`` steps after each
window on the earlier part of every series and reports the RMSE on the
later part beside the naive forecast (the window's last value).
"""

from __future__ import annotations

import math
import os
from typing import Any

from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkneural.estimators import RNNRegressor

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-timeseries-lstm", "conf": {}, "logLevel": "ERROR"},
    "data": {"sensors": 4, "steps": 2000, "noise": 0.05, "testFraction": 0.2},
    "window": {"windowSize": 24, "step": 1, "horizon": 1},
    "model": {"cell": "lstm", "hiddenSize": 32, "epochs": 10, "batchSize": 64, "learningRate": 0.005,
              "numProc": 2, "backend": "horovod"},
    "seed": 3,
    "output": "output/timeseries_lstm",
}
PARAMS = {"model": RNNRegressor}


def sensor_readings(spark: SparkSession, sensors: int, steps: int, noise: float, seed: int) -> DataFrame:
    """Long format: each sensor a sine of its own period and phase plus Gaussian noise."""
    period = 20.0 + 5.0 * F.col("sensor")
    return (
        spark.range(sensors * steps)
        .select((F.col("id") % sensors).alias("sensor"), (F.col("id") / sensors).cast("long").alias("t"))
        .withColumn("value", F.sin(2 * math.pi * F.col("t") / period + F.col("sensor")) + noise * F.randn(seed))
    )


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from sparkneural import plots
    from sparkneural.preprocessing import SequenceWindower

    data, window = conf["data"], conf["window"]
    readings = sensor_readings(spark, data["sensors"], data["steps"], data["noise"], conf["seed"])
    windows = SequenceWindower(inputCols=["value"], orderCol="t", seriesCol="sensor", targetMode="value", **window)
    rows = windows.transform(readings).cache()
    cutoff = int(data["steps"] * (1 - data["testFraction"]))
    train, test = rows.where(F.col("t") < cutoff - window["windowSize"]), rows.where(F.col("t") >= cutoff)
    model = RNNRegressor(inputShape=[window["windowSize"], 1], seed=conf["seed"], **conf["model"]).fit(train)
    rmse = RegressionEvaluator(metricName="rmse").evaluate(model.transform(test))
    naive = math.sqrt(test.select(F.avg((F.col("label") - F.element_at("features", -1)) ** 2)).first()[0])
    print(f"{conf['model']['cell']} next-value RMSE {rmse:.4f} vs naive last value {naive:.4f} "
          f"({rmse / naive:.2f}x) on {test.count()} test windows")
    if conf["output"]:
        model.write().overwrite().save(os.path.join(conf["output"], "model"))
        plots.training_curves(model.history, os.path.join(conf["output"], "training_curves.png"), metrics=("loss", "rmse"))
    return {"rmse": rmse, "naive_rmse": naive, "ratio": rmse / naive, "train_windows": train.count(), "test_windows": test.count()}


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
