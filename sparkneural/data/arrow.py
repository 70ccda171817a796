"""Arrow columns <-> numpy arrays, for the batches a fitted model scores.

Decoding: ``features_matrix`` reads an Arrow list or fixed-size list column
(or MLlib vectors in their Arrow layout, dense or sparse) into a float32
(rows, width) matrix straight from its flat value buffers, without per-row
Python objects, and checks each row's length and that every value is finite.
Encoding: ``dense_vectors`` (MLlib dense vectors), ``float_lists``
(``array<float>``) and ``doubles`` write numpy outputs back as Arrow columns
over one flat buffer each, null where the input row was null.

Nothing here imports torch or pyspark.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

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
    """Rows of a 2-D float array as an Arrow column of MLlib dense vectors.

    The vectors' values share one flat float64 buffer (``values`` itself when
    it is already a C-contiguous float64 array); rows where ``valid`` is False
    are null.
    """
    n, width = values.shape
    flat = pa.ListArray.from_arrays(
        _offsets(n, width), pa.array(np.ascontiguousarray(values, np.float64).reshape(-1)),
        type=VECTOR_TYPE.field("values").type,
    )
    return pa.StructArray.from_arrays(
        [pa.array(np.ones(n, np.int8)), pa.nulls(n, pa.int32()), pa.nulls(n, VECTOR_TYPE.field("indices").type), flat],
        fields=list(VECTOR_TYPE),
        mask=_null_mask(valid),
    )


def float_lists(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Rows of an array (each flattened) as an ``array<float>`` column; rows where ``valid`` is False are null."""
    n = len(values)
    width = int(np.prod(values.shape[1:])) if values.ndim > 1 else 1
    flat = pa.array(np.ascontiguousarray(values, np.float32).reshape(-1))
    # a null row keeps its slot in the flat buffer: readers skip it by the validity bitmap
    return pa.ListArray.from_arrays(_offsets(n, width), flat, type=FLOAT_LIST, mask=_null_mask(valid))


