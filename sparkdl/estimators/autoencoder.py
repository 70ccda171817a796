"""Autoencoders as Spark stages (architecture ``autoencoder``): no label, the input is the target.

``AutoencoderModel.transform`` adds ``embedding`` (the code, an MLlib
vector ready for KMeans or PCA), ``reconstruction`` (array<float>, the
input's flat layout) and ``reconstructionError`` (per-row mean squared
error); with an anomaly threshold it also adds ``isAnomaly``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl.estimators import inference
from sparkdl.estimators.base import NamedTorchEstimator, TorchModel
from sparkdl.estimators.params import _to_optional_float, add_accessors

AUTOENCODER_ARGUMENTS = ("kind", "bottleneck", "outputActivation", "noiseStd", "sparsityWeight")


def _to_optional_int_list(value):
    return None if value is None else TypeConverters.toListInt(value)


class _AutoencoderParams(Params):
    kind = Param(Params._dummy(), "kind", "dense, deep, conv, denoising, variational or sparse", typeConverter=TypeConverters.toString)
    bottleneck = Param(Params._dummy(), "bottleneck", "size of the code (e.g. 32, 16, 8)", typeConverter=TypeConverters.toInt)
    hiddenLayers = Param(Params._dummy(), "hiddenLayers", "encoder widths before the code (deep, denoising, variational, sparse); the decoder mirrors them", typeConverter=_to_optional_int_list)
    filters = Param(Params._dummy(), "filters", "channels of the conv kind's encoder", typeConverter=_to_optional_int_list)
    outputActivation = Param(Params._dummy(), "outputActivation", "sigmoid (data in [0, 1], BCE loss) or linear (MSE loss)", typeConverter=TypeConverters.toString)
    noiseStd = Param(Params._dummy(), "noiseStd", "std of the Gaussian noise added to the input in training (denoising)", typeConverter=TypeConverters.toFloat)
    klWeight = Param(Params._dummy(), "klWeight", "weight of the KL term (variational; None: 1 / number of input values)", typeConverter=_to_optional_float)
    sparsityWeight = Param(Params._dummy(), "sparsityWeight", "weight of the L1 penalty on the code (sparse)", typeConverter=TypeConverters.toFloat)
    embeddingCol = Param(Params._dummy(), "embeddingCol", "output column for the code", typeConverter=TypeConverters.toString)
    reconstructionCol = Param(Params._dummy(), "reconstructionCol", "output column for the reconstruction", typeConverter=TypeConverters.toString)
    reconstructionErrorCol = Param(Params._dummy(), "reconstructionErrorCol", "output column for the per-row mean squared error", typeConverter=TypeConverters.toString)
    anomalyQuantile = Param(Params._dummy(), "anomalyQuantile", "set the anomaly threshold at this quantile of the training errors (None: no threshold)", typeConverter=_to_optional_float)
    threshold = Param(Params._dummy(), "threshold", "reconstruction error above which isAnomaly is true (None: no isAnomaly column)", typeConverter=_to_optional_float)
    isAnomalyCol = Param(Params._dummy(), "isAnomalyCol", "output column flagging rows whose error exceeds the threshold", typeConverter=TypeConverters.toString)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(
            kind="dense", bottleneck=32, hiddenLayers=None, filters=None, outputActivation="sigmoid",
            noiseStd=0.1, klWeight=None, sparsityWeight=1e-3, embeddingCol="embedding",
            reconstructionCol="reconstruction", reconstructionErrorCol="reconstructionError",
            anomalyQuantile=None, threshold=None, isAnomalyCol="isAnomaly",
        )


@add_accessors
class AutoencoderModel(TorchModel, _AutoencoderParams):
    """A fitted ``Autoencoder``.

    >>> model.transform(df).select("embedding", "reconstructionError").show(3)
    >>> model.setThreshold(0.02).transform(new_rows).where("isAnomaly").count()
    >>> model.sample(5)            # variational only: 5 new rows, shaped like inputShape
    """

    def _output_columns(self):
        columns = [
            ("embedding", self.getEmbeddingCol(), inference.dense_vectors, VectorUDT()),
            ("reconstruction", self.getReconstructionCol(), inference.float_lists, T.ArrayType(T.FloatType())),
            ("reconstructionError", self.getReconstructionErrorCol(), inference.doubles, T.DoubleType()),
        ]
        return [c for c in columns if c[1]]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        out = super()._transform(dataset)
        threshold = self.getThreshold()
        if threshold is None:
            return out
        return out.withColumn(self.getIsAnomalyCol(), F.col(self.getReconstructionErrorCol()) > F.lit(threshold))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` new rows decoded from N(0, I) codes (variational autoencoders only)."""
        import torch

        net = self.network()
        if self.architectureSpec["architectureParams"].get("kind") != "variational":
            raise ValueError("sample: only a variational autoencoder (kind='variational') can sample")
        with torch.inference_mode():
            return net.sample(n, generator=torch.Generator().manual_seed(seed)).numpy()


@add_accessors
class Autoencoder(NamedTorchEstimator, _AutoencoderParams):
    """Learn a compressed code of the features; no label column is needed.

    kinds: dense (input -> code -> output), deep (with ``hiddenLayers``),
    conv (``inputShape=[channels, h, w]``), denoising (trained on noisy input
    against the clean target), variational (KL term; can ``sample``) and
    sparse (L1 penalty on the code). ``outputActivation="sigmoid"`` with BCE
    suits data in [0, 1]; ``"linear"`` trains with MSE.

    >>> from sparkdl.estimators import Autoencoder
    >>> ae = Autoencoder(kind="deep", bottleneck=16, hiddenLayers=[64], epochs=30)
    >>> model = ae.fit(pixels_in_0_1)
    >>> model.transform(pixels_in_0_1).select("embedding", "reconstructionError").show(3)
    """

    _model_class = AutoencoderModel
    _architecture_name, _task = "autoencoder", "reconstruction"
    _architecture_param_names = AUTOENCODER_ARGUMENTS

    def _architecture_params(self) -> dict[str, Any]:
        params = super()._architecture_params()
        for name in ("hiddenLayers", "filters", "klWeight"):
            if self.getOrDefault(name) is not None:
                params.setdefault(name, self.getOrDefault(name))
        return params

    def _spec(self, data, shape, output_size):
        spec = super()._spec(data, shape, output_size)
        if self.getLossFunction() is None and self.getOutputActivation() == "sigmoid":
            from dataclasses import replace

            spec = replace(spec, lossFunction="bce")
        return spec

    def _validate_params(self) -> None:
        super()._validate_params()
        quantile = self.getAnomalyQuantile()
        if quantile is not None and not 0.0 < quantile < 1.0:
            raise ValueError(f"anomalyQuantile: expected a value in (0, 1), found {quantile}")

    def _fit(self, dataset: DataFrame) -> AutoencoderModel:
        model = super()._fit(dataset)
        quantile = self.getAnomalyQuantile()
        if quantile is not None:
            errors = model.transform(dataset).select(self.getReconstructionErrorCol())
            model.setThreshold(errors.approxQuantile(self.getReconstructionErrorCol(), [quantile], 1e-4)[0])
        return model
