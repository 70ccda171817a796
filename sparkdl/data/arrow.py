"""Arrow columns <-> numpy arrays, for the batches a fitted model scores.

Decoding: ``features_matrix`` reads an Arrow list column (or MLlib vectors in
their Arrow layout) into a float32 (rows, width) matrix straight from its flat
value buffer, without per-row Python objects, and checks each row's length and
that every value is finite. Encoding: ``dense_vectors`` (MLlib dense vectors),
``float_lists`` (``array<float>``) and ``doubles`` write numpy outputs back as
Arrow columns, null where the input row was null.

Nothing here imports torch or pyspark.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


class InputError(ValueError):
    """Rows a fitted model cannot score: arrays of another length, NaN or infinite values."""


# -- encoding: numpy -> Arrow --------------------------------------------------------
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
    """Rows of an array (each flattened) as an ``array<float>`` column."""
    n = len(values)
    width = int(np.prod(values.shape[1:])) if values.ndim > 1 else 1
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    array = pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1).astype(np.float32)), type=FLOAT_LIST)
    if valid is not None and not valid.all():
        array = pa.array(array.to_pylist(), type=FLOAT_LIST, mask=~valid)
    return array


def doubles(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A 1-D array as a double column."""
    return pa.array(values.astype(np.float64, copy=False), mask=None if valid is None else ~valid)


# -- decoding: Arrow -> numpy --------------------------------------------------------
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


def not_finite(label: str, bad: int) -> InputError:
    """The error for ``bad`` NaN, infinite or null elements in the input ``label`` names."""
    return InputError(f"{label}: expected finite values, found {bad} NaN/infinite/null elements")


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
        raise not_finite(label, bad)
    return matrix


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
