"""Sequence to sequence with attention (architecture ``seq2seq``) as a Spark estimator.

Rows hold a source (``inputCol``, array<int>) and a target (``labelCol``,
array<int>) of any lengths. Ids ``padId``, ``startId`` and ``endId`` are
reserved: a source holds none of them; a target may end with ``endId``
(it is appended when missing) and holds no other reserved id. Training
packs each row into the network's flat layout ``[source padded to the
longest source; target padded to the longest target]`` as a Spark
expression; the loss ignores padding and attention never looks at it.

``Seq2SeqModel.transform`` decodes in Arrow batches: ``outputCol`` gets the
predicted ids up to and including ``endId`` (no padding), and
``attentionCol`` (optional) one row of attention weights over the source
per output step. Each batch is padded only to its own longest source, and
padding never changes a row's output.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkneural.data.schema import column_type
from sparkneural.estimators import inference
from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import check_declared, declare, declared_defaults, stage
from sparkneural.training.spec import NON_NEGATIVE, POSITIVE, POSITIVE_OR_NONE
from sparkneural.training.declared import Declared, Options, optional, to_bool, to_float, to_int, to_string

FLAT = "__sparkneural_seq2seq_input"
DECODINGS = ("greedy", "beam")
DECODING_ROWS = 1024  # sources decoded at once where inferenceBatchSize is None
SEQ2SEQ_ARGUMENTS = ("embeddingDim", "hiddenSize", "cell", "bidirectional", "attention", "padId", "startId", "endId")
INTEGRAL = (T.IntegerType, T.LongType, T.ShortType, T.ByteType)


@declare(
    Declared("embeddingDim", "size of the token embeddings", to_int, 64, POSITIVE),
    Declared("hiddenSize", "units of the encoder (per direction) and decoder cells", to_int, 128, POSITIVE),
    Declared("cell", "lstm or gru", to_string, "lstm"),
    Declared("bidirectional", "read the source in both directions", to_bool, True),
    Declared("attention", "dot, scaled_dot, additive or none", to_string, "scaled_dot"),
    Declared("sourceVocabSize", "number of source ids (None: the largest id seen + 1)", optional(to_int), None),
    Declared("targetVocabSize", "number of target ids (None: the largest id seen + 1)", optional(to_int), None),
    Declared("padId", "reserved id of padding", to_int, 0),
    Declared("startId", "reserved id that starts decoding", to_int, 1),
    Declared("endId", "reserved id that ends a target", to_int, 2),
    Declared("maxOutputLength", "most ids decoded per row, endId included (None: the longest training target)", optional(to_int), None, POSITIVE_OR_NONE),
    Declared("decoding", "greedy or beam", to_string, "greedy", Options(DECODINGS)),
    Declared("beamWidth", "hypotheses kept by beam search (> 0)", to_int, 4, POSITIVE),
    Declared("lengthPenalty", "alpha of the length penalty ((5 + L) / 6)^alpha of beam search (>= 0)", to_float, 0.0, NON_NEGATIVE),
    Declared("attentionCol", "output column of attention weights, one array over the source per output step (None: not produced)", optional(to_string), None),
)
class _Seq2SeqParams(HasInputCol, HasOutputCol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _Seq2SeqParams)
        self._setDefault(inputCol="source", outputCol="prediction")

    def _check_ids_column(self, dataset: DataFrame, column: str, param: str) -> None:
        data_type = column_type(dataset, column, param)
        if not (isinstance(data_type, T.ArrayType) and isinstance(data_type.elementType, INTEGRAL)):
            raise TypeError(f"{param}: column {column!r} must be array<int> (token ids); found {data_type.simpleString()}")


def _with_end(column, end_id: int):
    """The target with endId appended unless it already ends with it."""
    end = F.lit(end_id)
    return F.when(F.coalesce(F.element_at(column, -1) == end, F.lit(False)), column).otherwise(
        F.concat(column, F.array(end))
    )


def _padded(column, length: int, pad_id: int):
    return F.slice(F.concat(column, F.array_repeat(F.lit(pad_id), length)), 1, length)


@stage
class Seq2SeqModel(TorchModel, _Seq2SeqParams):
    """A fitted ``Seq2Seq``: decodes ``inputCol`` into ``outputCol`` (greedy or beam search).

    >>> from sparkneural.datasets_seq2seq import DIGITS, as_dataframe, reverse_digits
    >>> from sparkneural.estimators import Seq2Seq
    >>> test = as_dataframe(spark, reverse_digits(16, maxLength=4, seed=1), DIGITS)
    >>> model = Seq2Seq(embeddingDim=8, hiddenSize=8, epochs=1, backend="local", verbose=0).fit(test)
    >>> model.setDecoding("beam").setBeamWidth(2).transform(test).select("source", "prediction").count()
    16
    """

    def _transform(self, dataset: DataFrame) -> DataFrame:
        check_declared(self)
        source = self.getInputCol()
        self._check_ids_column(dataset, source, "inputCol")
        added = [(self.getOutputCol(), T.ArrayType(T.IntegerType()))]
        if self.getAttentionCol():
            added.append((self.getAttentionCol(), T.ArrayType(T.ArrayType(T.FloatType()))))
        for name, _ in added:
            if name in dataset.columns:
                raise ValueError(f"output column {name!r} already exists in the DataFrame; choose another name")
        schema = T.StructType(dataset.schema.fields + [T.StructField(name, t, True) for name, t in added])
        profile = self._scoring_profile(dataset.sparkSession)
        payload, key = self._payload(dataset.sparkSession)
        arguments = self.architectureSpec["architectureParams"]
        options = {
            "decoding": self.getDecoding(), "beamWidth": self.getBeamWidth(), "lengthPenalty": self.getLengthPenalty(),
            "maxOutputLength": self.getMaxOutputLength() or arguments["maxTargetLength"],
            "batchSize": self.getInferenceBatchSize() or DECODING_ROWS, "attention": bool(self.getAttentionCol()),
            "names": [name for name, _ in added],
        }
        device, _ = self._checked_device()

        def run(batches):
            import torch
            from pyspark import TaskContext

            from sparkneural import devices

            context = TaskContext.get()
            torch.set_num_threads(max(1, context.cpus() if context else 1))
            where = devices.task_device(device)
            net = inference.cached_network(f"{key}|{where}", lambda: inference.load_network(*payload.value, where))
            for batch in batches:
                yield _decode_batch(net, batch, source, options)

        return dataset.mapInArrow(run, schema, **({} if profile is None else {"profile": profile}))


def _decode_batch(net, batch: pa.RecordBatch, source: str, options: dict[str, Any]) -> pa.RecordBatch:
    """``batch`` with the decoded ids (and attention) appended."""
    import torch

    column = batch.column(batch.schema.get_field_index(source))
    valid = np.asarray(column.is_valid())
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ids = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    outputs: list[np.ndarray] = []
    weights: list[list[list[float]]] = []
    for lo in range(0, len(column), options["batchSize"]):
        hi = min(len(column), lo + options["batchSize"])
        width = max(1, int(lengths[lo:hi].max(initial=0)))
        # padded only to this chunk's longest source
        matrix = np.full((hi - lo, width), net.padId, np.int64)
        rows = np.repeat(np.arange(hi - lo), lengths[lo:hi])
        positions = np.arange(starts[hi] - starts[lo]) - np.repeat(starts[lo:hi] - starts[lo], lengths[lo:hi])
        matrix[rows, positions] = ids[starts[lo] : starts[hi]]
        x = torch.from_numpy(matrix).float().to(next(net.parameters()).device)
        with torch.inference_mode():
            if options["decoding"] == "beam":
                decoded, attention, _ = net.beam(x, options["maxOutputLength"], options["beamWidth"], options["lengthPenalty"])
            else:
                decoded, attention = net.greedy(x, options["maxOutputLength"])
        decoded, attention = decoded.cpu(), attention.cpu() if attention is not None else None
        for i, row in enumerate(decoded.numpy()):
            kept = _up_to_end(row, net.padId, net.endId)
            outputs.append(kept)
            if options["attention"]:
                weights.append(attention[i, : len(kept), : lengths[lo + i]].tolist())
    counts = np.array([len(o) if v else 0 for o, v in zip(outputs, valid)], np.int32)
    values = np.concatenate([o for o, v in zip(outputs, valid) if v] or [np.zeros(0, np.int64)]).astype(np.int32)
    mask = None if valid.all() else pa.array(~valid)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    columns = list(batch.columns) + [pa.ListArray.from_arrays(offsets, pa.array(values, pa.int32()), mask=mask)]
    if options["attention"]:
        columns.append(pa.array([w if v else None for w, v in zip(weights, valid)], pa.list_(pa.list_(pa.float32()))))
    names = list(batch.schema.names) + options["names"]
    return pa.RecordBatch.from_arrays(columns, names=names)


def _up_to_end(row: np.ndarray, pad_id: int, end_id: int) -> np.ndarray:
    """Decoded ids up to and including the first endId, without padding."""
    ends = np.flatnonzero(row == end_id)
    row = row[: ends[0] + 1] if len(ends) else row
    return row[row != pad_id]


@stage
class Seq2Seq(NamedTorchEstimator, _Seq2SeqParams):
    """Encoder-decoder with attention over token ids, trained with teacher forcing on Spark.

    >>> from sparkneural.datasets_seq2seq import DIGITS, as_dataframe, reverse_digits
    >>> from sparkneural.estimators import Seq2Seq
    >>> train = as_dataframe(spark, reverse_digits(32, maxLength=4, seed=0), DIGITS)   # source, target: array<int>
    >>> model = Seq2Seq(embeddingDim=8, hiddenSize=8, attention="additive", epochs=2, backend="local", verbose=0).fit(train)
    >>> model.transform(train).select("sourceText", "prediction").dtypes
    [('sourceText', 'string'), ('prediction', 'array<int>')]
    """

    _model_class = Seq2SeqModel
    _architecture_name, _task_name = "seq2seq", "seq2seq"
    _architecture_param_names = SEQ2SEQ_ARGUMENTS
    _defaults = {"labelCol": "target"}

    def _validate_params(self) -> None:
        super()._validate_params()
        for name in ("sourceVocabSize", "targetVocabSize"):
            value = self.getOrDefault(name)
            if value is not None and value < 4:
                raise ValueError(f"{name}: expected at least 4 ids (3 reserved + 1) or None, found {value}")
        special = [self.getPadId(), self.getStartId(), self.getEndId()]
        if min(special) < 0 or len(set(special)) != 3:
            raise ValueError(f"padId, startId, endId: expected three distinct ids >= 0, found {special}")

    def _summarize(self, dataset: DataFrame):
        source, target = self.getInputCol(), self.getLabelCol()
        self._check_ids_column(dataset, source, "inputCol")
        self._check_ids_column(dataset, target, "labelCol")
        pad, start, end = self.getPadId(), self.getStartId(), self.getEndId()
        src, tgt = F.col(source), _with_end(F.col(target), end)

        def count(condition):
            return F.sum(F.when(condition, 1).otherwise(0))

        row = dataset.agg(
            F.count(F.lit(1)).alias("rows"),
            count(F.col(source).isNull()).alias("sourceNulls"),
            count(F.col(target).isNull()).alias("targetNulls"),
            count(F.exists(src, lambda x: x.isNull()) | F.exists(F.col(target), lambda x: x.isNull())).alias("nullIds"),
            F.max(F.size(src)).alias("sourceLength"),
            F.max(F.size(tgt)).alias("targetLength"),
            F.min(F.least(F.array_min(src), F.array_min(F.col(target)))).alias("lowest"),
            F.max(F.array_max(src)).alias("sourceMax"),
            F.max(F.array_max(F.col(target))).alias("targetMax"),
            count(F.exists(src, lambda x: x.isin(pad, start, end))).alias("reservedInSource"),
            count(F.exists(F.slice(tgt, 1, F.size(tgt) - 1), lambda x: x.isin(pad, start, end))).alias("reservedInTarget"),
        ).first()
        if row["rows"] == 0:
            raise ValueError(f"{type(self).__name__}: the DataFrame is empty; expected at least one row")
        problems = [
            (row["sourceNulls"], f"inputCol column {source!r}: expected no nulls, found {row['sourceNulls']} null rows"),
            (row["targetNulls"], f"labelCol column {target!r}: expected no nulls, found {row['targetNulls']} null rows"),
            (row["nullIds"], f"inputCol/labelCol: expected no null ids, found {row['nullIds']} rows with null ids"),
            (row["lowest"] is not None and row["lowest"] < 0, f"inputCol/labelCol: expected ids >= 0, found {row['lowest']}"),
            (row["reservedInSource"], f"inputCol column {source!r}: expected no reserved ids (padId={pad}, startId={start}, endId={end}), found them in {row['reservedInSource']} rows"),
            (row["reservedInTarget"], f"labelCol column {target!r}: expected no padId={pad} or startId={start}, and endId={end} only at the end; found otherwise in {row['reservedInTarget']} rows"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(message)
        for name, column, highest in (("sourceVocabSize", "inputCol", row["sourceMax"]), ("targetVocabSize", "labelCol", row["targetMax"])):
            size = self.getOrDefault(name)
            if size is not None and highest is not None and highest >= size:
                raise ValueError(f"{column}: expected ids below {name}={size}, found {highest}")
        floor = max(pad, start, end) + 1
        return SimpleNamespace(
            rows=row["rows"],
            sourceLength=max(1, row["sourceLength"]),
            targetLength=row["targetLength"],
            sourceVocab=self.getSourceVocabSize() or max(floor, (row["sourceMax"] or 0) + 1),
            targetVocab=self.getTargetVocabSize() or max(floor, (row["targetMax"] or 0) + 1),
        )

    def _shapes(self, dataset: DataFrame, summary):
        return (summary.sourceLength + summary.targetLength,), summary.targetVocab

    def _architecture_params(self, summary) -> dict[str, Any]:
        return {**super()._architecture_params(summary), "sourceVocabSize": summary.sourceVocab,
                "maxSourceLength": summary.sourceLength, "maxTargetLength": summary.targetLength}

    def _materialize(self, dataset: DataFrame, summary):
        from sparkneural.data.materialize import materialize

        pad = self.getPadId()
        flat = F.concat(
            _padded(F.col(self.getInputCol()).cast("array<int>"), summary.sourceLength, pad),
            _padded(_with_end(F.col(self.getLabelCol()).cast("array<int>"), self.getEndId()), summary.targetLength, pad),
        ).cast("array<float>")
        return materialize(dataset.withColumn(FLAT, flat), FLAT, None, self._validation_flag(), self.getDataDir())
