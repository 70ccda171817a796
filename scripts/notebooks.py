"""Build each notebooks/NAME.ipynb from its Databricks source notebooks/NAME.py.

    python scripts/notebooks.py           # rewrite every .ipynb from its .py
    python scripts/notebooks.py --check   # exit 1 if an .ipynb differs from what its .py gives

The ``.py`` files are the ones to edit: Databricks imports them as notebooks
(first line ``# Databricks notebook source``, cells separated by
``# COMMAND ----------``, markdown cells written as ``# MAGIC`` lines).
The ``.ipynb`` files are generated without outputs and with fixed cell ids,
so the same source always gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def parse_source(text: str) -> list[tuple[str, str]]:
    """The cells of a Databricks source notebook, as (kind, source) with kind "markdown" or "code"."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise ValueError(f"expected the first line to be {HEADER!r}, found {lines[0] if lines else ''!r}")
    chunks: list[list[str]] = [[]]
    for line in lines[1:]:
        if line.strip() == SEPARATOR:
            chunks.append([])
        else:
            chunks[-1].append(line)
    cells = []
    for chunk in chunks:
        source = "\n".join(chunk).strip("\n")
        if not source.strip():
            continue
        if source.startswith(f"{MAGIC} %md"):
            cells.append(("markdown", _markdown(source)))
        else:
            cells.append(("code", source))
    return cells


def _markdown(source: str) -> str:
    body = []
    for number, line in enumerate(source.splitlines()):
        if not line.startswith(MAGIC):
            raise ValueError(f"markdown cell line {line!r}: every line must start with {MAGIC!r}")
        text = line[len(MAGIC):]
        text = text[1:] if text.startswith(" ") else text
        if number == 0:
            text = text[len("%md"):].lstrip()
            if not text:
                continue
        body.append(text)
    return "\n".join(body).strip("\n")


def build(source: Path) -> nbformat.NotebookNode:
    """The .ipynb notebook (no outputs) holding the cells of a Databricks source file."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for index, (kind, text) in enumerate(parse_source(source.read_text())):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(text, id=f"{source.stem[:40]}-{index:02d}"))
    nbformat.validate(notebook)
    return notebook


def render(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report .ipynb files that differ from their .py")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(NOTEBOOKS.glob("*.py")):
        target = source.with_suffix(".ipynb")
        text = render(build(source))
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target.name)
        if not args.check:
            target.write_text(text)
    if args.check and stale:
        print("out of date (run python scripts/notebooks.py):", ", ".join(stale), file=sys.stderr)
        return 1
    for name in stale:
        print("wrote", f"notebooks/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
