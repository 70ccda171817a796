"""Fit with 2 Horovod ranks and transform against the Spark master given as argv[1]; print JSON."""

import json
import sys

from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkneural.datasets import digits
from sparkneural.estimators import MLPClassifier
from sparkneural.session import get_spark

spark = get_spark("sparkneural-cluster-test", master=sys.argv[1], conf={
    "spark.ui.enabled": "false",
    "spark.pyspark.python": sys.executable,
    "spark.executor.memory": "2g",
    "spark.cores.max": "2",
})
spark.sparkContext.setLogLevel("ERROR")
data = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label")
train, test = data.randomSplit([0.8, 0.2], seed=1)
model = MLPClassifier(hiddenLayers=[32], epochs=10, learningRate=0.01, numProc=2, verbose=0).fit(train)
accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(test))
print(json.dumps({
    "master": spark.sparkContext.master,
    "rankDigests": model.rankDigests,
    "accuracy": accuracy,
    "epochs": len(model.history),
}))
spark.stop()
