"""Principal component analysis that centres the data, as a Spark Estimator/Model pair.

MLlib's ``PCA`` finds the right components (its covariance is centred) but
its ``transform`` projects the raw, uncentred vectors, so the projections are
shifted by ``pc^T mean`` and are not what scikit-learn or a textbook gives.
``CenteredPCA`` subtracts the column means before projecting, and can also
add the reconstruction from the ``k`` components, so its reconstruction error
is directly comparable with an autoencoder's.

The statistics come from Spark (``Summarizer`` for the means, MLlib's ``PCA``
for the eigen-decomposition of the covariance); the fitted model holds only
the mean (d values) and the components (d x k). Saved models are Spark ML
metadata plus one JSON document, so loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.feature import PCA
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector, VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.stat import Summarizer
from pyspark.ml.util import (
    DefaultParamsReadable,
    DefaultParamsReader,
    DefaultParamsWritable,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from sparkneural.data.schema import non_finite_count

FORMAT_VERSION = 1
_DATA = "data"


def _to_optional_string(value):
    return None if value is None else TypeConverters.toString(value)


class _CenteredPCAParams(HasInputCol, HasOutputCol):
    """Params shared by ``CenteredPCA`` and ``CenteredPCAModel``."""

    k = Param(
        Params._dummy(), "k", "number of principal components (1 <= k <= number of features)", typeConverter=TypeConverters.toInt
    )
    reconstructionCol = Param(
        Params._dummy(),
        "reconstructionCol",
        "output column for the reconstruction from the k components, array<double> in the input's layout (None: not added)",
        typeConverter=_to_optional_string,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(k=2, inputCol="features", outputCol="pcaFeatures", reconstructionCol=None)

    def getK(self) -> int:
        """Gets the value of k or its default value."""
        return self.getOrDefault(self.k)

    def getReconstructionCol(self) -> str | None:
        """Gets the value of reconstructionCol or its default value."""
        return self.getOrDefault(self.reconstructionCol)

    def _input_as_doubles(self, dataset: DataFrame) -> Column:
        """The input column as array<double>, after checking it exists and has a usable type."""
        name = self.getInputCol()
        if name not in dataset.columns:
            raise ValueError(f"inputCol: column {name!r} not found; the DataFrame has {dataset.columns}")
        kind = dataset.schema[name].dataType
        if isinstance(kind, VectorUDT):
            return vector_to_array(F.col(name), dtype="float64")
        if isinstance(kind, T.ArrayType) and isinstance(kind.elementType, (T.FloatType, T.DoubleType)):
            return F.col(name).cast(T.ArrayType(T.DoubleType()))
        raise ValueError(
            f"inputCol: column {name!r} must be an MLlib vector or array<float>/array<double>, found {kind.simpleString()}"
        )


class CenteredPCA(Estimator, _CenteredPCAParams, DefaultParamsReadable, DefaultParamsWritable):
    """Fit the top ``k`` principal components; the model projects *centred* vectors.

    Input: an MLlib vector or ``array<float>``/``array<double>`` column. The
    fitted ``CenteredPCAModel`` adds ``outputCol`` (an MLlib ``DenseVector``
    of k values, equal up to each component's sign to scikit-learn's
    ``PCA(k).fit_transform``) and, if ``reconstructionCol`` is set, the
    reconstruction ``mean + P P^T (x - mean)``.

    >>> from sparkneural.baselines import CenteredPCA
    >>> from sparkneural.datasets import digits
    >>> digits_df = digits(spark).limit(100)
    >>> pca = CenteredPCA(k=2, inputCol="features", outputCol="pca2")
    >>> model = pca.fit(digits_df)
    >>> len(model.explainedVariance)     # fraction of the total variance, per component
    2
    >>> model.transform(digits_df).select("pca2", "label").first().pca2.size
    2
    """

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 2,
        inputCol: str = "features",
        outputCol: str = "pcaFeatures",
        reconstructionCol: str | None = None,
    ) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        k: int = 2,
        inputCol: str = "features",
        outputCol: str = "pcaFeatures",
        reconstructionCol: str | None = None,
    ) -> "CenteredPCA":
        """Sets the Params given as keywords."""
        return self._set(**self._input_kwargs)

    def setK(self, value: int) -> "CenteredPCA":
        """Sets the value of k."""
        return self._set(k=value)

    def setInputCol(self, value: str) -> "CenteredPCA":
        """Sets the value of inputCol."""
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "CenteredPCA":
        """Sets the value of outputCol."""
        return self._set(outputCol=value)

    def setReconstructionCol(self, value: str | None) -> "CenteredPCA":
        """Sets the value of reconstructionCol."""
        return self._set(reconstructionCol=value)

    def _fit(self, dataset: DataFrame) -> "CenteredPCAModel":
        k = self.getK()
        if k < 1:
            raise ValueError(f"k: expected at least 1 component, found {k}")
        name = self.getInputCol()
        arrays = dataset.select(self._input_as_doubles(dataset).alias("x"))

        x = F.col("x")
        length = F.when(x.isNotNull(), F.size(x))
        counts = arrays.select(
            F.count("*").alias("rows"),
            F.count(F.when(x.isNull(), 1)).alias("nulls"),
            F.sum(F.when(x.isNotNull(), non_finite_count(x))).alias("bad"),
            F.min(length).alias("shortest"),
            F.max(length).alias("longest"),
        ).first()
        if counts["nulls"]:
            raise ValueError(f"inputCol: column {name!r} contains {counts['nulls']} null values; drop or fill them first")
        if counts["rows"] < 2:
            raise ValueError(
                f"inputCol: column {name!r} needs at least 2 rows to estimate a covariance, found {counts['rows']}"
            )
        if counts["bad"]:
            raise ValueError(f"inputCol column {name!r}: expected finite values, found {counts['bad']} NaN/infinite/null elements")
        if counts["shortest"] != counts["longest"] or counts["longest"] == 0:
            raise ValueError(
                f"inputCol column {name!r}: expected non-empty arrays of one length, "
                f"found lengths from {counts['shortest']} to {counts['longest']}"
            )
        summary = arrays.select(Summarizer.metrics("mean", "variance").summary(array_to_vector("x")).alias("s")).first()["s"]
        mean = summary["mean"].toArray()
        if k > len(mean):
            raise ValueError(f"k: expected at most {len(mean)} (the number of features in {name!r}), found {k}")

        # The covariance does not depend on the mean, but centring first keeps
        # MLlib's Gramian-based covariance well conditioned for large offsets.
        centred = arrays.select(array_to_vector(_minus(F.col("x"), mean)).alias("v"))
        mllib = PCA(k=k, inputCol="v", outputCol="_unused").fit(centred)

        components = mllib.pc.toArray()
        ratio = mllib.explainedVariance.toArray()
        total_variance = float(np.sum(summary["variance"].toArray()))
        model = CenteredPCAModel._from_state(mean, _fix_signs(components), ratio, ratio * total_variance)
        model._resetUid(self.uid)
        return self._copyValues(model)


class CenteredPCAModel(Model, _CenteredPCAParams, MLReadable, MLWritable):
    """A fitted ``CenteredPCA``: ``transform`` adds ``P^T (x - mean)`` and optionally the reconstruction.

    Attributes: ``mean`` (DenseVector, d), ``pc`` (DenseMatrix, d x k, one
    component per column as in MLlib's ``PCAModel``), ``explainedVariance``
    (fraction of the total variance per component, MLlib's and scikit-learn's
    ``explained_variance_ratio_``) and ``componentVariance`` (variance along
    each component, scikit-learn's ``explained_variance_``).

    >>> import os, tempfile
    >>> from sparkneural.baselines import CenteredPCA, CenteredPCAModel
    >>> from sparkneural.datasets import digits
    >>> df = digits(spark).limit(100)
    >>> model = CenteredPCA(k=8, reconstructionCol="reconstruction").fit(df)
    >>> out = model.transform(df)
    >>> out.columns
    ['features', 'label', 'pcaFeatures', 'reconstruction']
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model.write().overwrite().save(os.path.join(tmp, "pca8"))
    ...     CenteredPCAModel.load(os.path.join(tmp, "pca8")).pc.numCols
    8
    """

    def __init__(self) -> None:
        super().__init__()
        self._mean = self._components = self._ratio = self._variance = None

    @classmethod
    def _from_state(cls, mean, components, ratio, variance) -> "CenteredPCAModel":
        model = cls()
        model._mean = np.asarray(mean, dtype=np.float64)
        # C order whatever the source (MLlib's matrices are column-major), so a
        # fitted and a reloaded model run the same BLAS path and agree bit for bit.
        model._components = np.ascontiguousarray(np.asarray(components, dtype=np.float64).reshape(len(model._mean), -1))
        model._ratio = np.asarray(ratio, dtype=np.float64)
        model._variance = np.asarray(variance, dtype=np.float64)
        return model

    def setInputCol(self, value: str) -> "CenteredPCAModel":
        """Sets the value of inputCol."""
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "CenteredPCAModel":
        """Sets the value of outputCol."""
        return self._set(outputCol=value)

    def setReconstructionCol(self, value: str | None) -> "CenteredPCAModel":
        """Sets the value of reconstructionCol."""
        return self._set(reconstructionCol=value)

    @property
    def mean(self) -> DenseVector:
        """Column means of the training data."""
        return DenseVector(self._mean)

    @property
    def pc(self) -> DenseMatrix:
        """Principal components, d x k, one per column, sign fixed so the largest loading is positive."""
        d, k = self._components.shape
        return DenseMatrix(d, k, self._components.flatten(order="F").tolist())

    @property
    def explainedVariance(self) -> DenseVector:
        """Fraction of the total variance along each component."""
        return DenseVector(self._ratio)

    @property
    def componentVariance(self) -> DenseVector:
        """Variance (n - 1 denominator) of the training data along each component."""
        return DenseVector(self._variance)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        if self._mean is None:
            raise ValueError("CenteredPCAModel has no state: fit it with CenteredPCA or load a saved one")
        values = self._input_as_doubles(dataset)
        projection = "__sparkneural_pca_projection"
        out = dataset.withColumn(projection, _projector(self._mean, self._components, self.getInputCol())(values))
        # array_to_vector fails on null arrays; a null input row gives null outputs.
        out = out.withColumn(self.getOutputCol(), F.when(F.col(projection).isNotNull(), array_to_vector(projection)))
        if self.getReconstructionCol() is not None:
            reconstruct = _reconstructor(self._mean, self._components)
            out = out.withColumn(self.getReconstructionCol(), reconstruct(F.col(projection)))
        return out.drop(projection)

    def write(self) -> MLWriter:
        """Returns a writer: Spark ML metadata plus a JSON file of the mean and components."""
        return _CenteredPCAModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        """Returns a reader for models written by ``write()``."""
        return _CenteredPCAModelReader(cls)


def _root_cause(error: Py4JJavaError) -> str:
    throwable = error.java_exception
    while throwable.getCause() is not None:
        throwable = throwable.getCause()
    return str(throwable.toString())


def _minus(values: Column, offset: np.ndarray) -> Column:
    """``values - offset`` element-wise, evaluated in the JVM."""
    literal = F.array(*[F.lit(float(v)) for v in offset])
    return F.zip_with(values, literal, lambda a, b: a - b)


def _fix_signs(components: np.ndarray) -> np.ndarray:
    # Eigenvectors are defined up to sign; pick the one whose largest-magnitude
    # loading is positive (scikit-learn's svd_flip rule) so refits agree.
    largest = components[np.argmax(np.abs(components), axis=0), np.arange(components.shape[1])]
    return components * np.where(largest < 0, -1.0, 1.0)


def _rows(series: pd.Series, width: int, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Stack a Series of arrays into a matrix; also returns the positions of the non-null rows."""
    present = np.flatnonzero(series.notna().to_numpy())
    if len(present) == 0:
        return np.empty((0, width)), present
    try:
        matrix = np.stack(series.iloc[present].to_numpy())
    except ValueError:
        matrix = None
    if matrix is None or matrix.ndim != 2 or matrix.shape[1] != width:
        sizes = sorted({len(v) for v in series.iloc[present]})
        raise ValueError(f"inputCol: column {column!r} must hold {width} values per row (as in fit), found sizes {sizes}")
    bad = matrix.size - np.count_nonzero(np.isfinite(matrix))
    if bad:
        raise ValueError(f"inputCol column {column!r}: expected finite values, found {bad} NaN/infinite/null elements")
    return matrix, present


def _scatter(rows: np.ndarray, present: np.ndarray, length: int) -> pd.Series:
    # Null inputs stay null outputs.
    result: list[Any] = [None] * length
    for position, row in zip(present, rows):
        result[position] = row
    return pd.Series(result, dtype=object)


def _projector(mean: np.ndarray, components: np.ndarray, column: str):
    @pandas_udf(T.ArrayType(T.DoubleType()))
    def project(values: pd.Series) -> pd.Series:
        matrix, present = _rows(values, len(mean), column)
        return _scatter((matrix - mean) @ components, present, len(values))

    return project


def _reconstructor(mean: np.ndarray, components: np.ndarray):
    @pandas_udf(T.ArrayType(T.DoubleType()))
    def reconstruct(projections: pd.Series) -> pd.Series:
        matrix, present = _rows(projections, components.shape[1], "projection")
        return _scatter(matrix @ components.T + mean, present, len(projections))

    return reconstruct


class _CenteredPCAModelWriter(MLWriter):
    def __init__(self, instance: CenteredPCAModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        model = self.instance
        DefaultParamsWriter.saveMetadata(model, path, self.sc, extraMetadata={"sparkneuralFormatVersion": FORMAT_VERSION})
        data = json.dumps(
            {
                "mean": model._mean.tolist(),
                "components": model._components.tolist(),  # d rows of k values
                "explainedVariance": model._ratio.tolist(),
                "componentVariance": model._variance.tolist(),
            }
        )
        self.sc.parallelize([data], 1).saveAsTextFile(os.path.join(path, _DATA))


class _CenteredPCAModelReader(MLReader):
    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> CenteredPCAModel:
        parsed = urlparse(path)
        if parsed.scheme in ("", "file") and not os.path.exists(parsed.path):
            raise ValueError(f"path {path!r}: expected a saved CenteredPCAModel, found no such file or directory")
        expected = f"{self.cls.__module__}.{self.cls.__name__}"
        metadata = DefaultParamsReader.loadMetadata(path, self.sc, expectedClassName=expected)
        version = metadata.get("sparkneuralFormatVersion")
        if version != FORMAT_VERSION:
            raise ValueError(f"path: {path!r} holds CenteredPCAModel format {version}, this sparkneural reads {FORMAT_VERSION}")
        try:
            text = "".join(self.sc.textFile(os.path.join(path, _DATA)).collect())
        except Py4JJavaError as error:  # e.g. Hadoop's checksum of a part file that was modified
            raise ValueError(
                f"path {path!r}: {_DATA}/ cannot be read; expected the files written by CenteredPCAModel.save "
                f"({_root_cause(error)})"
            ) from None
        try:
            data = json.loads(text)
            state = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "components", "explainedVariance", "componentVariance")]
            model = self.cls._from_state(*state)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"path {path!r}: {_DATA}/ is corrupted; expected the mean and components written by "
                f"CenteredPCAModel.save ({type(error).__name__}: {error})"
            ) from None
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model
