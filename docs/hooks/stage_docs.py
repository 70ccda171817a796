"""A griffe extension for the API reference: docstrings read right as Markdown, and a Params table per stage.

mkdocstrings loads this file (``extensions:`` in ``mkdocs.yml``). Docstrings are
read statically by griffe; the Params tables come from the stage classes
themselves, imported here (no Spark session is started: a bare stage
instance needs none). Each row comes from the Param's single declaration:
its doc, its default as an instance of the class sets it, and, for Params
declared with ``sparkneural.training.declared.Declared``, its constraint.
"""

from __future__ import annotations

import html
import importlib
import re
from typing import Any

import griffe

STAGE_PACKAGES = ("sparkneural.estimators", "sparkneural.preprocessing", "sparkneural.text", "sparkneural.baselines")
SHARED_BASE = "sparkneural.estimators.base.TorchEstimator"
NO_DEFAULT = "no default"
_PROMPT = re.compile(r"^(\s*)>>>")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def fence_doctests(text: str) -> str:
    """Wrap each run of ``>>>`` lines (with their ``...`` and output lines) in a ``pycon`` code fence.

    Markdown would otherwise read ``>>>`` as three nested block quotes.
    """
    lines, out, index = text.split("\n"), [], 0
    in_fence = False
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _PROMPT.match(line)
        if not match:
            out.append(line)
            index += 1
            continue
        indent = match.group(1)
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}```pycon")
        while index < len(lines) and lines[index].strip():
            out.append(lines[index])
            index += 1
        out += [f"{indent}```", ""]
    return "\n".join(out).rstrip("\n")


def escape_angle_brackets(text: str) -> str:
    """``<`` as text outside code: docstrings are written for ``help()``, where ``array<float>`` is no HTML tag."""
    out, in_fence, previous_blank, in_code_block = [], False, True, False
    for line in text.split("\n"):
        blank = not line.strip()
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not blank:
            # an indented code block starts after a blank line and lasts while its lines stay indented
            in_code_block = line.startswith("    ") and (previous_blank or in_code_block)
            if not in_code_block:
                line = _escape_outside_code_spans(line)
        out.append(line)
        previous_blank = blank
    return "\n".join(out)


def _escape_outside_code_spans(line: str) -> str:
    pieces, start = [], 0
    for span in _CODE_SPAN.finditer(line):
        pieces += [line[start:span.start()].replace("<", "&lt;"), span.group(0)]
        start = span.end()
    return "".join(pieces + [line[start:].replace("<", "&lt;")])


def constraint_text(check: Any) -> str:
    """What a declared constraint accepts, in words, from its public attributes."""
    if check is None:
        return ""
    if callable(getattr(check, "describe", None)):
        return check.describe()
    if callable(getattr(check, "allowed", None)):
        text = "one of " + ", ".join(repr(value) for value in check.allowed())
        return text + (" or None" if getattr(check, "optional", False) else "")
    return "see the description"


def default_text(instance: Any, param: Any) -> str:
    """The default as a Python literal; a default made from the instance's uid shows ``<uid>``."""
    if not instance.hasDefault(param):
        return NO_DEFAULT
    return repr(instance.getOrDefault(param)).replace(instance.uid, "<uid>")


def params_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, default, constraint, description) for every Param of ``cls``, by name."""
    from sparkneural.estimators.params import declarations

    instance, declared = cls(), declarations(cls)
    rows = []
    for param in sorted(instance.params, key=lambda p: p.name):
        check = declared[param.name].check if param.name in declared else None
        rows.append((param.name, default_text(instance, param), constraint_text(check), param.doc))
    return rows


def params_table(path: str, rows: list[tuple[str, str, str, str]]) -> str:
    cells = "\n".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{_default_cell(default)}</td>"
        f"<td>{html.escape(constraint)}</td><td>{html.escape(doc)}</td></tr>"
        for name, default, constraint, doc in rows
    )
    return (f'<table id="params-{path}">\n<thead><tr><th>Param</th><th>Default</th><th>Constraint</th>'
            f"<th>Description</th></tr></thead>\n<tbody>\n{cells}\n</tbody>\n</table>")


def _default_cell(default: str) -> str:
    return default if default == NO_DEFAULT else f"<code>{html.escape(default)}</code>"


def params_section(path: str, cls: type) -> str:
    """The Markdown appended to a stage's docstring.

    A stage built on the shared Params lists only the Params it adds or
    whose default it changes, and links to the shared table.
    """
    from sparkneural.estimators.params import TorchParams

    rows = params_rows(cls)
    intro = "**Params**:"
    if issubclass(cls, TorchParams) and path != SHARED_BASE:
        shared = {row[0]: row[1] for row in params_rows(_class(SHARED_BASE))}
        rows = [row for row in rows if shared.get(row[0]) != row[1]]
        link = f"[`TorchEstimator`][{SHARED_BASE}]"
        intro = (f"**Params**: every Param of {link}, with the default given there, and these:"
                 if rows else f"**Params**: every Param of {link}, with the default given there.")
        if not rows:
            return intro
    return f"{intro}\n\n{params_table(path, rows)}"


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _is_stage(path: str) -> type | None:
    from pyspark.ml import Estimator, Transformer

    try:
        cls = _class(path)
    except AttributeError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, (Estimator, Transformer)) else None


class ReferenceDocstrings(griffe.Extension):
    """Docstrings written for ``help()`` read right as Markdown, and each public stage's ends with its Params.

    ``>>>`` examples become code blocks (Markdown would read ``>>>`` as block
    quotes) and ``<`` outside code stays text (``array<float>`` is no HTML tag).
    """

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = escape_angle_brackets(fence_doctests(obj.docstring.value))
        if obj.is_class and not obj.name.startswith("_") and obj.path.startswith(STAGE_PACKAGES):
            if (stage := _is_stage(obj.path)) is not None:
                text = f"{text}\n\n{params_section(obj.path, stage)}"
        obj.docstring.value = text
