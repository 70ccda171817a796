"""spark-submit job: a warm-up fit, then the same 2-rank fit twice: uninterrupted, and with an executor killed by the test.

It prints "second fit" before the fit the test interrupts, and one JSON line at the end.
argv: backend, epochs, checkpoint directory of the second fit.
"""

import json
import sys
import time

from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkdl.datasets import digits
from sparkdl.estimators import MLPClassifier
from sparkdl.session import get_spark

backend, epochs, checkpoints = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spark = get_spark("sparkdl-restart-test")
spark.sparkContext.setLogLevel("ERROR")
data = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label")
train, test = (part.cache() for part in data.randomSplit([0.8, 0.2], seed=1))
evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
estimator = MLPClassifier(hiddenLayers=[256, 256], batchSize=16, epochs=epochs, learningRate=0.003, numProc=2, backend=backend)

estimator.copy({estimator.epochs: 1, estimator.verbose: 0}).fit(train)  # the application's first fit starts its warm rank servers
began = time.time()
uninterrupted = estimator.copy({estimator.verbose: 0}).fit(train)
uninterrupted_s = time.time() - began
print("second fit", flush=True)
began = time.time()
restarted = estimator.copy({estimator.checkpointDir: checkpoints}).fit(train)
print(json.dumps({
    "uninterruptedSeconds": uninterrupted_s,
    "restartedSeconds": time.time() - began,
    "uninterruptedAccuracy": evaluator.evaluate(uninterrupted.transform(test)),
    "restartedAccuracy": evaluator.evaluate(restarted.transform(test)),
    "sameWeights": all((uninterrupted.weights[k] == restarted.weights[k]).all() for k in uninterrupted.weights),
    "history": [h["epoch"] for h in restarted.history],
    "epochsRun": restarted.epochsRun,
    "restarts": restarted.restarts,
}), flush=True)
spark.stop()
