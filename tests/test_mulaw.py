"""MuLawEncoder / MuLawDecoder against the companding formulas, computed independently with numpy."""

import math
import subprocess
import sys

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkneural.preprocessing import MuLawDecoder, MuLawEncoder

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)

MU = 255


def compand(x, mu=MU):
    return np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)


def expand(y, mu=MU):
    return np.sign(y) / mu * ((1.0 + mu) ** np.abs(y) - 1.0)


def centre(k, mu=MU):
    return 2.0 * k / mu - 1.0


def bin_spread(k, mu=MU):
    """Largest distance between the decoded centre of class k and any x that falls in the class."""
    y = centre(k, mu)
    lo, hi = np.maximum(y - 1.0 / mu, -1.0), np.minimum(y + 1.0 / mu, 1.0)
    return np.maximum(expand(hi, mu) - expand(y, mu), expand(y, mu) - expand(lo, mu))


@pytest.fixture(scope="module")
def million(spark):
    """1M uniform samples in [-1, 1], encoded (classes and floats) and decoded, as numpy arrays."""
    df = spark.range(1_000_000).select((F.rand(seed=7) * 2.0 - 1.0).alias("x"))
    df = MuLawEncoder(inputCol="x", outputCol="k").transform(df)
    df = MuLawEncoder(inputCol="x", outputCol="f", quantize=False).transform(df)
    df = MuLawDecoder(inputCol="k", outputCol="d").transform(df)
    pdf = df.toPandas()
    return {c: pdf[c].to_numpy() for c in pdf.columns}


def test_classes_and_companded_values_equal_the_numpy_formula_on_1m_values(million):
    x = million["x"]
    f = compand(x)
    np.testing.assert_allclose(million["f"], f, rtol=0, atol=1e-12)
    expected_classes = np.floor((f + 1.0) / 2.0 * MU + 0.5).astype(np.int64)
    assert np.array_equal(million["k"], expected_classes)
    assert million["k"].min() == 0 and million["k"].max() == MU


def test_decoding_is_the_inverse_law_at_the_bin_centre(million):
    np.testing.assert_allclose(million["d"], expand(centre(million["k"])), rtol=0, atol=1e-12)


def test_round_trip_error_within_the_quantisation_bound(million):
    x, k, d = million["x"], million["k"], million["d"]
    error = np.abs(x - d)
    assert np.all(error <= bin_spread(k) + 1e-12)
    # Also the derivative bound: half a bin (1/mu) times the inverse's largest slope in the bin.
    slope = math.log1p(MU) / MU * (1.0 + MU) ** np.minimum(np.abs(centre(k)) + 1.0 / MU, 1.0)
    assert np.all(error <= slope / MU + 1e-12)
    # Small near 0, larger near +-1, by design.
    assert error[np.abs(x) < 0.01].max() < 1e-3 < error[np.abs(x) > 0.9].max()


def test_every_class_centre_encodes_to_its_own_class(spark):
    for mu in (255, 15):
        df = spark.range(mu + 1).select(F.col("id").cast("int").alias("k"))
        df = MuLawDecoder(inputCol="k", outputCol="x", mu=mu).transform(df)
        df = MuLawEncoder(inputCol="x", outputCol="again", mu=mu).transform(df)
        rows = df.collect()
        assert [r["again"] for r in rows] == [r["k"] for r in rows]
        np.testing.assert_allclose([r["x"] for r in rows], expand(centre(np.arange(mu + 1), mu), mu), atol=1e-12)


def test_arrays_keep_null_rows_and_null_elements(spark):
    df = spark.createDataFrame(
        [(1, [0.5, None, -1.0, 0.0]), (2, None), (3, [])], "id int, a array<float>"
    )
    out = MuLawEncoder(inputCol="a", outputCol="k").transform(df)
    out = MuLawDecoder(inputCol="k", outputCol="d").transform(out)
    assert out.schema["k"].dataType == T.ArrayType(T.IntegerType())
    assert out.schema["d"].dataType == T.ArrayType(T.DoubleType())
    rows = {r["id"]: r for r in out.collect()}
    expected = np.floor((compand(np.array([0.5, -1.0, 0.0])) + 1) / 2 * MU + 0.5).astype(int).tolist()
    assert rows[1]["k"] == [expected[0], None, expected[1], expected[2]]
    assert rows[1]["d"][1] is None and rows[2]["k"] is None and rows[2]["d"] is None
    assert rows[3]["k"] == []


