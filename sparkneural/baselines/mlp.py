"""Spark MLlib's own neural network as the baseline a sparkneural classifier must beat.

MLlib's ``MultilayerPerceptronClassifier`` has sigmoid hidden layers, a
softmax output layer and is trained full-batch with L-BFGS (or GD) inside
the JVM. It takes MLlib vector features only: convert ``array<float>``
columns with ``pyspark.ml.functions.array_to_vector`` first.
"""

from __future__ import annotations

from typing import Any, Sequence

from pyspark.ml.classification import MultilayerPerceptronClassifier


def mllib_mlp_baseline(
    numFeatures: int,
    numClasses: int,
    hiddenLayers: Sequence[int],
    maxIter: int = 200,
    seed: int = 0,
    featuresCol: str = "features",
    labelCol: str = "label",
) -> MultilayerPerceptronClassifier:
    """MLlib's MLP with ``layers = [numFeatures, *hiddenLayers, numClasses]``.

    Sigmoid hidden layers, softmax output, cross-entropy loss, L-BFGS. Labels
    are class indices 0..numClasses-1 (double); features are MLlib vectors of
    size ``numFeatures``.

    >>> from pyspark.ml.functions import array_to_vector
    >>> train_v = train.withColumn("features", array_to_vector("features"))
    >>> mlp = mllib_mlp_baseline(numFeatures=64, numClasses=10, hiddenLayers=[32])
    >>> mlp.fit(train_v).transform(test_v).select("label", "prediction").show(3)
    """
    hidden = [int(width) for width in hiddenLayers]
    if numFeatures < 1:
        raise ValueError(f"numFeatures: expected at least 1, found {numFeatures}")
    if numClasses < 2:
        raise ValueError(f"numClasses: expected at least 2, found {numClasses}")
    if any(width < 1 for width in hidden):
        raise ValueError(f"hiddenLayers: expected positive widths, found {hidden}")
    if maxIter < 1:
        raise ValueError(f"maxIter: expected at least 1, found {maxIter}")
    return MultilayerPerceptronClassifier(
        layers=[numFeatures, *hidden, numClasses],
        maxIter=maxIter,
        seed=seed,
        featuresCol=featuresCol,
        labelCol=labelCol,
    )


def mllib_mlp_baseline_for(
    estimator: Any, numFeatures: int, numClasses: int, maxIter: int = 200
) -> MultilayerPerceptronClassifier:
    """MLlib's MLP with the same hidden widths, columns and seed as a sparkneural ``MLPClassifier``.

    Only the layer widths carry over: the sparkneural activation, block type,
    batch norm, optimizer and epochs have no MLlib counterpart (MLlib always
    uses sigmoid hidden layers, softmax output and L-BFGS for up to
    ``maxIter`` iterations). The output columns (prediction, probability,
    rawPrediction) are copied too, so the two models can be evaluated by the
    same ``MulticlassClassificationEvaluator``. Unlike the sparkneural estimator,
    MLlib needs vector features: ``array_to_vector`` an array column first.

    >>> clf = MLPClassifier(hiddenLayers=[64, 64], epochs=20)
    >>> baseline = mllib_mlp_baseline_for(clf, numFeatures=64, numClasses=10)
    >>> baseline.getLayers()
    [64, 64, 64, 10]
    """
    baseline = mllib_mlp_baseline(
        numFeatures,
        numClasses,
        estimator.getHiddenLayers(),
        maxIter=maxIter,
        seed=estimator.getSeed(),
        featuresCol=estimator.getFeaturesCol(),
        labelCol=estimator.getLabelCol(),
    )
    baseline.setPredictionCol(estimator.getPredictionCol())
    baseline.setProbabilityCol(estimator.getProbabilityCol())
    return baseline.setRawPredictionCol(estimator.getRawPredictionCol())
