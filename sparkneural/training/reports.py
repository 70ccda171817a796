"""What the ranks of a fit tell the driver while they run, over one small channel per fit.

The driver opens a ``ReportServer`` around a run; its ``ReportAddress``
(host, port, a per-fit secret) travels to the ranks in the ``TrainSpec``.
Each rank connects (``Reporter``), answers the server's challenge with an
HMAC of the secret, waits for the server's ``ok`` and then sends JSON lines:

- ``hello``: its rank, host, executor and process id;
- rank 0's epoch records, its step progress and each checkpoint it wrote;
- ``end``: done, or the exception it raised and whether that was a
  collective failing because a peer went away.

The server prints rank 0's progress on the driver's stdout, so epoch lines
reach ``spark-submit``'s output on any cluster (ranks send them instead of
printing them: they appear once, also in local mode). It keeps each rank's
state, from which the driver tells a lost rank (its connection closed with
no ``end``: its process, Python worker or executor went away) from an
error in the training code. It parses JSON only: nothing it receives is
executed, and a message it cannot parse (or nested too deep) is dropped.
A rank that cannot reach the driver prints its progress itself.

The server listens on the driver's own address (``spark.driver.bindAddress``,
else ``spark.driver.host``), never on every interface, on an ephemeral
port, or on ``spark.sparkneural.reportPort`` for a driver behind a firewall.
Anyone who can reach that port can connect, so a connection costs little
until it proves the secret: at most ``max(8, 4 * numProc)`` connections are
in their handshake at once (a new one closes the oldest; a rank answers in
milliseconds and tries again if it was closed), each for at most
``CHALLENGE_TIMEOUT_S``. Running out of descriptors or threads (a flood of
connections, a low ``ulimit -n``) pauses accepting briefly; it never stops
the server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from typing import Any, Callable, Iterator, TextIO

from sparkneural import spark_internals
from sparkneural.former_names import conf_value

PORT_CONF = "spark.sparkneural.reportPort"
CHALLENGE_TIMEOUT_S = 10.0  # for a connection to answer the challenge, in all
CONNECT_TIMEOUT_S = 10.0  # for a rank to be accepted, tries again included
# Connections in their handshake at once: max(MIN_HANDSHAKES, HANDSHAKES_PER_RANK * numProc).
MIN_HANDSHAKES, HANDSHAKES_PER_RANK = 8, 4
# The pause after the server could not accept a connection or start its thread, doubling up to the second.
BACKOFF_S, MAX_BACKOFF_S = 0.05, 1.0
ACCEPTED = b"ok"  # what the server answers a rank that proved the secret

logger = logging.getLogger(__name__)
# How long the driver waits, after a run failed, for every rank's report to arrive and connection to close.
SETTLE_S = 5.0
FOLDER_POLL_S = 0.5  # how often a ReportFolder looks for new messages
MAX_LINE = 1 << 20
# The exception types (module, name) of a collective that failed, most often because a peer
# went away: the consequence of another rank's loss or error, never a cause of its own. sparkneural's
# own wraps whatever a collective operation raised (sparkneural.training.collective); the others are
# the distributed libraries' own. Not the message: an I/O error also says "Connection reset by peer".
COLLECTIVE_TYPES = (
    ("sparkneural.training.collective", "CollectiveError"),
    ("horovod.common.exceptions", "HorovodInternalError"),
    ("horovod.common.exceptions", "HostsUpdatedInterrupt"),
    ("torch.distributed", "DistError"),  # DistBackendError, DistNetworkError, DistStoreError
)


@dataclasses.dataclass(frozen=True)
class ReportAddress:
    """Where a rank reports, and the secret that proves it belongs to the fit."""

    host: str
    port: int
    secret: str = dataclasses.field(repr=False)
    attempt: int = 0  # which start of the ranks (0, then one per restart)


@dataclasses.dataclass(frozen=True)
class FolderAddress:
    """A directory of the fit's own (on the shared file system) where ranks leave their messages as files."""

    directory: str
    attempt: int = 0


