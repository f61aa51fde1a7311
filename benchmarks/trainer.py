"""Training steps per second of ``brainlake.Trainer`` against a hand-written loop.

Runs with no arguments on the shared real data (``../shared/data/brain-tumor-mri``
or ``$BRAINLAKE_DATA``). In one process, in a temporary folder, it ingests the
data into a fresh lake and builds a 1-channel mart at 64 px (split from the
source, validation carved out of Training). Then, on the CPU with 2 torch
threads and the mart's train loader (batches of 64, shuffled), it times one
training epoch of:

- Trainer: ``brainlake.Trainer(model, device="cpu", max_epochs=1,
  progress=False).fit(loader)``, with no validation loader;
- hand loop: the same work written out: ``model.train()``, AdamW with the
  Trainer's default learning rate and weight decay, cross-entropy,
  ``zero_grad``, backward and ``step`` per batch and one ``CosineAnnealingLR``
  step at the end of the epoch.

Each epoch starts from a fresh ``cnn2`` created with the same seed, and only
the epoch itself is timed: building the model, the optimizer and the Trainer
is not. The two contenders alternate, each first with one untimed warm-up
epoch and then :data:`ROUNDS` timed epochs, and each figure is the best epoch,
because the machine is shared and noisy.

The last line prints Trainer epoch time / hand-loop epoch time; the goal is at
most 1.05x. The whole script took 75 s on 2 shared CPU cores, and takes longer
when they are busy.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR

import brainlake as bl
from _data import find_data

GOAL = 1.05
SIZE = 64
BATCH_SIZE = 64
ROUNDS = 6
MODEL = "cnn2"
MODEL_SEED = 0
TORCH_THREADS = 2
# The Trainer's defaults for ``learning_rate`` and ``weight_decay``.
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4


def fresh_model(num_classes: int) -> nn.Module:
    """Create :data:`MODEL` with the same initial weights on every call."""
    torch.manual_seed(MODEL_SEED)
    return bl.create_model(MODEL, num_classes=num_classes, in_channels=1)


def trainer_epoch(num_classes: int, loader: Iterable[Any]) -> float:
    """Train one epoch with ``brainlake.Trainer`` and return its wall time in seconds."""
    trainer = bl.Trainer(fresh_model(num_classes), device="cpu", max_epochs=1, progress=False)
    started = time.perf_counter()
    trainer.fit(loader)
    return time.perf_counter() - started


def hand_loop_epoch(num_classes: int, loader: Iterable[Any]) -> float:
    """Train one epoch with a plain PyTorch loop and return its wall time in seconds."""
    model = fresh_model(num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    scheduler = CosineAnnealingLR(optimizer, T_max=1)

    started = time.perf_counter()
    model.train()
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()
    scheduler.step()
    return time.perf_counter() - started


def main() -> None:
    torch.set_num_threads(TORCH_THREADS)
    data = find_data()
    print(f"data: {data}, cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"model: {MODEL}, size: {SIZE} px, batch size: {BATCH_SIZE}")

    with tempfile.TemporaryDirectory(prefix="brainlake-bench-") as scratch:
        # 1. Ingest into a fresh lake and build the mart.
        lake = bl.Datalake(Path(scratch) / "lake")
        started = time.perf_counter()
        lake.ingest(data, source="bench", label_from="parent", split_from="grandparent", progress=False)
        print(f"ingest: {time.perf_counter() - started:.1f} s")

        recipe = lake.mart(f"bench-{SIZE}").split(from_source=True).preprocess(size=SIZE, channels=1)
        started = time.perf_counter()
        mart = recipe.build(progress=False)
        print(f"build {SIZE} px: {time.perf_counter() - started:.1f} s")

        loader = mart.loader("train", batch_size=BATCH_SIZE, shuffle=True)
        num_classes = len(mart.classes)
        steps = len(loader)
        print(f"train split: {len(mart.dataset('train'))} images, {steps} steps per epoch")

        # 2. One untimed warm-up epoch of each, then alternate the timed rounds.
        contenders: dict[str, Callable[[int, Iterable[Any]], float]] = {
            "Trainer": trainer_epoch,
            "hand loop": hand_loop_epoch,
        }
        for epoch in contenders.values():
            epoch(num_classes, loader)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for round_number in range(1, ROUNDS + 1):
            for name, epoch in contenders.items():
                seconds = epoch(num_classes, loader)
                times[name].append(seconds)
                print(f"round {round_number} {name:<9} {seconds:.3f} s ({steps / seconds:.2f} steps/s)")
        del lake

    # 3. Report the best epoch of each.
    best = {name: min(seconds) for name, seconds in times.items()}
    for name, seconds in best.items():
        print(f"best {name:<9} {steps / seconds:.2f} steps/s (epoch {seconds:.3f} s)")
    ratio = best["Trainer"] / best["hand loop"]
    print(f"Trainer overhead: {(ratio - 1) * 100:+.1f}%")
    print(f"trainer vs hand-written loop: {ratio:.3f}x (goal <= {GOAL:g}x)")


if __name__ == "__main__":
    main()
