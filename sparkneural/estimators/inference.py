"""A fitted network in the tasks that score with it: its weights shipped once, built once per worker.

Scoring itself (decode, forward pass, encode, overlapped) is
``sparkneural.estimators.scoring``.

The weights reach the executors once (``share_network``): as a broadcast on
a classic session; under Spark Connect, whose plans must stay small (a
message is capped at 128 MiB by default), as a file artifact of the session
named by the SHA-256 of its content, checked against that hash before it is
loaded. The network is built once per Python worker and device: a small
cache keyed by the model's uid, weights token and device keeps it across
batches, tasks and jobs, on the device the task computes on
(``sparkneural.devices``: on a GPU, the one Spark assigned to the task).

Nothing here imports pyspark at import time: the same functions score on a
host without Spark.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

CACHE_SIZE = 4
_cache: "OrderedDict[str, Any]" = OrderedDict()
_cache_lock = threading.Lock()

WEIGHTS_ARTIFACT = "sparkneural-weights-{}.safetensors"
# (Connect session id, SHA-256) of the weights this client has added to a session as artifacts
_uploaded: set[tuple[str, str]] = set()
_upload_lock = threading.Lock()


class WeightsArtifact:
    """A network for the tasks of a Spark Connect session: its architecture travels with the tasks, its
    weights as a file artifact of the session named by their SHA-256; read on an executor as ``.value``."""

    def __init__(self, architecture: dict[str, Any], sha256: str) -> None:
        self.architecture = architecture
        self.sha256 = sha256

    @property
    def name(self) -> str:
        return WEIGHTS_ARTIFACT.format(self.sha256)

    @property
    def value(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(architecture, weights), the weights read from this executor's copy of the artifact once its
        content matches the hash."""
        from pyspark import SparkFiles
        from safetensors.numpy import load_file

        from sparkneural.estimators.persistence import sha256_file

        path = SparkFiles.get(self.name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights artifact {self.name!r}: not found on this executor at {path!r}; "
                                    "expected the file the client added to the session (spark.addArtifacts)")
        found = sha256_file(path)
        if found != self.sha256:
            raise ValueError(f"weights artifact {self.name!r}: expected content with SHA-256 {self.sha256}, "
                             f"found {found} at {path!r} (modified or truncated)")
        return self.architecture, load_file(path)


def share_network(spark, architecture: dict[str, Any], weights: dict[str, np.ndarray]):
    """``(architecture, weights)`` for every task of ``spark``'s jobs, read there as ``.value``: a broadcast
    (sent once per executor) where the session has a SparkContext, else a ``WeightsArtifact``."""
    try:
        context = spark.sparkContext
    except Exception:  # a Spark Connect session has no SparkContext
        return ship_weights(spark, architecture, weights)
    return context.broadcast((architecture, weights))


def ship_weights(spark, architecture: dict[str, Any], weights: dict[str, np.ndarray]) -> WeightsArtifact:
    """Add ``weights`` to the Connect session ``spark`` as a file artifact named by their SHA-256 (once per
    session and content), so that no plan carries them."""
    from sparkneural.estimators.persistence import WEIGHTS, save_weights

    with tempfile.TemporaryDirectory(prefix="sparkneural-weights-") as directory:  # private to this user
        shipped = WeightsArtifact(architecture, save_weights(directory, weights))
        with _upload_lock:
            if (spark.session_id, shipped.sha256) not in _uploaded:
                path = os.path.join(directory, shipped.name)
                os.rename(os.path.join(directory, WEIGHTS), path)
                spark.addArtifacts(path, file=True)
                _uploaded.add((spark.session_id, shipped.sha256))
    return shipped


def cached_network(key: str, load: Callable[[], Any]):
    """The network for ``key``, built by ``load()`` on first use in this worker."""
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    network = load()
    with _cache_lock:
        _cache[key] = network
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return network


def load_network(architecture: dict[str, Any], weights: dict[str, np.ndarray] | None, device: Any = None):
    """The network ``architecture`` describes (a fitted model's ``architectureSpec``), holding ``weights``,
    in eval mode, on ``device`` (default: the CPU)."""
    import torch

    from sparkneural.training.loop import build_network
    from sparkneural.training.spec import TrainSpec

    net = build_network(
        TrainSpec(
            data=None,
            architecture=architecture["architecture"],
            architectureParams=architecture["architectureParams"],
            inputShape=tuple(architecture["inputShape"]),
            outputSize=architecture["outputSize"],
        )
    )
    if weights is not None:
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    return net.eval().to(device or "cpu")
