"""Ingest throughput against the floor of any ingest: hashing and copying the same files.

Runs with no arguments on the shared real data (``../shared/data/brain-tumor-mri``
or ``$BRAINLAKE_DATA``). Both contenders run in this process on the same files,
each into a fresh temporary folder, alternating, best of three runs each:

- baseline: read each file, SHA-256 it, write it into a content-addressed folder;
- brainlake: ``Datalake.ingest`` (read, decode every image fully to validate it,
  perceptual hash, SHA-256, store the object, sync the disk once, commit the
  catalog, record the event).

The last line prints the ratio of the two times; the goal is at most 4x.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import brainlake as bl
from _data import find_data

GOAL = 4.0
REPEATS = 3


def hash_and_copy(files: list[Path], target: Path) -> None:
    for path in files:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        destination = target / digest[:2] / digest
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)


def timed(run: Callable[[Path], object]) -> float:
    with tempfile.TemporaryDirectory(prefix="brainlake-bench-") as scratch:
        started = time.perf_counter()
        run(Path(scratch))
        return time.perf_counter() - started


def main() -> None:
    data = find_data()
    files = sorted(path for path in data.rglob("*.jpg"))

    def ingest_all(scratch: Path) -> object:
        lake = bl.Datalake(scratch / "lake")
        return lake.ingest(data, source="bench", label_from="parent", split_from="grandparent", progress=False)

    # Alternate the two so that disk write-back from one run burdens both alike.
    baseline_times, ingest_times = [], []
    for _ in range(REPEATS):
        baseline_times.append(timed(lambda scratch: hash_and_copy(files, scratch)))
        ingest_times.append(timed(ingest_all))
    baseline, ingest = min(baseline_times), min(ingest_times)

    print(f"files: {len(files)}, cores: {os.cpu_count()}")
    print(f"sha256 + copy: {baseline:.2f} s; Datalake.ingest: {ingest:.2f} s")
    print(f"ingest vs sha256+copy: {ingest / baseline:.1f}x (goal <= {GOAL:g}x)")


if __name__ == "__main__":
    main()
