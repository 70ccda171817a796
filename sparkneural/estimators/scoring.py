"""Scoring Arrow batches with a network: decode, forward pass and encode of successive chunks overlap.

One chunk is at most ``inferenceBatchSize`` rows of one Arrow batch. While a
thread of its own runs the forward passes of batch b's chunks (``launch``),
the task's thread decodes the next Arrow batch and encodes the outputs of the
batch before (``score``)::

    task thread    decode b+1 | encode b-1 | decode b+2 | encode b  | ...
    forward thread         forward b (its chunks)  | forward b+1    | ...

On a GPU the forward thread only queues work: each chunk is copied from
pinned host memory on a copy stream (``non_blocking``) while the previous
chunk computes on the compute stream; NaN and infinite inputs are counted and
zeroed there, and the outputs and that count come back to pinned memory in
one transfer, waited for when the batch is encoded. On the CPU the forward
thread computes, so decoding and encoding run beside the forward pass.

``inferenceBatchSize`` None picks the chunk size (``auto_batch_size``) from
the network's activations per row: on the CPU, chunks whose largest
activation stays within a core's cache; on a GPU, chunks whose activations
fill a quarter of the device's free memory. A chunk never exceeds one Arrow
batch (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows).

Nothing here imports pyspark: the same functions score on a host without Spark.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from sparkneural.data import arrow

logger = logging.getLogger(__name__)
# Arrow buffers are read-only; inference never writes to its input.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", module=__name__)

CPU_CHUNK_BYTES = 2 << 20  # the largest activation of a chunk; measured: LeNet and MLPs peak near this on one core
GPU_MEMORY_SHARE = 0.25  # of the free device memory, for the activations of one chunk
MIN_ROWS, MAX_CPU_ROWS, MAX_GPU_ROWS = 16, 512, 65536

Outputs = dict[str, np.ndarray]
Encoders = list[tuple[str, Callable[[np.ndarray, np.ndarray | None], pa.Array]]]


# -- the chunk size ----------------------------------------------------------------------
def activation_bytes(net, x: np.ndarray, task) -> tuple[int, int]:
    """(largest, total) bytes per row of the outputs of ``net``'s leaf modules on the rows ``x``."""
    import torch

    sizes: list[int] = []

    def record(_module, _inputs, output) -> None:
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                sizes.append(tensor.numel() * tensor.element_size() // len(x))

    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        device = next(net.parameters()).device  # the meta device measures shapes without memory
        with torch.inference_mode():
            task.outputs(net, torch.from_numpy(x).to(device))
    finally:
        for hook in hooks:
            hook.remove()
    largest = max(sizes, default=x[0].nbytes)
    return largest, max(sum(sizes), largest)


def auto_batch_size(largest: int | None, total: int | None, device: Any, arrow_rows: int, free_bytes: int | None = None) -> int:
    """Rows per chunk for activations of ``largest`` / ``total`` bytes per row (the rule in the module's doc),
    a power of two, at most ``arrow_rows``; ``free_bytes``: the GPU's free memory (read from the device when None).
    Unknown activations (None) give ``MAX_CPU_ROWS``."""
    if largest is None or total is None:
        return max(1, min(MAX_CPU_ROWS, arrow_rows))
    if getattr(device, "type", device) == "cuda":
        if free_bytes is None:
            import torch

            free_bytes = torch.cuda.mem_get_info(device)[0]
        rows, ceiling = GPU_MEMORY_SHARE * free_bytes / max(total, 1), MAX_GPU_ROWS
    else:
        rows, ceiling = CPU_CHUNK_BYTES / max(largest, 1), MAX_CPU_ROWS
    rows = 2 ** int(math.log2(max(rows, 1)))
    return max(1, min(max(MIN_ROWS, min(rows, ceiling)), arrow_rows))


# -- one chunk's forward pass ------------------------------------------------------------
def launch(net, x: np.ndarray, task, thresholds: list[float] | None = None, precision: str = "32",
           label: str | None = None) -> Callable[[], Outputs]:
    """Start the forward pass of one chunk of shaped inputs where ``net`` is; the returned function waits
    for it and returns the named numpy outputs.

    With ``label`` the inputs are checked for NaN and infinite values where
    they are computed on; an ``arrow.InputError`` starting with ``label`` says
    how many. On the CPU the chunk is checked and computed before this
    returns. On a GPU this only queues the work (see the module's doc); the
    check is read with the outputs.
    """
    import torch

    from sparkneural import devices

    device = next(net.parameters()).device
    with torch.inference_mode():
        inputs = torch.from_numpy(x)
        if device.type != "cuda":
            # before the network: one that turns values into indices would fail on NaN with an error of its own
            if label is not None and not bool(torch.isfinite(inputs.sum())):  # NaN and infinity reach the sum
                bad = int((~torch.isfinite(inputs)).sum())  # or the sum overflowed: count exactly
                if bad:
                    raise arrow.not_finite(label, bad)
            with devices.autocast(precision, device):
                outputs = task.outputs(net, inputs, thresholds)
            host = {k: (v.float() if v.dtype in (torch.float16, torch.bfloat16) else v).numpy() for k, v in outputs.items()}
            return lambda: host
        return _launch_on_gpu(net, inputs, device, task, thresholds, precision, label)


def forward(net, x: np.ndarray, task, thresholds: list[float] | None = None, precision: str = "32",
            label: str | None = None) -> Outputs:
    """Named numpy outputs of ``net`` for one chunk of shaped inputs (``launch``, then its wait)."""
    return launch(net, x, task, thresholds, precision, label)()


_streams = threading.local()


def _gpu_streams(device) -> tuple[Any, Any]:
    """(copy stream, compute stream) of this thread for ``device``."""
    import torch

    found = getattr(_streams, "by_device", None)
    if found is None:
        found = _streams.by_device = {}
    if device not in found:
        found[device] = (torch.cuda.Stream(device), torch.cuda.Stream(device))
    return found[device]


def _launch_on_gpu(net, inputs, device, task, thresholds, precision, label) -> Callable[[], Outputs]:
    import torch

    from sparkneural import devices

    copy, compute = _gpu_streams(device)
    pinned = inputs.pin_memory()  # page-locked, so that the copy below does not block this thread
    with torch.cuda.stream(copy):
        on_device = pinned.to(device, non_blocking=True)
    compute.wait_stream(copy)
    with torch.cuda.stream(compute):
        on_device.record_stream(compute)  # made on the copy stream, used and freed on this one
        bad = None
        if label is not None:
            finite = torch.isfinite(on_device)
            bad = (~finite).sum()
            on_device = torch.where(finite, on_device, 0)  # the network runs; the error comes with the outputs
        with devices.autocast(precision, device):
            outputs = task.outputs(net, on_device, thresholds)
        packed, unpack = _pack(outputs, bad)
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        done = torch.cuda.Event()
        done.record(compute)

    def wait() -> Outputs:
        nonlocal pinned
        done.synchronize()
        pinned = None  # the copy from it has finished
        found, values = unpack(host.numpy())
        if found:
            raise arrow.not_finite(label, found)
        return values

    return wait


def _pack(outputs: dict[str, Any], bad) -> tuple[Any, Callable[[np.ndarray], tuple[int, Outputs]]]:
    """Every output flattened into one device tensor (float64 if one output is, else float32), the count of
    non-finite inputs last; and the function that splits the host copy back into numpy outputs."""
    import torch

    wide = any(v.dtype == torch.float64 for v in outputs.values())
    dtype = torch.float64 if wide else torch.float32
    names = list(outputs)
    shapes = [tuple(outputs[k].shape) for k in names]
    kinds = [np.float32 if outputs[k].dtype in (torch.float16, torch.bfloat16) else
             torch.empty(0, dtype=outputs[k].dtype).numpy().dtype for k in names]
    parts = [outputs[k].reshape(-1).to(dtype) for k in names]
    parts.append((bad if bad is not None else torch.zeros((), device=parts[0].device)).reshape(1).to(dtype))
    sizes = [math.prod(s) for s in shapes]

    def unpack(flat: np.ndarray) -> tuple[int, Outputs]:
        values, start = {}, 0
        for name, shape, kind, size in zip(names, shapes, kinds, sizes):
            values[name] = flat[start : start + size].reshape(shape).astype(kind, copy=False)
            start += size
        return int(flat[-1]), values

    return torch.cat(parts), unpack


# -- Arrow batches in, encoded outputs out ------------------------------------------------
def score(
    batches: Iterator[Any],
    *,
    column: Callable[[Any], pa.Array],
    width: int,
    batch_size: int,
    network: Callable[[np.ndarray], Callable[[], Outputs]],
    outputs: Encoders,
    label: str,
    trace: list[tuple[str, float, float]] | None = None,
) -> Iterator[tuple[Any, list[pa.Array]]]:
    """``(batch, encoded outputs)`` for each of ``batches``, in order.

    ``column(batch)`` is the features column of a batch; ``network(x)``
    starts a float32 (rows, width) chunk (``launch``) and returns its wait;
    each ``outputs`` entry is (output name, Arrow encoder). The forward passes
    run in a thread of their own (see the module's doc). ``trace`` collects
    ``(stage, start, end)`` (``time.perf_counter``) of every decode, forward
    and encode.
    """
    clock = time.perf_counter

    def timed(stage: str, work: Callable[..., Any], *args) -> Any:
        if trace is None:
            return work(*args)
        started = clock()
        try:
            return work(*args)
        finally:
            trace.append((stage, started, clock()))

    def forward_batch(x: np.ndarray) -> list[Callable[[], Outputs]]:
        if not len(x):  # the outputs' shapes, from one row of zeros
            one = network(np.zeros((1, *x.shape[1:]), x.dtype))
            return [lambda: {k: v[:0] for k, v in one().items()}]
        return [network(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]

    def finish(batch, valid, launched) -> tuple[Any, list[pa.Array]]:
        results = [wait() for wait in launched.result()]

        def encode() -> list[pa.Array]:
            return [encode_(np.concatenate([r[key] for r in results]), valid) for key, encode_ in outputs]

        return batch, timed("encode", encode)

    import torch

    # OpenMP keeps its thread count per thread: the forward thread gets the caller's, not every core
    forward_thread = ThreadPoolExecutor(1, thread_name_prefix="sparkneural-forward", initializer=torch.set_num_threads,
                                        initargs=(torch.get_num_threads(),))
    pending: deque = deque()
    try:
        for batch in batches:
            x, valid = timed("decode", arrow.features_matrix, column(batch), width, label, False)
            pending.append((batch, valid, forward_thread.submit(timed, "forward", forward_batch, x)))
            if len(pending) > 1:  # the batch before: encoded while this one's forward passes run
                yield finish(*pending.popleft())
        while pending:
            yield finish(*pending.popleft())
    finally:
        forward_thread.shutdown(wait=True, cancel_futures=True)


def append_columns(scored: Iterator[tuple[pa.RecordBatch, list[pa.Array]]], names: list[str]) -> Iterator[pa.RecordBatch]:
    """Each scored batch with its encoded outputs appended as the columns ``names`` (``mapInArrow``)."""
    for batch, columns in scored:
        yield pa.RecordBatch.from_arrays(list(batch.columns) + columns, names=list(batch.schema.names) + names)


def as_structs(scored: Iterator[tuple[pa.Array, list[pa.Array]]], names: list[str]) -> Iterator[pa.StructArray]:
    """The encoded outputs of each scored array as one struct array with the fields ``names`` (an Arrow UDF)."""
    for _, columns in scored:
        yield pa.StructArray.from_arrays(columns, names=names)