def doubles(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A 1-D array as a double column; rows where ``valid`` is False are null."""
    return pa.array(values.astype(np.float64, copy=False), mask=_null_rows(valid))


def _offsets(n: int, width: int) -> pa.Array:
    # built in int64 so that a column past 2**31 values fails the safe cast to int32 instead of wrapping
    return pa.array(np.arange(n + 1, dtype=np.int64) * width, pa.int32())


def _null_rows(valid: np.ndarray | None) -> np.ndarray | None:
    return None if valid is None or valid.all() else ~np.asarray(valid, bool)


def _null_mask(valid: np.ndarray | None) -> pa.Array | None:
    """``_null_rows`` as Arrow booleans, the mask that Arrow's ``from_arrays`` constructors take."""
    nulls = _null_rows(valid)
    return None if nulls is None else pa.array(nulls)


# -- decoding: Arrow -> numpy --------------------------------------------------------
def features_matrix(column: pa.Array, width: int, label: str = "features",
                    check_finite: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """An Arrow list, fixed-size list or vector column as a float32 (rows, width) matrix and a validity mask.

    Rows that are null come back as zeros, flagged False in the mask (None
    when every row is valid). A row of another length than ``width``, a
    sparse vector index outside the vector, or (with ``check_finite``) a NaN,
    infinite or null element, raises an ``InputError`` whose message starts
    with ``label``.
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
    if pa.types.is_fixed_size_list(column.type):
        return finite(_fixed_size_rows(column, width, valid, label), label), valid
    return finite(_list_rows(column, width, valid, label), label), valid


def not_finite(label: str, bad: int) -> InputError:
    """The error for ``bad`` NaN, infinite or null elements in the input ``label`` names."""
    return InputError(f"{label}: expected finite values, found {bad} NaN/infinite/null elements")


def _list_rows(column: pa.Array, width: int, valid: np.ndarray | None, label: str) -> np.ndarray:
    n = len(column)
    if n == 0:
        return np.zeros((0, width), np.float32)
    offsets = np.asarray(column.offsets)  # of this slice, indexing the unsliced child
    lengths = np.diff(offsets)
    _check_lengths(lengths if valid is None else np.where(valid, lengths, width), width, label)
    values = _elements(column.values, int(offsets[0]), int(offsets[-1]))
    if valid is None:  # every row holds width values, so they lie back to back
        return values.astype(np.float32, copy=False).reshape(n, width)
    matrix = np.zeros((n, width), np.float32)
    matrix[valid] = values[np.repeat(valid, lengths)].reshape(-1, width)  # a null row may still own values
    return matrix


def _fixed_size_rows(column: pa.FixedSizeListArray, width: int, valid: np.ndarray | None, label: str) -> np.ndarray:
    size = column.type.list_size
    if size != width:
        raise InputError(f"{label}: expected arrays of length {width} as in fit, found length {size}")
    start = column.offset * size  # .values ignores the slice
    matrix = _elements(column.values, start, start + len(column) * size).astype(np.float32, copy=False)
    matrix = matrix.reshape(len(column), width)
    return matrix if valid is None else np.where(valid[:, None], matrix, np.float32(0))


def _elements(values: pa.Array, start: int, stop: int) -> np.ndarray:
    """Elements start..stop of a list column's child as numpy (null elements as NaN), zero-copy where Arrow allows."""
    return values.slice(start, stop - start).to_numpy(zero_copy_only=False)


def _check_lengths(lengths: np.ndarray, width: int, label: str) -> None:
    wrong = lengths != width
    if wrong.any():
        found = np.unique(lengths[wrong])
        raise InputError(f"{label}: expected arrays of length {width} as in fit, found length {_lengths(found)}")


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
    """MLlib vectors, dense, sparse or null, as a float32 matrix; null rows are zeros.

    Works on the flat child buffers: dense rows copy their values, sparse
    rows scatter theirs at their indices.
    """
    n = len(column)
    present = np.ones(n, bool) if valid is None else valid
    kinds = column.field("type").to_numpy(zero_copy_only=False)
    dense, sparse = present & (kinds == 1), present & (kinds == 0)
    _first_bad(present & ~dense & ~sparse, lambda i: f"expected MLlib vectors (type 0 sparse or 1 dense), "
               f"found type {column.field('type')[i].as_py()}", label)
    values = column.field("values")
    value_offsets = np.asarray(values.offsets)
    value_lengths = np.diff(value_offsets)
    sizes = column.field("size")
    sizes = np.where(dense, value_lengths, (sizes.fill_null(-1) if sizes.null_count else sizes).to_numpy())
    _first_bad(present & (sizes != width), lambda i: f"expected vectors of size {width} as in fit, found size "
               f"{value_lengths[i] if dense[i] else column.field('size')[i].as_py()}", label)
    flat = _elements(values.values, int(value_offsets[0]), int(value_offsets[-1]))
    matrix = np.zeros((n, width), np.float32)
    matrix[dense] = flat[np.repeat(dense, value_lengths)].reshape(-1, width)
    if sparse.any():
        indices = column.field("indices")
        index_offsets = np.asarray(indices.offsets)
        index_lengths = np.diff(index_offsets)
        _first_bad(sparse & (index_lengths != value_lengths), lambda i: "expected sparse vectors with one index per "
                   f"value, found {index_lengths[i]} indices and {value_lengths[i]} values", label)
        columns = _elements(indices.values, int(index_offsets[0]), int(index_offsets[-1]))[np.repeat(sparse, index_lengths)]
        inside = (columns >= 0) & (columns < width)  # False for a null index too (NaN)
        if not inside.all():
            raise InputError(f"{label}: expected sparse vector indices in [0, {width}), found index {columns[~inside][0]}")
        rows = np.repeat(np.flatnonzero(sparse), index_lengths[sparse])
        matrix[rows, columns.astype(np.intp, copy=False)] = flat[np.repeat(sparse, value_lengths)]
    return matrix


def _first_bad(bad: np.ndarray, describe: Callable[[int], str], label: str) -> None:
    """Raise an ``InputError`` describing the first row that ``bad`` flags, if any."""
    if bad.any():
        raise InputError(f"{label}: {describe(int(np.argmax(bad)))}")
