"""Peak resident memory (RSS) of ingest on the real data against a synthetic copy 10 times larger.

Runs with no arguments on the shared real data (``../shared/data/brain-tumor-mri``
or ``$BRAINLAKE_DATA``). In a temporary folder it writes a synthetic copy of
the data 10 times larger (about 15,000 images: each original plus nine slightly
cropped and brightened re-encodings, see ``_synthetic.py``). Then it ingests
each data set into a fresh lake in its own child process, which runs this
script with ``--child``. The child reports its peak RSS from
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (kilobytes on Linux), read once
after importing brainlake and once after the ingest. A separate process per
ingest keeps the peak of one run out of the other's figure.

If ingest streams its input, the peak should barely grow with the data set.
The last line prints the ratio of the two peaks after ingest; the goal is at
most 1.2x. The line before it compares only the growth above the peak after
import, which the libraries loaded by ``import brainlake`` dominate at 1x.
On 2 CPU cores the script takes about 30 s.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _data import find_data
from _synthetic import make_synthetic_copy

GOAL = 1.2
FACTOR = 10
CHILD_FLAG = "--child"


@dataclass(frozen=True)
class Peak:
    """Peak RSS of one child process, in MiB, before and after its ingest, and the items it added."""

    after_import_mib: float
    after_ingest_mib: float
    items: int
    seconds: float


def peak_rss_mib() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS, where this figure would be 1024 times too large).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(data: Path, lake: Path) -> None:
    """Ingest ``data`` into a new lake at ``lake`` and print the peaks and item count as one JSON line."""
    import brainlake as bl

    after_import = peak_rss_mib()
    started = time.perf_counter()
    report = bl.Datalake(lake).ingest(data, source="bench", label_from="parent", split_from="grandparent",
                                      progress=False)
    seconds = time.perf_counter() - started
    if report.failed:
        sys.exit(f"ingest of {data} failed for {len(report.failed)} images, first: {report.failed[0]}")
    print(json.dumps({"after_import_mib": after_import, "after_ingest_mib": peak_rss_mib(),
                      "items": report.added, "seconds": seconds}))


def measure(data: Path) -> Peak:
    """Ingest ``data`` in a child process into a fresh temporary lake and return what the child reported."""
    with tempfile.TemporaryDirectory(prefix="brainlake-bench-") as scratch:
        completed = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG, str(data), str(Path(scratch) / "lake")],
            capture_output=True, text=True, check=False,
        )
    if completed.returncode != 0:
        sys.exit(f"the ingest child process for {data} failed with exit code {completed.returncode}:\n"
                 f"{completed.stderr}")
    # The child prints its figures as the last line of its output.
    fields = json.loads(completed.stdout.strip().splitlines()[-1])
    return Peak(**fields)


def main() -> None:
    data = find_data()
    print(f"data: {data}, cores: {os.cpu_count()}, synthetic factor: {FACTOR}")

    with tempfile.TemporaryDirectory(prefix="brainlake-bench-") as scratch:
        copy = Path(scratch) / "data"
        started = time.perf_counter()
        written = make_synthetic_copy(data, copy, FACTOR)
        print(f"synthetic copy: {written} files in {time.perf_counter() - started:.1f} s")

        peaks = {"1x": measure(data), f"{FACTOR}x": measure(copy)}

    for name, peak in peaks.items():
        print(f"{name:>3} ingest: {peak.items} items in {peak.seconds:.1f} s, peak RSS "
              f"{peak.after_import_mib:.0f} MiB after import, {peak.after_ingest_mib:.0f} MiB after ingest")
    growth = {name: peak.after_ingest_mib - peak.after_import_mib for name, peak in peaks.items()}
    print(f"ingest growth above import {FACTOR}x vs 1x: {growth[f'{FACTOR}x']:.0f} MiB vs {growth['1x']:.0f} MiB, "
          f"{growth[f'{FACTOR}x'] / growth['1x']:.2f}x")
    ratio = peaks[f"{FACTOR}x"].after_ingest_mib / peaks["1x"].after_ingest_mib
    print(f"ingest peak RSS {FACTOR}x vs 1x: {ratio:.2f}x (goal <= {GOAL:g}x)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == CHILD_FLAG:
        run_child(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
