"""Data-parallel training over several processes, launched by torchrun.

`torchrun --nproc_per_node N --no-python clickpose train ...` starts N copies of the command;
each reads its rank from the environment torchrun sets, joins one process group (NCCL on
GPUs, one GPU per process; gloo on a CPU), trains on its share of every epoch
(torch's DistributedSampler) with `--batch-size` images a step, and after each backward
pass the gradients are averaged, so every process takes the same optimizer step from the
same weights. Process 0 validates, logs and writes the run folder; the others wait for it.
Several nodes work the same way (torchrun's --nnodes and rendezvous options).

Why not torch's DistributedDataParallel wrapper: a training step calls several of the
model's methods (encode, detect, decode, the feedback rounds' decodes), not one forward,
and DDP prepares its gradient hooks in forward. One all-reduce of a flat buffer after the
backward pass keeps the step as it is; what it gives up is DDP's overlap of communication
with the backward pass.

Without torchrun (WORLD_SIZE unset or 1) every method gives the single-process answer and
no process group is made.
"""
from __future__ import annotations

import hashlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

# A process that waits longer than this for the others has lost them. Process 0's
# validation runs while the others wait, so the bound is generous.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


class Distributed:
    """This process's place among `world` and the collective steps training needs."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0,
                 device: torch.device | None = None):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        # Where collectives put their tensors: the GPU under NCCL, the CPU under gloo.
        self.device = device or torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def any(self, flag: bool) -> bool:
        """True when `flag` is true in any process (a deadline passed, a diverged batch)."""
        if not self.active:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def from_main(self, value: float) -> float:
        """Process 0's `value` in every process (decisions that must agree, e.g. the lr drop)."""
        if not self.active:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Each key summed over the processes; a key one process lacks counts 0 there (a
        batch without persons has no denoising terms, say)."""
        if not self.active:
            return dict(values)
        key_lists: list = [None] * self.world
        dist.all_gather_object(key_lists, sorted(values))
        keys = sorted(set().union(*key_lists))
        tensor = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(tensor)
        return dict(zip(keys, tensor.tolist()))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_weights(self, module: nn.Module) -> None:
        """Process 0's parameters and buffers everywhere: every process starts identical
        (fresh layers draw their initial values from each process's own seed)."""
        if not self.active:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def sync_buffers(self, module: nn.Module) -> None:
        """Process 0's buffers everywhere. Batch norms that train keep running statistics
        of their own process's batches; torch's DistributedDataParallel takes process 0's,
        and so does this, once an epoch, before the weights are compared and saved."""
        if not self.active:
            return
        for tensor in module.buffers():
            dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Mean gradient over the processes, in place, in one all-reduce of a flat buffer.
        A parameter no process gave a gradient keeps none (AdamW then skips it, as in one
        process); one that only some processes reached averages with zeros from the others."""
        if not self.active or not parameters:
            return
        reached = torch.tensor([p.grad is not None for p in parameters],
                               dtype=parameters[0].dtype, device=parameters[0].device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in parameters] + [reached])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, count in zip(parameters, flat[-len(parameters):].tolist()):
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if count > 0 else None
            offset += n

    def check_same_weights(self, module: nn.Module) -> None:
        """Raise when the processes' weights differ: the run would go on training N models
        while saving one. Costs one small all-gather; called once an epoch."""
        if not self.active:
            return
        digests: list = [None] * self.world
        dist.all_gather_object(digests, weights_digest(module))
        if len(set(digests)) > 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RuntimeError(
                f"data-parallel training: the weights of process(es) {differ} differ from "
                "process 0's after this epoch, so the processes no longer train one model; "
                "start the run again (a process that skipped an optimizer step or loaded "
                "other weights is the usual cause)")


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in order (bitwise: all-reduced gradients and
    the same optimizer step give identical bits in every process)."""
    h = hashlib.sha256()
    for tensor in [*module.parameters(), *module.buffers()]:
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def launched_world() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join_process_group(device_name: str | None) -> Distributed:
    """Under torchrun: join the process group (NCCL when training on CUDA, gloo on a CPU)
    and return this process's place, with the CUDA device its local rank owns. Without
    torchrun: the single-process Distributed()."""
    world = launched_world()
    if world <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = (device_name or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', world)} "
                             f"processes on this node but it has {torch.cuda.device_count()} "
                             "CUDA devices; pass --nproc_per_node at most that, or --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return Distributed(rank, world, local_rank, device)


def leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
