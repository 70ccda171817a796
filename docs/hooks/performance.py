"""The performance page, generated from ``benchmarks/results/*.json``; never typed by hand.

As a MkDocs hook (``hooks:`` in ``mkdocs.yml``) it adds ``performance.md`` to
the site each time the site is built, so the page cannot go stale. Run alone,
``python docs/hooks/performance.py`` prints the same Markdown.

Each results file becomes one table, headed by when, at which commit, on which
Spark line and on which machine it was measured. Files written before the
benchmarks recorded their commit are labelled with the commit that last
changed them in git ("results committed in ...").
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SHORT = 10  # characters of a commit hash shown
SUMMARY = "summary.json"  # written by run_all.py: every figure of one run of all benchmarks

INTRO = """\
# Performance

Every table on this page is generated from `benchmarks/results/*.json` when
the site is built (`python docs/hooks/performance.py` prints this page).
Each benchmark script in `benchmarks/` writes one of these files; most
figures are ratios of two measurements taken alternately in the same run on
the same cores, because the machines they ran on are shared and absolute
times drift between runs. A *target* is the figure a benchmark is held to;
*met* says whether this run met it.
"""


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit_text(path: Path, record: dict[str, Any]) -> str:
    """The recorded commit; else the commit that last changed ``path``; else "not recorded"."""
    if record.get("commit"):
        return f"`{record['commit'][:SHORT]}`"
    last = _git("log", "-1", "--format=%H", "--", str(path))
    if not last:
        return "not recorded"
    changed = _git("status", "--porcelain", "--", str(path))
    return f"results committed in `{last[:SHORT]}`" + (" (changed since, not committed)" if changed else "")


def spark_text(record: dict[str, Any]) -> str:
    version = (record.get("versions") or {}).get("pyspark")
    return f"pyspark {version}" if version else "not recorded"


def machine_text(machine: dict[str, Any] | None) -> str:
    if not machine:
        return "not recorded"
    parts = [machine.get("cpu") or "CPU not recorded"]
    if machine.get("logical_cores") is not None:
        cores = f"{machine['logical_cores']} logical cores"
        available = machine.get("cores_available")
        if available is not None and available != machine["logical_cores"]:
            cores += f" ({available} available)"
        parts.append(cores)
    if machine.get("memory_gib") is not None:
        parts.append(f"{machine['memory_gib']} GiB memory")
    if "gpu" not in machine:
        parts.append("GPU not recorded")
    elif machine["gpu"] is None:
        parts.append("no GPU")
    else:
        gpu = machine["gpu"]
        parts.append(f"{gpu['count']} x {gpu['name']} ({gpu['memory_gib']} GiB)")
    if machine.get("load_average_at_start"):
        parts.append(f"load average {machine['load_average_at_start'][0]} at the start")
    return ", ".join(parts)


def number_text(value: Any, unit: str = "") -> str:
    """A recorded number exactly as recorded (thousands separated), with its unit."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _cell(str(value))
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.15g}"
    if unit == "x":
        return f"{text}x"
    return f"{text} {unit}".strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _script_summary(record: dict[str, Any], path: Path) -> str:
    """The first paragraph of the docstring of the script that wrote ``path``."""
    names = ["run_all"] if path.name == SUMMARY else [record.get("benchmark") or path.stem]
    names.append(names[0].split("-")[0])
    for name in names:
        script = ROOT / "benchmarks" / f"{name}.py"
        if script.exists():
            doc = ast.get_docstring(ast.parse(script.read_text())) or ""
            return f"`benchmarks/{name}.py`: " + " ".join(doc.split("\n\n")[0].split())
    return ""


def figures_table(figures: list[dict[str, Any]]) -> list[str]:
    by_benchmark = any("benchmark" in f for f in figures)
    header = (["benchmark"] if by_benchmark else []) + ["figure", "value", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for f in figures:
        row = ([_cell(f.get("benchmark", ""))] if by_benchmark else []) + [
            _cell(f["figure"]), number_text(f["value"], f.get("unit", "")), _cell(f.get("target") or "-"),
            {True: "yes", False: "no", None: "-"}[f.get("met")],
        ]
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"- {_cell(f['figure'])}: {f['note']}" for f in figures if f.get("note")]
    return lines + (["", "Notes:", "", *notes] if notes else [])


def grid_table(name: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    """A table of a dict of records (e.g. driver_memory's stages): one row per key."""
    columns = list(dict.fromkeys(column for record in rows.values() for column in record))
    lines = ["| " + " | ".join([name, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for key, record in rows.items():
        lines.append("| " + " | ".join([_cell(key), *(number_text(record.get(c)) for c in columns)]) + " |")
    return lines


def _grids(record: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Top-level dicts whose values are all flat records of numbers."""
    return {
        key: value for key, value in record.items()
        if key not in ("machine", "settings", "versions") and isinstance(value, dict) and value
        and all(isinstance(v, dict) and all(isinstance(x, (int, float, type(None))) for x in v.values()) for v in value.values())
    }


def section(path: Path) -> str:
    record = json.loads(path.read_text())
    date = record.get("date", "not recorded").replace("T", " ")
    facts = [
        f"**Measured** {date}",
        f"**commit** {commit_text(path, record)}",
        f"**Spark line** {spark_text(record)}",
        f"**machine** {machine_text(record.get('machine'))}",
    ]
    if record.get("quick"):
        facts.append("quick run (smaller sizes)")
    if "targets_met" in record:
        facts.append(f"{record['targets_met']} of {record.get('targets')} targets met")
    lines = [f"## `{path.name}`", ""]
    if summary := _script_summary(record, path):
        lines += [summary, ""]
    lines += [" · ".join(facts), ""]
    if record.get("figures"):
        lines += figures_table(record["figures"])
    else:  # a benchmark that records its measurements as records (e.g. driver_memory's stages)
        for name, rows in _grids(record).items():
            lines += grid_table(name, rows) + [""]
    if record.get("note"):
        lines += ["", f"Note: {record['note']}"]
    return "\n".join(lines).rstrip() + "\n"


def results_files(results: Path = RESULTS) -> list[Path]:
    """Every results file, the run-all summary last."""
    return sorted(results.glob("*.json"), key=lambda p: (p.name == SUMMARY, p.name))


def markdown(results: Path = RESULTS) -> str:
    return "\n".join([INTRO, *(section(path) for path in results_files(results))])


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "performance.md", content=markdown()))
    return files


if __name__ == "__main__":
    print(markdown(), end="")
