"""Digits classifier: MLlib scaling + sparkdl's MLPClassifier trained by Horovod on 2 ranks.

    python pipelines/digits_mlp.py [--conf conf/digits_mlp.yaml] [key=value ...]
    spark-submit pipelines/digits_mlp.py [--conf ...]

Splits the 1,797 8x8 digits 80/10/10 (train/validation/test), standardises
the pixels, trains with early stopping on the validation rows and prints
the test accuracy and the training time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler
from pyspark.ml.functions import array_to_vector
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

DEFAULTS: dict[str, Any] = {
    "master": "local[2]",
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
    "output": None,
}


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, float]:
    from sparkdl.datasets import digits
    from sparkdl.estimators import MLPClassifier

    data = digits(spark).withColumn("pixels", array_to_vector("features")).drop("features")
    train, validation, test = data.randomSplit(conf["split"], seed=conf["seed"])
    labelled = train.withColumn("isValidation", F.lit(False)).unionByName(
        validation.withColumn("isValidation", F.lit(True))
    )
    pipeline = Pipeline(
        stages=[
            StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True),
            MLPClassifier(validationCol="isValidation", seed=conf["seed"], **conf["model"]),
        ]
    )
    started = time.perf_counter()
    model = pipeline.fit(labelled)
    seconds = time.perf_counter() - started
    predictions = model.transform(test)
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)
    classifier = model.stages[-1]
    metrics = {
        "test_accuracy": accuracy,
        "train_seconds": seconds,
        "epochs_run": len(classifier.history),
        "best_epoch": classifier.bestEpoch,
        "test_rows": predictions.count(),
    }
    print(f"digits MLP on {conf['model']['numProc']} {conf['model']['backend']} ranks: "
          f"test accuracy {accuracy:.4f} ({metrics['test_rows']} rows), "
          f"training {seconds:.1f} s, best epoch {classifier.bestEpoch} of {len(classifier.history)}")
    if conf.get("output"):
        os.makedirs(conf["output"], exist_ok=True)
        with open(os.path.join(conf["output"], "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


def load_conf(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", help="YAML file with settings to merge over the defaults")
    parser.add_argument("overrides", nargs="*", help="key=value settings, dotted keys for nesting (model.epochs=5)")
    args = parser.parse_args(argv)
    conf = json.loads(json.dumps(DEFAULTS))
    if args.conf:
        import yaml

        with open(args.conf) as f:
            _merge(conf, yaml.safe_load(f) or {})
    for item in args.overrides:
        key, _, value = item.partition("=")
        import yaml

        target = conf
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = yaml.safe_load(value)
    return conf


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from sparkdl.session import get_spark

    conf = load_conf(sys.argv[1:])
    spark = get_spark("sparkdl-digits-mlp", master=conf["master"])
    spark.sparkContext.setLogLevel("ERROR")
    main(spark, conf)
    spark.stop()
