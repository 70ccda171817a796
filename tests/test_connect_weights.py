"""Weights reach the executors of a Spark Connect session as a file artifact, not inside the plan.

A Connect client (tests/scripts/connect_weights.py, in its own process: this
process already holds a classic SparkContext) scores models saved here on
``local-cluster[2,1,1024]`` behind the Connect server's default 128 MiB
message cap: one over 150 MB, and two small ones of the same architecture
with other weights. Its outputs are checked against the same networks run
in plain torch from the saved weights files, and its BERT features against
the classic session's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyspark
import pytest
import torch
from safetensors.torch import load_file
from test_bert import TEXTS, tiny_model  # noqa: F401 (a fixture: the tiny random BERT)

from sparkneural.estimators import MLPClassifier
from sparkneural.estimators.inference import WeightsArtifact
from sparkneural.estimators.persistence import WEIGHTS, save_weights
from sparkneural.text import BertEmbeddings

pytestmark = pytest.mark.connect

SCRIPT = Path(__file__).resolve().parent / "scripts" / "connect_weights.py"
BIG_LAYERS = [6400, 6400]  # 41.4 M parameters: 166 MB of float32
ROWS = 64
BERT_PARAMS = {"layers": "sum_last_four", "pooling": "mean", "maxLength": 16}


def _fit(df, hidden: list[int], seed: int, path: Path) -> str:
    MLPClassifier(hiddenLayers=hidden, epochs=1, batchSize=32, seed=seed, backend="local", verbose=0).fit(df).save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def scored(spark, digits_df, tiny_model, tmp_path_factory):  # noqa: F811
    """Fits and saves three models here, scores them and the BERT model on Connect; the client's JSON result."""
    root = tmp_path_factory.mktemp("connect-weights")
    train = digits_df.limit(ROWS)
    models = {
        "big": _fit(train, BIG_LAYERS, 0, root / "big"),
        "small": _fit(train, [16], 1, root / "small"),
        "other": _fit(train, [16], 2, root / "other"),
    }
    rows = np.array([r.features for r in digits_df.orderBy("id").limit(ROWS).collect()], np.float32)
    np.save(root / "rows.npy", rows)
    spec = {"remote": "local-cluster[2,1,1024]", "rows": str(root / "rows.npy"), "models": models,
            "bert": {"path": tiny_model, "texts": TEXTS, **BERT_PARAMS}}
    (root / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "SPARK_HOME": os.path.dirname(pyspark.__file__), "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_REMOTE", None)
    done = subprocess.run([sys.executable, str(SCRIPT), str(root / "spec.json")], env=env, capture_output=True,
                          text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, f"the Connect client failed ({done.returncode}):\n{done.stderr[-6000:]}"
    return {"result": json.loads(lines[-1]), "models": models, "rows": rows}


def _plain_torch(path: str, rows: np.ndarray) -> np.ndarray:
    """Class probabilities of a plain ReLU MLP read from the saved weights file."""
    weights = load_file(os.path.join(path, WEIGHTS))
    hidden = sorted({k.split(".")[1] for k in weights if k.startswith("features.")}, key=int)
    h = torch.from_numpy(rows)
    for i in hidden:
        h = torch.relu(h @ weights[f"features.{i}.body.0.weight"].T + weights[f"features.{i}.body.0.bias"])
    logits = h @ weights["head.weight"].T + weights["head.bias"]
    return torch.softmax(logits.double(), dim=1).numpy()


def test_model_over_150_mb_scores_on_connect_as_plain_torch(scored, report):
    big = scored["result"]["models"]["big"]
    assert os.path.getsize(os.path.join(scored["models"]["big"], WEIGHTS)) > 150e6
    expected = _plain_torch(scored["models"]["big"], scored["rows"])
    np.testing.assert_allclose(big["probability"], expected, atol=1e-5)
    assert big["prediction"] == expected.argmax(axis=1).astype(float).tolist()
    for step, seconds in big["seconds"].items():
        report(f"166 MB MLP on Connect: {step} (s)", seconds)


def test_connect_plan_of_the_transform_leaves_the_weights_out(scored):
    result = scored["result"]
    assert int(result["maxInboundMessageSize"].rstrip("b")) == 128 * 1024 * 1024  # the server's default cap, in bytes
    assert result["models"]["big"]["planBytes"] < 1 << 20
    assert abs(result["models"]["big"]["planBytes"] - result["models"]["small"]["planBytes"]) < 1 << 14


def test_second_model_in_the_same_session_gives_its_own_outputs(scored):
    small, other = scored["result"]["models"]["small"], scored["result"]["models"]["other"]
    np.testing.assert_allclose(small["probability"], _plain_torch(scored["models"]["small"], scored["rows"]), atol=1e-5)
    np.testing.assert_allclose(other["probability"], _plain_torch(scored["models"]["other"], scored["rows"]), atol=1e-5)
    assert np.abs(np.array(small["probability"]) - np.array(other["probability"])).max() > 1e-3


def test_bert_embeddings_on_connect_match_the_classic_session(scored, spark, tiny_model):  # noqa: F811
    texts = spark.createDataFrame(list(enumerate(TEXTS)), "id int, text string")
    embeddings = BertEmbeddings(inputCol="text", outputCol="features", modelPath=tiny_model, **BERT_PARAMS)
    classic = [r.features for r in embeddings.transform(texts).orderBy("id").collect()]
    on_connect = scored["result"]["bert"]
    assert [f is None for f in on_connect] == [t is None for t in TEXTS] == [f is None for f in classic]
    np.testing.assert_allclose([f for f in on_connect if f is not None], [f for f in classic if f is not None], atol=1e-5)


def test_weights_artifact_whose_content_differs_from_its_hash_is_refused(tmp_path, monkeypatch):
    from pyspark import SparkFiles

    sha = save_weights(str(tmp_path), {"w": np.ones(3, np.float32)})
    shipped = WeightsArtifact({"architecture": "mlp"}, sha)
    monkeypatch.setattr(SparkFiles, "get", classmethod(lambda cls, name: str(tmp_path / name)))
    os.rename(tmp_path / WEIGHTS, tmp_path / shipped.name)
    architecture, weights = shipped.value
    assert architecture == {"architecture": "mlp"} and weights["w"].tolist() == [1.0, 1.0, 1.0]

    save_weights(str(tmp_path), {"w": np.zeros(3, np.float32)})
    os.replace(tmp_path / WEIGHTS, tmp_path / shipped.name)
    with pytest.raises(ValueError, match=rf"^weights artifact '{shipped.name}': expected content with SHA-256 {sha}, found [0-9a-f]{{64}}"):
        shipped.value
