"""Data-parallel training on PyTorch distributed: the process group torchrun sets up, one DDP wrapper per
phase, sharded global batches, reduced figures, and FSDP for families that can be sharded. One process (no
torchrun) is the world of size 1.

The global batch (`train.batch_size`) is drawn identically on every rank from the run's seeded stream and
each rank takes its contiguous slice, so the sequence of global batches does not depend on the number of
processes: a run resumed at another world size continues with the same batches (and `train.accumulate`
splits a rank's slice into micro-batches when it no longer fits).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError


def resolve_device(preference: str = "auto") -> torch.device:
    """train.device: `auto` is the GPU when PyTorch sees one (under torchrun, the one of this process's
    LOCAL_RANK), else the CPU; `cuda` insists on a GPU; `cpu` never uses one."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise GenlabError("train.device=cuda but PyTorch sees no GPU (CPU-only build or no driver); use auto or cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (x86 AVX512-BF16 or AMX, from /proc/cpuinfo): there a
    bf16 product is ~2.5x a float32 one (measured on an AMD EPYC); elsewhere bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    """bfloat16 is fast on `device`: a CUDA GPU that supports it, or a CPU with native bf16 products."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def backend_for(device: torch.device) -> str:
    """nccl for GPU processes, gloo for CPU ones: what PyTorch recommends for each."""
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls, device: str = "auto") -> World:
        """The process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR...), joined on first use, on
        this process's device (`train.device`): nccl between GPUs, gloo between CPU processes. Without
        torchrun: rank 0 of 1."""
        where = resolve_device(device)
        if where.type == "cuda":
            torch.cuda.set_device(where)
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls(device=where)
        if not dist.is_initialized():
            dist.init_process_group(backend_for(where), device_id=where if where.type == "cuda" else None)
        return cls(dist.get_rank(), dist.get_world_size(), where)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def shard(self, batch: Batch, parts: int = 1) -> list[Batch]:
        """This rank's contiguous slice of a global batch, cut into `parts` equal micro-batches."""
        n = batch.x.shape[0]
        if n % (self.size * parts):
            raise GenlabError(f"train.batch_size={n} must be divisible by processes x train.accumulate "
                              f"({self.size} x {parts})")
        step = n // (self.size * parts)
        start = self.rank * parts * step
        return [batch.rows(start + i * step, start + (i + 1) * step) for i in range(parts)]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average named figures over ranks (each rank's figure weighted equally)."""
        if self.size == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.size for k, v in zip(keys, t.tolist(), strict=True)}

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.size > 1:
            dist.all_reduce(t)
        return t

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision for everyone (wall-clock budgets differ slightly between processes)."""
        if self.size == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)  # nccl moves GPU tensors only
        dist.broadcast(t, 0)
        return bool(t.item())


def data_parallel(model: torch.nn.Module, params: list[torch.nn.Parameter],
                  device: torch.device = torch.device("cpu")) -> torch.nn.Module:
    """A DistributedDataParallel view of `model` that averages the gradients of `params` only (one phase:
    a GAN's discriminator phase never touches the generator's gradients, and the other way round)."""
    from torch.nn.parallel import DistributedDataParallel

    wanted = set(map(id, params))
    flags = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in wanted)
    try:
        return DistributedDataParallel(model, broadcast_buffers=True,
                                       device_ids=[device] if device.type == "cuda" else None)
    finally:
        for p in model.parameters():
            p.requires_grad_(flags[id(p)])


# -- FSDP (train.fsdp): parameters, gradients and optimizer state sharded across processes ------------------
# Checkpoints hold full (unsharded) tensors in the same layout as unsharded runs, so a run can resume with or
# without FSDP and at any world size.

def shard_model(model) -> None:
    """FSDP2 `fully_shard` on the family's units (e.g. each GPT block, then the GPT), in place."""
    from torch.distributed.fsdp import fully_shard

    for unit in model.shard_units():
        fully_shard(unit)


def _full(cpu_offload: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def full_model_state(model) -> dict[str, torch.Tensor]:
    """The whole model's tensors on rank 0 (other ranks get {}); every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full())


def load_full_model_state(model, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_full(cpu_offload=False))


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer's full state in torch's usual layout (parameters numbered in order), rank 0 only."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    sd = get_optimizer_state_dict(model, optimizer, options=_full())
    if not sd:
        return {"state": {}, "param_groups": []}
    index = {name: i for i, name in enumerate(p for g in sd["param_groups"] for p in g["params"])}
    return {"state": {index[k]: v for k, v in sd["state"].items()},
            "param_groups": [{**g, "params": [index[p] for p in g["params"]]} for g in sd["param_groups"]]}


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    names = [p for g in get_optimizer_state_dict(model, optimizer, options=_full(False))["param_groups"]
             for p in g["params"]]
    sd = {"state": {names[int(i)]: v for i, v in state["state"].items()},
          "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, sd, options=_full(cpu_offload=False))
