"""Batched inference next to the data: ``mapInArrow`` over Arrow record batches.

The features arrive as one Arrow list column; its flat value buffer is
reshaped straight into a numpy array (no per-row Python objects), pushed
through the network in chunks of ``inferenceBatchSize`` under
``torch.inference_mode``, and the outputs are appended as Arrow columns.
MLlib vectors are produced directly in their Arrow layout. A row of another
length than the fitted input, or a NaN or infinite value, fails the task
with an error naming the column (null rows give null outputs).

The network is built once per Python worker and device: a small cache
keyed by the model's uid, weights token and device keeps it across batches,
tasks and jobs. On a GPU (``sparkdl.training.devices``: the one Spark
assigned to the task) each chunk is copied there, checked for NaN and
infinity there, run under the model's ``precision`` and its outputs copied
back in one wait, then into Arrow.

Nothing here imports pyspark: the same functions score on a host without Spark.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CACHE_SIZE = 4
_cache: "OrderedDict[str, Any]" = OrderedDict()
_cache_lock = threading.Lock()

# The Arrow layout of pyspark.ml.linalg.VectorUDT (type 1 = dense).
VECTOR_TYPE = pa.struct(
    [
        pa.field("type", pa.int8(), False),
        pa.field("size", pa.int32()),
        pa.field("indices", pa.list_(pa.field("element", pa.int32(), False))),
        pa.field("values", pa.list_(pa.field("element", pa.float64(), False))),
    ]
)
FLOAT_LIST = pa.list_(pa.field("element", pa.float32()))


class Shipped:
    """A value that travels inside the task closure, for sessions without broadcasts (Spark Connect)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def share(spark, value: Any):
    """``value`` for every task of ``spark``'s jobs: a broadcast (sent once per executor) where the
    session has a SparkContext, else shipped with the tasks; either way read as ``.value``."""
    try:
        context = spark.sparkContext
    except Exception:  # a Spark Connect session has no SparkContext
        return Shipped(value)
    return context.broadcast(value)


def cached_network(key: str, load: Callable[[], Any]):
    """The network for ``key``, built by ``load()`` on first use in this worker."""
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    network = load()
    with _cache_lock:
        _cache[key] = network
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return network


