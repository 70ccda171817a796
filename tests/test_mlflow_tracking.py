"""MLflow tracking of a fit, against a real MLflow file store in a temporary directory.

mlflow-skinny 3 keeps the file store behind ``MLFLOW_ALLOW_FILE_STORE=true``
(its database stores need SQLAlchemy, which skinny leaves out).
"""

import subprocess
import sys

import pytest

from injected_faults import kill_at
from sparkneural.estimators import MLPClassifier
from sparkneural.tracking import ENABLED_CONF

FIT = dict(hiddenLayers=[8], epochs=3, batchSize=32, learningRate=0.01, seed=5, backend="local", verbose=0)
SUMMARY = {"best_epoch", "best_val_loss", "restarts"}


@pytest.fixture
def mlflow(tmp_path, monkeypatch):
    """mlflow, tracking into an empty file store of this test's own; no run left active after it."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (the test extra has mlflow-skinny)")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    before = mlflow.get_tracking_uri()
    uri = (tmp_path / "mlruns").as_uri()
    # set_tracking_uri also exports MLFLOW_TRACKING_URI (for child processes): monkeypatch restores it afterwards.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        yield mlflow
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(before)


@pytest.fixture(scope="module")
def small(digits_df):
    return digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label").limit(300).cache()


def _logged(mlflow, run_id):
    """{metric: [(step, value), ...]} of a run, read back from the store."""
    client = mlflow.MlflowClient()
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def _fit_in_run(mlflow, data, **params):
    with mlflow.start_run() as run:
        model = MLPClassifier(**{**FIT, **params}).fit(data)
    return model, run.info.run_id


def test_each_history_metric_is_logged_once_per_epoch_at_step_epoch_with_the_history_s_value(mlflow, small):
    model, run_id = _fit_in_run(mlflow, small, validationFraction=0.3)
    logged = _logged(mlflow, run_id)
    history_keys = {k for record in model.history for k in record} - {"epoch"}
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= history_keys
    assert set(logged) == history_keys | SUMMARY
    for key in history_keys:
        assert logged[key] == [(record["epoch"], pytest.approx(record[key])) for record in model.history], key


def test_best_epoch_is_the_epoch_with_the_lowest_validation_loss_in_the_history(mlflow, small):
    model, run_id = _fit_in_run(mlflow, small, validationFraction=0.3, epochs=4, learningRate=0.05)
    losses = [record["val_loss"] for record in model.history]
    best = losses.index(min(losses)) + 1
    logged = _logged(mlflow, run_id)
    assert logged["best_epoch"] == [(0, best)]
    assert logged["best_val_loss"] == [(0, pytest.approx(min(losses)))]
    assert logged["restarts"] == [(0, 0)]


def test_without_validation_no_best_epoch_is_logged(mlflow, small):
    model, run_id = _fit_in_run(mlflow, small, epochs=2)
    logged = _logged(mlflow, run_id)
    assert set(logged) == {"loss", "accuracy", "seconds", "restarts"}
    assert [step for step, _ in logged["loss"]] == [1, 2]


def test_with_the_mlflowLogging_param_off_nothing_is_logged(mlflow, small):
    _, run_id = _fit_in_run(mlflow, small, epochs=1, mlflowLogging=False)
    assert _logged(mlflow, run_id) == {}


@pytest.mark.parametrize("key", [ENABLED_CONF, "spark.sparkdl.mlflow.enabled"])
def test_with_the_conf_off_nothing_is_logged_under_either_spelling(mlflow, small, spark, key, recwarn):
    spark.conf.set(key, "false")
    try:
        _, run_id = _fit_in_run(mlflow, small, epochs=1)
    finally:
        spark.conf.unset(key)
    assert _logged(mlflow, run_id) == {}
    if key != ENABLED_CONF:
        assert any(issubclass(w.category, FutureWarning) and ENABLED_CONF in str(w.message) for w in recwarn)


def test_a_malformed_conf_is_one_error_naming_it(mlflow, small, spark):
    spark.conf.set(ENABLED_CONF, "sometimes")
    try:
        with pytest.raises(ValueError, match=r"spark\.sparkneural\.mlflow\.enabled: expected true or false, found 'sometimes'"):
            MLPClassifier(**{**FIT, "epochs": 1}).fit(small)
    finally:
        spark.conf.unset(ENABLED_CONF)


def test_without_an_active_run_no_run_is_created(mlflow, small):
    MLPClassifier(**{**FIT, "epochs": 1}).fit(small)
    assert mlflow.active_run() is None
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_a_failing_tracking_store_warns_once_and_the_fit_goes_on(mlflow, small):
    with mlflow.start_run() as run:
        mlflow.delete_run(run.info.run_id)  # every write to the run fails until it is restored
        with pytest.warns(RuntimeWarning, match="logging to MLflow run .* failed") as caught:
            model = MLPClassifier(**FIT).fit(small)
        mlflow.MlflowClient().restore_run(run.info.run_id)
    assert _logged(mlflow, run.info.run_id) == {}
    assert len([w for w in caught if "sparkneural" in str(w.message)]) == 1
    assert [record["epoch"] for record in model.history] == [1, 2, 3]


def test_autolog_runs_get_the_params_and_the_epoch_metrics(mlflow, small):
    import mlflow.pyspark.ml

    mlflow.pyspark.ml.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        model = MLPClassifier(**FIT).fit(small)
    finally:
        mlflow.pyspark.ml.autolog(disable=True)
    run = mlflow.last_active_run()
    assert run.data.params["epochs"] == "3" and run.data.params["hiddenLayers"] == "[8]"
    logged = _logged(mlflow, run.info.run_id)
    assert logged["loss"] == [(record["epoch"], pytest.approx(record["loss"])) for record in model.history]


@pytest.mark.timeout(300)
def test_horovod_epochs_are_logged_as_they_arrive_once_each_across_a_restart_even_when_quiet(mlflow, small):
    with mlflow.start_run() as run:
        estimator = MLPClassifier(**{**FIT, "backend": "horovod", "numProc": 2, "verbose": 0, "maxRestarts": 1})
        estimator._test_hooks = (kill_at(2, rank=1),)
        model = estimator.fit(small)
    (restart,) = model.restarts
    client = mlflow.MlflowClient()
    loss = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in loss] == [(r["epoch"], pytest.approx(r["loss"])) for r in model.history]
    # Epoch 1 reached the driver, and was logged, before the lost rank was noticed; epochs 2 and 3 after the restart.
    assert loss[0].timestamp <= restart["failedAt"] * 1000 <= loss[1].timestamp
    assert _logged(mlflow, run.info.run_id)["restarts"] == [(0, 1)]


def test_epoch_records_reach_the_driver_s_callback_through_the_report_folder_of_a_connect_client(tmp_path):
    from sparkneural.training.reports import Reporter, ReportFolder

    record = {"epoch": 1, "loss": 0.5, "seconds": 0.1}
    received = []
    board = ReportFolder(str(tmp_path / "reports"), verbose=0)
    board.on_epoch = received.append
    rank = Reporter(board.address(0), 0)
    rank.epoch(record, 3)
    rank.end()
    board.close()
    assert received == [record]


def test_without_mlflow_imported_a_fit_s_tracking_neither_logs_nor_imports_it():
    check = (
        "import sys\n"
        "from sparkneural.tracking import FitTracking, fit_tracking\n"
        "class Session:\n"
        "    conf = {}\n"
        "with fit_tracking(Session(), True) as tracking:\n"
        "    assert type(tracking) is FitTracking\n"
        "assert 'mlflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
