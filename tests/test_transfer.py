"""Transfer learning: initFrom (by name and by order), freeze and unfreezeAfterEpochs, on every backend.

Independent expectations: the saved source weights themselves (a frozen
tensor must equal them bit for bit), and the tensors' names and shapes.
"""

import numpy as np
import pytest
from pyspark.sql import functions as F

from sparkneural.estimators import Autoencoder, MLPClassifier, TorchModel
from sparkneural.training.transfer import match_weights

FIRST = "features.1.body.0.weight"


def test_name_match_loads_same_name_and_shape_and_reports_the_rest():
    target = {"a.weight": (4, 3), "a.bias": (4,), "head.weight": (2, 4)}
    source = {"a.weight": np.ones((4, 3)), "a.bias": np.ones(4), "head.weight": np.ones((5, 4)), "other": np.ones(1)}
    weights, report = match_weights(target, [source], "name")
    assert sorted(weights) == ["a.bias", "a.weight"]
    assert report["new"] == ["head.weight"]
    assert any("head.weight: shape (5, 4), expected (2, 4)" in s for s in report["skipped"])
    assert any("other: no tensor of that name" in s for s in report["skipped"])


def test_order_match_chains_sources_layer_by_layer_and_stops_at_a_mismatch():
    target = {"l1.w": (8, 4), "l1.b": (8,), "l2.w": (3, 8), "l2.b": (3,), "head.w": (2, 3)}
    first = {"enc.w": np.full((8, 4), 1.0), "enc.b": np.full(8, 1.0), "dec.w": np.zeros((4, 8))}
    second = {"enc.w": np.full((3, 8), 2.0), "enc.b": np.full(3, 2.0), "dec.w": np.zeros((8, 3))}
    weights, report = match_weights(target, [first, second], "order", prefixes=["enc."])
    assert sorted(weights) == ["l1.b", "l1.w", "l2.b", "l2.w"]
    assert weights["l1.w"][0, 0] == 1.0 and weights["l2.w"][0, 0] == 2.0
    assert report["new"] == ["head.w"]
    assert sum("not under ['enc.']" in s for s in report["skipped"]) == 2


@pytest.fixture(scope="module")
def scaled(digits_df):
    return digits_df.withColumn("features", F.expr("transform(features, x -> x / 16.0)"))


@pytest.fixture(scope="module")
def source_model(scaled, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("transfer") / "source")
    model = MLPClassifier(hiddenLayers=[32], epochs=2, backend="local", verbose=0, seed=3).fit(scaled)
    model.write().save(path)
    return path, model


def test_frozen_parameter_is_bit_identical_after_horovod_fit(scaled, source_model):
    path, source = source_model
    model = MLPClassifier(
        hiddenLayers=[32], epochs=2, numProc=2, optimizer="adamw", weightDecay=0.1, verbose=0,
        initFrom=path, freeze=["features."], seed=5,
    ).fit(scaled)
    assert np.array_equal(model.weights[FIRST], source.weights[FIRST])
    assert not np.array_equal(model.weights["head.weight"], source.weights["head.weight"])
    assert model.initReport["new"] == [] and len(model.initReport["loaded"]) == 4
    assert model.rankDigests[0] == model.rankDigests[1]


@pytest.mark.parametrize("epochs, changed", [(1, False), (3, True)])
def test_unfreeze_after_epochs_trains_the_frozen_layers_from_then_on(scaled, source_model, epochs, changed):
    path, source = source_model
    model = MLPClassifier(
        hiddenLayers=[32], epochs=epochs, backend="local", verbose=0, initFrom=path,
        freeze=["features."], unfreezeAfterEpochs=1, unfrozenLearningRate=1e-4,
    ).fit(scaled)
    assert np.array_equal(model.weights[FIRST], source.weights[FIRST]) is not changed


def test_unfreezing_under_torch_distributor_keeps_the_ranks_in_step(scaled, source_model):
    path, source = source_model
    model = MLPClassifier(
        hiddenLayers=[32], epochs=2, numProc=2, backend="torch_distributor", verbose=0, initFrom=path,
        freeze=["features."], unfreezeAfterEpochs=1,
    ).fit(scaled)
    assert not np.array_equal(model.weights[FIRST], source.weights[FIRST])
    assert model.rankDigests[0] == model.rankDigests[1]


def test_autoencoder_encoder_initialises_the_first_mlp_layer(scaled, tmp_path):
    encoder = Autoencoder(kind="dense", bottleneck=32, epochs=2, backend="local", verbose=0).fit(scaled)
    encoder.write().save(str(tmp_path / "ae"))
    model = MLPClassifier(
        hiddenLayers=[32], epochs=1, backend="local", verbose=0, initFrom=str(tmp_path / "ae"),
        initFromMatch="order", initFromPrefixes=["encoder.", "code."], freeze=["features."],
    ).fit(scaled)
    code = [k for k in encoder.weights if k.startswith("code.") and k.endswith("weight")][0]
    assert np.array_equal(model.weights[FIRST], encoder.weights[code])
    assert model.initReport["new"] == ["head.weight", "head.bias"]


def test_transfer_params_are_checked_before_training(scaled, source_model, tmp_path):
    path, _ = source_model
    with pytest.raises(ValueError, match=r"freeze: prefix 'encoder.' matches no parameter; the network's parameters are \['features"):
        MLPClassifier(hiddenLayers=[32], backend="local", freeze=["encoder."]).fit(scaled)
    with pytest.raises(ValueError, match=r"initFrom: no saved tensor fits the network"):
        MLPClassifier(hiddenLayers=[7], backend="local", initFrom=path, initFromMatch="order").fit(scaled)
    with pytest.raises(ValueError, match=r"initFrom: path '.*missing': expected a saved sparkneural stage"):
        MLPClassifier(backend="local", initFrom=str(tmp_path / "missing")).fit(scaled)
    MLPClassifier(hiddenLayers=[32]).write().save(str(tmp_path / "estimator"))
    with pytest.raises(ValueError, match=r"initFrom: path .* holds a MLPClassifier without weights; expected a fitted model"):
        MLPClassifier(backend="local", initFrom=str(tmp_path / "estimator")).fit(scaled)
    with pytest.raises(ValueError, match=r"unfreezeAfterEpochs: expected a value > 0 and a non-empty freeze"):
        MLPClassifier(backend="local", unfreezeAfterEpochs=2).fit(scaled)
    with pytest.raises(ValueError, match=r"initFromMatch: expected one of \['name', 'order'\], found 'shape'"):
        MLPClassifier(backend="local", initFromMatch="shape").fit(scaled)
    assert TorchModel.load(path).weights  # the source is untouched
