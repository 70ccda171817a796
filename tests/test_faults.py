"""Faults: a rank that dies, a save that is interrupted, training data that must not linger,
and saved files that were tampered with."""

import os

import numpy as np
import pytest
import torch

from injected_faults import fail_at
import sparkneural.estimators.persistence as persistence
from sparkneural.estimators import MLPClassifier, TorchModel

FAST = dict(hiddenLayers=[16], verbose=0, seed=3)


@pytest.fixture(scope="module")
def small(digits_df):
    return digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label").limit(400).cache()


@pytest.fixture(scope="module")
def saved(small, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("models") / "mlp")
    model = MLPClassifier(epochs=1, backend="local", **FAST).fit(small)
    model.save(path)
    return model, path


def _snapshot(path):
    return {
        os.path.relpath(os.path.join(root, f), path): open(os.path.join(root, f), "rb").read()
        for root, _, files in os.walk(path)
        for f in files
    }


@pytest.mark.timeout(300)
def test_a_rank_that_crashes_mid_epoch_ends_fit_with_its_error_and_resume_completes(small, tmp_path):
    checkpoint_dir = str(tmp_path / "ckpt")
    failing = MLPClassifier(epochs=4, numProc=2, backend="horovod", checkpointDir=checkpoint_dir, **FAST)
    failing._test_hooks = [fail_at(3, rank=1)]
    with pytest.raises(RuntimeError, match=r"rank 1 on the driver \(.*\): RuntimeError: injected failure at epoch 3 on rank 1"):
        failing.fit(small)
    checkpoint = torch.load(os.path.join(checkpoint_dir, "checkpoint.pt"), weights_only=True)
    assert checkpoint["epoch"] == 2 and [h["epoch"] for h in checkpoint["history"]] == [1, 2]
    resumed = MLPClassifier(epochs=4, numProc=2, backend="horovod", checkpointDir=checkpoint_dir, resume=True, **FAST).fit(small)
    assert resumed.epochsRun == [3, 4] and len(resumed.history) == 4
    assert len(set(resumed.rankDigests)) == 1


def test_an_interrupted_save_leaves_no_model_and_keeps_an_earlier_one(saved, small, tmp_path, monkeypatch):
    model, path = saved
    before = _snapshot(path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(persistence, "save_weights", crash)
    monkeypatch.setattr("sparkneural.estimators.model.save_weights", crash)
    fresh = str(tmp_path / "new-model")
    with pytest.raises(OSError, match="disk full"):
        model.save(fresh)
    assert not os.path.exists(fresh)
    with pytest.raises(OSError, match="disk full"):
        model.write().overwrite().save(path)
    assert _snapshot(path) == before
    assert [p for p in os.listdir(os.path.dirname(path)) if p.startswith(".")] == []  # no staging left


def test_save_without_overwrite_refuses_an_existing_path(saved):
    model, path = saved
    before = _snapshot(path)
    with pytest.raises(ValueError, match=r"already exists; use write\(\).overwrite\(\).save\(path\)"):
        model.save(path)
    assert _snapshot(path) == before


def test_training_data_is_deleted_after_fit_and_after_a_failed_fit_and_nothing_else(small, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("not sparkneural's")
    MLPClassifier(epochs=1, backend="local", dataDir=str(data_dir), **FAST).fit(small)
    assert os.listdir(data_dir) == ["keep.txt"]
    failing = MLPClassifier(epochs=2, backend="local", dataDir=str(data_dir), **FAST)
    failing._test_hooks = [fail_at(1)]
    with pytest.raises(RuntimeError, match="injected failure"):
        failing.fit(small)
    assert os.listdir(data_dir) == ["keep.txt"]


def test_tampered_weights_are_rejected(saved, tmp_path):
    import shutil

    _, path = saved
    copy = str(tmp_path / "tampered")
    shutil.copytree(path, copy)
    weights = os.path.join(copy, "weights.safetensors")
    data = bytearray(open(weights, "rb").read())
    data[-1] ^= 0xFF
    open(weights, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="weights.safetensors does not match the checksum"):
        TorchModel.load(copy)


def test_truncated_weights_are_rejected(saved, tmp_path):
    import shutil

    _, path = saved
    copy = str(tmp_path / "truncated")
    shutil.copytree(path, copy)
    weights = os.path.join(copy, "weights.safetensors")
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="tampered|does not match|not a valid"):
        TorchModel.load(copy)


def test_weights_that_do_not_fit_the_stored_architecture_are_rejected(saved, tmp_path):
    from safetensors.numpy import save_file

    model, _ = saved
    path = str(tmp_path / "mismatch")
    model.save(path)
    wrong = {k: np.zeros((v.shape[0] + 1,) + v.shape[1:], v.dtype) for k, v in model.weights.items()}
    save_file(wrong, os.path.join(path, "weights.safetensors"))
    metadata_file = os.path.join(path, "metadata", "part-00000")
    text = open(metadata_file).read()
    import json

    metadata = json.loads(text)
    metadata["sparkneural"]["weightsSha256"] = persistence.sha256_file(os.path.join(path, "weights.safetensors"))
    open(metadata_file, "w").write(json.dumps(metadata))
    with pytest.raises(ValueError, match="the weights do not match the stored architecture"):
        TorchModel.load(path)


def test_corrupted_metadata_and_foreign_directories_are_rejected(saved, tmp_path):
    with pytest.raises(ValueError, match="not a saved sparkneural stage"):
        TorchModel.load(str(tmp_path))
    _, path = saved
    import shutil

    copy = str(tmp_path / "corrupt")
    shutil.copytree(path, copy)
    open(os.path.join(copy, "metadata", "part-00000"), "w").write("{not json")
    with pytest.raises(ValueError, match="corrupted metadata"):
        TorchModel.load(copy)
