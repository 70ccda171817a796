"""The few collective operations the training loop needs, one class per runtime.

The loop calls only these: ``rank``, ``size``, ``local_size``,
``allreduce_sum``, ``broadcast_state``, ``wrap``, ``set_trainable`` and
``step``. It never
imports Horovod or torch.distributed itself.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn


class LocalCollective:
    """One process, no communication."""

    rank, size, local_size = 0, 1, 1

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def broadcast_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        return model, optimizer

    def average_buffers(self, model: nn.Module) -> None:
        pass

    def set_trainable(self, model: nn.Module, network: nn.Module, frozen: set[str]) -> nn.Module:
        """Freeze the parameters named in ``frozen``, train all others; returns the network to call."""
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name not in frozen)
        return network

    def step(self, optimizer: torch.optim.Optimizer, model: nn.Module, clip_norm: float | None) -> None:
        if clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()


class HorovodCollective(LocalCollective):
    """Horovod: gradients averaged by ``hvd.DistributedOptimizer`` (Gloo on CPU, NCCL on GPU)."""

    def __init__(self) -> None:
        import horovod.torch as hvd

        hvd.init()
        self.hvd = hvd
        self.rank, self.size, self.local_size = hvd.rank(), hvd.size(), hvd.local_size()
        self.resumed = False

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
        return self.hvd.allreduce(tensor, op=self.hvd.Sum, name="sparkdl.metrics").numpy()

    def broadcast_state(self, model, optimizer) -> None:
        # Horovod creates a fresh optimizer's state with one zero-gradient step, which
        # weight decay turns into a real update: the weights are put back after it.
        weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        self.resumed = bool(optimizer.state)  # loaded from a checkpoint, not made by that step
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        model.load_state_dict(weights)
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
                buffer.copy_(self.hvd.allreduce(buffer, op=self.hvd.Average, name=f"sparkdl.buffer.{name}"))

    def step(self, optimizer, model, clip_norm) -> None:
        optimizer.synchronize()
        # Horovod allreduces a zero gradient for frozen parameters; dropping it keeps
        # them bit-identical (weight decay would otherwise still move them).
        for parameter in model.parameters():
            if not parameter.requires_grad:
                parameter.grad = None
        if clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        with optimizer.skip_synchronize():
            optimizer.step()


class TorchDistributedCollective(LocalCollective):
    """torch.distributed with DistributedDataParallel (gloo on CPU, nccl on GPU)."""

    def __init__(self) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.dist = dist
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", self.size))

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64)).clone()
        self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM)
        return tensor.numpy()

    def broadcast_state(self, model, optimizer) -> None:
        for tensor in model.state_dict().values():
            self.dist.broadcast(tensor, src=0)
        state = [optimizer.state_dict()]
        self.dist.broadcast_object_list(state, src=0)
        optimizer.load_state_dict(state[0])

    def wrap(self, model, optimizer):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model), optimizer

    def set_trainable(self, model, network, frozen):
        # DDP reduces the gradients of the parameters that required one when it was built.
        super().set_trainable(model, network, frozen)
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)

    def average_buffers(self, model) -> None:
        for buffer in model.buffers():
            if buffer.is_floating_point():
                self.dist.all_reduce(buffer, op=self.dist.ReduceOp.SUM)
                buffer.div_(self.size)

    def close(self) -> None:
        self.dist.destroy_process_group()
