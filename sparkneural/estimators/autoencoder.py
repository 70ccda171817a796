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
from pyspark.ml.param import Params
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkneural.data import arrow
from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import declare, declared_defaults, stage
from sparkneural.training.tasks import Reconstruction
from sparkneural.training.declared import Declared, Interval, optional, to_float, to_int, to_int_list, to_string

AUTOENCODER_ARGUMENTS = ("kind", "bottleneck", "outputActivation", "noiseStd", "sparsityWeight")


@declare(
    Declared("kind", "dense, deep, conv, denoising, variational or sparse", to_string, "dense"),
    Declared("bottleneck", "size of the code (e.g. 32, 16, 8)", to_int, 32),
    Declared("hiddenLayers", "encoder widths before the code (deep, denoising, variational, sparse); the decoder mirrors them", optional(to_int_list), None),
    Declared("filters", "channels of the conv kind's encoder", optional(to_int_list), None),
    Declared("outputActivation", "sigmoid (data in [0, 1], BCE loss) or linear (MSE loss)", to_string, "sigmoid"),
    Declared("noiseStd", "std of the Gaussian noise added to the input in training (denoising)", to_float, 0.1),
    Declared("klWeight", "weight of the KL term (variational; None: 1 / number of input values)", optional(to_float), None),
    Declared("sparsityWeight", "weight of the L1 penalty on the code (sparse)", to_float, 0.001),
    Declared("embeddingCol", "output column for the code", to_string, "embedding"),
    Declared("reconstructionCol", "output column for the reconstruction", to_string, "reconstruction"),
    Declared("reconstructionErrorCol", "output column for the per-row mean squared error", to_string, "reconstructionError"),
    Declared("anomalyQuantile", "set the anomaly threshold at this quantile of the training errors (None: no threshold)", optional(to_float), None,
             Interval(0, 1, closed="neither", optional=True)),
    Declared("threshold", "reconstruction error above which isAnomaly is true (None: no isAnomaly column)", optional(to_float), None),
    Declared("isAnomalyCol", "output column flagging rows whose error exceeds the threshold", to_string, "isAnomaly"),
)
class _AutoencoderParams(Params):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _AutoencoderParams)


@stage
class AutoencoderModel(TorchModel, _AutoencoderParams):
    """A fitted ``Autoencoder``.

    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import Autoencoder
    >>> df = digits(spark).limit(100).selectExpr("transform(features, v -> v / 16) AS features")
    >>> model = Autoencoder(kind="variational", bottleneck=2, hiddenLayers=[8], epochs=1,
    ...                     backend="local", verbose=0).fit(df)
    >>> model.setThreshold(0.02).transform(df).select("reconstructionError", "isAnomaly").dtypes
    [('reconstructionError', 'double'), ('isAnomaly', 'boolean')]
    >>> model.sample(5).shape      # variational only: 5 new rows, shaped like inputShape
    (5, 64)
    """

    def _output_columns(self):
        columns = [
            ("embedding", self.getEmbeddingCol(), arrow.dense_vectors, VectorUDT()),
            ("reconstruction", self.getReconstructionCol(), arrow.float_lists, T.ArrayType(T.FloatType())),
            ("reconstructionError", self.getReconstructionErrorCol(), arrow.doubles, T.DoubleType()),
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


@stage
class Autoencoder(NamedTorchEstimator, _AutoencoderParams):
    """Learn a compressed code of the features; no label column is needed.

    kinds: dense (input -> code -> output), deep (with ``hiddenLayers``),
    conv (``inputShape=[channels, h, w]``), denoising (trained on noisy input
    against the clean target), variational (KL term; can ``sample``) and
    sparse (L1 penalty on the code). ``outputActivation="sigmoid"`` with BCE
    suits data in [0, 1]; ``"linear"`` trains with MSE.

    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import Autoencoder
    >>> pixels_in_0_1 = digits(spark).limit(100).selectExpr("transform(features, v -> v / 16) AS features")
    >>> ae = Autoencoder(kind="deep", bottleneck=4, hiddenLayers=[16], epochs=2, backend="local", verbose=0)
    >>> model = ae.fit(pixels_in_0_1)
    >>> model.transform(pixels_in_0_1).columns
    ['features', 'embedding', 'reconstruction', 'reconstructionError']
    """

    _model_class = AutoencoderModel
    _architecture_name, _task_name = "autoencoder", "reconstruction"
    _architecture_param_names = AUTOENCODER_ARGUMENTS

    def _architecture_params(self, summary) -> dict[str, Any]:
        params = super()._architecture_params(summary)
        for name in ("hiddenLayers", "filters", "klWeight"):
            if self.getOrDefault(name) is not None:
                params.setdefault(name, self.getOrDefault(name))
        return params

    def _training_task(self) -> Reconstruction:
        return Reconstruction(default_loss="bce" if self.getOutputActivation() == "sigmoid" else "mse")

    def _fit(self, dataset: DataFrame) -> AutoencoderModel:
        model = super()._fit(dataset)
        quantile = self.getAnomalyQuantile()
        if quantile is not None:
            errors = model.transform(dataset).select(self.getReconstructionErrorCol())
            model.setThreshold(errors.approxQuantile(self.getReconstructionErrorCol(), [quantile], 1e-4)[0])
        return model
