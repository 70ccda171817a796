"""Training and scoring on a GPU: runs where CUDA is, skipped elsewhere.

Needs no Spark (the GPU host may have none): the training loop runs with
the local collective on Parquet written by pyarrow, scoring through the
batch function ``transform`` runs. Expectations come from the same code on
the CPU (identical weights in, outputs equal within float tolerance) and
from what CUDA reports.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sparkneural import devices
from sparkneural.data.arrow import InputError
from sparkneural.data.materialize import FEATURES, LABEL, DataFile, ParquetData
from sparkneural.estimators import inference, scoring
from sparkneural.training.collective import LocalCollective
from sparkneural.training.loop import load_checkpoint, train
from sparkneural.training.spec import TrainSpec
from sparkneural.training.tasks import get_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _data(tmp_path, rows=2048, width=16, classes=4) -> ParquetData:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, width), dtype=np.float32)
    y = (x @ rng.standard_normal((width, classes))).argmax(axis=1).astype(np.float64)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    table = pa.table({FEATURES: pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1))), LABEL: pa.array(y)})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=512)
    groups = (512,) * (rows // 512)
    return ParquetData(str(tmp_path), (DataFile("part-0.parquet", groups, (0,) * len(groups)),), True, False, rowBytes=4 * width + 8)


def _spec(data, **overrides) -> TrainSpec:
    values = dict(data=data, architecture="mlp", architectureParams={"hiddenLayers": [64, 64]}, inputShape=(16,), outputSize=4,
                  epochs=3, batchSize=128, lossFunction="cross_entropy", verbose=0, device="cuda")
    return TrainSpec(**{**values, **overrides})


def test_auto_takes_the_gpu_and_cuda_index_follows_spark_address_through_cuda_visible_devices(monkeypatch):
    assert devices.resolve("auto").type == "cuda"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,0")
    assert devices.cuda_index("0") == 1  # CUDA numbers the visible devices in their listed order
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.cuda_index("0") == 0


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_training_on_the_gpu_learns_and_reports_its_device(tmp_path, precision):
    result = train(_spec(_data(tmp_path), precision=precision, epochs=4), LocalCollective())
    assert result.history[-1]["accuracy"] > 0.8, result.history
    assert result.rankDevices[0]["device"] == f"cuda:{torch.cuda.current_device()}"


def test_gpu_training_is_repeatable_and_learns_what_the_cpu_run_learns(tmp_path):
    data = _data(tmp_path)
    on_cpu = train(_spec(data, device="cpu"), LocalCollective())
    first, second = (train(_spec(data), LocalCollective()) for _ in range(2))
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]  # same seeds, same batches
    assert first.history[-1]["accuracy"] == pytest.approx(on_cpu.history[-1]["accuracy"], abs=0.03)


def test_scoring_on_the_gpu_names_the_column_with_nan(tmp_path):
    architecture = {"architecture": "mlp", "architectureParams": {"hiddenLayers": [4]}, "inputShape": [3], "outputSize": 2}
    net = inference.load_network(architecture, None, devices.resolve("cuda"))
    x = np.array([[0.0, 1.0, 2.0], [np.nan, 0.0, np.inf]], np.float32)
    with pytest.raises(InputError, match=r"column 'f': expected finite values, found 2 NaN"):
        scoring.forward(net, x, get_task("classification"), label="column 'f'")


def test_fp16_resume_restores_the_loss_scaler_from_the_checkpoint(tmp_path):
    data = _data(tmp_path)
    full = train(_spec(data, precision="16-mixed", epochs=4, checkpointDir=str(tmp_path / "full")), LocalCollective())
    train(_spec(data, precision="16-mixed", epochs=2, checkpointDir=str(tmp_path / "parts")), LocalCollective())
    resumed = train(_spec(data, precision="16-mixed", epochs=4, checkpointDir=str(tmp_path / "parts"), resume=True), LocalCollective())
    assert resumed.epochsRun == [3, 4]
    # the scale and its count of steps since the last overflow carry on as in the uninterrupted run
    assert load_checkpoint(str(tmp_path / "parts"))["scaler"] == load_checkpoint(str(tmp_path / "full"))["scaler"]
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history], rel=1e-4)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_scoring_on_the_gpu_matches_the_cpu(precision):
    torch.manual_seed(0)
    architecture = {"architecture": "lenet", "architectureParams": {}, "inputShape": [1, 28, 28], "outputSize": 10}
    weights = {k: v.numpy() for k, v in inference.load_network(architecture, None).state_dict().items()}
    x = np.random.default_rng(1).standard_normal((300, 784), dtype=np.float32)
    task = get_task("classification")
    on_cpu = scoring.forward(inference.load_network(architecture, weights), x.reshape(-1, 1, 28, 28), task)
    on_gpu = scoring.forward(inference.load_network(architecture, weights, devices.resolve("cuda")), x.reshape(-1, 1, 28, 28),
                               task, None, precision)
    tolerance = 1e-4 if precision == "32" else 3e-2
    assert np.abs(on_gpu["probability"] - on_cpu["probability"]).max() < tolerance
    assert (on_gpu["prediction"] == on_cpu["prediction"]).mean() > (0.999 if precision == "32" else 0.95)


@pytest.mark.parametrize("architecture,params,shape", [
    ("lenet", {}, (1, 28, 28)),
    ("conv1d", {}, (2, 16)),
    ("rnn", {"hiddenSize": 8}, (6, 2)),
    ("transformer", {"dModel": 16, "numHeads": 2, "numLayers": 1}, (6, 2)),
    ("tcn", {}, (2, 16)),
])
def test_each_architecture_trains_on_the_gpu(tmp_path, architecture, params, shape):
    width = math.prod(shape)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, width), dtype=np.float32)
    offsets = pa.array(np.arange(257, dtype=np.int32) * width)
    pq.write_table(pa.table({FEATURES: pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1))),
                             LABEL: pa.array((x[:, 0] > 0).astype(np.float64))}), tmp_path / "part-0.parquet")
    data = ParquetData(str(tmp_path), (DataFile("part-0.parquet", (256,), (0,)),), True, False, rowBytes=4 * width + 8)
    spec = _spec(data, architecture=architecture, architectureParams=params, inputShape=shape, outputSize=2, epochs=2, batchSize=64)
    result = train(spec, LocalCollective())
    assert len(result.history) == 2 and all(math.isfinite(r["loss"]) for r in result.history)
    assert result.rankDevices[0]["device"].startswith("cuda")


def test_a_streamed_shard_trains_on_the_gpu_as_the_kept_one_does(tmp_path):
    data = _data(tmp_path)
    kept = train(_spec(data), LocalCollective())
    streamed = train(_spec(data, shuffleBufferRows=600), LocalCollective())  # windows of row groups, each copied whole
    assert [r["loss"] for r in streamed.history] != []
    assert streamed.history[-1]["accuracy"] == pytest.approx(kept.history[-1]["accuracy"], abs=0.05)