@dataclasses.dataclass
class RankReport:
    """What the driver knows about one rank of one attempt."""

    rank: int
    attempt: int = 0
    host: str = "?"
    executor: str | None = None
    pid: int | None = None
    open: bool = True
    ended: bool = False
    error: dict[str, Any] | None = None  # {"type", "message", "collective"}

    @property
    def lost(self) -> bool:
        """The connection closed without an end: the process went away."""
        return not self.open and not self.ended

    def where(self) -> str:
        """e.g. "rank 1 on executor 2 (10.0.0.7)"."""
        executor = {None: "an unknown executor", "driver": "the driver"}.get(self.executor, f"executor {self.executor}")
        return f"rank {self.rank} on {executor} ({self.host})"


def format_epoch(record: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(record['epoch'])}/{epochs}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds")]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


def is_collective_error(err: BaseException) -> bool:
    """Whether ``err`` is a collective operation that failed, by its type (see ``COLLECTIVE_TYPES``)."""
    # A type whose module this process never imported cannot have been raised here.
    types = (getattr(sys.modules.get(module), name, None) for module, name in COLLECTIVE_TYPES)
    return any(isinstance(err, klass) for klass in types if isinstance(klass, type))


def _signature(secret: str, challenge: bytes) -> bytes:
    return hmac.new(secret.encode(), challenge, hashlib.sha256).hexdigest().encode()


def _read_answer(connection: socket.socket, deadline: float) -> bytes:
    """The challenge's answer: at most one signature's length, all of it before ``deadline``."""
    answer = b""
    while not answer.endswith(b"\n") and len(answer) <= 2 * hashlib.sha256().digest_size:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(1)
        if not chunk:
            break
        answer += chunk
    return answer.strip()


def _lines(stream: Any) -> Iterator[bytes]:
    """The complete lines of ``stream``; a line longer than ``MAX_LINE`` is skipped whole."""
    skipping = False
    for chunk in iter(lambda: stream.readline(MAX_LINE), b""):
        complete = chunk.endswith(b"\n")
        if complete and not skipping:
            yield chunk
        skipping = not complete


def report_port(value: Any) -> int:
    """The port the conf ``spark.sparkneural.reportPort`` names; unset, empty or 0: any free port."""
    if value is None or str(value).strip() == "":
        return 0
    try:
        port = int(str(value).strip())
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{PORT_CONF} must be a TCP port number from 0 to 65535 (0: any free port), got {value!r}")
    return port


