"""Every public estimator, model and transformer shows a runnable example in its docstring.

Each class docstring's ``>>>`` lines run as a doctest on tiny data, given only
the suite's ``spark`` session: the example builds its own DataFrame and
imports what it uses. A public class without any example fails too.
"""

import doctest

import pytest

import sparkneural.baselines
import sparkneural.estimators
import sparkneural.preprocessing
import sparkneural.text

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.stacks]

PACKAGES = (sparkneural.estimators, sparkneural.preprocessing, sparkneural.text, sparkneural.baselines)
PUBLIC_CLASSES = [
    obj
    for package in PACKAGES
    for obj in (getattr(package, name) for name in package.__all__)
    if isinstance(obj, type)
]
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_the_public_classes_are_collected():
    names = {cls.__name__ for cls in PUBLIC_CLASSES}
    assert {"MLPClassifier", "TorchModel", "SequenceWindower", "BertEmbeddings", "CenteredPCAModel"} <= names
    assert len(names) == len(PUBLIC_CLASSES)


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda cls: cls.__name__)
def test_docstring_example_runs(cls, spark):
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(cls, cls.__name__, globs={"spark": spark})
    examples = sum(len(test.examples) for test in tests)
    assert examples > 0, f"{cls.__module__}.{cls.__qualname__}: the docstring has no >>> example"
    runner = doctest.DocTestRunner(optionflags=OPTIONS, verbose=False)
    report: list[str] = []
    failed = sum(runner.run(test, out=report.append).failed for test in tests)
    assert failed == 0, "".join(report)
