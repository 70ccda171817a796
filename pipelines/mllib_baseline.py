"""MLlib's MultilayerPerceptronClassifier vs sparkneural's MLPClassifier on the same digits split.

    sparkneural run mllib_baseline --conf conf/mllib_baseline.yaml

Both get the same hidden layers, the same standardised features and the same
80/10/10 split (MLlib trains on train + validation, having no early
stopping). Reports test accuracy and training seconds of each.
"""

from __future__ import annotations

import time
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler
from pyspark.sql import SparkSession

from sparkneural.estimators import MLPClassifier

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-mllib-baseline", "conf": {}, "logLevel": "ERROR"},
    "seed": 7,
    "split": [0.8, 0.1, 0.1],
    "model": {"hiddenLayers": [128, 64], "epochs": 40, "batchSize": 32, "dropout": 0.1,
              "earlyStoppingPatience": 8, "numProc": 2, "backend": "horovod"},
    "mllibMaxIter": 200,
    "output": "output/mllib_baseline",
}
PARAMS = {"model": MLPClassifier}


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from sparkneural.baselines import mllib_mlp_baseline_for
    from sparkneural.datasets import digits_split

    labelled, test = digits_split(spark, conf["split"], conf["seed"])
    ours = MLPClassifier(validationCol="isValidation", seed=conf["seed"], **conf["model"])
    theirs = mllib_mlp_baseline_for(ours, numFeatures=64, numClasses=10, maxIter=conf["mllibMaxIter"])
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    metrics: dict[str, Any] = {}
    for name, estimator in (("mllib", theirs), ("sparkneural", ours)):
        scaler = StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True)
        started = time.perf_counter()
        model = Pipeline(stages=[scaler, estimator]).fit(labelled)
        metrics[f"{name}_train_seconds"] = round(time.perf_counter() - started, 2)
        metrics[f"{name}_test_accuracy"] = evaluator.evaluate(model.transform(test))
    print(f"digits, hidden layers {conf['model']['hiddenLayers']}: "
          f"MLlib MultilayerPerceptronClassifier {metrics['mllib_test_accuracy']:.4f} ({metrics['mllib_train_seconds']:.1f} s), "
          f"sparkneural MLPClassifier {metrics['sparkneural_test_accuracy']:.4f} ({metrics['sparkneural_train_seconds']:.1f} s)")
    return metrics


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