def _listen(address: str, port: int) -> socket.socket:
    """A socket listening on ``address`` (a host name: the first address it resolves to) and ``port``."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
        # A deep backlog: a burst of connections waits in the kernel, not as descriptors of the driver.
        return socket.create_server(sockaddr, family=family, backlog=socket.SOMAXCONN)
    except OSError as err:
        raise RuntimeError(
            f"sparkneural cannot open its report channel on {address}:{port} ({err}): it listens on spark.driver.bindAddress, "
            f"else spark.driver.host, which must be an address of the driver, on {PORT_CONF} (0 or unset: any free port)"
        ) from err


# -- the driver ---------------------------------------------------------------------------
class ReportBoard:
    """What the driver knows of a fit's ranks, whichever channel brings their messages.

    It prints rank 0's epoch lines and progress as they come (and hands each
    epoch record to ``on_epoch``, when set), and keeps each rank's state for
    the restart logic (``ranks_of``, ``checkpointed``).
    """

    def __init__(self, verbose: int = 1, out: TextIO | None = None) -> None:
        self.verbose, self.out = verbose, out or sys.stdout
        self.ranks: dict[tuple[int, int], RankReport] = {}
        self.checkpoints: dict[int, int] = {}  # attempt -> last epoch rank 0 checkpointed
        self.first_steps: dict[int, tuple[float, int]] = {}  # attempt -> (time.time(), epoch) of rank 0's first step
        self.changed = threading.Condition()
        self.on_epoch: Callable[[dict[str, float]], None] | None = None  # called with each epoch record (MLflow tracking)
        self._bar_drawn = False

    def __enter__(self) -> "ReportBoard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._end_bar()

    # -- what the driver asks after a run ------------------------------------------------
    def ranks_of(self, attempt: int, expected: int, settle_s: float = SETTLE_S) -> list[RankReport]:
        """Copies of what ``attempt``'s ranks reported, once ``expected`` ranks said hello and all
        their connections closed, or ``settle_s`` seconds passed."""

        def settled() -> bool:
            ranks = [r for (a, _), r in self.ranks.items() if a == attempt]
            return len(ranks) >= expected and not any(r.open for r in ranks)

        with self.changed:
            self.changed.wait_for(settled, timeout=settle_s)
            ranks = [dataclasses.replace(r) for (a, _), r in self.ranks.items() if a == attempt]
        return sorted(ranks, key=lambda r: r.rank)

    def checkpointed(self) -> int | None:
        """The last epoch rank 0 checkpointed in any attempt (None: none yet)."""
        with self.changed:
            return max(self.checkpoints.values(), default=None)

    def _receive(self, message: dict[str, Any], report: RankReport | None) -> RankReport | None:
        kind = message.get("kind")
        with self.changed:
            if kind == "hello":
                key = (int(message["attempt"]), int(message["rank"]))
                report = self.ranks[key] = RankReport(
                    rank=key[1], attempt=key[0], host=str(message.get("host")), executor=message.get("executor"), pid=message.get("pid")
                )
                self.changed.notify_all()
                return report
            if report is None:
                return None
            if kind == "end":
                report.ended, report.error = True, message.get("error")
                self.changed.notify_all()
            elif kind == "checkpoint":
                self.checkpoints[report.attempt] = int(message["epoch"])
            elif kind == "step":
                self.first_steps.setdefault(report.attempt, (time.time(), int(message["epoch"])))
        if kind == "epoch":
            if self.verbose:
                self._print(format_epoch(message["record"], int(message["epochs"])))
            if self.on_epoch is not None:
                self.on_epoch(message["record"])
        elif kind == "progress" and self.verbose:
            self._draw(str(message["text"]))
        return report

    def say(self, line: str) -> None:
        """Print a line of the driver's own (a restart) between the ranks' lines."""
        self._print(line)

    def _print(self, line: str) -> None:
        prefix = "\r\x1b[K" if self._bar_drawn else ""
        self._bar_drawn = False
        print(prefix + line, file=self.out, flush=True)

    def _draw(self, text: str) -> None:
        self._bar_drawn = True
        print("\r" + text, end="", file=self.out, flush=True)

    def _end_bar(self) -> None:
        if self._bar_drawn:
            self._bar_drawn = False
            print(file=self.out, flush=True)




class ReportServer(ReportBoard):
    """Accepts the fit's ranks, prints rank 0's progress and keeps every rank's state.

    ``host`` is the address the ranks reach the driver at (``spark.driver.host``);
    the server listens on ``bind`` (default: ``host``, or the address it
    resolves to) and ``port`` (0: an ephemeral one), and accepts only
    connections that prove they know the secret. At most
    ``max(8, 4 * num_proc)`` connections are in their handshake at once: a
    new one closes the oldest (see the module's notes).
    """

    def __init__(self, host: str, verbose: int = 1, out: TextIO | None = None, *, bind: str | None = None, port: int = 0,
                 num_proc: int = 1) -> None:
        super().__init__(verbose, out)
        self.host = host
        self.secret = secrets.token_hex(32)
        self.listener = _listen(bind or host, port)
        self.port = self.listener.getsockname()[1]
        self.max_handshakes = max(MIN_HANDSHAKES, HANDSHAKES_PER_RANK * num_proc)
        self._closed = threading.Event()
        self._handshakes: dict[socket.socket, None] = {}  # oldest first
        self._handshakes_lock = threading.Lock()
        self.accepting = threading.Thread(target=self._accept, name="sparkneural-reports", daemon=True)
        self.accepting.start()

    @classmethod
    def on_driver(cls, host: str, verbose: int, num_proc: int) -> "ReportServer":
        """The fit's server, where the driver's Spark conf says: ``spark.driver.bindAddress``
        (else ``host``) and ``spark.sparkneural.reportPort``."""
        from pyspark.sql import SparkSession

        # The session of the thread that made it, else the first one (a fit may run in any thread).
        session = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        port = report_port(conf_value(session.conf, PORT_CONF))
        return cls(host, verbose, bind=session.conf.get("spark.driver.bindAddress", None) or host, port=port,
                   num_proc=num_proc)

    def address(self, attempt: int) -> ReportAddress:
        return ReportAddress(self.host, self.port, self.secret, attempt)

    def close(self) -> None:
        self._closed.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close() alone does not
        except OSError:
            pass
        self.listener.close()
        super().close()

    # -- serving -----------------------------------------------------------------------------
    def _accept(self) -> None:
        pause = 0.0
        while not self._closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError as err:  # out of descriptors or buffers (a flood, a low ulimit -n), a connection aborted
                if self._closed.is_set():
                    return
                pause = self._pause(pause, f"cannot accept a connection ({err})")
                continue
            try:
                self._admit(connection)
            except RuntimeError as err:  # can't start new thread
                connection.close()
                pause = self._pause(pause, f"cannot start a thread for a connection ({err})")
                continue
            pause = 0.0

    def _pause(self, last: float, trouble: str) -> float:
        """Wait a little longer than ``last`` before accepting again; say why once per spell of failures."""
        if not last:
            logger.warning("sparkneural's report channel %s; it tries again", trouble)
        pause = min(MAX_BACKOFF_S, 2 * last or BACKOFF_S)
        self._closed.wait(pause)
        return pause

    def _admit(self, connection: socket.socket) -> None:
        with self._handshakes_lock:
            if len(self._handshakes) >= self.max_handshakes:
                oldest = next(iter(self._handshakes))
                del self._handshakes[oldest]
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # its thread's read returns: it closes the connection
                except OSError:
                    pass
            self._handshakes[connection] = True
        try:
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()
        except RuntimeError:
            with self._handshakes_lock:
                self._handshakes.pop(connection, None)
            raise

    def _handshake(self, connection: socket.socket) -> bool:
        """Whether the peer proved it knows the secret within ``CHALLENGE_TIMEOUT_S``."""
        challenge = secrets.token_hex(16).encode()
        deadline = time.monotonic() + CHALLENGE_TIMEOUT_S
        connection.settimeout(CHALLENGE_TIMEOUT_S)
        connection.sendall(challenge + b"\n")
        proved = hmac.compare_digest(_read_answer(connection, deadline), _signature(self.secret, challenge))
        connection.settimeout(None)
        return proved

    def _serve(self, connection: socket.socket) -> None:
        report = None
        with connection:
            try:
                proved = self._handshake(connection)
            except OSError:
                proved = False
            with self._handshakes_lock:  # gone from the handshakes: closed meanwhile as the oldest
                proved = self._handshakes.pop(connection, False) and proved
            if not proved:
                return
            try:
                connection.sendall(ACCEPTED + b"\n")
                with connection.makefile("rb") as stream:
                    for line in _lines(stream):
                        try:
                            report = self._receive(json.loads(line), report)
                        except Exception:  # noqa: BLE001 - what no rank sends (not JSON, nested too deep, other fields): dropped
                            continue
            except OSError:
                pass  # the connection broke off
            finally:
                if report is not None:
                    with self.changed:
                        report.open = False
                        self.changed.notify_all()

class ReportFolder(ReportBoard):
    """Follows the messages the ranks leave in ``directory``: for a client the executors cannot reach.

    A Spark Connect client opens no port: each rank writes its messages as
    small files (``<attempt>-<rank>-<sequence>.json``) into a directory of
    the fit's own, on the file system the training data is on, and the
    client lists it every ``FOLDER_POLL_S`` seconds. A message is read once
    it parses (a file still being written is read at the next look).
    """

    def __init__(self, directory: str, verbose: int = 1, out: TextIO | None = None) -> None:
        from sparkneural.data.filesystems import open_filesystem

        super().__init__(verbose, out)
        self.directory = directory
        self.filesystem, self.path = open_filesystem(directory)
        self.filesystem.create_dir(self.path, recursive=True)
        self._seen: set[str] = set()
        self._scan_lock = threading.Lock()
        self._closed = threading.Event()
        self.following = threading.Thread(target=self._follow, name="sparkneural-reports", daemon=True)
        self.following.start()

    def address(self, attempt: int) -> FolderAddress:
        return FolderAddress(self.directory, attempt)

    def close(self) -> None:
        self._closed.set()
        self.following.join()
        self._scan()
        super().close()

    def ranks_of(self, attempt: int, expected: int, settle_s: float = SETTLE_S) -> list[RankReport]:
        """What ``attempt``'s ranks left; called once their stage ended, so no rank writes any more."""
        self._scan()
        with self.changed:
            for (a, _), report in self.ranks.items():
                if a == attempt:
                    report.open = False
        return super().ranks_of(attempt, expected, settle_s=0)

    def _follow(self) -> None:
        while not self._closed.wait(FOLDER_POLL_S):
            try:
                self._scan()
            except OSError as err:  # the file system is briefly unreachable: look again
                logger.debug("sparkneural: cannot read the ranks' messages in %s (%s)", self.directory, err)

    def _scan(self) -> None:
        import pyarrow.fs as pafs

        with self._scan_lock:
            found = self.filesystem.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
            for name in sorted(info.base_name for info in found if info.type == pafs.FileType.File):
                key = _message_key(name)
                if name in self._seen or key is None:
                    continue
                try:
                    with self.filesystem.open_input_stream(f"{self.path}/{name}") as stream:
                        message = json.loads(stream.read(MAX_LINE))
                except (OSError, ValueError, RecursionError):
                    continue  # still being written, or not one of the ranks' messages
                self._seen.add(name)
                try:
                    self._receive(message, self.ranks.get(key))
                except Exception:  # noqa: BLE001 - what no rank sends (other fields, other types): dropped
                    continue


def _message_key(name: str) -> tuple[int, int] | None:
    """(attempt, rank) of a message file's name, None for any other name."""
    parts = name.removesuffix(".json").split("-")
    if not name.endswith(".json") or len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


class _FolderWriter:
    """A rank's side of a ``ReportFolder``: each message one file, numbered in order."""

    def __init__(self, address: FolderAddress, rank: int) -> None:
        from sparkneural.data.filesystems import open_filesystem

        self.filesystem, self.path = open_filesystem(address.directory)
        self.prefix = f"{address.attempt:03d}-{rank:05d}-"
        self.sequence = 0

    def send(self, message: dict[str, Any]) -> None:
        name = f"{self.path}/{self.prefix}{self.sequence:06d}.json"
        self.sequence += 1
        with self.filesystem.open_output_stream(name) as stream:
            stream.write(json.dumps(message).encode())


# -- a rank -------------------------------------------------------------------------------
def _connect(address: ReportAddress) -> socket.socket:
    """A connection the server accepted.

    A server busy with many connections closes the oldest handshakes: a
    connection closed before the server's ``ok`` tries again, until
    ``CONNECT_TIMEOUT_S`` passed. Any other error is raised at once.
    """
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    pause = BACKOFF_S
    while True:
        connection = socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT_S)
        try:
            with connection.makefile("rb") as stream:
                challenge = stream.readline(MAX_LINE).strip()
                connection.sendall(_signature(address.secret, challenge) + b"\n")
                accepted = stream.readline(MAX_LINE).strip() == ACCEPTED
        except (ConnectionResetError, BrokenPipeError):
            accepted = False
        except OSError:
            connection.close()
            raise
        if accepted:
            connection.settimeout(None)
            return connection
        connection.close()
        if time.monotonic() + pause > deadline:
            raise ConnectionError(f"the driver closed every connection before it accepted one, for {CONNECT_TIMEOUT_S:.0f}s")
        time.sleep(pause)
        pause = min(MAX_BACKOFF_S, 2 * pause)


