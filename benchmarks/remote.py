"""Ingest and mart build on a loopback S3 server against the same on the local disk.

Runs with no arguments on the shared real data (``../shared/data/brain-tumor-mri``
or ``$BRAINLAKE_DATA``). It starts its own SeaweedFS S3 server on 127.0.0.1 and
stops it at the end. For the local disk and for S3 it times, in this process,
``Datalake.ingest`` of the whole data set and then the build of a 64 px mart
split by source. The contenders alternate, best of two runs each.

The S3 server runs on the same machine, so the ratio measures the protocol
and request overhead (one request per object, conditional puts, the Delta log
over HTTP), not network latency or bandwidth. The last line prints the ratio of
the two times; the goal is at most 5x.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import brainlake as bl
from _data import find_data
from _servers import SeaweedS3

GOAL = 5.0
REPEATS = 2


def ingest_and_build(url: str, options: dict[str, Any], data: Path) -> tuple[float, float]:
    """Return the seconds taken by the ingest and by the mart build into a new lake at ``url``."""
    started = time.perf_counter()
    lake = bl.Datalake(url, storage_options=options)
    lake.ingest(data, source="bench", label_from="parent", split_from="grandparent", progress=False)
    ingested = time.perf_counter()
    (lake.mart("bench-64").split(from_source=True, val_fraction=0.15, seed=0)
         .preprocess(size=64, channels=1).build(progress=False))
    return ingested - started, time.perf_counter() - ingested


def main() -> None:
    data = find_data()
    with tempfile.TemporaryDirectory(prefix="brainlake-bench-") as scratch, SeaweedS3() as server:
        os.environ["BRAINLAKE_CACHE"] = str(Path(scratch) / "cache")
        server.start()
        local_runs, s3_runs = [], []
        for attempt in range(REPEATS):
            local_runs.append(ingest_and_build(str(Path(scratch) / f"local-{attempt}"), {}, data))
            bucket = server.new_bucket()
            s3_runs.append(ingest_and_build(f"s3://{bucket}/lake", server.storage_options(), data))

    local = min(local_runs, key=sum)
    s3 = min(s3_runs, key=sum)
    print(f"local disk: ingest {local[0]:.1f} s, mart build {local[1]:.1f} s (best of {REPEATS})")
    print(f"S3 (SeaweedFS on 127.0.0.1): ingest {s3[0]:.1f} s, mart build {s3[1]:.1f} s (best of {REPEATS})")
    print(f"S3 ingest + mart build vs local: {sum(s3) / sum(local):.1f}x (goal <= {GOAL:.0f}x)")


if __name__ == "__main__":
    main()
