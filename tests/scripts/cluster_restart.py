"""spark-submit job for the lost-executor tests; the test kills an executor after "fit under test".

argv: backend, epochs, checkpoint directory of the fit under test, maxRestarts of that fit.
With maxRestarts > 0: a warm-up fit, the fit uninterrupted, then the fit under test; one JSON line
with both. With maxRestarts=0: only the fit under test, which must fail; one JSON line with its error.
"""

import json
import sys
import time

from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkneural.datasets import digits
from sparkneural.estimators import MLPClassifier
from sparkneural.session import get_spark


def different_weights(expected, actual):
    """Names of the tensors that are missing, extra, or not bit-for-bit equal (dtype, shape and bytes)."""
    names = sorted(set(expected) | set(actual))
    return [k for k in names if k not in expected or k not in actual or expected[k].dtype != actual[k].dtype
            or expected[k].shape != actual[k].shape or expected[k].tobytes() != actual[k].tobytes()]


backend, epochs, checkpoints, max_restarts = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
spark = get_spark("sparkneural-restart-test")
spark.sparkContext.setLogLevel("ERROR")
data = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label")
train, test = (part.cache() for part in data.randomSplit([0.8, 0.2], seed=1))
evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
estimator = MLPClassifier(hiddenLayers=[256, 256], batchSize=16, epochs=epochs, learningRate=0.003, numProc=2, backend=backend)
under_test = estimator.copy({estimator.checkpointDir: checkpoints, estimator.maxRestarts: max_restarts})

if max_restarts == 0:
    print("fit under test", flush=True)
    try:
        under_test.fit(train)
        figures = {"error": None}
    except RuntimeError as err:
        figures = {"error": str(err), "failedAt": time.time()}
else:
    estimator.copy({estimator.epochs: 1, estimator.verbose: 0}).fit(train)  # the application's first fit starts its warm rank servers
    began = time.time()
    uninterrupted = estimator.copy({estimator.verbose: 0}).fit(train)
    uninterrupted_s = time.time() - began
    print("fit under test", flush=True)
    began = time.time()
    restarted = under_test.fit(train)
    figures = {
        "uninterruptedSeconds": uninterrupted_s,
        "restartedSeconds": time.time() - began,
        "uninterruptedAccuracy": evaluator.evaluate(uninterrupted.transform(test)),
        "restartedAccuracy": evaluator.evaluate(restarted.transform(test)),
        "differentWeights": different_weights(uninterrupted.weights, restarted.weights),
        "history": [h["epoch"] for h in restarted.history],
        "epochsRun": restarted.epochsRun,
        "restarts": restarted.restarts,
    }
print(json.dumps(figures), flush=True)
spark.stop()
