"""Where a rank or a scoring task computes, and in which precision.

The rule, the same for training ranks, ``transform`` and BERT features:

- ``device="cpu"``: the CPU. ``"cuda"``: a GPU, or an error when this
  process sees none. ``"auto"``: a GPU when this process sees one.
- Which GPU: the address Spark's GPU scheduling assigned to the task
  (``spark.task.resource.gpu.amount``), else the local rank. Where
  ``CUDA_VISIBLE_DEVICES`` lists the address (a cluster manager, or
  TorchDistributor, restricted the process to its GPUs) the index is its
  position there, as CUDA numbers the visible devices.

Every backend's rank runs in its barrier task, so ``TaskContext`` gives the
addresses. ``SPARKNEURAL_GPU_ADDRESSES`` (comma-separated), where set in the
process, overrides them: a process that Spark did not start names its GPUs.

Precision: ``"32"``, ``"bf16-mixed"`` (autocast to bfloat16, on CPU or GPU)
or ``"16-mixed"`` (autocast to float16 with a loss scaler; GPU only).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
GPU_ADDRESSES_ENV = "SPARKNEURAL_GPU_ADDRESSES"


def spark_gpu_addresses() -> list[str] | None:
    """The GPU addresses Spark assigned to the running task, or None (no task, or no GPU assigned)."""
    if os.environ.get(GPU_ADDRESSES_ENV):
        return os.environ[GPU_ADDRESSES_ENV].split(",")
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    context = TaskContext.get()  # a barrier task's context too
    gpu = context.resources().get("gpu") if context is not None else None
    return list(gpu.addresses) if gpu is not None and gpu.addresses else None


def cuda_index(address: str) -> int:
    """The CUDA device index of the GPU Spark calls ``address``, as this process numbers its GPUs."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible.index(address) if address in visible else int(address)


def device_type(device: str) -> str:
    """"cpu" or "cuda": what ``device`` means in this process, without touching a GPU.

    ``device="cuda"`` (or ``"cuda:N"``, which BertEmbeddings takes) without a GPU is a ValueError naming the Param.
    """
    import torch

    if device not in DEVICES and not re.fullmatch(r"cuda:\d+", device):
        raise ValueError(f"device: expected one of {list(DEVICES)}, found {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} needs a GPU, but torch {torch.__version__} sees no CUDA device on {socket.gethostname()} "
                         f"({_why_no_cuda(torch)}); use device='auto' or 'cpu'")
    return "cuda"


def resolve(device: str, local_rank: int = 0, addresses: list[str] | None = None) -> Any:
    """The ``torch.device`` that ``device`` stands for here; a GPU is made current before any CUDA work.

    ``addresses`` are the GPUs Spark assigned to the task (``spark_gpu_addresses()``), ``local_rank``
    picks one where Spark assigned none; ``"cuda:N"`` names the index itself.
    """
    import torch

    if device_type(device) == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda:"):
        index = int(device[5:])
    else:
        index = cuda_index(addresses[0]) if addresses else local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def task_device(device: str) -> Any:
    """The device a scoring task computes on: Spark's GPU for the task, else one picked by partition."""
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
    except ImportError:
        context = None
    return resolve(device, context.partitionId() if context is not None else 0, spark_gpu_addresses())


def _why_no_cuda(torch) -> str:
    if torch.version.cuda is None:
        return "a CPU-only build of torch"
    return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}" if "CUDA_VISIBLE_DEVICES" in os.environ else "no device found"


def check_on_driver(device: str, precision: str, same_host: bool) -> str:
    """What the driver can tell of ``device`` and ``precision`` before any job; returns "cpu", "cuda", or "auto"
    when it cannot tell (the ranks or tasks run on other hosts: they check on their executors).

    ``same_host``: the work runs on the driver's host (local mode, or the local backend).
    """
    kind = device_type(device) if same_host or device == "cpu" else device
    if kind != "auto":
        check_precision(precision, kind)
    return kind


def check_precision(precision: str, device: Any) -> None:
    """``precision`` must be one of ``PRECISIONS``, and float16 needs a GPU (``device``: a torch.device or its type)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, found {precision!r}")
    if precision == "16-mixed" and getattr(device, "type", device) != "cuda":
        raise ValueError("precision: '16-mixed' needs a GPU (float16 autocast with a loss scaler); on CPU use 'bf16-mixed' or '32'")


def autocast(precision: str, device: Any):
    """The autocast context of ``precision`` on ``device`` (nothing for "32")."""
    import torch

    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16-mixed" else torch.float16)


def grad_scaler(precision: str, device: Any):
    """A loss scaler, active for "16-mixed" only (a disabled one passes steps straight through)."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")


def to_device(tensor: Any, device: Any) -> Any:
    """``tensor`` on ``device``; from pinned host memory without blocking the host.

    An unpinned tensor is copied directly: pinning it first would only add a
    host copy of its bytes (the readers pin what they hold for longer).
    """
    if tensor.device == device:
        return tensor
    return tensor.to(device, non_blocking=tensor.is_pinned())


def describe(rank: int, device: Any, addresses: list[str] | None, host: str | None = None) -> dict[str, Any]:
    """One entry of ``model.rankDevices``."""
    return {"rank": rank, "host": host or socket.gethostname(), "device": str(device), "gpuAddress": addresses[0] if addresses else None}
