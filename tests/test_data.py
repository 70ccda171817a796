import numpy as np
import pytest
from pyspark.ml.functions import array_to_vector

from sparkneural.data import materialize, read_shard
from sparkneural.data.shards import shard_bounds

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)


@pytest.mark.parametrize("rows,size", [(10, 3), (1797, 2), (5, 5), (7, 1)])
def test_shard_bounds_partition_the_rows_evenly(rows, size):
    bounds = [shard_bounds(rows, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    lengths = [hi - lo for lo, hi in bounds]
    assert max(lengths) - min(lengths) <= 1


def _frame(spark, n=103):
    rows = [([float(i), float(i) * 2.0, -float(i)], float(i % 3), i % 4 == 0) for i in range(n)]
    return spark.createDataFrame(rows, "features array<double>, label double, isVal boolean").repartition(3)


def test_shards_of_all_ranks_hold_every_row_once(spark):
    df = _frame(spark)
    with materialize(df, "features", "label", "isVal") as data:
        assert data.rows == 103
        shards = [read_shard(data, rank, 3) for rank in range(3)]
    x = np.concatenate([s["x"] for s in shards])
    assert x.dtype == np.float32 and x.shape == (103, 3)
    assert sorted(x[:, 0].tolist()) == [float(i) for i in range(103)]
    for s in shards:  # each row keeps its own label and flag
        np.testing.assert_array_equal(s["y"], s["x"][:, 0] % 3)
        np.testing.assert_array_equal(s["v"], s["x"][:, 0] % 4 == 0)
    for flag in (False, True):  # training rows and validation rows are each balanced across the ranks
        counts = [int((s["v"] == flag).sum()) for s in shards]
        assert max(counts) - min(counts) <= 1


def test_vector_features_materialise_like_arrays(spark):
    df = _frame(spark, 20)
    vectors = df.withColumn("features", array_to_vector("features"))
    with materialize(df, "features", "label") as a, materialize(vectors, "features", "label") as b:
        xa, xb = read_shard(a)["x"], read_shard(b)["x"]
    np.testing.assert_array_equal(xa[np.argsort(xa[:, 0])], xb[np.argsort(xb[:, 0])])


def test_materialised_files_are_deleted_after_the_block_also_on_error(spark):
    import os
    from urllib.parse import urlparse

    with pytest.raises(RuntimeError):
        with materialize(_frame(spark, 10), "features", "label") as data:
            paths = [urlparse(u).path for u in data.file_urls]
            assert all(os.path.exists(p) for p in paths)
            raise RuntimeError("boom")
    assert not any(os.path.exists(p) for p in paths)
