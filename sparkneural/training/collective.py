"""The few collective operations the training loop needs, one class per runtime.

The loop calls only these: ``rank``, ``size``, ``local_rank``,
``local_size``, ``use_device``, ``allreduce_sum``, ``gather``,
``broadcast_state``, ``wrap``, ``set_trainable``, ``backward`` and
``step``. It never imports Horovod or torch.distributed itself.

An exception raised inside a collective operation is raised again as a
``CollectiveError`` (the original is its ``__cause__``): the driver takes it,
like the libraries' own error types, for the consequence of another rank's
loss or error, never for a cause of its own (see
``sparkneural.training.reports.is_collective_error``). What the loop does
outside these operations (loading data, the model's forward) keeps its type.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


class CollectiveError(RuntimeError):
    """A collective operation failed, most often because another rank went away or failed."""


@contextlib.contextmanager
def collective_call(operation: str) -> Iterator[None]:
    """Raise any exception from inside the block as a ``CollectiveError`` naming ``operation``."""
    try:
        yield
    except CollectiveError:
        raise
    except Exception as err:
        raise CollectiveError(f"{operation} failed: {type(err).__name__}: {err}") from err


def horovod_gpu_error() -> str | None:
    """Why the installed horovod cannot train on GPUs (it was built without NCCL), or None."""
    import horovod
    import horovod.torch as hvd

    if hvd.nccl_built():
        return None
    return (f"device: a rank computes on a GPU, but horovod {horovod.__version__} was built without GPU operations, so it "
            "cannot allreduce CUDA gradients; rebuild it with HOROVOD_GPU_OPERATIONS=NCCL (sparkneural build-horovod does "
            "where torch has CUDA and nvcc is on the PATH), or set device='cpu' or backend='torch_distributor'")


class LocalCollective:
    """One process, no communication."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    device = torch.device("cpu")

    def gpu_error(self) -> str | None:
        """Why this runtime cannot train on GPUs, or None."""
        return None

    def use_device(self, device: torch.device) -> None:
        """The loop computes on ``device``: what this runtime reduces must go there."""
        self.device = device

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (plain data), in rank order."""
        return [value]

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def broadcast_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        return model, optimizer

    def average_buffers(self, model: nn.Module) -> None:
        pass

    def backward(self, loss: torch.Tensor) -> None:
        """Compute the gradients of ``loss`` (and, where the runtime hooks it there, start their reduction)."""
        loss.backward()

    def set_trainable(self, model: nn.Module, network: nn.Module, frozen: set[str]) -> nn.Module:
        """Freeze the parameters named in ``frozen``, train all others; returns the network to call."""
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name not in frozen)
        return network

    def step(self, optimizer: torch.optim.Optimizer, model: nn.Module, clip_norm: float | None, scaler: torch.amp.GradScaler) -> None:
        """Clip (on unscaled gradients) and step through ``scaler``, which skips a step whose gradients overflowed."""
        if clip_norm:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        scaler.step(optimizer)
        scaler.update()


class HorovodCollective(LocalCollective):
    """Horovod: gradients averaged by ``hvd.DistributedOptimizer`` (Gloo on CPU, NCCL on GPU)."""

    def __init__(self) -> None:
        import horovod.torch as hvd

        with collective_call("horovod init"):
            hvd.init()
        self.hvd = hvd
        self.rank, self.size, self.local_rank, self.local_size = hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size()
        self.resumed = False

    def gpu_error(self) -> str | None:
        return horovod_gpu_error()

    def gather(self, value):
        with collective_call("horovod allgather"):
            return self.hvd.allgather_object(value, name="sparkneural.gather")

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
        with collective_call("horovod allreduce"):
            return self.hvd.allreduce(tensor, op=self.hvd.Sum, name="sparkneural.metrics").numpy()

    def broadcast_state(self, model, optimizer) -> None:
        # Horovod creates a fresh optimizer's state with one zero-gradient step, which
        # weight decay turns into a real update: the weights are put back after it.
        weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        self.resumed = bool(optimizer.state)  # loaded from a checkpoint, not made by that step
        with collective_call("horovod broadcast of the optimizer state"):
            self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        model.load_state_dict(weights)
        with collective_call("horovod broadcast of the parameters"):
            self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)

    def wrap(self, model, optimizer):
        # DistributedOptimizer is a new optimizer over the same parameter groups, with an
        # empty state: a resumed run carries its loaded state (Adam's moments and step) over.
        wrapped = self.hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        if self.resumed:
            wrapped.load_state_dict(optimizer.state_dict())
        return model, wrapped

    def average_buffers(self, model) -> None:
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                with collective_call("horovod allreduce of the buffers"):
                    buffer.copy_(self.hvd.allreduce(buffer, op=self.hvd.Average, name=f"sparkneural.buffer.{name}"))

    # backward: DistributedOptimizer's hooks start the gradients' allreduce there, and raise
    # HorovodInternalError (a type is_collective_error knows) when Horovod has shut down.

    def step(self, optimizer, model, clip_norm, scaler) -> None:
        with collective_call("horovod gradient allreduce"):
            optimizer.synchronize()
        # Horovod allreduces a zero gradient for frozen parameters; dropping it keeps
        # them bit-identical (weight decay would otherwise still move them).
        for parameter in model.parameters():
            if not parameter.requires_grad:
                parameter.grad = None
        with optimizer.skip_synchronize():
            super().step(optimizer, model, clip_norm, scaler)


class TorchDistributedCollective(LocalCollective):
    """torch.distributed with DistributedDataParallel (gloo on CPU, nccl on GPU).

    ``device`` is the training's ``device`` Param: NCCL when it may use a
    GPU and this process sees one, else Gloo.
    """

    def __init__(self, device: str = "auto", store: Any = None, timeout_s: float | None = None) -> None:
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            # With a store: rank and world size from RANK and WORLD_SIZE; without: the env:// rendezvous.
            options: dict[str, Any] = {} if store is None else {
                "store": store, "rank": int(os.environ["RANK"]), "world_size": int(os.environ["WORLD_SIZE"])}
            if timeout_s is not None:
                options["timeout"] = datetime.timedelta(seconds=timeout_s)
            with collective_call("torch.distributed init_process_group"):
                dist.init_process_group("nccl" if device != "cpu" and torch.cuda.is_available() else "gloo", **options)
        self.dist = dist
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", self.size))

    def use_device(self, device) -> None:
        if (self.dist.get_backend() == "nccl") != (device.type == "cuda"):
            raise RuntimeError(f"device: the rank computes on {device} but torch.distributed runs {self.dist.get_backend()}")
        super().use_device(device)

    def gather(self, value):
        values = [None] * self.size
        with collective_call("torch.distributed all_gather_object"):
            self.dist.all_gather_object(values, value)
        return values

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64)).clone().to(self.device)  # NCCL reduces GPU tensors only
        with collective_call("torch.distributed all_reduce"):
            self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def broadcast_state(self, model, optimizer) -> None:
        state = [optimizer.state_dict()]
        with collective_call("torch.distributed broadcast of the model and optimizer state"):
            for tensor in model.state_dict().values():
                self.dist.broadcast(tensor, src=0)
            self.dist.broadcast_object_list(state, src=0)
        optimizer.load_state_dict(state[0])

    def wrap(self, model, optimizer):
        return self._ddp(model), optimizer

    def set_trainable(self, model, network, frozen):
        # DDP reduces the gradients of the parameters that required one when it was built.
        super().set_trainable(model, network, frozen)
        return self._ddp(model)

    def _ddp(self, model):
        with collective_call("DistributedDataParallel setup"):  # it checks and broadcasts the parameters
            return _DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def average_buffers(self, model) -> None:
        for buffer in model.buffers():
            if buffer.is_floating_point():
                with collective_call("torch.distributed all_reduce of the buffers"):
                    self.dist.all_reduce(buffer, op=self.dist.ReduceOp.SUM)
                buffer.div_(self.size)

    def backward(self, loss) -> None:
        # DDP's allreduce runs inside backward, besides the model's own gradient code. A c10d
        # backend's failure arrives as a bare RuntimeError (gloo's transport errors) or as a
        # DistError (NCCL); an OutOfMemoryError or the model's own exception keeps its type.
        try:
            loss.backward()
        except RuntimeError as err:
            if type(err) is not RuntimeError:
                raise
            raise CollectiveError(f"DistributedDataParallel gradient allreduce failed: RuntimeError: {err}") from err

    def close(self) -> None:
        self.dist.destroy_process_group()


class _DistributedDataParallel(DistributedDataParallel):
    """DDP whose own communication around the model's forward (rebuilding its buckets,
    broadcasting buffers) raises ``CollectiveError``; the model's forward is not inside it."""

    def _pre_forward(self, *inputs, **kwargs):
        with collective_call("DistributedDataParallel forward synchronisation"):
            return super()._pre_forward(*inputs, **kwargs)

    def _post_forward(self, output):
        with collective_call("DistributedDataParallel forward synchronisation"):
            return super()._post_forward(output)
