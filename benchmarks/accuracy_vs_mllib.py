"""Test accuracy and fit time: sparkneural's ``MLPClassifier`` against MLlib's ``MultilayerPerceptronClassifier``.

Same hidden layers, same training rows, same test rows, local[2]:

* digits: scikit-learn's 8x8 digits (1,797 rows), standardised, 80/10/10
  split (``sparkneural.datasets.digits_split``), hidden layers [128, 64], batch
  32, at most 40 epochs (20 with ``--quick``); MLlib trains on train +
  validation (it has no early stopping), sparkneural uses the validation rows
  for early stopping;
* synthetic: scikit-learn's ``make_classification`` with 200k rows (10k with
  ``--quick``), 100 features (20 informative), 10 classes, 80/20 split,
  hidden layers [64, 32], batch 64, 10 epochs.

MLlib: sigmoid hidden layers, L-BFGS, ``maxIter`` iterations. sparkneural: ReLU,
Adam, 2 Horovod ranks. Fit time is the wall time of ``fit()``, including
sparkneural's fixed cost of starting the ranks.

    .venv/bin/python benchmarks/accuracy_vs_mllib.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CORES, FrameFiles, Results, arguments, spark_session  # noqa: E402


def evaluate(model, test) -> float:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    return MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(test))


def timed_fit(estimator, train):
    started = time.perf_counter()
    model = estimator.fit(train)
    return model, time.perf_counter() - started


def compare(results: Results, name: str, ours, theirs, our_data, their_data, **detail) -> None:
    """Fit both on their (train, test) frames, alternately timed; add accuracy and time figures."""
    our_model, our_s = timed_fit(ours, our_data[0])
    their_model, their_s = timed_fit(theirs, their_data[0])
    our_acc, their_acc = evaluate(our_model, our_data[1]), evaluate(their_model, their_data[1])
    last_stage = getattr(our_model, "stages", [our_model])[-1]
    detail = {"sparkneural_accuracy": our_acc, "mllib_accuracy": their_acc, "sparkneural_fit_seconds": our_s,
              "mllib_fit_seconds": their_s, "sparkneural_epochs_run": len(last_stage.history), **detail}
    results.add(f"accuracy {name}: sparkneural MLP", our_acc, "", **detail)
    results.add(f"accuracy {name}: MLlib MLP", their_acc, "", **detail)
    results.add(f"accuracy {name}: sparkneural - MLlib", 100 * (our_acc - their_acc), "points", **detail)
    results.add(f"fit time {name}: sparkneural / MLlib", our_s / their_s, "x", **detail)


def main() -> dict:
    args = arguments(__doc__.splitlines()[0], scale=(float, 1.0, "multiply every size (to try the script out)"))
    rows = max(2000, int((10_000 if args.quick else 200_000) * args.scale))
    epochs = 10
    results = Results("accuracy_vs_mllib", args.quick, synthetic_rows=rows, synthetic_features=100, classes=10,
                      synthetic_epochs=epochs, spark=f"local[{CORES}]", ranks=2)
    spark = spark_session("sparkneural-bench-accuracy")
    files = FrameFiles()
    try:
        from pyspark.ml import Pipeline
        from pyspark.ml.feature import StandardScaler
        from pyspark.ml.functions import array_to_vector

        from sparkneural.baselines import mllib_mlp_baseline_for
        from sparkneural.datasets import digits_split
        from sparkneural.estimators import MLPClassifier

        labelled, test = digits_split(spark, (0.8, 0.1, 0.1), seed=7)
        digits_epochs = 20 if args.quick else 40
        ours = MLPClassifier(hiddenLayers=[128, 64], epochs=digits_epochs, batchSize=32, dropout=0.1, earlyStoppingPatience=8,
                             validationCol="isValidation", numProc=2, seed=7, verbose=0)
        theirs = mllib_mlp_baseline_for(ours, numFeatures=64, numClasses=10, maxIter=200)
        scaler = StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True)
        compare(results, "digits", Pipeline(stages=[scaler, ours]), Pipeline(stages=[scaler, theirs]), (labelled, test),
                (labelled, test), hidden_layers=[128, 64], mllib_max_iter=200, sparkneural_max_epochs=digits_epochs)

        from sklearn.datasets import make_classification

        x, y = make_classification(n_samples=rows, n_features=100, n_informative=20, n_redundant=10, n_classes=10,
                                   n_clusters_per_class=2, random_state=11)
        cut = int(0.8 * rows)
        train = files.frame(spark, x[:cut].astype(np.float32), y[:cut])
        held_out = files.frame(spark, x[cut:].astype(np.float32), y[cut:])
        ours = MLPClassifier(hiddenLayers=[64, 32], epochs=epochs, batchSize=64, numProc=2, seed=11, verbose=0)
        theirs = mllib_mlp_baseline_for(ours, numFeatures=100, numClasses=10, maxIter=50 if args.quick else 100)
        vectors = [d.withColumn("features", array_to_vector("features")).cache() for d in (train, held_out)]
        for frame in vectors:
            frame.count()
        compare(results, f"synthetic {rows // 1000}k x 100", ours, theirs, (train, held_out), tuple(vectors),
                hidden_layers=[64, 32], mllib_max_iter=theirs.getMaxIter(), sparkneural_max_epochs=epochs)
    finally:
        files.close()
        spark.stop()
    return results.finish(args.out)


if __name__ == "__main__":
    main()
