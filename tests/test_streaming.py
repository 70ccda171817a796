"""Training data larger than memory: shards planned from the write summary, streamed through a bounded
shuffle buffer with a prefetch thread, on any file system (a real S3-compatible server on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import torch

from injected_faults import fail_at
from sparkneural.data import materialize, open_shard
from sparkneural.data.filesystems import normalize
from sparkneural.data.shards import InMemoryShard, Prefetched, StreamingShard, plan_shard
from sparkneural.estimators import MLPClassifier
from sparkneural.training.tasks import get_task

pytestmark = pytest.mark.stacks

CLASSIFICATION = get_task("classification")


def _frame(spark, n=1000, partitions=3):
    rows = [([float(i), float(i % 7)], float(i % 3), i % 5 == 0) for i in range(n)]
    return spark.createDataFrame(rows, "features array<double>, label double, isVal boolean").repartition(partitions)


@pytest.fixture(scope="module")
def written(spark):
    """1000 rows (200 of them validation rows) in files of several row groups each."""
    with materialize(_frame(spark), "features", "label", "isVal", row_group_bytes=1000) as data:  # ~60 rows a group
        yield data


def _epoch(shard, seed: int, rows: int, batch_size: int = 32) -> list:
    """One epoch's batches, torch's generator seeded first as the training loop seeds it."""
    torch.manual_seed(seed)
    return list(shard.batches(seed, rows, batch_size))


def _order(batches) -> list[float]:
    return [v for x, _ in batches for v in x[:, 0].tolist()]


def test_the_write_summary_counts_every_row_and_every_validation_row(written):
    import pyarrow.compute as pc

    from sparkneural.data.materialize import open_parquet

    assert written.rows == 1000 and written.validation_rows == 200
    assert len(written.files) == 3 and all(len(f.groupRows) > 3 for f in written.files)
    for file, url in zip(written.files, written.file_urls):  # the summary is what the Parquet footers and flags say
        parquet = open_parquet(url)
        groups = [parquet.read_row_group(g) for g in range(parquet.metadata.num_row_groups)]
        assert file.groupRows == tuple(parquet.metadata.row_group(g).num_rows for g in range(len(groups)))
        assert file.groupValidationRows == tuple(pc.sum(t["v"]).as_py() for t in groups)


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_the_plan_gives_each_row_to_one_rank_and_balances_both_kinds(written, size):
    shards = [open_shard(written, rank, size, CLASSIFICATION, [2], buffer_rows=10**6) for rank in range(size)]
    train = np.concatenate([s.x[:, 0].numpy() for s in shards])
    validation = np.concatenate([s.x_val[:, 0].numpy() for s in shards])
    assert sorted(train.tolist()) == [float(i) for i in range(1000) if i % 5]
    assert sorted(validation.tolist()) == [float(i) for i in range(0, 1000, 5)]
    for counts in ([s.train_rows for s in shards], [s.validation_rows for s in shards]):
        assert max(counts) - min(counts) <= 1
    for s in shards:  # each row keeps its own label
        np.testing.assert_array_equal(s.y.numpy(), s.x[:, 0].numpy() % 3)


@pytest.mark.parametrize("rows", [400, 401, 1000])  # exactly the shard, one more (wraps around), more than twice
def test_a_buffer_holding_the_whole_shard_streams_the_in_memory_batches(written, rows):
    kept = InMemoryShard(written, 0, 2, CLASSIFICATION, [2])
    streamed = StreamingShard(written, 0, 2, CLASSIFICATION, [2], buffer_rows=kept.train_rows)
    for seed in (0, 1, 17):
        ours, reference = _epoch(streamed, seed, rows), _epoch(kept, seed, rows)
        torch.manual_seed(seed)  # the order is torch's permutation after the epoch's seed, as it always was
        assert torch.equal(reference[0][0], kept.x[torch.randperm(kept.train_rows)[:32]])
        assert [len(x) for x, _ in ours] == [len(x) for x, _ in reference]
        for (x, y), (xr, yr) in zip(ours, reference):
            assert torch.equal(x, xr) and torch.equal(y, yr)


def test_a_small_buffer_visits_every_training_row_once_per_epoch_in_a_new_order(written):
    shard = StreamingShard(written, 1, 2, CLASSIFICATION, [2], buffer_rows=100)
    windows = shard.windows(seed=3)
    assert len(windows) > 3 and all(sum(p.rows for p in w) <= 100 for w in windows)
    first, second = (_order(_epoch(shard, seed, shard.train_rows)) for seed in (3, 4))
    kept = InMemoryShard(written, 1, 2, CLASSIFICATION, [2])
    assert sorted(first) == sorted(second) == sorted(kept.x[:, 0].tolist()) and first != second
    assert _order(_epoch(shard, 3, shard.train_rows)) == first  # the same seed, the same order (resume relies on it)
    longer = _order(_epoch(shard, 3, shard.train_rows + 150))  # a shorter shard wraps around: the pass again
    assert longer == first + first[:150]
    streamed_validation = np.concatenate([x[:, 0].numpy() for x, _ in shard.validation()])
    np.testing.assert_array_equal(streamed_validation, kept.x_val[:, 0].numpy())


def test_open_shard_keeps_a_shard_that_fits_and_streams_one_that_does_not(written):
    assert isinstance(open_shard(written, 0, 2, CLASSIFICATION, [2], buffer_rows=500), InMemoryShard)
    assert isinstance(open_shard(written, 0, 2, CLASSIFICATION, [2], buffer_rows=499), StreamingShard)
    assert isinstance(open_shard(written, 0, 2, CLASSIFICATION, [2]), InMemoryShard)  # 64 MiB hold these rows


def test_prefetch_stays_at_most_the_given_number_of_items_ahead_and_hands_errors_over():
    made, given = [], []

    def items():
        for i in range(20):
            made.append(i)
            yield i

    with Prefetched(items(), ahead=2) as it:
        for i in it:
            time.sleep(0.01)
            assert len(made) - len(given) <= 2
            given.append(i)
    assert given == list(range(20))

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"), Prefetched(failing(), ahead=2) as it:
        list(it)


def test_leaving_a_stream_early_stops_its_thread(written):
    shard = StreamingShard(written, 0, 1, CLASSIFICATION, [2], buffer_rows=50)
    before = threading.active_count()
    batches = shard.batches(0, shard.train_rows, 8)
    next(batches)
    batches.close()
    assert threading.active_count() == before


def test_streamed_fit_learns_like_the_in_memory_fit_and_resumes_exactly(spark, digits_df, tmp_path):
    train = digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label")
    params = dict(hiddenLayers=[32], epochs=4, learningRate=0.01, seed=2, verbose=0, backend="local")
    kept = MLPClassifier(**params).fit(train)
    streamed = MLPClassifier(shuffleBufferRows=200, **params).fit(train)
    accuracy = {name: m.history[-1]["accuracy"] for name, m in (("kept", kept), ("streamed", streamed))}
    assert accuracy["streamed"] > 0.9 and abs(accuracy["streamed"] - accuracy["kept"]) < 0.03, accuracy

    checkpointed = dict(params, shuffleBufferRows=200, checkpointDir=str(tmp_path / "ckpt"))
    failing = MLPClassifier(**checkpointed)
    failing._test_hooks = [fail_at(3)]
    with pytest.raises(RuntimeError, match="injected failure"):
        failing.fit(train)
    resumed = MLPClassifier(resume=True, **checkpointed).fit(train)
    assert resumed.epochsRun == [3, 4]
    for name, value in streamed.weights.items():
        np.testing.assert_array_equal(value, resumed.weights[name])


@pytest.mark.parametrize("given,expected", [
    ("/data/x", "file:///data/x"),
    ("s3a://bucket/dir", "s3://bucket/dir"),
    ("s3://bucket/dir?endpoint_override=h:1", "s3://bucket/dir?endpoint_override=h:1"),
    ("dbfs:/tmp/sparkneural", "file:///dbfs/tmp/sparkneural"),
    ("hdfs://namenode:8020/x", "hdfs://namenode:8020/x"),
])
def test_data_dir_forms_become_pyarrow_uris(given, expected):
    assert normalize(given) == expected


def test_a_data_dir_pyarrow_cannot_open_is_refused_before_any_job(spark, monkeypatch):
    from sparkneural.estimators import TorchEstimator

    monkeypatch.setattr(TorchEstimator, "_materialize", lambda *a: pytest.fail("data written"))
    with pytest.raises(ValueError, match=r"dataDir: expected a path or a URL that pyarrow opens .* found 'nosuch://x/y'"):
        MLPClassifier(dataDir="nosuch://x/y", backend="local").fit(_frame(spark, 10))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_dir(spark):
    """A bucket on an S3-compatible server (moto) on 127.0.0.1, as a dataDir URL; stopped after the module.

    The credentials come from the environment, of the driver and of Spark's Python workers, as on a real cluster.
    """
    from moto.server import ThreadedMotoServer
    import pyarrow.fs as pafs

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    credentials = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_EC2_METADATA_DISABLED": "true"}
    workers = spark.sparkContext.environment
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in credentials.items():
                env.setenv(name, value)
                env.setitem(workers, name, value)
            options = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"
            url = f"s3://sparkneural-test/fits?{options}"
            fs, _ = pafs.FileSystem.from_uri(url)
            fs.create_dir("sparkneural-test")
            fs.create_dir("sparkneural-test/fits/keep")
            with fs.open_output_stream("sparkneural-test/fits/keep/mine.txt") as out:
                out.write(b"the user's own object")
            yield url, fs
    finally:
        server.stop()


def _objects(fs) -> list[str]:
    import pyarrow.fs as pafs

    return sorted(i.path for i in fs.get_file_info(pafs.FileSelector("sparkneural-test", recursive=True)) if i.is_file)


def test_a_fit_with_data_on_s3_gives_the_weights_of_the_same_fit_on_a_local_directory(spark, digits_df, s3_dir, tmp_path):
    url, fs = s3_dir
    train = digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label").limit(600)
    params = dict(hiddenLayers=[16], epochs=2, seed=4, verbose=0, numProc=2, backend="horovod", shuffleBufferRows=100)
    on_s3 = MLPClassifier(dataDir=url, **params).fit(train)
    local = MLPClassifier(dataDir=str(tmp_path), **params).fit(train)
    for name, value in local.weights.items():
        np.testing.assert_array_equal(value, on_s3.weights[name])
    assert _objects(fs) == ["sparkneural-test/fits/keep/mine.txt"]  # sparkneural deleted what it wrote, only that


def test_data_written_to_s3_is_deleted_after_a_failed_fit(spark, s3_dir):
    url, fs = s3_dir
    failing = MLPClassifier(dataDir=url, epochs=2, verbose=0, backend="local")
    failing._test_hooks = [fail_at(1)]
    with pytest.raises(RuntimeError, match="injected failure"):
        failing.fit(_frame(spark, 50))
    assert _objects(fs) == ["sparkneural-test/fits/keep/mine.txt"]
