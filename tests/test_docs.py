"""The documentation site builds with warnings as errors, and what it generates is right.

The site is built once (``mkdocs build --strict``) into a temporary directory;
the tests then read the built HTML and hold it against independent sources:
each stage's Params as pyspark reports them on a bare instance, each declared
constraint against the check that enforces it, and each performance figure
against the JSON file it came from.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the documentation tools are not installed (pip install -e '.[docs]')")

import sparkneural.baselines  # noqa: E402
import sparkneural.estimators  # noqa: E402
import sparkneural.preprocessing  # noqa: E402
import sparkneural.text  # noqa: E402
from pyspark.ml.param import Params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = "sparkneural.estimators.base.TorchEstimator"
PACKAGES = (sparkneural.estimators, sparkneural.preprocessing, sparkneural.text, sparkneural.baselines)
STAGES = [
    obj
    for package in PACKAGES
    for obj in (getattr(package, name) for name in package.__all__)
    if isinstance(obj, type) and issubclass(obj, Params)
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts; ``ids`` maps a table's id to its index."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.ids: dict[str, int] = {}
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
            if (table_id := dict(attrs).get("id")) is not None:
                assert table_id not in self.ids, f"two tables with id {table_id}"
                self.ids[table_id] = len(self.tables) - 1
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(text: str) -> _Tables:
    parser = _Tables()
    parser.feed(text)
    return parser


def _reference_html(site: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((site / "reference").glob("*/index.html")))


def _section(page: str, anchor: str) -> str:
    """The HTML from the heading with id ``anchor`` to the next heading of the same level."""
    start = page.index(f'id="{anchor}"')
    level = page.rfind("<h", 0, start)
    tag = page[level:level + 3]
    end = page.find(tag + " ", start)
    return page[start:end if end > 0 else len(page)]


def _param_rows(parsed: _Tables, path: str) -> dict[str, tuple[str, str]]:
    """name -> (default, constraint) of the Params table of the class at ``path``."""
    rows = parsed.tables[parsed.ids[f"params-{path}"]]
    assert rows[0] == ["Param", "Default", "Constraint", "Description"]
    return {row[0]: (row[1], row[2]) for row in rows[1:]}


def _default_matches(cell: str, instance: Params, param) -> bool:
    if not instance.hasDefault(param):
        return cell == "no default"
    return ast.literal_eval(cell.replace("<uid>", instance.uid)) == instance.getOrDefault(param)


def test_the_public_stages_are_collected():
    names = {cls.__name__ for cls in STAGES}
    assert {"TorchEstimator", "MLPClassifier", "WaveNetModel", "SequenceWindower", "BertEmbeddings", "CenteredPCA"} <= names


@pytest.mark.parametrize("cls", STAGES, ids=lambda cls: cls.__name__)
def test_every_param_of_a_stage_is_in_its_reference_with_its_default(site, cls):
    page = _reference_html(site)
    parsed = _tables(page)
    path = f"{cls.__module__}.{cls.__qualname__}"
    assert f'id="{path}"' in page, f"{path} has no section in the API reference"
    section = _section(page, path)
    own = _param_rows(parsed, path) if f"params-{path}" in parsed.ids else {}
    shared = {}
    if f'href="#{SHARED}"' in section and path != SHARED:  # "every Param of TorchEstimator, with the default given there"
        shared = _param_rows(parsed, SHARED)
    instance = cls()
    for param in instance.params:
        where = own if param.name in own else shared
        assert param.name in where, f"{path}: Param {param.name} is missing from its reference"
        default = where[param.name][0]
        assert _default_matches(default, instance, param), (
            f"{path}: {param.name} shows default {default}, pyspark says "
            f"{instance.getOrDefault(param) if instance.hasDefault(param) else 'no default'}")
    assert set(own) <= {p.name for p in instance.params}


def _probe_values(constraint: str) -> tuple[list, list]:
    """(accepted, refused) values that the words of an Interval or Options constraint promise."""
    accepted, refused = [], []
    if constraint.endswith(" or None"):
        accepted.append(None)
        constraint = constraint[: -len(" or None")]
    if constraint.startswith("one of "):
        options = [ast.literal_eval(v.strip()) for v in constraint[len("one of "):].strip("[]").split(", ")]
        accepted += options
        refused.append(max(options) + 1 if all(isinstance(v, int) for v in options) else "not-one-of-them")
    elif match := re.fullmatch(r"a value (>=|>|<=|<) (\S+)", constraint):
        op, bound = match.group(1), float(match.group(2))
        inside, outside = {">=": (bound, bound - 1), ">": (bound + 1, bound), "<=": (bound, bound + 1), "<": (bound - 1, bound)}[op]
        accepted.append(inside)
        refused.append(outside)
    elif match := re.fullmatch(r"a value in ([\[(])(\S+), (\S+)([\])])", constraint):
        low, high = float(match.group(2)), float(match.group(3))
        (accepted if match.group(1) == "[" else refused).append(low)
        (accepted if match.group(4) == "]" else refused).append(high)
        accepted.append((low + high) / 2)
    return accepted, refused


def test_each_shared_constraint_says_what_its_check_accepts(site):
    from sparkneural.estimators import TorchEstimator
    from sparkneural.estimators.params import check_declared

    rows = _param_rows(_tables(_reference_html(site)), SHARED)
    probed = 0
    for name, (_, constraint) in rows.items():
        accepted, refused = _probe_values(constraint)
        for value in accepted:
            estimator = TorchEstimator()
            estimator._set(**{name: value})
            check_declared(estimator)
        for value in refused:
            estimator = TorchEstimator()
            estimator._set(**{name: value})
            with pytest.raises(ValueError, match=name):
                check_declared(estimator)
        probed += bool(accepted or refused)
    assert probed >= 15, f"only {probed} constraints could be read as an interval or a set of options"


def test_examples_render_as_code_and_angle_brackets_as_text(site):
    page = (site / "reference" / "estimators" / "index.html").read_text()
    section = _section(page, "sparkneural.estimators.mlp.MLPClassifier")
    text = html.unescape(re.sub(r"<[^>]+>", "", section))
    assert "array<float>/array<double>" in text
    assert re.search(r'<div class="highlight"><pre>.*?&gt;&gt;&gt; </span>.*?MLPClassifier', section, re.S)
    assert "<blockquote" not in _reference_html(site)


def _value(cell: str) -> float | None:
    if cell == "-":
        return None
    match = re.match(r"-?[\d,]*\.?\d+(?:e[-+]?\d+)?", cell)
    assert match, f"no number in {cell!r}"
    return float(match.group(0).replace(",", ""))


def _git_last_commit(path: Path) -> str | None:
    try:
        done = subprocess.run(["git", "log", "-1", "--format=%H", "--", str(path)], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() or None


def test_every_performance_figure_equals_its_json(site):
    page = (site / "performance" / "index.html").read_text()
    sections = re.split(r"<h2 ", page)[1:]
    files = sorted(RESULTS.glob("*.json"))
    assert len(sections) == len(files)
    for path in files:
        record = json.loads(path.read_text())
        [section] = [s for s in sections if f"<code>{path.name}</code>" in s.split("</h2>")[0]]
        text = html.unescape(re.sub(r"<[^>]+>", "", section))
        if record.get("date"):
            assert record["date"].replace("T", " ") in text
        if pyspark := record.get("versions", {}).get("pyspark"):
            assert f"pyspark {pyspark}" in text
        assert record["machine"]["cpu"] in text
        if commit := record.get("commit") or _git_last_commit(path):
            assert commit[:10] in text, f"{path.name}: commit {commit[:10]} not shown"
        tables = _tables(section).tables
        if record.get("figures"):
            [rows] = tables
            header, body = rows[0], rows[1:]
            assert len(body) == len(record["figures"])
            for row, figure in zip(body, record["figures"]):
                cells = dict(zip(header, row))
                assert cells["figure"] == figure["figure"]
                assert _value(cells["value"]) == figure["value"], f"{path.name}: {figure['figure']}"
                assert cells["target"] == (figure["target"] or "-")
                assert cells["met"] == {True: "yes", False: "no", None: "-"}[figure["met"]]
        else:
            assert tables, f"{path.name}: no table"
            for rows in tables:
                header, body = rows[0], rows[1:]
                records = record[header[0]]
                assert [row[0] for row in body] == list(records)
                for row in body:
                    for column, cell in zip(header[1:], row[1:]):
                        assert _value(cell) == records[row[0]].get(column), f"{path.name}: {row[0]} {column}"


def test_the_performance_page_prints_alone():
    done = subprocess.run([sys.executable, "docs/hooks/performance.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    headings = re.findall(r"^## `(.+)`$", done.stdout, re.M)
    assert sorted(headings) == sorted(p.name for p in RESULTS.glob("*.json"))


def test_benchmark_results_record_the_commit_checked_out(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    out = tmp_path / "probe.json"
    script = ("import sys; sys.path.insert(0, 'benchmarks'); import common; "
              f"r = common.Results('probe', quick=True); r.add('a figure', 1.5, 'x'); r.finish(out={str(out)!r})")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["commit"] == head.stdout.strip()
