"""Saving and loading sparkneural stages without pickle.

A saved model is a directory:

    metadata/part-00000     Spark ML metadata JSON (class, uid, Params) plus a
                            "sparkneural" section: architecture name and kwargs,
                            input shape, output size, task, sha256 of the weights
    weights.safetensors     the state dict
    history.json            one record per epoch
    architecture.pkl        only for a user's own module factory (cloudpickle);
                            loaded only with allowPickle=True

The layout is what ``DefaultParamsReader.loadMetadata`` reads, so models load
inside ``PipelineModel.load``. Loading runs no code from the files unless
``allowPickle`` is given. Paths are local (or FUSE-mounted) directories.

A save is written into a private sibling ``.<name>.saving-*`` directory,
given the umask's permissions, synced and only then put in place of the
target (``sparkneural.estimators.placement``): an interrupted save never leaves
a half-written model at the target, and an overwrite leaves the old or the
new model there. Where the system cannot swap two directories in one step,
a crash between the two renames leaves the old model as
``.<name>.old-<32 hex digits>``; the next load or save of the target moves
it back (the newest complete one, by the time in its metadata) and the next
save deletes leftover ``.<name>.old-*`` directories.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import numpy as np
from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter

from sparkneural.estimators import placement

FORMAT_VERSION = 1
WEIGHTS, HISTORY, PICKLED = "weights.safetensors", "history.json", "architecture.pkl"

_pickle_allowed = threading.local()


@contextlib.contextmanager
def allow_pickle() -> Iterator[None]:
    """Allow loading user module factories (cloudpickle) inside this block, e.g. for
    ``PipelineModel.load`` of a pipeline whose model uses a custom architecture."""
    previous = getattr(_pickle_allowed, "value", False)
    _pickle_allowed.value = True
    try:
        yield
    finally:
        _pickle_allowed.value = previous


def local_path(path: str) -> str:
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme else path
    raise ValueError(f"path: sparkneural saves to local or mounted directories; found {path!r}")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_params(instance, param_map) -> dict[str, Any]:
    return {p.name: v for p, v in param_map.items() if not callable(v)}


def metadata_json(instance, extra: dict[str, Any]) -> str:
    import pyspark

    return json.dumps(
        {
            "class": f"{type(instance).__module__}.{type(instance).__name__}",
            "timestamp": int(time.time() * 1000),
            "sparkVersion": pyspark.__version__,
            "uid": instance.uid,
            "paramMap": _json_params(instance, instance._paramMap),
            "defaultParamMap": _json_params(instance, instance._defaultParamMap),
            "sparkneural": {"format": FORMAT_VERSION, **extra},
        },
        separators=(",", ":"),
    )


class AtomicWriter(MLWriter):
    """Writes ``instance`` into a temporary directory, then puts it in place of the target."""

    def __init__(self, instance) -> None:
        super().__init__()
        self.instance = instance

    def save(self, path: str) -> None:
        target = os.path.abspath(local_path(path))
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        recover(target)
        placement.remove_retired(target)
        if os.path.exists(target) and not self.shouldOverwrite:
            raise ValueError(
                f"path {path!r} already exists; use write().overwrite().save(path) to replace it"
            )
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.saving-", dir=parent)
        try:
            self.saveImpl(staging)
            placement.publish(staging)
            if os.path.lexists(target):
                placement.replace(staging, target)
            else:
                os.rename(staging, target)
            placement.fsync_directory(parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def saveImpl(self, path: str) -> None:
        self.instance._save_to(path)


def recover(target: str) -> str:
    """The directory holding the stage saved at ``target``.

    That is ``target`` itself, unless an overwrite crashed between its two
    renames: then the model it replaced lies beside it as
    ``.<name>.old-<hex>`` and is moved back to ``target`` (or, where the
    directory is not writable, read where it lies).
    """
    if os.path.lexists(target):
        return target
    complete = [(when, old) for old in placement.retired(target) if (when := _complete_save_time(old)) is not None]
    if not complete:
        return target
    newest = max(complete)[1]
    try:
        os.rename(newest, target)
    except OSError:  # read-only parent, or a concurrent save or load put a model there first
        return target if os.path.lexists(target) else newest
    return target


def _complete_save_time(path: str) -> int | None:
    """When the save in directory ``path`` (not a link) was made, if it is whole: readable metadata
    and files that match its checksums; else None."""
    if os.path.islink(path) or not os.path.isdir(path):
        return None
    try:
        metadata = read_metadata(path)
        for key, name in (("weightsSha256", WEIGHTS), ("pickleSha256", PICKLED)):
            if key in metadata["sparkneural"] and sha256_file(os.path.join(path, name)) != metadata["sparkneural"][key]:
                return None
        return int(metadata.get("timestamp", 0))
    except (ValueError, TypeError, OSError):
        return None


def write_metadata(path: str, instance, extra: dict[str, Any]) -> None:
    os.makedirs(os.path.join(path, "metadata"), exist_ok=True)
    with open(os.path.join(path, "metadata", "part-00000"), "w") as f:
        f.write(metadata_json(instance, extra) + "\n")
    open(os.path.join(path, "metadata", "_SUCCESS"), "w").close()


def read_metadata(path: str) -> dict[str, Any]:
    if not os.path.exists(local_path(path)):
        raise ValueError(f"path {path!r}: expected a saved sparkneural stage, found no such file or directory")
    file = os.path.join(local_path(path), "metadata", "part-00000")
    try:
        with open(file) as f:
            metadata = json.loads(f.readline())
    except FileNotFoundError:
        raise ValueError(f"path {path!r}: not a saved sparkneural stage (no metadata/part-00000)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"path {path!r}: corrupted metadata ({err})") from None
    if "sparkneural" not in metadata or "class" not in metadata:
        raise ValueError(f"path {path!r}: the metadata was not written by sparkneural")
    return metadata


def read_json_file(path: str, name: str) -> Any:
    """The JSON document ``name`` of a saved stage; a ValueError names the file when it is missing or corrupt."""
    try:
        with open(os.path.join(path, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"path {path!r}: expected {name} in the saved stage, found no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"path {path!r}: {name} is corrupted; expected JSON ({err})") from None


def stage_class(metadata: dict[str, Any], path: str, base: type) -> type:
    """The class named in the metadata; only sparkneural subclasses of ``base`` are accepted."""
    module_name, _, class_name = metadata["class"].rpartition(".")
    if not module_name.startswith("sparkneural."):
        raise ValueError(f"path {path!r}: holds a {metadata['class']}, not a sparkneural stage")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"path {path!r}: holds a {metadata['class']}, expected a {base.__name__}")
    return cls


def set_params(instance, metadata: dict[str, Any]) -> None:
    for name, value in metadata["paramMap"].items():
        if instance.hasParam(name):
            instance._set(**{name: value})
    for name, value in metadata["defaultParamMap"].items():
        if instance.hasParam(name):
            instance._setDefault(**{name: value})


def save_weights(path: str, weights: dict[str, np.ndarray]) -> str:
    from safetensors.numpy import save_file

    file = os.path.join(path, WEIGHTS)
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, file)
    return sha256_file(file)


def load_weights(path: str, expected_sha256: str,
                 check_shapes: Callable[[dict[str, tuple[int, ...]]], None] | None = None) -> dict[str, np.ndarray]:
    """The saved state dict, after its checksum and, when given, ``check_shapes`` (called with each tensor's
    name and shape, read from the file's header before any tensor data is)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    file = os.path.join(path, WEIGHTS)
    if not os.path.exists(file):
        raise ValueError(f"path {path!r}: missing {WEIGHTS}")
    if sha256_file(file) != expected_sha256:
        raise ValueError(f"path {path!r}: {WEIGHTS} does not match the checksum in its metadata (modified or truncated)")
    try:
        with safe_open(file, framework="np") as header:
            shapes = {name: tuple(header.get_slice(name).get_shape()) for name in header.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"path {path!r}: {WEIGHTS} is not a valid safetensors file ({err})") from None
    if check_shapes is not None:
        check_shapes(shapes)
    try:
        return load_file(file)
    except Exception as err:
        raise ValueError(f"path {path!r}: {WEIGHTS} is not a valid safetensors file ({err})") from None


def save_factory(path: str, factory) -> str:
    import cloudpickle

    file = os.path.join(path, PICKLED)
    with open(file, "wb") as f:
        cloudpickle.dump(factory, f)
    return sha256_file(file)


def load_factory(path: str, expected_sha256: str, allowPickle: bool):
    if not (allowPickle or getattr(_pickle_allowed, "value", False)):
        raise ValueError(
            f"path {path!r}: the architecture is a pickled Python factory; loading it runs code "
            "from the file. Pass allowPickle=True (or use sparkneural.estimators.allow_pickle()) "
            "if you trust this file"
        )
    file = os.path.join(path, PICKLED)
    if sha256_file(file) != expected_sha256:
        raise ValueError(f"path {path!r}: {PICKLED} does not match the checksum in its metadata")
    import cloudpickle

    with open(file, "rb") as f:
        return cloudpickle.load(f)


class StageReader(MLReader):
    """Reads any sparkneural stage saved by ``AtomicWriter`` (dispatching on the saved class)."""

    def __init__(self, base: type, allowPickle: bool = False) -> None:
        super().__init__()
        self.base = base
        self.allowPickle = allowPickle

    def load(self, path: str):
        found = recover(local_path(path))
        if found != local_path(path):
            path = found
        metadata = read_metadata(path)
        cls = stage_class(metadata, path, self.base)
        try:
            return cls._load_from(local_path(path), metadata, self.allowPickle)
        except KeyError as err:
            raise ValueError(f"path {path!r}: metadata/part-00000 lacks the entry {err}; expected a complete sparkneural save") from None


class SavedWithoutPickle(MLWritable, MLReadable):
    """``write()``/``read()``/``load()`` for stages that implement ``_save_to`` and ``_load_from``.

    ``X.load(path)`` returns whichever sparkneural subclass of ``X`` was saved
    there; a user's module factory loads only with ``allowPickle=True``,
    because that runs code from the saved file.
    """

    def write(self) -> AtomicWriter:
        return AtomicWriter(self)

    @classmethod
    def read(cls) -> StageReader:
        return StageReader(cls)

    @classmethod
    def load(cls, path: str, allowPickle: bool = False):
        return StageReader(cls, allowPickle).load(path)
