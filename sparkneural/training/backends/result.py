"""A rank's ``TrainResult`` as plain data while it travels back to the caller.

Rank 0's result comes back as the rows of its barrier task, pickled. As a
dict of numpy arrays, lists and numbers it unpickles with numpy alone, on
any client, whatever version of sparkneural's classes the ranks ran.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparkneural.training.loop import TrainResult


def to_plain(result: "TrainResult") -> dict[str, Any]:
    return {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}


def from_plain(values: dict[str, Any]) -> "TrainResult":
    from sparkneural.training.loop import TrainResult

    return TrainResult(**values)
