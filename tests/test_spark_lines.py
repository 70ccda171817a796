"""One code base on Spark 3.5 and Spark 4: the Parquet path without petastorm, petastorm as an
opt-in reader, the backend choice, and models saved on one line scored on the other."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pyspark
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.linalg import Vectors

from sparkneural.data import materialize, read_shard
from sparkneural.data.materialize import petastorm_error
from sparkneural.estimators import MLPClassifier, TorchEstimator, TorchModel
from sparkneural.training import backends

pytestmark = pytest.mark.stacks
FIXTURES = pathlib.Path(__file__).parent / "fixtures"
LINES = ("3.5", "4.3")


def _frame(spark, n=57):
    rows = [([float(i), float(i) / 2], float(i % 3), i % 5 == 0) for i in range(n)]
    return spark.createDataFrame(rows, "features array<double>, label double, isVal boolean").repartition(3)


def test_materialise_writes_under_data_dir_and_deletes_only_what_it_wrote(spark, tmp_path):
    mine = tmp_path / "keep.txt"
    mine.write_text("the user's own file")
    with pytest.raises(RuntimeError, match="boom"):
        with materialize(_frame(spark), "features", "label", "isVal", data_dir=str(tmp_path)) as data:
            written = {p for p in os.listdir(tmp_path) if p != "keep.txt"}
            assert len(written) == 1 and written.pop().startswith("sparkneural-")
            assert data.rows == 57 and all(u.startswith(f"file://{tmp_path}/sparkneural-") for u in data.file_urls)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["keep.txt"] and mine.read_text() == "the user's own file"


def test_a_failed_write_leaves_nothing_behind(spark, tmp_path):
    from pyspark.sql import functions as F

    bad = _frame(spark).withColumn("label", F.raise_error(F.lit("no label today")))
    with pytest.raises(Exception, match="no label today"):
        with materialize(bad, "features", "label", data_dir=str(tmp_path)):
            pass
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(petastorm_error() is not None, reason=f"petastorm does not load here: {petastorm_error()}")
def test_petastorm_reader_yields_the_rows_of_the_default_reader(spark, tmp_path):
    with materialize(_frame(spark), "features", "label", "isVal", data_dir=str(tmp_path)) as data:
        for size in (1, 2, 3):
            for rank in range(size):
                ours, theirs = read_shard(data, rank, size), read_shard(data, rank, size, "petastorm")
                assert sorted(ours) == sorted(theirs)
                for key in ours:
                    np.testing.assert_array_equal(ours[key], theirs[key])


def test_asking_for_petastorm_where_it_cannot_load_names_the_installed_pyarrow(spark, monkeypatch):
    import pyarrow

    from sparkneural.estimators import base

    monkeypatch.setattr(base, "petastorm_error", lambda: "ModuleNotFoundError: No module named 'pyarrow.filesystem'")
    monkeypatch.setattr(TorchEstimator, "_materialize", lambda *a: pytest.fail("training started"))
    with pytest.raises(ValueError, match=rf"dataLoader: 'petastorm' needs petastorm, which cannot be imported here with pyarrow {pyarrow.__version__}"):
        MLPClassifier(dataLoader="petastorm", backend="local").fit(_frame(spark))


def test_auto_backend_is_horovod_when_it_imports_else_torch_distributor(monkeypatch, capsys):
    assert backends.resolve("auto", verbose=1) == "horovod"
    assert "backend auto -> horovod" in capsys.readouterr().out
    monkeypatch.setattr(backends, "horovod_error", lambda: "ImportError: no horovod")
    assert backends.resolve("auto", verbose=1) == "torch_distributor"
    assert capsys.readouterr().out.strip() == "sparkneural: backend auto -> torch_distributor (horovod.torch does not import)"
    assert isinstance(backends.get_backend("auto", 2, verbose=0), backends.TorchDistributorBackend)
    assert MLPClassifier().getBackend() == "auto"


def test_horovod_without_horovod_names_the_build_command(spark, monkeypatch):
    from sparkneural.estimators import base

    monkeypatch.setattr(base, "horovod_error", lambda: "ImportError: no horovod")
    monkeypatch.setattr(TorchEstimator, "_materialize", lambda *a: pytest.fail("training started"))
    with pytest.raises(ValueError, match=r"backend: 'horovod' needs horovod built for PyTorch.*sparkneural build-horovod"):
        MLPClassifier(backend="horovod").fit(_frame(spark))


@pytest.mark.parametrize("line", LINES)
def test_a_model_saved_on_either_line_loads_and_scores_identically(spark, line):
    folder = FIXTURES / f"saved-on-spark-{line}"
    expected = json.loads((folder / "expected.json").read_text())
    assert expected["pyspark"].startswith(line)
    for name, load in (("mlp", TorchModel.load), ("pipeline", PipelineModel.load)):
        rows = expected[name]
        df = spark.createDataFrame([(Vectors.dense(p), 0.0) for p in rows["pixels"]], ["pixels", "label"])
        scored = load(str(folder / name)).transform(df).select("prediction", "rawPrediction").collect()
        assert [r.prediction for r in scored] == rows["prediction"], f"{name} saved on Spark {line}, scored on {pyspark.__version__}"
        np.testing.assert_allclose([r.rawPrediction.toArray() for r in scored], rows["rawPrediction"], rtol=1e-5, atol=1e-6)
