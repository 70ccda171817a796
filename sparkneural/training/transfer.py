"""Transfer learning: initialise a network from saved weights, and which parameters stay frozen.

Pure torch and numpy, no Spark: the estimator reads the saved weights on
the driver, ``match_weights`` decides what goes where, and every rank loads
the result before its first step.

Matching (``mode``):

- ``name``: a saved tensor initialises the target tensor of the same name
  and shape (e.g. an MLPClassifier's hidden layers from another
  MLPClassifier with a different head).
- ``order``: tensors are paired in definition order, each source going on
  where the previous one stopped and ending at its first shape mismatch. An
  autoencoder's encoder (``prefixes=["encoder.", "code."]``) then
  initialises the first layers of an MLP; a list of autoencoders trained
  layer by layer (greedy layer-wise pre-training) initialises one layer each.

``prefixes`` keeps only the saved tensors whose names start with one of them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

MATCH_MODES = ("name", "order")


def match_weights(
    target: Mapping[str, tuple[int, ...]],
    sources: Sequence[Mapping[str, np.ndarray]],
    mode: str = "name",
    prefixes: Sequence[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """(weights to load by target name, report) for a target given as name -> shape.

    The report holds ``loaded`` (target name <- source index and name),
    ``new`` (target names left as initialised) and ``skipped`` (source
    tensors not used, with the reason).
    """
    if mode not in MATCH_MODES:
        raise ValueError(f"initFromMatch: expected one of {list(MATCH_MODES)}, found {mode!r}")
    chosen: dict[str, np.ndarray] = {}
    loaded: list[str] = []
    skipped: list[str] = []
    names = list(target)
    position = 0  # order mode: the next target tensor to fill
    for index, source in enumerate(sources):
        items = [(k, v) for k, v in source.items() if not prefixes or any(k.startswith(p) for p in prefixes)]
        for k, _ in source.items():
            if prefixes and not any(k.startswith(p) for p in prefixes):
                skipped.append(f"source {index} {k}: not under {list(prefixes)}")
        if mode == "name":
            for k, value in items:
                if k not in target:
                    skipped.append(f"source {index} {k}: no tensor of that name")
                elif tuple(value.shape) != tuple(target[k]):
                    skipped.append(f"source {index} {k}: shape {tuple(value.shape)}, expected {tuple(target[k])}")
                else:
                    chosen[k] = value
                    loaded.append(f"{k} <- source {index} {k}")
            continue
        for j, (k, value) in enumerate(items):
            if position < len(names) and tuple(value.shape) == tuple(target[names[position]]):
                chosen[names[position]] = value
                loaded.append(f"{names[position]} <- source {index} {k}")
                position += 1
                continue
            expected = f"shape {tuple(target[names[position]])} for {names[position]}" if position < len(names) else "no more target tensors"
            skipped += [f"source {index} {name}: order match ended ({expected})" for name, _ in items[j:]]
            break
    new = [name for name in names if name not in chosen]
    return chosen, {"loaded": loaded, "new": new, "skipped": skipped}


def is_frozen(name: str, prefixes: Sequence[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def format_report(report: Mapping[str, list]) -> str:
    lines = [f"initFrom: loaded {len(report['loaded'])} tensors, {len(report['new'])} new, {len(report['skipped'])} saved tensors unused"]
    lines += [f"  loaded  {entry}" for entry in report["loaded"]]
    lines += [f"  new     {entry}" for entry in report["new"]]
    lines += [f"  unused  {entry}" for entry in report["skipped"]]
    return "\n".join(lines)