class Reporter:
    """How a rank reports. Without an address (the local backend runs on the driver) it prints."""

    def __init__(self, address: ReportAddress | FolderAddress | None, rank: int) -> None:
        self.rank = rank
        self.connection: socket.socket | None = None
        self.folder: _FolderWriter | None = None
        self._lock = threading.Lock()
        self._bar_drawn = False  # printing here: a progress bar is on the current line
        if address is None:
            return
        executor, host = spark_internals.executor_identity()
        try:
            if isinstance(address, FolderAddress):
                self.folder = _FolderWriter(address, rank)
                host = host or socket.gethostname()
            else:
                self.connection = _connect(address)
                host = host or self.connection.getsockname()[0]
        except OSError as failure:
            where = address.directory if isinstance(address, FolderAddress) else f"{address.host}:{address.port}"
            print(f"sparkneural: rank {rank} cannot report to the driver at {where} ({failure}); "
                  "it prints its progress here", file=sys.stderr, flush=True)
            return
        self._send({"kind": "hello", "attempt": address.attempt, "rank": rank, "host": host, "executor": executor, "pid": os.getpid()})

    def first_step(self, epoch: int) -> None:
        """Rank 0 starts training (its first step of ``epoch``, 1-based)."""
        self._send({"kind": "step", "epoch": epoch})

    def epoch(self, record: dict[str, float], epochs: int, show: bool = True) -> None:
        """Sends the epoch's record to the driver (which prints it when verbose); without a channel, prints it if ``show``."""
        if not self._send({"kind": "epoch", "record": record, "epochs": epochs}) and show:
            print(("\r\x1b[K" if self._bar_drawn else "") + format_epoch(record, epochs), flush=True)
            self._bar_drawn = False

    def progress(self, text: str) -> None:
        if self.folder is not None:
            return  # a file per redrawn bar is too many: the epoch lines say enough
        if not self._send({"kind": "progress", "text": text}):
            print("\r" + text, end="", flush=True)
            self._bar_drawn = True

    def checkpoint(self, epoch: int) -> None:
        self._send({"kind": "checkpoint", "epoch": epoch})

    def end(self, error: BaseException | None = None) -> None:
        described = None if error is None else {
            "type": type(error).__name__, "message": str(error)[:2000], "collective": is_collective_error(error),
        }
        self._send({"kind": "end", "error": described})
        self.close()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        self.folder = None

    def _send(self, message: dict[str, Any]) -> bool:
        """Whether the message went to the driver (False: there is no channel)."""
        with self._lock:
            try:
                if self.folder is not None:
                    self.folder.send(message)
                    return True
                if self.connection is None:
                    return False
                self.connection.sendall(json.dumps(message).encode() + b"\n")
                return True
            except OSError:
                self.connection = self.folder = None
                return False


def reporting(address: ReportAddress | FolderAddress | None, rank: int, run: Callable[..., Any], *args: Any) -> Any:
    """``run(reporter, *args)`` on a rank, then report how it ended; exceptions pass through."""
    reporter = Reporter(address, rank)
    try:
        result = run(reporter, *args)
    except BaseException as err:
        reporter.end(err)
        raise
    reporter.end()
    return result
