"""The README's example runs as written and does what its comments say.

The README is also the package's long description, so its example is what
most users copy first: the Python block under "## Example" runs here
unchanged (its save path is relative: the test runs it in a temporary
working directory).
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def readme_example() -> str:
    """The first ```python block after the "## Example" heading."""
    text = README.read_text()
    section = text.split("\n## Example\n", 1)
    assert len(section) == 2, "README.md has no '## Example' section"
    block = re.search(r"```python\n(.*?)```", section[1], re.DOTALL)
    assert block is not None, "README.md's Example section has no python block"
    return block.group(1)


def test_the_readme_example_trains_a_digits_classifier_that_saves_and_reloads(spark, tmp_path, monkeypatch, capsys, report):
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)

    model, reloaded, test = namespace["model"], namespace["reloaded"], namespace["test"]
    # 10 balanced classes: chance is about 0.1; an MLP on the 8x8 digits reaches well above 0.8.
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(test))
    report("README example: digits test accuracy", accuracy)
    assert accuracy > 0.8
    assert namespace["accuracy"] == pytest.approx(accuracy)
    assert f"test accuracy {accuracy:.3f}" in capsys.readouterr().out
    assert [record["epoch"] for record in model.history] == list(range(1, 16))

    assert type(reloaded).__name__ == "MLPClassifierModel"
    assert (tmp_path / "models" / "digits-mlp" / "weights.safetensors").is_file()
    ordered = ["features", "label"]
    before = model.transform(test).orderBy(*ordered).select("prediction", "probability").collect()
    after = reloaded.transform(test).orderBy(*ordered).select("prediction", "probability").collect()
    assert [r.prediction for r in after] == [r.prediction for r in before]
    flat = [p for r in before for p in r.probability]
    assert [p for r in after for p in r.probability] == pytest.approx(flat, abs=1e-6)