def test_scalar_nulls_stay_null_and_float_type_is_kept(spark):
    df = spark.createDataFrame([(0.25,), (None,)], "x float")
    out = MuLawEncoder(inputCol="x", outputCol="f", quantize=False).transform(df)
    out = MuLawEncoder(inputCol="x", outputCol="k").transform(out)
    out = MuLawDecoder(inputCol="f", outputCol="back").transform(out)
    assert out.schema["f"].dataType == T.FloatType()
    assert out.schema["k"].dataType == T.IntegerType()
    first, second = out.collect()
    assert first["f"] == pytest.approx(compand(0.25), abs=1e-7)
    assert first["back"] == pytest.approx(0.25, abs=1e-6)
    assert second["f"] is None and second["k"] is None and second["back"] is None


def test_clip_maps_values_outside_to_the_end_classes(spark):
    df = spark.createDataFrame([([-3.0, 1.5, 1.0, -1.0],)], "a array<double>")
    out = MuLawEncoder(inputCol="a", outputCol="k").transform(df).first()
    assert out["k"] == [0, MU, MU, 0]


@pytest.mark.parametrize(
    "rows, schema",
    [([(0.5,), (1.5,), (None,)], "x double"), ([([0.5, -1.01, None],)], "x array<float>"), ([(float("nan"),)], "x double")],
)
def test_without_clip_values_outside_raise_naming_the_column(spark, rows, schema):
    df = spark.createDataFrame(rows, schema)
    with pytest.raises(ValueError, match=r"'x'.*outside \[-1, 1\]"):
        MuLawEncoder(inputCol="x", outputCol="k", clip=False).transform(df)


def test_without_clip_values_inside_pass(spark):
    df = spark.createDataFrame([([0.5, -1.0, None, 1.0],), (None,)], "x array<double>")
    out = MuLawEncoder(inputCol="x", outputCol="k", clip=False).transform(df).collect()
    assert out[0]["k"] == [239, 0, None, MU] and out[1]["k"] is None


def test_decoder_fails_on_a_class_outside_0_to_mu(spark):
    df = spark.createDataFrame([(3,), (256,)], "k int")
    with pytest.raises(Exception, match="'k' has a class outside 0..255"):
        MuLawDecoder(inputCol="k", outputCol="x").transform(df).collect()


def test_bad_params_and_column_types_raise_before_any_job(spark):
    df = spark.createDataFrame([("a", 0.5)], "s string, x double")
    with pytest.raises(TypeError, match="'s'"):
        MuLawEncoder(inputCol="s", outputCol="k").transform(df)
    with pytest.raises(ValueError, match="'missing' not found"):
        MuLawEncoder(inputCol="missing", outputCol="k").transform(df)
    with pytest.raises(ValueError, match="mu must be > 0"):
        MuLawEncoder(inputCol="x", outputCol="k", mu=0).transform(df)
    with pytest.raises(ValueError, match="inputCol is not set"):
        MuLawDecoder(outputCol="k").transform(df)


def test_params_follow_pyspark_conventions():
    enc = MuLawEncoder(inputCol="a", outputCol="b")
    assert (enc.getMu(), enc.getQuantize(), enc.getClip()) == (255, True, True)
    enc.setMu(15).setClip(False).setQuantize(False)
    copy = enc.copy()
    assert (copy.getMu(), copy.getClip(), copy.getQuantize(), copy.getInputCol()) == (15, False, False, "a")


def test_saved_pipeline_loads_and_gives_the_same_result(spark, tmp_path):
    df = spark.createDataFrame([([0.1, -0.7, 0.99],), ([0.0],)], "samples array<float>")
    pipeline = Pipeline(stages=[
        MuLawEncoder(inputCol="samples", outputCol="classes", mu=63, clip=False),
        MuLawDecoder(inputCol="classes", outputCol="decoded", mu=63),
    ])
    model = pipeline.fit(df)
    model.write().overwrite().save(str(tmp_path / "model"))
    loaded = PipelineModel.load(str(tmp_path / "model"))
    assert loaded.stages[0].getMu() == 63 and loaded.stages[0].getClip() is False
    assert loaded.transform(df).collect() == model.transform(df).collect()
    pipeline.write().overwrite().save(str(tmp_path / "pipeline"))
    assert Pipeline.load(str(tmp_path / "pipeline")).getStages()[1].getInputCol() == "classes"


def test_preprocessing_does_not_import_torch():
    code = "import sys, sparkneural.preprocessing; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
