"""How every distributed backend starts its ranks: the N tasks of one barrier stage.

``launch(spark, n, rank_main)`` runs ``spark.range(n, numPartitions=n)
.mapInArrow(task, schema, barrier=True)`` and collects it: Spark starts the
n tasks together or not at all, and a task that fails fails them all. Each
task is one rank (its partition id), trains in its Python worker (which Spark
reuses, so a later fit finds torch and the network code already imported)
and returns nothing but rank 0's result, in chunks small enough for any
client. The same code runs on a classic session and a Spark Connect client:
nothing here needs a SparkContext or a connection back to the caller.

The ranks find each other through the barrier context: ``Topology`` says
which host each rank runs on (``getTaskInfos``), and a backend's rendezvous
(Horovod's Gloo rendezvous, torch's ``TCPStore``) runs in rank 0's task, on
rank 0's own address. Rank 0 leaves its port in the fit's directory, which
every rank reads its training data from (``publish`` / ``look_up``): Spark's
own ``allGather`` would do the same, but its tasks look for the answer once
a second, a second added to every fit.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

RESULT_SCHEMA = "part INT, payload BINARY"
# A Connect client receives collected rows in Arrow batches of a few MiB: rank 0's result
# (the weights) travels as rows of at most this many bytes.
CHUNK_BYTES = 4 << 20


@dataclasses.dataclass(frozen=True)
class Topology:
    """Where this rank sits among the fit's ranks, as Horovod's launchers describe it."""

    rank: int
    hosts: tuple[str, ...]  # the host of every rank, by rank

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def host(self) -> str:
        return self.hosts[self.rank]

    @property
    def local_rank(self) -> int:
        return self.hosts[: self.rank].count(self.host)

    @property
    def local_size(self) -> int:
        return self.hosts.count(self.host)

    def cross(self, rank: int) -> tuple[int, int]:
        """(cross rank, cross size) of ``rank``: its place among the ranks with its local rank, one per host."""
        local = self.hosts[:rank].count(self.hosts[rank])
        peers = [r for r in range(self.size) if self.hosts[:r].count(self.hosts[r]) == local]
        return peers.index(rank), len(peers)

    @classmethod
    def of(cls, context: Any) -> "Topology":
        """This task's place, from its ``BarrierTaskContext``."""
        hosts = tuple(_host(info.address) for info in context.getTaskInfos())
        return cls(context.partitionId(), hosts)


def _host(address: str) -> str:
    """The host of an executor's "host:port" (an IPv6 host in brackets loses them)."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host[1:-1] if host.startswith("[") else host


def launch(spark: Any, num_proc: int, rank_main: Callable[[Topology], Any], profile: Any = None) -> Any:
    """``rank_main(topology)`` on ``num_proc`` barrier tasks; rank 0's return value.

    ``profile``: a ``pyspark.resource.ResourceProfile`` for the stage's tasks
    (GPUs for training while the rest of the job runs elsewhere), on Spark 4.
    """

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import BarrierTaskContext

        for _ in batches:  # the one row of the range that made this partition
            pass
        topology = Topology.of(BarrierTaskContext.get())
        result = rank_main(topology)
        if topology.rank != 0:
            return
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        for part, start in enumerate(range(0, max(1, len(data)), CHUNK_BYTES)):
            yield pa.RecordBatch.from_pydict(
                {"part": [part], "payload": [data[start:start + CHUNK_BYTES]]},
                schema=pa.schema([("part", pa.int32()), ("payload", pa.binary())]),
            )

    ranks = spark.range(num_proc, numPartitions=num_proc)
    options = {"barrier": True} if profile is None else {"barrier": True, "profile": profile}
    try:
        stage = ranks.mapInArrow(task, RESULT_SCHEMA, **options)
    except TypeError as err:  # pyspark 3.5: no profile; its Connect client: no barrier either
        raise RuntimeError(f"this pyspark ({_pyspark_version()}) cannot launch the ranks as a barrier stage "
                           f"{'with a resource profile ' if profile is not None else ''}({err}); "
                           "use Spark 4, or backend='local'") from err
    rows = sorted(stage.collect(), key=lambda row: row["part"])
    return pickle.loads(b"".join(bytes(row["payload"]) for row in rows))


def _pyspark_version() -> str:
    import pyspark

    return pyspark.__version__


def publish(directory: str, name: str, value: str) -> None:
    """Leave ``value`` for the other ranks as the file ``name`` in ``directory`` (it appears whole)."""
    from sparkneural.data.filesystems import open_filesystem

    filesystem, path = open_filesystem(directory)
    partial = f"{path}/.{name}.{os.getpid()}"
    with filesystem.open_output_stream(partial) as stream:
        stream.write(value.encode())
    filesystem.move(partial, f"{path}/{name}")


def look_up(directory: str, name: str, timeout_s: float, poll_s: float = 0.02) -> str:
    """What rank 0 ``publish``-ed as ``name``, once it is there; a TimeoutError after ``timeout_s``."""
    from sparkneural.data.filesystems import open_filesystem

    filesystem, path = open_filesystem(directory)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with filesystem.open_input_stream(f"{path}/{name}") as stream:
                return stream.read().decode()
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not publish {name!r} in {directory} within {timeout_s:g} s")
        time.sleep(poll_s)


def rank0_value(spec: Any, what: str, topology: Topology, value: str | None, timeout_s: float) -> str:
    """Rank 0's ``value`` of ``what`` (e.g. its rendezvous port) on every rank of ``spec``'s fit (rank 0
    passes it, the others None), through the fit's directory."""
    attempt = spec.reports.attempt if spec.reports is not None else 0
    directory, name = spec.data.root, f"{what}-{spec.runId}-{attempt}"
    if topology.rank == 0:
        publish(directory, name, value or "")
        return value or ""
    return look_up(directory, name, timeout_s)


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` laid over this process's environment for the duration, then the environment as it was.

    A Python worker outlives the task: what one fit's rank sets must not reach the next task it runs.
    """
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
