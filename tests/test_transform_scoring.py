"""``TorchModel.transform``'s scoring stage: what travels to Python, the outputs, the automatic chunk size."""

import logging

import numpy as np
import pyspark
import pytest
import torch

from sparkneural.estimators import TorchModel

ARROW_UDF = tuple(map(int, pyspark.__version__.split(".")[:2])) >= (4, 1)


def _model(hidden: list[int], task: str = "classification") -> TorchModel:
    torch.manual_seed(0)
    from sparkneural.nn import build

    net = build("mlp", inputShape=[5], outputSize=3, hiddenLayers=hidden)
    model = TorchModel()
    model.weights = {k: v.numpy() for k, v in net.state_dict().items()}
    model.architectureSpec = {"architecture": "mlp", "architectureParams": {"hiddenLayers": hidden}, "inputShape": [5],
                              "outputSize": 3, "task": task}
    return model


def _frame(spark, rows: int = 40):
    x = np.random.default_rng(3).standard_normal((rows, 5)).astype(np.float32)
    data = [(i, f"r{i}", None if i == 7 else x[i].tolist()) for i in range(rows)]
    return x, spark.createDataFrame(data, "id int, `a.b` string, features array<float>").repartition(3)


def test_transform_keeps_every_column_and_writes_the_network_s_outputs(spark):
    model = _model([8]).setPredictionCol("class.index")
    x, df = _frame(spark)
    out = model.transform(df)
    assert out.columns == ["id", "a.b", "features", "rawPrediction", "probability", "class.index"]
    rows = sorted(out.collect(), key=lambda r: r.id)
    with torch.inference_mode():
        logits = model.network()(torch.from_numpy(x)).double().numpy()
    for row in rows:
        assert row["a.b"] == f"r{row.id}"
        if row.id == 7:
            assert row.probability is None and row["class.index"] is None and row.rawPrediction is None
            continue
        expected = np.exp(logits[row.id]) / np.exp(logits[row.id]).sum()
        np.testing.assert_allclose(row.probability.toArray(), expected, rtol=1e-6)
        assert row["class.index"] == float(np.argmax(logits[row.id]))


@pytest.mark.skipif(not ARROW_UDF, reason="Spark 4.1+ has scalar Arrow UDFs; earlier lines score in mapInArrow")
def test_on_spark_4_1_only_the_features_column_travels_to_python_in_one_udf(spark):
    _, df = _frame(spark)
    plan = _model([8]).transform(df)._jdf.queryExecution().executedPlan().toString()
    assert plan.count("ArrowEvalPython") == 1 and "MapInArrow" not in plan, plan
    evaluated = next(line for line in plan.splitlines() if "ArrowEvalPython" in line)
    assert "(features#" in evaluated and "id#" not in evaluated and "a.b#" not in evaluated, evaluated


def test_the_automatic_chunk_size_follows_the_widest_activation_and_is_logged_at_debug(spark, caplog):
    _, df = _frame(spark)
    model = _model([2048])  # 2048 float32 per row: 2 MiB / 8 KiB = 256 rows per chunk
    assert model.getInferenceBatchSize() is None
    with caplog.at_level(logging.DEBUG, logger="sparkneural.estimators.model"):
        model.transform(df)
    assert "inferenceBatchSize automatic: 256 rows per chunk on a CPU (largest activation 8192 bytes per row" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="sparkneural.estimators.model"):
        assert model.setInferenceBatchSize(3).transform(df).count() == 40
    assert "automatic" not in caplog.text


def test_transform_leaves_torch_s_global_generator_alone_for_fits_running_beside_it(spark):
    _, df = _frame(spark)
    model = _model([8, 4])
    before = torch.random.get_rng_state()
    model.transform(df)  # the chunk size is measured on the meta device, not by building the network
    assert torch.equal(torch.random.get_rng_state(), before)
