"""SequenceWindower against a pure-Python reference, for long and array inputs."""

import random

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import types as T

from sparkneural.preprocessing import SequenceWindower

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)

# Series of different lengths, including ones shorter than most windows.
LENGTHS = {"a": 23, "b": 12, "c": 5, "d": 1}
# (windowSize, step, horizon, targetMode): step below, equal to and above m; m longer than some series.
CASES = [
    (1, 1, 1, "value"),
    (3, 1, 1, "sequence"),
    (3, 2, 2, "value"),
    (4, 3, 1, "none"),
    (7, 5, 3, "sequence"),
    (2, 7, 1, "none"),
    (12, 1, 4, "value"),
]


def value(series, t, channel):
    """Distinct per series, step and channel, so a window crossing series would show."""
    return 1000.0 * (ord(series) - ord("a") + 1) + t + 0.5 * channel


def reference(m, s, h, mode, channels, lengths=LENGTHS):
    """Windows as plain Python: {(series, start index): (features, label)}."""
    reach = m + (h if mode != "none" else 0)
    out = {}
    for series, n in lengths.items():
        k = 0
        while k * s + reach <= n:
            start = k * s
            features = [value(series, t, c) for t in range(start, start + m) for c in range(channels)]
            if mode == "value":
                label = value(series, start + m - 1 + h, 0)
            elif mode == "sequence":
                label = [value(series, t, 0) for t in range(start + h, start + h + m)]
            else:
                label = None
            out[(series, start)] = (features, label)
            k += 1
    return out


@pytest.fixture(scope="module")
def long_df(spark):
    """One row per step, shuffled, with order values 10*t + 3 (not the index itself)."""
    rows = [(s, 10 * t + 3, value(s, t, 0), value(s, t, 1)) for s, n in LENGTHS.items() for t in range(n)]
    random.Random(0).shuffle(rows)
    return spark.createDataFrame(rows, "sid string, time long, x double, y double").repartition(3).cache()


@pytest.fixture(scope="module")
def array_df(spark):
    rows = [(s, [value(s, t, 0) for t in range(n)], [value(s, t, 1) for t in range(n)]) for s, n in LENGTHS.items()]
    return spark.createDataFrame(rows, "sid string, x array<double>, y array<double>").cache()


def windows_of(rows, key_col, start_of, label_col="label"):
    return {(r["sid"], start_of(r[key_col])): (r["features"], r[label_col] if label_col in r.__fields__ else None) for r in rows}


