"""Data-parallel helpers for runs launched by ``torchrun`` (DistributedDataParallel).

Nothing here starts processes: ``make train NPROC=4`` launches ``torchrun --nproc_per_node 4``, which sets
``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; the trainer initialises the process group from those on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from common.errors import UserError

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single-process run): the only process that writes artefacts."""
    return rank() == 0


def init_if_needed(device: torch.device) -> None:
    """Join the process group torchrun prepared (nccl on CUDA, gloo on CPU). Under nccl this rank is first pinned
    to its GPU (``cuda`` without an index is this rank's ``cuda:<LOCAL_RANK>``): collectives that name no device
    (``barrier``, ``all_gather_object``) run on the current CUDA device, which would otherwise be ``cuda:0`` on
    every rank."""
    if is_distributed() and not dist.is_initialized():
        if device.type == "cuda":
            device = resolve_device(str(device))  # the rank's own cuda:<LOCAL_RANK> when no index is given
            torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def resolve_device(name: str = "auto", check: bool = False) -> torch.device:
    """``auto``: this rank's CUDA device when there is one, else the CPU. With ``check``, a device this machine
    does not have (``cuda`` without a GPU, ``cuda:3`` with two) is a :class:`UserError`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() if is_distributed() else torch.cuda.current_device())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device {name!r} is not a device name (auto, cpu, cuda, cuda:N, mps)") from None
    if check and device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError(f"device {name!r}: this machine has no CUDA GPU (use device=auto or cpu)")
        if device.index is not None and device.index >= count:
            raise UserError(
                f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}"
            )
    if check and device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r}: MPS is not available on this machine")
    if check and device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and device.index is None and is_distributed():
        device = torch.device("cuda", local_rank())
    return device


def from_main(compute: Callable[[], T], device: torch.device | None = None) -> T:
    """``compute()`` run on rank 0 alone, its result on every rank. Every rank must call it: under torchrun it is
    one broadcast (joining the process group first, on ``device`` or this rank's default); in a single process it
    is ``compute()``. An exception in ``compute`` is raised on rank 0 as it is and, as a :class:`UserError` with
    its message, on the other ranks, so no rank is left waiting for the others."""
    if not is_distributed():
        return compute()
    init_if_needed(device if device is not None else resolve_device())
    box: list = [None]
    failure: BaseException | None = None
    if is_main_process():
        try:
            box = [("ok", compute())]
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks, then raised here as it is
            failure = exc
            box = [("error", str(exc) or type(exc).__name__)]
    nccl = dist.get_backend() == "nccl"
    dist.broadcast_object_list(
        box, src=0, device=torch.device("cuda", torch.cuda.current_device()) if nccl else None
    )
    if failure is not None:
        raise failure
    kind, value = box[0]
    if kind == "error":
        raise UserError(value)
    return value
