"""Data-parallel training in several processes of one machine (torch.distributed, gloo).

Why on a CPU: the `tiny` model's tensors are small, so a second torch thread inside one
process speeds a step up far less than a second process working on its own share of the
batch (bench/parallel_training.py measures both). Each process holds a fixed shard of the
training images (its backbone-feature cache then only ever sees its own images), computes
the gradient of its share of every batch, the gradients are averaged (one all-reduce of a
flat buffer per step) and every process takes the same optimizer step, so the weights stay
identical. Process 0 validates, logs and writes the checkpoints.
"""
from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Sampler

# A rank that waits longer than this for the others has lost them (a crashed peer is
# normally noticed at once by the launcher; this only bounds a hang).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


class Parallel:
    """This process's rank among `world` and the collective steps training needs. With
    world 1 every method is the single-process answer and no process group exists."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True when `flag` is true in any process (a stop, a diverged batch)."""
        if self.world == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def from_main(self, value: float) -> float:
        """Process 0's `value` in every process (decisions that must agree, e.g. the lr drop)."""
        if self.world == 1:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Each key summed over the processes; a key one process lacks counts 0 there (a
        batch without persons has no denoising terms, say)."""
        if self.world == 1:
            return dict(values)
        key_lists: list = [None] * self.world
        dist.all_gather_object(key_lists, sorted(values))
        keys = sorted(set().union(*key_lists))
        tensor = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64)
        dist.all_reduce(tensor)
        return dict(zip(keys, tensor.tolist()))

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast_weights(self, module: nn.Module) -> None:
        """Process 0's parameters and buffers everywhere: every process starts identical."""
        if self.world == 1:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Mean gradient over the processes, in place. A parameter no process gave a
        gradient keeps none (AdamW then skips it, as in a single process)."""
        if self.world == 1:
            return
        has = [p.grad is not None for p in parameters]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in parameters] + [torch.tensor(has, dtype=parameters[0].dtype)])
        dist.all_reduce(flat)
        flat /= self.world
        counts = flat[-len(parameters):]
        offset = 0
        for p, count in zip(parameters, counts.tolist()):
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if count > 0 else None
            offset += n


class ShardSampler(Sampler[int]):
    """A fixed shard of the dataset per process, shuffled again each epoch.

    The shards are a seeded permutation dealt round-robin, padded by repetition to one
    length, so every process runs the same number of steps (a collective would otherwise
    wait forever for a process that has finished its epoch)."""

    def __init__(self, size: int, rank: int, world: int, seed: int = 0):
        if size < world:
            raise ValueError(f"{size} training images cannot be shared by {world} processes; "
                             "use fewer processes")
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
        shard = order[rank::world]
        length = math.ceil(size / world)
        self.indices = (shard * 2)[:length]
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter([self.indices[i] for i in torch.randperm(len(self.indices),
                                                             generator=generator).tolist()])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, threads: int, fn, args: tuple, results) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=COLLECTIVE_TIMEOUT)
    try:
        value = fn(Parallel(rank, world), *args)
        results.put((rank, "ok", value))
    except BaseException as e:  # the parent re-raises it with its own type
        results.put((rank, "error", e))
        raise
    finally:
        dist.destroy_process_group()


def launch(fn, world: int, threads: int, *args) -> list:
    """Run fn(Parallel(rank, world), *args) in `world` new processes of `threads` torch
    threads each; return their values in rank order. An exception in any process ends them
    all and is raised here as it was raised there (a DataError stays a DataError)."""
    results = mp.get_context("spawn").SimpleQueue()
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    context = mp.start_processes(_worker, args=(world, free_port(), threads, fn, args, results),
                                 nprocs=world, join=False, start_method="spawn")
    received: list[tuple] = []
    try:
        # Read while waiting: a value larger than the pipe's buffer blocks its writer until
        # it is read, so joining first could wait forever.
        while not context.join(timeout=0.2):
            _drain(results, received)
    except mp.ProcessRaisedException as e:
        _drain(results, received)
        errors = [value for _, status, value in received if status == "error"]
        raise errors[0] if errors else e from None
    except mp.ProcessExitedException as e:
        raise RuntimeError(f"a training process died ({e}); see its output above") from None
    _drain(results, received)
    values = {rank: value for rank, _, value in received}
    return [values[rank] for rank in range(world)]


def _drain(results, received: list) -> None:
    while not results.empty():
        received.append(results.get())