@pytest.mark.parametrize("m, s, h, mode", CASES)
@pytest.mark.parametrize("inputs", [["x"], ["x", "y"]])
def test_long_format_equals_the_reference(long_df, m, s, h, mode, inputs):
    windower = SequenceWindower(inputCols=inputs, seriesCol="sid", orderCol="time",
                                windowSize=m, step=s, horizon=h, targetMode=mode)
    out = windower.transform(long_df)
    expected_columns = ["sid", "time", "features"] + (["label"] if mode != "none" else [])
    assert out.columns == expected_columns
    got = windows_of(out.collect(), "time", lambda time: (time - 3) // 10)
    assert got == reference(m, s, h, mode, len(inputs))


@pytest.mark.parametrize("m, s, h, mode", CASES)
@pytest.mark.parametrize("inputs", [["x"], ["x", "y"]])
def test_array_input_equals_the_reference(array_df, m, s, h, mode, inputs):
    windower = SequenceWindower(inputCols=inputs, seriesCol="sid", windowSize=m, step=s,
                                horizon=h, targetMode=mode)
    out = windower.transform(array_df)
    assert out.columns == ["sid", "windowStart", "features"] + (["label"] if mode != "none" else [])
    got = windows_of(out.collect(), "windowStart", lambda start: start)
    assert got == reference(m, s, h, mode, len(inputs))


def test_no_window_spans_two_series(long_df):
    out = SequenceWindower(inputCols=["x", "y"], seriesCol="sid", orderCol="time", windowSize=4,
                           step=1, targetMode="sequence").transform(long_df)
    rows = out.collect()
    assert rows
    for r in rows:
        series_number = ord(r["sid"]) - ord("a") + 1
        assert {int(v // 1000) for v in r["features"] + r["label"]} == {series_number}


def test_target_can_be_another_column_and_keeps_its_type(spark):
    rows = [(t, float(t), t % 4) for t in range(10)]
    df = spark.createDataFrame(rows, "t int, x float, cls int")
    out = SequenceWindower(inputCol="x", orderCol="t", windowSize=3, step=3, targetMode="value",
                           targetCol="cls", labelCol="next", outputCol="window").transform(df)
    assert out.schema["window"].dataType == T.ArrayType(T.FloatType())
    assert out.schema["next"].dataType == T.IntegerType()
    assert [(r["t"], r["window"], r["next"]) for r in out.orderBy("t").collect()] == [
        (0, [0.0, 1.0, 2.0], 3 % 4), (3, [3.0, 4.0, 5.0], 6 % 4), (6, [6.0, 7.0, 8.0], 9 % 4)
    ]


def test_one_series_without_series_column_and_null_orders_ignored(spark):
    rows = [(t, float(t)) for t in range(6)] + [(None, 99.0)]
    df = spark.createDataFrame(rows, "t long, x double")
    out = SequenceWindower(inputCol="x", orderCol="t", windowSize=2, step=2).transform(df)
    assert out.columns == ["t", "features"]
    assert [(r["t"], r["features"]) for r in out.orderBy("t").collect()] == [(0, [0.0, 1.0]), (2, [2.0, 3.0]), (4, [4.0, 5.0])]


def test_array_rows_without_series_column_and_null_or_empty_arrays(spark):
    df = spark.createDataFrame([([1.0, 2.0, 3.0],), (None,), ([],)], "x array<float>")
    out = SequenceWindower(inputCol="x", windowSize=2, targetMode="value").transform(df)
    assert out.columns == ["windowStart", "features", "label"]
    assert [(r[0], r[1], r[2]) for r in out.collect()] == [(0, [1.0, 2.0], 3.0)]


def test_long_series_is_windowed_without_loss(spark):
    n, m, s = 200_000, 16, 16
    df = spark.range(n).selectExpr("id AS t", "CAST(id AS DOUBLE) AS x")
    out = SequenceWindower(inputCol="x", orderCol="t", windowSize=m, step=s, targetMode="value").transform(df)
    assert out.count() == (n - m - 1) // s + 1
    last = out.orderBy("t", ascending=False).first()
    assert last["features"] == [float(v) for v in range(last["t"], last["t"] + m)] and last["label"] == last["t"] + m


@pytest.mark.parametrize(
    "params, error, message",
    [
        (dict(inputCol="x", windowSize=0), ValueError, "windowSize must be > 0"),
        (dict(inputCol="x", windowSize=2, step=0), ValueError, "step must be > 0"),
        (dict(inputCol="x", windowSize=2, horizon=-1), ValueError, "horizon must be > 0"),
        (dict(inputCol="x", windowSize=2, targetMode="next"), ValueError, "targetMode must be one of"),
        (dict(inputCol="x"), ValueError, "windowSize is not set"),
        (dict(inputCol="x", inputCols=["x"], windowSize=2), ValueError, "exactly one of inputCol and inputCols"),
        (dict(inputCol="nope", windowSize=2), ValueError, "'nope' not found"),
        (dict(inputCol="name", windowSize=2, orderCol="t"), TypeError, "'name' must be numeric"),
        (dict(inputCols=["x", "arr"], windowSize=2, orderCol="t"), TypeError, "mix array and scalar"),
        (dict(inputCol="x", windowSize=2), ValueError, "orderCol must be set"),
        (dict(inputCol="x", windowSize=2, orderCol="t", targetMode="value", targetCol="name"), TypeError, "'name' must be numeric"),
        (dict(inputCol="arr", windowSize=2, orderCol="t"), ValueError, "orderCol is for long format"),
        (dict(inputCol="arr", windowSize=2, targetMode="value", targetCol="x"), TypeError, "'x' must be a numeric array"),
        (dict(inputCol="x", windowSize=2, orderCol="t", outputCol="t"), ValueError, "distinct names"),
    ],
)
def test_invalid_params_and_columns_raise_before_any_job(spark, params, error, message):
    df = spark.createDataFrame([(1, 0.5, "a", [1.0])], "t int, x double, name string, arr array<double>")
    tracker, group = spark.sparkContext.statusTracker(), f"windower-validation-{id(params)}"
    spark.sparkContext.setJobGroup(group, "validation must not run jobs")
    try:
        with pytest.raises(error, match=message):
            SequenceWindower(**params).transform(df)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert tracker.getJobIdsForGroup(group) == []


def test_params_defaults_copy_and_persistence(spark, tmp_path):
    windower = SequenceWindower(inputCol="x", windowSize=8)
    assert (windower.getStep(), windower.getHorizon(), windower.getTargetMode()) == (1, 1, "none")
    assert (windower.getOutputCol(), windower.getLabelCol(), windower.getSeriesCol()) == ("features", "label", None)
    copy = windower.copy().setStep(4).setTargetMode("sequence")
    assert windower.getStep() == 1 and copy.getStep() == 4
    df = spark.createDataFrame([("a", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])], "sid string, x array<double>")
    copy.setWindowSize(2).setSeriesCol("sid")
    model = Pipeline(stages=[copy]).fit(df)
    model.write().overwrite().save(str(tmp_path / "windower"))
    loaded = PipelineModel.load(str(tmp_path / "windower"))
    assert loaded.stages[0].getTargetMode() == "sequence" and loaded.stages[0].getWindowSize() == 2
    assert loaded.transform(df).collect() == model.transform(df).collect()
