"""Data-parallel training under ``torchrun``: find the job, join its process group, combine values.

:class:`~brainlake.training.Trainer` uses these helpers when the process is one
rank of a ``torch.distributed`` job, either launched by ``torchrun`` (which sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``) or inside a process group that the
caller initialized. The group uses NCCL for CUDA devices and gloo otherwise.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from brainlake.exceptions import TrainingError

__all__ = ["DistributedJob", "find_job", "gather_arrays", "job_device", "join_job", "sum_across_ranks"]

logger = logging.getLogger(__name__)

_TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedJob:
    """This process's place in a ``torch.distributed`` job.

    Attributes:
        rank: Global rank, 0 for the process that logs and writes checkpoints.
        local_rank: Rank on this machine, which picks the GPU.
        world_size: Number of processes in the job.
        initialized: Whether the process group already exists.
    """

    rank: int
    local_rank: int
    world_size: int
    initialized: bool

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def find_job(request: bool | None) -> DistributedJob | None:
    """Return the job this process is a rank of, or ``None`` to train alone.

    Args:
        request: ``None`` joins a job when there is one: an initialized process
            group, or ``torchrun``'s variables with ``WORLD_SIZE`` above 1.
            ``False`` ignores any job. ``True`` requires one.

    Raises:
        TrainingError: ``request`` is ``True`` but there is no job, or the
            ``torchrun`` variables are incomplete or not numbers.
    """
    if request is False:
        return None
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        return DistributedJob(dist.get_rank(), local_rank, dist.get_world_size(), initialized=True)

    present = [name for name in _TORCHRUN_VARIABLES if name in os.environ]
    if present and len(present) < len(_TORCHRUN_VARIABLES):
        missing = [name for name in _TORCHRUN_VARIABLES if name not in os.environ]
        raise TrainingError(
            f"the environment sets {present!r} but not {missing!r}; launch the script with "
            "torchrun, which sets all three, or unset them to train in one process"
        )
    job = _job_from_environment() if present else None
    if job is not None and job.world_size > 1:
        return job
    if request:
        raise TrainingError(
            "distributed=True needs a torch.distributed job, but no process group is initialized "
            "and WORLD_SIZE is not above 1; launch the script with torchrun --nproc_per_node=N"
        )
    return None


def _job_from_environment() -> DistributedJob:
    try:
        world_size, rank, local_rank = (int(os.environ[name]) for name in _TORCHRUN_VARIABLES)
    except ValueError:
        values = {name: os.environ[name] for name in _TORCHRUN_VARIABLES}
        raise TrainingError(f"the torchrun variables must be whole numbers, got {values!r}") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise TrainingError(
            f"RANK={rank} and LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world_size}"
        )
    return DistributedJob(rank, local_rank, world_size, initialized=False)


def job_device(job: DistributedJob, device: torch.device) -> torch.device:
    """Return the device of this rank: ``cuda:LOCAL_RANK`` for an index-free CUDA device.

    An explicit index (``cuda:1``) is kept, so a caller may place ranks itself.
    """
    if device.type != "cuda" or device.index is not None:
        return device
    count = torch.cuda.device_count()
    if job.local_rank >= count:
        raise TrainingError(
            f"LOCAL_RANK={job.local_rank} needs GPU {job.local_rank}, but this machine has {count}; "
            f"start at most {count} processes per node (torchrun --nproc_per_node={count})"
        )
    return torch.device("cuda", job.local_rank)


def join_job(job: DistributedJob, device: torch.device) -> None:
    """Initialize the process group of ``job`` unless it exists, with the backend for ``device``.

    The group reads ``MASTER_ADDR`` and ``MASTER_PORT`` from the environment, as
    ``torchrun`` sets them, and is destroyed when the interpreter exits.
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if job.initialized:
        return
    backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend, rank=job.rank, world_size=job.world_size)
    atexit.register(_destroy_process_group)
    if job.is_main:
        logger.info("joined a %s process group of %d ranks", backend, job.world_size)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _collective_device(device: torch.device) -> torch.device:
    # NCCL moves only CUDA tensors; gloo reduces CPU tensors.
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_across_ranks(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return the element-wise sum of ``values`` over all ranks, as a float64 CPU tensor.

    Every rank must call it with a tensor of the same shape.
    """
    combined = values.detach().to(_collective_device(device), dtype=torch.float64)
    dist.all_reduce(combined, op=dist.ReduceOp.SUM)
    return combined.cpu()


def gather_arrays(arrays: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """Concatenate each named array over all ranks, in rank order.

    The arrays are pickled and sent whole, so their size should stay modest:
    one row per evaluated sample. Ranks may hold different numbers of rows.
    """
    gathered: list[dict[str, npt.NDArray[Any]] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, arrays)
    return {
        name: np.concatenate([part[name] for part in gathered if part is not None])
        for name in arrays
    }
