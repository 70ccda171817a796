"""Putting a finished directory in place of another, so that a crash leaves one of the two whole.

A stage is written into a private staging directory beside its target,
given the permissions the umask gives (``publish``) and synced, then
swapped with the target in one step where the system can (Linux
``renameat2(RENAME_EXCHANGE)``); elsewhere the target is renamed to
``.<name>.old-<32 hex digits>`` and the staging directory to the target.
Those retired names are the only ones, besides a failed save's own staging
directory, that are ever deleted (``retired``, ``remove_retired``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import sys
import uuid


def retired(target: str) -> list[str]:
    """The ``.<name>.old-<32 hex>`` entries beside ``target``: the only names an overwrite retires a model to."""
    parent, name = os.path.split(os.path.abspath(target))
    pattern = re.compile(re.escape(f".{name}.old-") + "[0-9a-f]{32}")
    try:
        with os.scandir(parent) as entries:
            return [entry.path for entry in entries if pattern.fullmatch(entry.name)]
    except FileNotFoundError:
        return []


def remove_retired(target: str) -> None:
    """Delete what earlier overwrites retired beside ``target``, once a model is at ``target``."""
    if not os.path.lexists(target):
        return
    for old in retired(target):
        remove(old)


def remove(path: str) -> None:
    if os.path.islink(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace(staging: str, target: str) -> None:
    """Put ``staging`` in place of the existing ``target`` so that a crash at any point leaves a complete
    model at ``target``, or, between the two renames where the system cannot exchange, beside it."""
    parent, name = os.path.split(target)
    retired = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex}")
    if _exchange(staging, target):
        old = staging  # the old model, now under the staging name
        # renamed before it is deleted: a crash in rmtree then leaves a name the next save cleans up
        with contextlib.suppress(OSError):
            os.rename(staging, retired)
            old = retired
    else:
        os.rename(target, retired)
        try:
            os.rename(staging, target)
        except BaseException:
            with contextlib.suppress(OSError):
                if not os.path.lexists(target):
                    os.rename(retired, target)
            raise
        old = retired
    fsync_directory(parent)
    remove(old)


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _exchange(a: str, b: str) -> bool:
    """Swap the entries ``a`` and ``b`` in one step; False where the system or file system cannot."""
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    if _renameat2() is None:
        return False
    if _renameat2()(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def _umask() -> int:
    """The process umask, read without changing it where the system shows it (Linux ``/proc``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o077)  # briefly the most private mask, for files other threads create meanwhile
    os.umask(mask)
    return mask


def publish(staging: str) -> None:
    """Give everything in ``staging`` the permissions ``os.makedirs`` and ``open`` give under the umask
    (``mkdtemp`` and safetensors create theirs private) and sync it to disk before it is put in place."""
    mask = _umask()
    for root, _, files in os.walk(staging):
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)
            _fsync(os.path.join(root, name))
        os.chmod(root, 0o777 & ~mask)
        fsync_directory(root)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a directory; its files are synced
        _fsync(path)
