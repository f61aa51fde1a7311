"""Helpers for tests that call a reader directly rather than through an ingest."""

from __future__ import annotations

from collections.abc import Iterable

import brainlake as bl


def split_entries(
    entries: Iterable[bl.SourceRecord | bl.SourceProblem],
) -> tuple[list[bl.SourceRecord], list[bl.SourceProblem]]:
    """Separate a reader's output into its records and its problems, each in reader order."""
    records: list[bl.SourceRecord] = []
    problems: list[bl.SourceProblem] = []
    for entry in entries:
        if isinstance(entry, bl.SourceRecord):
            records.append(entry)
        else:
            problems.append(entry)
    return records, problems
