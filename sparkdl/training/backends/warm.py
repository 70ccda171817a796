"""Warm rank processes: one process per executor imports torch once and forks the ranks' training.

Every Horovod rank is a fresh interpreter that imports torch, horovod.torch
and torch._dynamo (torch's optimizers import it on their first step) before
it can train: about 4.3 CPU-seconds per rank, more than half of a small
``fit()`` on local[2]. Instead, each rank hands its training function to a
server process on its own executor which has made those imports already;
the server forks a child that runs the function with the rank's
environment, working directory, ``sys.path``, stdout and stderr, and sends
the result back. The rank process stays what Horovod started and waits for
the child, so Horovod's launch, output streaming and failure handling are
unchanged; a child ends as soon as its rank process does.

The first ``fit()`` of an application starts the server while Horovod
launches the ranks, so the imports overlap the launch and are made once per
executor instead of once per rank; later fits find it warm. A server serves
one Spark application and one set of the environment variables that take
effect when torch loads (``OMP_*``, ``MKL_*``, ``LD_*``, ...); it exits
after ``SPARKDL_WARM_RANKS_IDLE_S`` seconds (default 600) without a rank,
or when the executor's Python daemon exits. ``SPARKDL_WARM_RANKS=0`` turns
the whole mechanism off: each rank then imports torch itself. Linux only
(abstract Unix sockets); elsewhere ranks always import for themselves.

The socket's name is predictable, and any local user can bind a free
abstract name, so each end checks the other's uid (``SO_PEERCRED``) before
it sends or reads anything. The server closes a connection from another
user at once, sending nothing. A rank that finds the name held by another
user sends nothing to it, reads nothing from it, and trains in its own
process; ``start_server`` then starts no server (it could not bind the
name) and logs a warning. Another user can thus only make ranks import
torch themselves; it never receives a rank's spec or runs code in it.

>>> name = server_name(dict(os.environ), sys.executable, "app-1")
>>> start_server(name, sys.executable, dict(os.environ))   # in the Spark task
>>> call(name, fn, arg)                                    # in the rank process
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

ENABLED_ENV = "SPARKDL_WARM_RANKS"
IDLE_ENV = "SPARKDL_WARM_RANKS_IDLE_S"
DEFAULT_IDLE_S = 600.0
# What every rank imports before it trains.
PRELOAD = (
    "torch",
    "torch._dynamo",
    "horovod.torch",
    "sparkdl.training.loop",
    "sparkdl.training.collective",
    "sparkdl.nn",
)
# Variables read when the interpreter, torch or its native libraries load: a server
# made with other values would not behave like a fresh rank.
LOAD_TIME_ENV_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "LD_", "PYTHON", "TORCH", "PYTORCH_", "CUDA_")
POLL_S = 2.0

logger = logging.getLogger(__name__)


class Unavailable(Exception):
    """No warm process took the call: nothing has run, the caller may run it itself."""


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def enabled(env: Mapping[str, str]) -> bool:
    return supported() and env.get(ENABLED_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def server_env(env: Mapping[str, str]) -> dict[str, str]:
    """What a server needs of a rank's environment: the load-time variables and its own settings."""
    return {k: v for k, v in env.items() if k.startswith(LOAD_TIME_ENV_PREFIXES) or k == IDLE_ENV}


def server_name(env: Mapping[str, str], executable: str, application: str) -> str:
    """The server for this user, application, interpreter and load-time environment."""
    loaded = sorted((k, v) for k, v in server_env(env).items() if k != IDLE_ENV)
    digest = hashlib.sha256(repr((executable, application, loaded)).encode()).hexdigest()[:20]
    return f"sparkdl-warm-ranks-{os.getuid()}-{digest}"


# -- the Spark task: start a server unless one is there ---------------------------------
def start_server(name: str, executable: str, env: Mapping[str, str]) -> None:
    """Start the server ``name`` (in the background) if none answers; never raises."""
    try:
        with _connect(name):
            return  # a server is there (the probe's empty request is ignored)
    except Unavailable as err:
        logger.warning("%s; ranks import torch themselves", err)
        return  # a server started now could not bind the name
    except OSError:
        pass
    try:
        idle = float(env.get(IDLE_ENV, DEFAULT_IDLE_S))
    except ValueError:
        idle = DEFAULT_IDLE_S
    code = f"from {__name__} import serve; serve({name!r}, {os.getppid()}, {idle!r})"
    try:
        process = subprocess.Popen(
            [executable, "-c", code],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this task; not in Spark's or Horovod's process groups
        )
    except (OSError, ValueError):
        return
    threading.Thread(target=process.wait, daemon=True).start()  # no zombie once it exits


