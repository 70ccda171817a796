"""Digits with a LeNet-style CNNClassifier on [1, 8, 8] images, trained by Horovod; test accuracy.

    sparkneural run digits_cnn --conf conf/digits_cnn.yaml

Same 80/10/10 split and scaling as digits_mlp; the pixels are read as one
8x8 channel. Writes metrics.json, the PipelineModel, training curves and a
confusion matrix.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler
from pyspark.sql import SparkSession

from sparkneural.estimators import CNNClassifier

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-digits-cnn", "conf": {}, "logLevel": "ERROR"},
    "seed": 7,
    "split": [0.8, 0.1, 0.1],
    "model": {"inputShape": [1, 8, 8], "filters": [20, 50], "kernelSize": 3, "denseUnits": 128, "epochs": 25,
              "batchSize": 32, "dropout": 0.2, "earlyStoppingPatience": 6, "numProc": 2, "backend": "horovod"},
    "output": "output/digits_cnn",
}
PARAMS = {"model": CNNClassifier}


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from sparkneural import plots
    from sparkneural.datasets import digits_split

    labelled, test = digits_split(spark, conf["split"], conf["seed"])
    pipeline = Pipeline(stages=[
        StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True),
        CNNClassifier(validationCol="isValidation", seed=conf["seed"], **conf["model"]),
    ])
    started = time.perf_counter()
    model = pipeline.fit(labelled)
    seconds = time.perf_counter() - started
    predictions = model.transform(test).select("label", "prediction").cache()
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)
    cnn = model.stages[-1]
    print(f"digits CNN: test accuracy {accuracy:.4f}, training {seconds:.1f} s, best epoch {cnn.bestEpoch} of {len(cnn.history)}")
    if conf["output"]:
        model.write().overwrite().save(os.path.join(conf["output"], "model"))
        plots.training_curves(cnn.history, os.path.join(conf["output"], "training_curves.png"), metrics=("loss", "accuracy"))
        pdf = predictions.toPandas()
        plots.confusion_matrix(pdf["label"].astype(int), pdf["prediction"].astype(int), os.path.join(conf["output"], "confusion_matrix.png"))
    return {"test_accuracy": accuracy, "train_seconds": round(seconds, 2), "epochs_run": len(cnn.history), "best_epoch": cnn.bestEpoch}


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
