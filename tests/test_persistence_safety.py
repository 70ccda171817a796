"""Saved models on shared stores: the umask's permissions, overwrites that survive a crash at any
point, and metadata whose architectureParams ask for a network far larger than its weights.

The models are built directly from a registered architecture (no Spark job): saving and loading
need no SparkContext.
"""

import ctypes
import json
import os
import stat
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from sparkneural.estimators import TorchModel
from sparkneural.estimators.mlp import MLPClassifierModel
from sparkneural.estimators.transformer import TransformerRegressorModel
from sparkneural.nn import build

MLP = {"architecture": "mlp", "inputShape": [8], "outputSize": 3, "task": "classification"}


def _model(seed: int, cls=MLPClassifierModel, spec=MLP, **params) -> TorchModel:
    torch.manual_seed(seed)
    net = build(spec["architecture"], inputShape=spec["inputShape"], outputSize=spec["outputSize"], **params)
    model = cls()
    model.weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    model.architectureSpec = {**spec, "architectureParams": params}
    return model


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _modes(path: str) -> tuple[set[int], set[int]]:
    """The permission bits of every directory and of every file under ``path``."""
    dirs, files = set(), set()
    for root, _, names in os.walk(path):
        dirs.add(stat.S_IMODE(os.stat(root).st_mode))
        files.update(stat.S_IMODE(os.stat(os.path.join(root, n)).st_mode) for n in names)
    return dirs, files


