"""Arrow columns <-> numpy (sparkneural.data.arrow): every encoder and decoder, with and without null rows.

Expectations are built row by row in plain Python from the numpy input, or
from pyspark's own vectors, independently of the flat-buffer code under test.
Runs on both Spark lines (the pyarrow versions differ); no Spark session.
"""

import numpy as np
import pyarrow as pa
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_type

from sparkneural.data.arrow import VECTOR_TYPE, InputError, dense_vectors, doubles, features_matrix, float_lists

pytestmark = pytest.mark.stacks

ROWS, WIDTH = 7, 4
NULLS = {"no mask": None, "all valid": np.ones(ROWS, bool), "some null": np.array([1, 0, 1, 1, 0, 0, 1], bool)}


def _quarters(shape, dtype):
    """Values that float32 holds exactly, so expectations need no rounding."""
    return (np.arange(np.prod(shape)).reshape(shape) / 4.0 - 3.0).astype(dtype)


def _ok(valid, n=ROWS):
    return [True] * n if valid is None else [bool(v) for v in valid]


def _vector_column(vectors):
    """MLlib vectors in their Arrow layout, serialised as pyspark serialises them for Arrow."""
    udt, names = VectorUDT(), [f.name for f in VECTOR_TYPE]
    return pa.array([None if v is None else dict(zip(names, udt.serialize(v))) for v in vectors], type=VECTOR_TYPE)


def _as_matrix(vectors, width=WIDTH):
    return np.stack([np.zeros(width) if v is None else v.toArray() for v in vectors]).astype(np.float32)


