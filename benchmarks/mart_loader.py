"""Epoch throughput of a mart loader against torchvision's ImageFolder and a bare memmap loop.

Runs with no arguments on the shared real data (``../shared/data/brain-tumor-mri``
or ``$BRAINLAKE_DATA``). In one process, in a temporary folder, it ingests the
data into a fresh lake and builds a 1-channel mart at 128 px and one at 224 px
(split from the source, validation carved out of Training), timing each build.
Then, at each size, with batches of 64 normalised float images, it times one
epoch of:

- ImageFolder: ``torchvision.datasets.ImageFolder`` over the Training folder
  (Grayscale, Resize, ToTensor, Normalize) in a ``DataLoader`` with 2 workers,
  the usual way to feed a folder of JPEGs to a model;
- mart: ``BuiltMart.loader("train", batch_size=64, shuffle=True)``;
- memmap loop: shuffled index batches read straight from the mart's
  ``train-images.npy`` and converted to float, with no DataLoader at all. This
  is the floor that the mart loader's overhead is measured against.

Each contender first runs one untimed warm-up epoch, so that its files are in
the page cache. Each figure is then the best of at least three timed epochs,
and of more (until a second has been timed) for the contenders whose epochs
take milliseconds, where one pause of the machine would decide a best of
three. The mart's train split contains fewer images than the Training folder
because validation is carved out of it, so the contenders are compared by
images per second, not by epoch time.

Then it repeats the ImageFolder-vs-mart comparison at 224 px on a synthetic
copy of the data 4 times larger, ingested into its own fresh lake, to show
whether the ratio changes as the data set grows. The copy has about 6,100
images: each original plus three slightly cropped and brightened re-encodings
(see ``_synthetic.py``).

The last line prints the mart/ImageFolder throughput ratio at 224 px on the
real data; the goal is at least 25x. The whole script takes about 1 minute on
2 CPU cores, about 30 s of it on the synthetic copy.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import brainlake as bl
from _data import find_data
from _synthetic import make_synthetic_copy

GOAL = 25.0
SIZES = (128, 224)
BATCH_SIZE = 64
REPEATS = 3
MIN_TIMED_SECONDS = 1.0
MAX_EPOCHS = 200
IMAGE_FOLDER_WORKERS = 2
SYNTHETIC_FACTOR = 4
SYNTHETIC_SIZE = 224


@dataclass(frozen=True)
class Timing:
    """The best epoch time of one contender and the number of images per epoch."""

    seconds: float
    images: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


def best_epoch(batches: Any) -> float:
    """Time full passes over ``batches`` after one untimed pass, and return the fastest.

    At least :data:`REPEATS` epochs are timed, and more until :data:`MIN_TIMED_SECONDS`
    have passed, because an in-memory epoch takes only milliseconds and one
    pause of the machine would otherwise decide the result.
    """
    _consume(batches)
    times: list[float] = []
    while len(times) < REPEATS or (sum(times) < MIN_TIMED_SECONDS and len(times) < MAX_EPOCHS):
        started = time.perf_counter()
        _consume(batches)
        times.append(time.perf_counter() - started)
    return min(times)


def _consume(batches: Iterable[Sequence[torch.Tensor]]) -> None:
    for images, _labels in batches:
        # A contender that yields anything but float images must fail, not be timed.
        if images.dtype != torch.float32:
            raise TypeError(f"expected float32 batches, got {images.dtype}")


class MemmapLoop:
    """Shuffled batches read straight from a uint8 memmap and normalised in torch, one epoch per iteration."""

    def __init__(self, folder: Path, mean: Sequence[float], std: Sequence[float]) -> None:
        self.images = np.load(folder / "train-images.npy", mmap_mode="r")
        self.labels = np.load(folder / "train-labels.npy")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.rng = np.random.default_rng(0)

    def __iter__(self) -> Any:
        order = self.rng.permutation(len(self.labels))
        for start in range(0, len(order), BATCH_SIZE):
            indices = order[start : start + BATCH_SIZE]
            batch = torch.from_numpy(self.images[indices]).to(torch.float32).div_(255.0)
            yield batch.sub_(self.mean).div_(self.std), torch.from_numpy(self.labels[indices])


def image_folder_loader(training: Path, size: int, mean: Sequence[float], std: Sequence[float]) -> DataLoader[Any]:
    pipeline = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=1),
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    folder = datasets.ImageFolder(str(training), transform=pipeline)
    return DataLoader(folder, batch_size=BATCH_SIZE, shuffle=True, num_workers=IMAGE_FOLDER_WORKERS)


def compare_on_synthetic_copy(data: Path) -> float:
    """Time ImageFolder and the mart loader at 224 px on a synthetic copy, print the figures, and return the ratio."""
    with tempfile.TemporaryDirectory(prefix="brainlake-bench-") as scratch:
        copy = Path(scratch) / "data"
        started = time.perf_counter()
        written = make_synthetic_copy(data, copy, SYNTHETIC_FACTOR)
        print(f"synthetic copy (factor {SYNTHETIC_FACTOR}): {written} files in {time.perf_counter() - started:.1f} s")

        lake = bl.Datalake(Path(scratch) / "lake")
        started = time.perf_counter()
        lake.ingest(copy, source="bench-synthetic", label_from="parent", split_from="grandparent", progress=False)
        print(f"synthetic ingest: {time.perf_counter() - started:.1f} s")

        recipe = lake.mart(f"bench-synthetic-{SYNTHETIC_SIZE}").split(from_source=True)
        started = time.perf_counter()
        mart = recipe.preprocess(size=SYNTHETIC_SIZE, channels=1).build(progress=False)
        built = sum(sum(counts.values()) for counts in mart.counts.values())
        print(f"synthetic build {SYNTHETIC_SIZE} px: {time.perf_counter() - started:.1f} s for {built} images (all splits)")

        stats = mart.manifest["normalization"]
        training_images = sum(1 for path in (copy / "Training").rglob("*") if path.is_file())
        folder_loader = image_folder_loader(copy / "Training", SYNTHETIC_SIZE, stats["mean"], stats["std"])
        timings = {
            "ImageFolder": Timing(best_epoch(folder_loader), training_images),
            "mart": Timing(best_epoch(mart.loader("train", batch_size=BATCH_SIZE, shuffle=True)),
                           len(mart.dataset("train"))),
        }
        for name, timing in timings.items():
            print(f"synthetic {SYNTHETIC_SIZE} px {name:<12} {timing.images_per_second:8.0f} images/s "
                  f"(best epoch {timing.seconds:.3f} s, {timing.images} images)")
        del lake
    return timings["mart"].images_per_second / timings["ImageFolder"].images_per_second


def main() -> None:
    data = find_data()
    training_images = sum(1 for path in (data / "Training").rglob("*") if path.is_file())
    print(f"data: {data} (Training: {training_images} files), cores: {os.cpu_count()}, "
          f"torch threads: {torch.get_num_threads()}, batch size: {BATCH_SIZE}")

    with tempfile.TemporaryDirectory(prefix="brainlake-bench-") as scratch:
        # 1. Ingest into a fresh lake.
        lake = bl.Datalake(Path(scratch) / "lake")
        started = time.perf_counter()
        lake.ingest(data, source="bench", label_from="parent", split_from="grandparent", progress=False)
        print(f"ingest: {time.perf_counter() - started:.1f} s")

        # 2. Build one mart per size.
        marts: dict[int, bl.BuiltMart] = {}
        build_per_image: dict[int, float] = {}
        for size in SIZES:
            recipe = lake.mart(f"bench-{size}").split(from_source=True).preprocess(size=size, channels=1)
            started = time.perf_counter()
            marts[size] = recipe.build(progress=False)
            seconds = time.perf_counter() - started
            built = sum(sum(counts.values()) for counts in marts[size].counts.values())
            build_per_image[size] = seconds / built
            print(f"build {size} px: {seconds:.1f} s for {built} images (all splits), "
                  f"{built / seconds:.0f} images/s")

        # 3. Time the three contenders at each size.
        results: dict[int, dict[str, Timing]] = {}
        for size in SIZES:
            mart = marts[size]
            stats = mart.manifest["normalization"]
            mart_images = len(mart.dataset("train"))
            folder_loader = image_folder_loader(data / "Training", size, stats["mean"], stats["std"])
            results[size] = {
                "ImageFolder": Timing(best_epoch(folder_loader), training_images),
                "mart": Timing(best_epoch(mart.loader("train", batch_size=BATCH_SIZE, shuffle=True)), mart_images),
                "memmap loop": Timing(best_epoch(MemmapLoop(mart.path, stats["mean"], stats["std"])), mart_images),
            }
            for name, timing in results[size].items():
                print(f"{size} px {name:<12} {timing.images_per_second:8.0f} images/s "
                      f"(best epoch {timing.seconds:.3f} s, {timing.images} images)")
        del lake

    # 4. Report ratios of throughput (images/s), never of raw epoch times,
    #    because the mart's train split is smaller than the Training folder.
    print("ratios below compare images/s: the mart's train split is Training minus the "
          "carved-out validation, so raw epoch times differ in image count")
    for size in SIZES:
        ratio = results[size]["mart"].images_per_second / results[size]["ImageFolder"].images_per_second
        print(f"mart vs ImageFolder at {size} px: {ratio:.1f}x")
    floor = results[224]["mart"].images_per_second / results[224]["memmap loop"].images_per_second
    print(f"mart vs memmap loop at 224 px: {floor:.2f}x (1.00x matches the bare loop)")
    folder_per_image = 1.0 / results[128]["ImageFolder"].images_per_second
    print(f"build per image vs ImageFolder epoch per image at 128 px: "
          f"{build_per_image[128] / folder_per_image:.2f}x (building, ingest not counted, costs about that many ImageFolder epochs)")

    # 5. The synthetic copy runs after the real data, so the last line still reports the real data.
    synthetic = compare_on_synthetic_copy(data)
    print(f"synthetic x{SYNTHETIC_FACTOR} mart epoch vs ImageFolder at {SYNTHETIC_SIZE} px: {synthetic:.1f}x")
    final = results[224]["mart"].images_per_second / results[224]["ImageFolder"].images_per_second
    print(f"mart epoch vs ImageFolder at 224 px: {final:.1f}x (goal >= {GOAL:g}x)")


if __name__ == "__main__":
    main()