@pytest.mark.parametrize("mask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_a_saved_model_gets_the_permissions_the_umask_gives(tmp_path, mask, dir_mode, file_mode):
    path = str(tmp_path / "mlp")
    previous = os.umask(mask)
    try:
        _model(0, hiddenLayers=[16]).save(path)
        first = _modes(path)
        _model(1, hiddenLayers=[16]).write().overwrite().save(path)
        second = _modes(path)
    finally:
        os.umask(previous)
    assert first == second == ({dir_mode}, {file_mode})


def _crash_after(steps: int, save, exchange: bool) -> int:
    """Run ``save`` in a forked child that dies (``os._exit``, no cleanup) right after its ``steps``-th
    rename or exchange; the child's exit code: 17 when it died there, 0 when the save finished first.
    Without ``exchange`` the child's file system is taken to have no atomic exchange."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            from sparkneural.estimators import placement

            done = 0

            def step(real):
                def counted(*args, **kwargs):
                    nonlocal done
                    if done == steps:
                        os._exit(17)
                    result = real(*args, **kwargs)
                    done += 1
                    if done == steps:
                        os._exit(17)
                    return result
                return counted

            placement._exchange = step(placement._exchange) if exchange else (lambda a, b: False)
            os.rename = step(os.rename)
            os.replace = step(os.replace)
            save()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _exchange_supported(directory) -> bool:
    """Whether this file system swaps two directories in one step (Linux renameat2 RENAME_EXCHANGE)."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    a, b = directory / "probe-a", directory / "probe-b"
    a.mkdir(), b.mkdir()
    return renameat2 is not None and renameat2(-100, bytes(a), -100, bytes(b), 2) == 0


def _overwrite_outcomes(tmp_path, exchange: bool) -> tuple[list[str], list[str]]:
    """For a crash after 0, 1, 2, ... steps of an overwrite: what the target directory itself holds
    ("old", "new" or "nothing"), and what ``TorchModel.load`` then gives."""
    old, new = _model(0, hiddenLayers=[16]), _model(1, hiddenLayers=[16])
    at_target, loaded = [], []
    for steps in range(8):
        path = str(tmp_path / f"crash-{steps}" / "mlp")
        old.save(path)
        code = _crash_after(steps, lambda: new.write().overwrite().save(path), exchange)
        if code == 0:
            assert _same_weights(TorchModel.load(path).weights, new.weights)
            return at_target, loaded
        assert code == 17, f"the overwrite failed in the child (exit code {code})"
        weights = load_file(os.path.join(path, "weights.safetensors")) if os.path.isdir(path) else None
        at_target.append("nothing" if weights is None else "old" if _same_weights(weights, old.weights) else
                         "new" if _same_weights(weights, new.weights) else "other")
        found = TorchModel.load(path).weights
        loaded.append("old" if _same_weights(found, old.weights) else "new" if _same_weights(found, new.weights) else "other")
    raise AssertionError("the overwrite never finished")


def test_a_crash_at_any_point_of_an_overwrite_leaves_the_old_or_the_new_model_at_the_target(tmp_path):
    if not _exchange_supported(tmp_path):
        pytest.skip("this file system has no atomic exchange of directories")
    at_target, loaded = _overwrite_outcomes(tmp_path, exchange=True)
    assert at_target == loaded and at_target[0] == "old" and set(at_target[1:]) == {"new"}


def test_a_crash_between_the_two_renames_leaves_the_old_model_for_the_next_load(tmp_path):
    at_target, loaded = _overwrite_outcomes(tmp_path, exchange=False)
    assert at_target == ["old", "nothing", "new"]
    assert loaded == ["old", "old", "new"]


def test_the_next_save_puts_back_the_model_a_crashed_overwrite_moved_aside_and_cleans_up(tmp_path):
    old, new = _model(0, hiddenLayers=[16]), _model(1, hiddenLayers=[16])
    path = str(tmp_path / "mlp")
    old.save(path)
    assert _crash_after(1, lambda: new.write().overwrite().save(path), exchange=False) == 17
    moved_aside = [name for name in os.listdir(tmp_path) if name.startswith(".mlp.old-")]
    assert not os.path.exists(path) and len(moved_aside) == 1
    with pytest.raises(ValueError, match="already exists"):
        new.save(path)
    assert _same_weights(load_file(os.path.join(path, "weights.safetensors")), old.weights)
    new.write().overwrite().save(path)
    assert [name for name in os.listdir(tmp_path) if name.startswith(".mlp.old-")] == []
    assert _same_weights(TorchModel.load(path).weights, new.weights)


def _edit_metadata(path: str, change) -> None:
    file = os.path.join(path, "metadata", "part-00000")
    with open(file) as f:
        metadata = json.loads(f.readline())
    change(metadata["sparkneural"])
    with open(file, "w") as f:
        f.write(json.dumps(metadata) + "\n")


@pytest.fixture
def linear_layers_built_on_a_real_device(monkeypatch):
    """(in, out) of every nn.Linear constructed with its weight on a device other than ``meta``."""
    built, init = [], torch.nn.Linear.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.weight.device.type != "meta":
            built.append((self.in_features, self.out_features))

    monkeypatch.setattr(torch.nn.Linear, "__init__", recording)
    return built


def test_metadata_asking_for_huge_layers_is_refused_naming_the_first_tensor_before_any_is_allocated(
        tmp_path, linear_layers_built_on_a_real_device):
    path = str(tmp_path / "mlp")
    _model(0, hiddenLayers=[16]).save(path)
    _edit_metadata(path, lambda info: info["architectureParams"].update(hiddenLayers=[10**6]))
    linear_layers_built_on_a_real_device.clear()
    expected = (rf"path '{path}': the weights do not match the stored architecture \(weights.safetensors holds "
                r"'features.1.body.0.weight' of shape \[16, 8\], the architecture makes \[1000000, 8\]\)")
    with pytest.raises(ValueError, match=expected):
        TorchModel.load(path)
    assert linear_layers_built_on_a_real_device == []


def test_metadata_asking_for_a_hundred_thousand_layers_is_refused_before_any_is_built(tmp_path, linear_layers_built_on_a_real_device):
    path = str(tmp_path / "mlp")
    _model(0, hiddenLayers=[16]).save(path)
    _edit_metadata(path, lambda info: info["architectureParams"].update(hiddenLayers=[16] * 100_000))
    linear_layers_built_on_a_real_device.clear()
    with pytest.raises(ValueError, match=rf"path '{path}': the weights do not match the stored architecture "
                                         r"\(the architecture registers more than .* for the 4 tensors in weights.safetensors\)"):
        TorchModel.load(path)
    assert linear_layers_built_on_a_real_device == []


def test_metadata_asking_for_a_huge_computed_table_is_refused(tmp_path):
    spec = {"architecture": "transformer", "inputShape": [12, 3], "outputSize": 1, "task": "regression"}
    model = _model(0, TransformerRegressorModel, spec, dModel=16, numHeads=2, numLayers=1, feedForward=32)
    path = str(tmp_path / "transformer")
    model.save(path)
    assert _same_weights(TorchModel.load(path).weights, model.weights)  # the unedited model loads
    # the sinusoidal position table (timesteps x dModel) is computed, not saved: only its size can give it away
    _edit_metadata(path, lambda info: info.update(inputShape=[2_000_000, 3]))
    with pytest.raises(ValueError, match=rf"path '{path}': the stored architecture would compute 32,000,000 elements "
                                         r"of buffers for [\d,]+ saved weights; expected at most 16,777,216"):
        TorchModel.load(path)