# -- encoders ------------------------------------------------------------------------
@pytest.mark.parametrize("valid", NULLS.values(), ids=NULLS.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_lists_hold_each_row_flattened_and_null_where_the_row_is_invalid(valid, dtype):
    values = _quarters((ROWS, 2, 3), dtype)
    expected = [[float(x) for x in row.reshape(-1)] if ok else None for row, ok in zip(values, _ok(valid))]
    assert float_lists(values, valid).to_pylist() == expected


def test_float_lists_of_a_1d_array_hold_one_value_per_row():
    values = _quarters((ROWS,), np.float32)
    assert float_lists(values, NULLS["some null"]).to_pylist() == [
        [float(x)] if ok else None for x, ok in zip(values, NULLS["some null"])]


@pytest.mark.parametrize("valid", NULLS.values(), ids=NULLS.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_vectors_are_mllib_dense_vector_structs_and_null_where_the_row_is_invalid(valid, dtype):
    values = _quarters((ROWS, WIDTH), dtype)
    expected = [{"type": 1, "size": None, "indices": None, "values": [float(x) for x in row]} if ok else None
                for row, ok in zip(values, _ok(valid))]
    assert dense_vectors(values, valid).to_pylist() == expected


@pytest.mark.parametrize("valid", NULLS.values(), ids=NULLS.keys())
def test_doubles_hold_one_double_per_row_and_null_where_the_row_is_invalid(valid):
    values = _quarters((ROWS,), np.float32)
    assert doubles(values, valid).to_pylist() == [float(x) if ok else None for x, ok in zip(values, _ok(valid))]


def test_doubles_keep_nan_as_a_value_not_a_null():
    column = doubles(np.array([np.nan, 1.0]))
    assert column.null_count == 0 and np.isnan(column.to_pylist()[0])


@pytest.mark.parametrize("encode, values", [
    (float_lists, _quarters((ROWS, WIDTH), np.float32)),
    (dense_vectors, _quarters((ROWS, WIDTH), np.float64)),
    (doubles, _quarters((ROWS,), np.float64)),
], ids=["float_lists", "dense_vectors", "doubles"])
def test_an_all_valid_mask_writes_no_validity_bitmap(encode, values):
    column = encode(values, np.ones(ROWS, bool))
    assert column.null_count == 0 and column.buffers()[0] is None


def test_dense_vectors_share_the_buffer_of_a_contiguous_float64_input():
    values = _quarters((ROWS, WIDTH), np.float64)
    flat = dense_vectors(values).field("values").values
    assert flat.buffers()[1].address == values.ctypes.data


def test_float_lists_share_the_buffer_of_a_contiguous_float32_input():
    values = _quarters((ROWS, WIDTH), np.float32)
    assert float_lists(values, NULLS["some null"]).values.buffers()[1].address == values.ctypes.data


@pytest.mark.parametrize("encode, spark_type", [
    (float_lists, T.ArrayType(T.FloatType())),
    (dense_vectors, VectorUDT().sqlType()),
    (doubles, T.DoubleType()),
], ids=["float_lists", "dense_vectors", "doubles"])
def test_encoders_write_exactly_the_arrow_type_pyspark_maps_the_output_column_to(encode, spark_type):
    values = _quarters((ROWS, WIDTH) if encode is not doubles else (ROWS,), np.float32)
    written, expected = encode(values, NULLS["some null"]).type, to_arrow_type(spark_type)
    assert written.equals(expected) and str(written) == str(expected)  # str: field names and nullability too


# -- decoders ------------------------------------------------------------------------
def _mixed_vectors():
    rng = np.random.default_rng(7)
    vectors = []
    for i in range(40):
        kind = i % 4
        if kind == 0:
            vectors.append(None)
        elif kind == 1:
            vectors.append(Vectors.dense(rng.standard_normal(WIDTH)))
        else:
            at = np.sort(rng.choice(WIDTH, size=kind - 1, replace=False))  # one or two entries
            vectors.append(Vectors.sparse(WIDTH, at.tolist(), rng.standard_normal(len(at)).tolist()))
    vectors.append(Vectors.sparse(WIDTH, [], []))
    return vectors


@pytest.mark.parametrize("part", [slice(None), slice(3, 29), slice(0, 1)], ids=["whole", "slice", "one null row"])
def test_mixed_dense_sparse_and_null_vectors_decode_to_their_arrays_with_zeros_for_null_rows(part):
    vectors = _mixed_vectors()[part]
    column = _vector_column(_mixed_vectors())[part]
    matrix, valid = features_matrix(column, WIDTH, "featuresCol column 'f'")
    np.testing.assert_array_equal(matrix, _as_matrix(vectors))
    assert valid.tolist() == [v is not None for v in vectors]


def test_sparse_vectors_without_nulls_decode_to_their_arrays_and_no_mask():
    vectors = [v for v in _mixed_vectors() if v is not None]
    chunked = pa.chunked_array([_vector_column(vectors[:5]), _vector_column(vectors[5:])])
    matrix, valid = features_matrix(chunked, WIDTH)
    np.testing.assert_array_equal(matrix, _as_matrix(vectors))
    assert valid is None


def test_all_dense_vectors_decode_to_their_arrays():
    vectors = [v for v in _mixed_vectors() if isinstance(v, type(Vectors.dense([0.0])))]
    matrix, valid = features_matrix(_vector_column(vectors), WIDTH)
    np.testing.assert_array_equal(matrix, _as_matrix(vectors))
    assert valid is None


@pytest.mark.parametrize("odd, found", [
    (Vectors.dense([1.0] * (WIDTH + 1)), WIDTH + 1),
    (Vectors.sparse(WIDTH + 2, [0], [1.0]), WIDTH + 2),
], ids=["dense", "sparse"])
def test_a_vector_of_another_size_than_in_fit_raises_naming_the_column_and_the_size(odd, found):
    column = _vector_column([None, Vectors.sparse(WIDTH, [1], [2.0]), odd])
    with pytest.raises(InputError, match=rf"^featuresCol column 'f': expected vectors of size {WIDTH} as in fit, found size {found}$"):
        features_matrix(column, WIDTH, "featuresCol column 'f'")


@pytest.mark.parametrize("index", [WIDTH, -1])
def test_a_sparse_index_outside_the_vector_raises_naming_the_column_and_the_index(index):
    column = pa.array([{"type": 0, "size": WIDTH, "indices": [0, index], "values": [1.0, 2.0]}], type=VECTOR_TYPE)
    with pytest.raises(InputError, match=rf"^featuresCol column 'f': expected sparse vector indices in \[0, {WIDTH}\), found index {index}$"):
        features_matrix(column, WIDTH, "featuresCol column 'f'")


def test_a_sparse_vector_with_more_indices_than_values_raises_naming_the_column():
    column = pa.array([{"type": 0, "size": WIDTH, "indices": [0, 1], "values": [1.0]}], type=VECTOR_TYPE)
    with pytest.raises(InputError, match=r"^f: expected sparse vectors with one index per value, found 2 indices and 1 values$"):
        features_matrix(column, WIDTH, "f")


def test_a_nan_in_a_sparse_vector_raises_as_not_finite():
    column = _vector_column([Vectors.sparse(WIDTH, [2], [float("nan")]), None])
    with pytest.raises(InputError, match=r"^f: expected finite values, found 1 NaN/infinite/null elements$"):
        features_matrix(column, WIDTH, "f")


@pytest.mark.parametrize("valid", NULLS.values(), ids=NULLS.keys())
def test_float_lists_decode_back_to_their_rows_with_zeros_for_null_rows(valid):
    values = _quarters((ROWS, WIDTH), np.float32)
    matrix, mask = features_matrix(float_lists(values, valid)[2:], WIDTH)
    np.testing.assert_array_equal(matrix, np.where(np.array(_ok(valid))[2:, None], values[2:], 0))
    assert (mask is None) == all(_ok(valid)[2:])


def test_values_a_null_row_still_owns_are_ignored_by_the_finite_check():
    values = _quarters((ROWS, WIDTH), np.float32)
    values[1] = np.nan  # row 1 is null below
    matrix, mask = features_matrix(float_lists(values, NULLS["some null"]), WIDTH, "f")
    assert not mask[1] and (matrix[1] == 0).all()


def test_list_rows_of_other_lengths_raise_naming_each_length_and_null_rows_pass():
    column = pa.array([[1.0] * WIDTH, None, [1.0] * 3, [1.0] * 5, [1.0] * 3], type=pa.list_(pa.float64()))
    with pytest.raises(InputError, match=rf"^f: expected arrays of length {WIDTH} as in fit, found length 3, 5$"):
        features_matrix(column, WIDTH, "f")


def test_integer_lists_decode_as_floats():
    matrix, valid = features_matrix(pa.array([[1, 2], None, [3, 4]], type=pa.list_(pa.int32())), 2)
    assert matrix.dtype == np.float32 and matrix.tolist() == [[1, 2], [0, 0], [3, 4]] and valid.tolist() == [True, False, True]


@pytest.mark.parametrize("nulls", [False, True], ids=["no nulls", "null rows"])
def test_a_fixed_size_list_column_round_trips_through_its_flat_values(nulls):
    values = _quarters((ROWS, WIDTH), np.float32)
    rows = [None if nulls and i % 3 == 1 else row.tolist() for i, row in enumerate(values)]
    column = pa.array(rows, type=pa.list_(pa.float32(), WIDTH))[1:]
    matrix, valid = features_matrix(column, WIDTH, "f")
    np.testing.assert_array_equal(matrix, [[0.0] * WIDTH if r is None else r for r in rows[1:]])
    assert (valid is None) == (not nulls) and (valid is None or valid.tolist() == [r is not None for r in rows[1:]])


def test_a_fixed_size_list_of_another_length_raises_naming_the_column():
    column = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(6, np.float32)), 3)
    with pytest.raises(InputError, match=rf"^f: expected arrays of length {WIDTH} as in fit, found length 3$"):
        features_matrix(column, WIDTH, "f")
