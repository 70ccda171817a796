"""Digits classifier: MLlib scaling + sparkneural's MLPClassifier trained by Horovod, test accuracy.

    sparkneural run digits_mlp --conf conf/digits_mlp.yaml [model.epochs=20 ...]
    python pipelines/digits_mlp.py --conf conf/digits_mlp.yaml
    spark-submit pipelines/digits_mlp.py --conf conf/digits_mlp.yaml

Splits the 1,797 8x8 digits 80/10/10 (train/validation/test), standardises
the pixels, trains with early stopping on the validation rows and reports
the test accuracy and the training time. Writes metrics.json, the fitted
PipelineModel, training curves and a confusion matrix to ``output``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler
from pyspark.sql import SparkSession

from sparkneural.estimators import MLPClassifier

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-digits-mlp", "conf": {}, "logLevel": "ERROR"},
    "seed": 7,
    "split": [0.8, 0.1, 0.1],
    "model": {
        "hiddenLayers": [128, 64],
        "epochs": 40,
        "batchSize": 32,
        "learningRate": 0.001,
        "dropout": 0.1,
        "earlyStoppingPatience": 8,
        "numProc": 2,
        "backend": "horovod",
    },
    "output": "output/digits_mlp",
}
PARAMS = {"model": MLPClassifier}


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from sparkneural import plots
    from sparkneural.datasets import digits_split

    labelled, test = digits_split(spark, conf["split"], conf["seed"])
    pipeline = Pipeline(
        stages=[
            StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True),
            MLPClassifier(validationCol="isValidation", seed=conf["seed"], **conf["model"]),
        ]
    )
    started = time.perf_counter()
    model = pipeline.fit(labelled)
    seconds = time.perf_counter() - started
    predictions = model.transform(test).select("label", "prediction").cache()
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)
    classifier = model.stages[-1]
    ranks = conf["model"].get("numProc"), conf["model"].get("backend", "horovod")
    print(f"digits MLP on {ranks[0]} {ranks[1]} ranks: test accuracy {accuracy:.4f} "
          f"({predictions.count()} rows), training {seconds:.1f} s, "
          f"best epoch {classifier.bestEpoch} of {len(classifier.history)}")
    output = conf["output"]
    if output:
        model.write().overwrite().save(os.path.join(output, "model"))
        plots.training_curves(classifier.history, os.path.join(output, "training_curves.png"), metrics=("loss", "accuracy"))
        pdf = predictions.toPandas()
        plots.confusion_matrix(pdf["label"].astype(int), pdf["prediction"].astype(int), os.path.join(output, "confusion_matrix.png"))
    return {
        "test_accuracy": accuracy,
        "train_seconds": round(seconds, 2),
        "epochs_run": len(classifier.history),
        "best_epoch": classifier.bestEpoch,
        "test_rows": predictions.count(),
    }


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
