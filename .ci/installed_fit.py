"""One small fit and transform with the installed package: MLPClassifier on the digits, two backends.

Run from outside the checkout by .ci/wheel-check; fails unless each model's
test accuracy clearly beats chance (0.1 for ten classes).
"""

import time

from pyspark.ml.evaluation import MulticlassClassificationEvaluator

import sparkneural
from sparkneural.datasets import digits
from sparkneural.estimators import MLPClassifier
from sparkneural.session import get_spark

spark = get_spark("sparkneural-wheel-check", master="local[2]", conf={"spark.ui.enabled": "false"})
spark.sparkContext.setLogLevel("ERROR")
train, test = digits(spark).randomSplit([0.8, 0.2], seed=7)
train, test = train.cache(), test.cache()
print(f"sparkneural {sparkneural.__version__} from {sparkneural.__file__}; train {train.count()} rows, test {test.count()} rows")
accuracy = MulticlassClassificationEvaluator(metricName="accuracy")
for backend in ("local", "torch_distributor"):
    started = time.perf_counter()
    classifier = MLPClassifier(hiddenLayers=[64], epochs=8, batchSize=32, learningRate=0.01, backend=backend, numProc=2,
                               seed=7, verbose=0)
    model = classifier.fit(train)
    predictions = model.transform(test)
    score = accuracy.evaluate(predictions)
    print(f"backend={backend}: {len(model.rankDigests)} rank(s), final training loss {model.history[-1]['loss']:.4f}, "
          f"fit + transform {time.perf_counter() - started:.1f} s, {predictions.count()} predictions, test accuracy {score:.3f}")
    assert score > 0.8, f"backend={backend}: test accuracy {score:.3f}, expected well above chance (0.1)"
spark.stop()