def dense_vectors(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Rows of a 2-D array as an Arrow column of MLlib dense vectors."""
    n, width = values.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    flat = pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1).astype(np.float64, copy=False)), type=VECTOR_TYPE.field("values").type)
    mask = None if valid is None else pa.array(~valid)
    return pa.StructArray.from_arrays(
        [pa.array(np.ones(n, np.int8)), pa.nulls(n, pa.int32()), pa.nulls(n, VECTOR_TYPE.field("indices").type), flat],
        fields=list(VECTOR_TYPE),
        mask=mask,
    )


def float_lists(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    n = len(values)
    width = int(np.prod(values.shape[1:])) if values.ndim > 1 else 1
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    array = pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1).astype(np.float32)), type=FLOAT_LIST)
    if valid is not None and not valid.all():
        array = pa.array(array.to_pylist(), type=FLOAT_LIST, mask=~valid)
    return array


def doubles(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    return pa.array(values.astype(np.float64, copy=False), mask=None if valid is None else ~valid)


def load_network(architecture: dict[str, Any], weights: dict[str, np.ndarray] | None, device: Any = None):
    """The network ``architecture`` describes (a fitted model's ``architectureSpec``), holding ``weights``,
    in eval mode, on ``device`` (default: the CPU)."""
    import torch

    from sparkdl.training.loop import build_network
    from sparkdl.training.spec import TrainSpec

    net = build_network(
        TrainSpec(
            data=None,
            architecture=architecture["architecture"],
            architectureParams=architecture["architectureParams"],
            inputShape=tuple(architecture["inputShape"]),
            outputSize=architecture["outputSize"],
        )
    )
    if weights is not None:
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    return net.eval().to(device or "cpu")


def forward(net, x: np.ndarray, task, thresholds: list[float] | None = None, precision: str = "32",
            label: str | None = None) -> dict[str, np.ndarray]:
    """Named numpy outputs of ``net`` for one chunk of shaped inputs, computed where ``net`` is.

    With ``label`` the inputs are checked for NaN and infinite values where
    they are computed on (one pass there instead of one on the host), before
    the network runs: an ``InputError`` starting with ``label`` says how
    many. On a GPU the outputs come back in one wait for the device.
    """
    import torch

    from sparkdl.training import devices

    device = next(net.parameters()).device
    with torch.inference_mode(), warnings.catch_warnings():
        # Arrow buffers are read-only; inference never writes to its input.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        inputs = devices.to_device(torch.from_numpy(x), device)
        # before the network: one that turns values into indices would fail on NaN with an error of its own
        if label is not None and not bool(torch.isfinite(inputs).all()):
            raise _not_finite(label, int((~torch.isfinite(inputs)).sum()))
        with devices.autocast(precision, device):
            outputs = task.outputs(net, inputs, thresholds)
        on_gpu = device.type == "cuda"
        host = {k: (v.float() if v.dtype in (torch.float16, torch.bfloat16) else v).to("cpu", non_blocking=on_gpu)
                for k, v in outputs.items()}
        if on_gpu:
            torch.cuda.current_stream(device).synchronize()
        return {k: v.numpy() for k, v in host.items()}


class InputError(ValueError):
    """Rows a fitted model cannot score: arrays of another length, NaN or infinite values."""


def features_matrix(column: pa.Array, width: int, label: str = "features",
                    check_finite: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """An Arrow list or vector column as a float32 (rows, width) matrix and a validity mask.

    Rows that are null come back as zeros, flagged False in the mask (None
    when every row is valid). A row of another length than ``width``, or
    (with ``check_finite``) a NaN, infinite or null element, raises an
    ``InputError`` whose message starts with ``label``.
    """
    finite = _finite if check_finite else (lambda matrix, _: matrix)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = None if column.null_count == 0 else np.asarray(column.is_valid())
    if pa.types.is_struct(column.type):  # an MLlib vector
        kinds = column.field("type").to_numpy(zero_copy_only=False)
        if valid is None and (kinds == 1).all():
            column = column.field("values")
        else:
            return finite(_vectors_to_matrix(column, width, valid, label), label), valid
    _check_lengths(pc.list_value_length(column), width, label)
    if valid is not None:
        column = column.fill_null(pa.scalar([0.0] * width, column.type))
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return finite(flat.astype(np.float32, copy=False).reshape(len(column), width), label), valid


def _check_lengths(lengths: pa.Array, width: int, label: str) -> None:
    lengths = lengths.fill_null(width)
    bounds = pc.min_max(lengths)
    if bounds["min"].as_py() in (None, width) and bounds["max"].as_py() in (None, width):
        return
    found = np.unique(lengths.to_numpy(zero_copy_only=False))
    wrong = found[found != width]
    if len(wrong):
        raise InputError(f"{label}: expected arrays of length {width} as in fit, found length {_lengths(wrong)}")


def _lengths(values) -> str:
    shown = ", ".join(str(int(v)) for v in sorted(values)[:5])
    return shown + (", ..." if len(values) > 5 else "")


def _finite(matrix: np.ndarray, label: str) -> np.ndarray:
    if np.isfinite(matrix.sum()):  # one pass, nothing allocated; NaN and infinity propagate to the sum
        return matrix
    bad = matrix.size - np.count_nonzero(np.isfinite(matrix))  # or the sum overflowed: count exactly
    if bad:
        raise _not_finite(label, bad)
    return matrix


def _not_finite(label: str, bad: int) -> InputError:
    return InputError(f"{label}: expected finite values, found {bad} NaN/infinite/null elements")


def _vectors_to_matrix(column: pa.StructArray, width: int, valid: np.ndarray | None, label: str) -> np.ndarray:
    matrix = np.zeros((len(column), width), np.float32)
    for i, row in enumerate(column.to_pylist()):
        if row is None:
            continue
        size = len(row["values"]) if row["type"] == 1 else row["size"]
        if size != width:
            raise InputError(f"{label}: expected vectors of size {width} as in fit, found size {size}")
        if row["type"] == 1:
            matrix[i] = row["values"]
        else:
            matrix[i, row["indices"]] = row["values"]
    return matrix


def predict_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    features: str,
    width: int,
    batch_size: int,
    network: Callable[[np.ndarray], dict[str, np.ndarray]],
    outputs: list[tuple[str, str, Callable[[np.ndarray, np.ndarray | None], pa.Array]]],
    label: str | None = None,
    check_finite: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Append one Arrow column per ``outputs`` entry to every batch.

    ``network(x)`` maps a float32 (rows, width) chunk to named numpy
    outputs; each ``outputs`` entry is (output name, column name, encoder).
    ``label`` names the input in errors (default: the column ``features``).
    ``check_finite=False`` leaves the NaN/infinity check to ``network``
    (``forward`` with a label makes it on the GPU).
    """
    label = label or f"column {features!r}"
    for batch in batches:
        x, valid = features_matrix(batch.column(batch.schema.get_field_index(features)), width, label, check_finite)
        starts = range(0, len(x), batch_size) if len(x) else [0]
        chunks = [network(x[i : i + batch_size]) for i in starts]
        columns, names = list(batch.columns), list(batch.schema.names)
        for key, column_name, encode in outputs:
            columns.append(encode(np.concatenate([c[key] for c in chunks]), valid))
            names.append(column_name)
        yield pa.RecordBatch.from_arrays(columns, names=names)
