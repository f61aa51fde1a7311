"""PyTorch access to a built mart's arrays: the dataset, a shard sampler, and loaders.

:class:`MartDataset` reads one split's memory-mapped uint8 array;
:class:`ShardSampler` gives each process of a distributed job its own part of
it; :class:`AugmentedLoader` augments whole batches on their device; and
:class:`ResidentMart` keeps a small mart on the device for
:class:`ResidentLoader`. :meth:`BuiltMart.loader` and :meth:`BuiltMart.to_device`
choose among them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import Augmentation, seeded_generator
from .exceptions import MartError

__all__ = ["AugmentedLoader", "MartDataset", "ResidentLoader", "ResidentMart", "ShardSampler"]

logger = logging.getLogger(__name__)


class MartDataset(Dataset[tuple[torch.Tensor, int]]):
    """One split of a built mart as a map-style torch dataset.

    The images stay in a memory-mapped file; each worker process maps it on
    first use, so nothing is copied whole into a worker. Indexing one item
    returns ``(image, label)`` with a float32 ``(C, H, W)`` image; indexing
    a list of items at once (as :class:`~torch.utils.data.DataLoader` does
    through ``__getitems__``) reads them in one slice and returns a batch.

    Args:
        folder: The built mart's folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by after that.
    """

    def __init__(self, folder: Path, split: str, mean: Sequence[float], std: Sequence[float]) -> None:
        self._images_path = folder / f"{split}-images.npy"
        self.labels = np.load(folder / f"{split}-labels.npy")
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor([value if value > 0 else 1.0 for value in std], dtype=torch.float32).view(1, -1, 1, 1)
        self._images: NDArray[np.uint8] | None = None

    @property
    def images(self) -> NDArray[np.uint8]:
        """The split's uint8 array of shape ``(N, C, H, W)``, memory-mapped."""
        if self._images is None:
            self._images = np.load(self._images_path, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _to_float(self, batch: NDArray[np.uint8]) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(torch.float32).div_(255.0)
        return tensor.sub_(self._mean).div_(self._std)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # A slice of a read-only memmap is read-only; torch wants a writable array.
        return self._to_float(np.array(self.images[index : index + 1]))[0], int(self.labels[index])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.asarray(indices, dtype=np.int64)
        return self._to_float(self.images[order]), torch.from_numpy(self.labels[order])


def keep_batch(batch: Any) -> Any:
    """Return ``batch`` unchanged: the collate function for :class:`MartDataset`, whose batches come collated."""
    return batch


class ShardSampler(Sampler[int]):
    """The indices of one process's shard of a split, in a ``torch.distributed`` job.

    For each epoch every rank computes the same order (a permutation seeded with
    ``seed + epoch`` when shuffling, the array order otherwise) and takes every
    ``num_replicas``-th index from position ``rank`` on, so the shards are
    disjoint. Call :meth:`set_epoch` before each epoch, as
    :class:`~brainlake.training.Trainer` does, to get a new order.

    Args:
        length: Number of items in the split.
        num_replicas: Number of processes sharing the split.
        rank: This process's rank, ``0 <= rank < num_replicas``.
        shuffle: Permute the split each epoch.
        seed: Seed of the permutations; the same on every rank.
        even: Drop the last ``length % num_replicas`` items of each epoch's order
            so that every rank gets the same number of items, and so the same
            number of batches, which DDP training needs (a shuffled order drops
            different items each epoch). Without it every item is in exactly one
            shard, and shard sizes differ by at most one, as evaluation needs.

    Raises:
        ValueError: If ``num_replicas`` or ``rank`` is out of range.
    """

    def __init__(
        self, length: int, *, num_replicas: int, rank: int, shuffle: bool, seed: int = 0, even: bool = False
    ) -> None:
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be at least 1, got {num_replicas!r}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in 0..{num_replicas - 1}, got {rank!r}")
        self.length = length
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.even = even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``. Every rank must pass the same value."""
        self.epoch = epoch

    def _used(self) -> int:
        return self.length - self.length % self.num_replicas if self.even else self.length

    def __len__(self) -> int:
        return len(range(self.rank, self._used(), self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        return iter(order[self.rank : self._used() : self.num_replicas])


def distributed_rank_and_size() -> tuple[int, int]:
    """Return ``(rank, world_size)`` of this process in a ``torch.distributed`` job.

    An initialized process group decides; otherwise the ``RANK`` and
    ``WORLD_SIZE`` variables that ``torchrun`` sets. A process outside any job
    gets ``(0, 1)``.

    Raises:
        ValueError: If ``RANK`` or ``WORLD_SIZE`` is set but not a valid number.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ValueError(
            f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
            "must be whole numbers, as torchrun sets them"
        ) from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..{world_size - 1} for WORLD_SIZE={world_size}")
    return rank, world_size


class AugmentedLoader:
    """A mart loader that moves each batch to a device and augments it there.

    Iterate it like a :class:`~torch.utils.data.DataLoader`; each pass over it
    is one epoch, with its own seeded augmentation stream.

    Args:
        loader: The loader yielding ``(images, labels)`` batches.
        augmentation: The batch augmentation, or ``None`` to only move batches.
        seed: Seed of the augmentation streams.
        device: Where batches go before augmentation; they stay where they are when ``None``.
    """

    def __init__(
        self,
        loader: DataLoader[tuple[torch.Tensor, int]],
        augmentation: Augmentation | None,
        *,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        self.loader = loader
        self.augmentation = augmentation
        self.device = torch.device(device) if device is not None else None
        self._seed = seed
        self._epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        generator: torch.Generator | None = None
        for images, labels in self.loader:
            if self.device is not None:
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            if self.augmentation is not None:
                if generator is None:
                    generator = seeded_generator(self._seed, epoch, 0, images.device)
                images = self.augmentation(images, generator)
            yield images, labels


class ResidentMart:
    """Splits of a built mart held on one device as uint8 tensors.

    Get one from :meth:`BuiltMart.to_device`. Its loaders index the resident
    tensors directly and normalise on the device.

    Args:
        datasets: The splits' datasets, read once into device memory.
        device: The device that keeps them.
        mean: Per-channel mean used to normalise, as in the manifest.
        std: Per-channel standard deviation used to normalise.
    """

    def __init__(
        self, datasets: Mapping[str, MartDataset], device: torch.device, *, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.device = device
        self.images = {split: torch.from_numpy(np.array(data.images)).to(device) for split, data in datasets.items()}
        self.labels = {split: torch.from_numpy(np.array(data.labels)).to(device) for split, data in datasets.items()}
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._std = torch.tensor([value if value > 0 else 1.0 for value in std], dtype=torch.float32,
                                 device=device).view(1, -1, 1, 1)

    def loader(
        self,
        split: str,
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        augment: Augmentation | bool | None = None,
    ) -> ResidentLoader:
        """Return an iterable of normalised ``(images, labels)`` batches of one resident split."""
        if split not in self.images:
            raise MartError(f"split {split!r} is not on {self.device}; resident splits: {sorted(self.images)!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        augmentation = Augmentation() if augment is True else augment or None
        return ResidentLoader(self, split, batch_size=batch_size, shuffle=shuffle, seed=seed,
                              drop_last=drop_last, augmentation=augmentation)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Scale a uint8 batch to float32 and standardise it with the mart's statistics."""
        return images.to(torch.float32).div_(255.0).sub_(self._mean).div_(self._std)


class ResidentLoader:
    """Batches of one resident split; each pass over it is one seeded epoch.

    Args:
        mart: The resident mart.
        split: The split to iterate.
        batch_size: Items per batch.
        shuffle: Reshuffle every epoch.
        seed: Seed of the shuffles and of the augmentation.
        drop_last: Drop a last, smaller batch.
        augmentation: Batch augmentation applied on the device, or ``None``.
    """

    def __init__(
        self,
        mart: ResidentMart,
        split: str,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        augmentation: Augmentation | None,
    ) -> None:
        self._mart = mart
        self._split = split
        self._batch_size = batch_size
        self._shuffle = shuffle
        self._seed = seed
        self._drop_last = drop_last
        self._augmentation = augmentation
        self._epoch = 0

    def __len__(self) -> int:
        count = int(self._mart.labels[self._split].shape[0])
        return count // self._batch_size if self._drop_last else -(-count // self._batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        images, labels = self._mart.images[self._split], self._mart.labels[self._split]
        generator = seeded_generator(self._seed, epoch, 0, images.device)
        count = int(labels.shape[0])
        if self._shuffle:
            order = torch.randperm(count, generator=generator, device=images.device)
        else:
            order = torch.arange(count, device=images.device)
        for start in range(0, count, self._batch_size):
            batch = order[start : start + self._batch_size]
            if self._drop_last and batch.numel() < self._batch_size:
                break
            floats = self._mart.normalise(images[batch])
            if self._augmentation is not None:
                floats = self._augmentation(floats, generator)
            yield floats, labels[batch]
