"""Processes and devices: rank, world size, barrier, device choice, process group — in one place.

Every stage runs unchanged under `torchrun` / `accelerate launch`: they set RANK / WORLD_SIZE /
LOCAL_RANK, and this module reads them. Rank 0 reports and publishes artifacts; the others compute
their share and wait at barriers. A single process (no launcher) is rank 0 of a world of 1, and no
process group is created for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ifguide_cli.core.errors import IfguideError


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) without a launcher."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Rank 0 (or a plain single process): the one that reports and publishes."""
    return rank_and_world()[0] == 0


def local_rank() -> int:
    rank, world = rank_and_world()
    return int(os.environ.get("LOCAL_RANK", rank if world > 1 else 0))


def resolve_device(preference: str | None = "auto") -> str:
    """`auto` → this process's CUDA device when there is one, else `cpu`; `cuda` without a GPU is an error."""
    import torch

    preference = preference or "auto"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise IfguideError("--device cuda was asked for but no CUDA device is available", hint="use --device cpu",
                           exit_code=2)
    if preference == "cpu" or not torch.cuda.is_available():
        return "cpu"
    if preference not in ("auto", "cuda"):
        return preference  # an explicit cuda:N
    return f"cuda:{local_rank()}" if rank_and_world()[1] > 1 else "cuda"


def init_process_group(device: str) -> None:
    """Join the launcher's process group (nccl on CUDA, gloo on CPU) once; nothing for a single process."""
    if rank_and_world()[1] <= 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")


def barrier() -> None:
    """Wait for every process of a distributed run (joining its process group first); no-op alone."""
    if rank_and_world()[1] <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        init_process_group(resolve_device("auto"))
    dist.barrier()


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run and its device."""

    rank: int
    world: int
    local_rank: int
    device: Any  # torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(preference: str | None = "auto") -> DistInfo:
    """Choose this process's device and join the process group of a distributed run."""
    import torch

    name = resolve_device(preference)
    init_process_group(name)
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    rank, world = rank_and_world()
    return DistInfo(rank, world, local_rank(), device)


def device_label(device: Any, world: int | None = None) -> str:
    """A human name of the device for manifests: the GPU's name or `cpu`, with `× N` for N processes."""
    import torch

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    world = rank_and_world()[1] if world is None else world
    return f"{name} × {world}" if world > 1 else name


def check_fsdp(fsdp: str | None) -> None:
    """`--fsdp` shards over CUDA GPUs: on a machine without one accelerate leaves FSDP off and the run would silently be
    plain data parallel (seen with the gloo backend on CPU), so it is refused before any work."""
    import torch

    if fsdp and not torch.cuda.is_available():
        raise IfguideError("--fsdp needs CUDA GPUs: without one the HF Trainer does not shard and the run would be plain "
                           "data parallel", hint="drop --fsdp on this machine (torchrun without it runs DDP)", exit_code=2)