# -- the server -------------------------------------------------------------------------
def serve(name: str, watched_pid: int, idle_s: float, preload: Sequence[str] = PRELOAD) -> None:
    """Listen on ``name``, import ``preload``, then fork a child per request.

    Exits when ``watched_pid`` (the executor's Python daemon) is gone or
    after ``idle_s`` seconds without a request. If an import fails the
    server still answers, with "unavailable", so ranks do not wait on it.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + name)
    except OSError:
        return  # another server has the name
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    try:
        for module in preload:
            importlib.import_module(module)
        broken = None
    except BaseException as err:  # noqa: BLE001 - any failure means: ranks import for themselves
        broken = f"{type(err).__name__}: {err}"
    gc.collect()
    gc.freeze()  # children share the imported objects' pages instead of copying them on their first collection
    last_request = time.monotonic()
    while True:
        readable, _, _ = select.select([listener], [], [], POLL_S)
        if not readable:
            if not _alive(watched_pid) or time.monotonic() - last_request > idle_s:
                return
            continue
        connection, _ = listener.accept()
        if _peer_uid(connection) != os.getuid():
            connection.close()  # another user's process gets nothing, not even a reason
            continue
        last_request = time.monotonic()
        if broken:
            _try_send(connection, ("unavailable", broken))
            connection.close()
            continue
        if os.fork() == 0:
            listener.close()
            code = 1
            try:
                code = _child(connection)
            finally:
                os._exit(code)
        connection.close()


def _child(connection: socket.socket) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        _, fds, _, _ = socket.recv_fds(connection, 1, 2)
        env, cwd, path, payload = _receive(connection)
    except (EOFError, OSError, ValueError):
        return 0  # a probe from start_server, or a caller that left
    _send(connection, ("ready", os.getpid()))
    try:
        if _receive(connection) != "go":
            return 0
    except (EOFError, OSError):
        return 0  # the caller gave up waiting: it runs the call itself
    for target, fd in zip((1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[:] = path
    threading.Thread(target=_exit_with_caller, args=(connection,), daemon=True).start()
    try:
        fn, args = pickle.loads(payload)
        reply = ("ok", fn(*args))
    except BaseException as err:  # noqa: BLE001 - sent to the caller, which raises it
        traceback.print_exc()
        reply = ("error", err)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        _send(connection, reply)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        _send(connection, ("error", RuntimeError(f"the result could not be sent back: {err}")))
    return 0


def _exit_with_caller(connection: socket.socket) -> None:
    """The caller sends nothing after "go": end of stream means its process is gone."""
    try:
        connection.recv(1)
    finally:
        os._exit(1)


# -- the rank process -------------------------------------------------------------------
def call(name: str, fn: Callable[..., Any], *args: Any, ready_timeout_s: float = 120.0) -> Any:
    """``fn(*args)`` in a child of the server ``name``; raises ``Unavailable`` if it did not start.

    Waits up to ``ready_timeout_s`` for a server still importing. The child
    writes to this process's stdout and stderr; an exception it raises is
    raised here.
    """
    import cloudpickle

    payload = cloudpickle.dumps((fn, args))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        connection = _connect(name)  # raises Unavailable if another user holds the name
    except OSError as err:
        raise Unavailable(f"no warm process server {name}") from err
    with connection:
        connection.settimeout(ready_timeout_s)  # a server still importing accepts when it is done
        try:
            socket.send_fds(connection, [b"f"], [1, 2])
            _send(connection, (dict(os.environ), os.getcwd(), list(sys.path), payload))
        except OSError:
            pass  # a server that refuses closes without reading: its answer says why
        try:
            answer = _receive(connection)
        except (OSError, EOFError) as err:
            raise Unavailable(f"warm process server {name} did not answer: {err}") from err
        if answer[0] != "ready":
            raise Unavailable(f"warm process server {name}: {answer[1]}")
        connection.settimeout(None)
        _send(connection, "go")
        try:
            kind, value = _receive(connection)
        except (OSError, EOFError) as err:
            raise RuntimeError(f"the training process {answer[1]} ended without a result") from err
    if kind == "error":
        raise value
    return value


# -- plumbing ---------------------------------------------------------------------------
def _connect(name: str) -> socket.socket:
    """A connection to ``name``: ``OSError`` if nobody listens, ``Unavailable`` if another user does."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect("\0" + name)
    except OSError:
        connection.close()
        raise
    uid = _peer_uid(connection)
    if uid != os.getuid():
        connection.close()
        raise Unavailable(f"warm process server {name} is held by uid {uid}, not by this user (uid {os.getuid()})")
    return connection


def _send(connection: socket.socket, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    connection.sendall(struct.pack("!Q", len(data)) + data)


def _try_send(connection: socket.socket, value: Any) -> None:
    try:
        _send(connection, value)
    except OSError:
        pass


def _receive(connection: socket.socket) -> Any:
    (size,) = struct.unpack("!Q", _exactly(connection, 8))
    return pickle.loads(_exactly(connection, size))


def _exactly(connection: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = connection.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _peer_uid(connection: socket.socket) -> int | None:
    """The uid of the process at the other end (the listener's, for a connecting client); None if unknown."""
    try:
        credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _, uid, _ = struct.unpack("3i", credentials)
    return uid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
