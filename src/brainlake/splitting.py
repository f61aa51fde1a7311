"""Split planning: group a mart's items and assign whole groups to train, val and test.

Items are joined into groups by identical bytes, by patient id and, when
asked, by near-identical pixels (perceptual hash). :func:`plan_splits` then
assigns each group to one split, by the source's own split, by k folds or by
seeded fractions stratified by label, and reports what it dropped so that no
group crosses two splits.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .exceptions import MartError
from .imaging import near_duplicate_components

__all__ = ["SPLITS", "SplitSpec", "plan_splits"]

SPLITS = ("train", "val", "test")
"""The split names a mart can hold, in their canonical order."""


@dataclass(frozen=True)
class SplitSpec:
    """The division of a mart's items into train, validation and test.

    Attributes:
        from_source: Keep the source's own split: its test items form the
            test split and validation is carved out of its training items
            (unless the source has a validation split of its own).
        val_fraction: Share of the (non-test) items that go to validation.
        test_fraction: Share of all items that go to test; only without ``from_source``.
        seed: Seed of the shuffle that assigns groups.
        folds: Split into this many folds instead: ``fold`` is the test split
            and validation is carved out of the others.
        fold: The test fold (0-based) when ``folds`` is set.
        column: Take the split from a catalog column or an ``extra`` key
            written ``"extra.<key>"`` (such as figshare's ``"extra.cv_fold"``):
            items whose value is in ``test_values`` form the test split, those
            in ``val_values`` validation (carved from the rest when empty).
        test_values: The ``column`` values that mean test.
        val_values: The ``column`` values that mean validation.
        group_near: Also keep near-identical images (perceptual hash within
            ``near_distance`` bits) in one split.
        near_distance: The hash distance in bits for ``group_near``.
    """

    from_source: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    folds: int | None = None
    fold: int = 0
    column: str | None = None
    test_values: tuple[Any, ...] = ()
    val_values: tuple[Any, ...] = ()
    group_near: bool = False
    near_distance: int = 4


class _Groups:
    """Union-find over items, joined by shared bytes and shared patient id."""

    def __init__(self, count: int) -> None:
        self._parent = list(range(count))

    def find(self, index: int) -> int:
        while self._parent[index] != index:
            self._parent[index] = self._parent[self._parent[index]]
            index = self._parent[index]
        return index

    def union(self, first: int, second: int) -> None:
        root_first, root_second = self.find(first), self.find(second)
        if root_first != root_second:
            self._parent[max(root_first, root_second)] = min(root_first, root_second)


def _group_rows(rows: Sequence[Mapping[str, Any]], near_distance: int | None = None) -> list[list[int]]:
    groups = _Groups(len(rows))
    if near_distance is not None:
        hashes = [row.get("phash") or row["sha256"][:16] for row in rows]
        for component in near_duplicate_components(hashes, near_distance):
            for index in component[1:]:
                groups.union(component[0], index)
    first_with: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        keys = [("sha256", row["sha256"])]
        if row.get("patient_id"):
            keys.append(("patient_id", f"{row['source']}\x00{row['patient_id']}"))
        for key in keys:
            if key in first_with:
                groups.union(first_with[key], index)
            else:
                first_with[key] = index
    members: dict[int, list[int]] = defaultdict(list)
    for index in range(len(rows)):
        members[groups.find(index)].append(index)
    return [members[root] for root in sorted(members)]


def _group_label(rows: Sequence[Mapping[str, Any]], members: Sequence[int]) -> str:
    counts = Counter(str(rows[index]["label"]) for index in members)
    return min(counts, key=lambda name: (-counts[name], name))


def _assign_groups(
    rows: Sequence[Mapping[str, Any]],
    groups: Sequence[Sequence[int]],
    fractions: Mapping[str, float],
    seed: int,
) -> dict[str, list[int]]:
    """Assign whole groups to splits, stratified by label.

    For each label, its groups are shuffled. Each group then goes to the first
    split in ``fractions`` that it fits into without passing that split's target,
    which is the fraction times the label's item count, rounded. Groups that fit
    nowhere go to train.
    """
    by_label: dict[str, list[Sequence[int]]] = defaultdict(list)
    for members in groups:
        by_label[_group_label(rows, members)].append(members)

    rng = np.random.default_rng(seed)
    assigned: dict[str, list[int]] = {split: [] for split in SPLITS}
    for label in sorted(by_label):
        label_groups = by_label[label]
        total = sum(len(members) for members in label_groups)
        targets = {split: int(round(fraction * total)) for split, fraction in fractions.items()}
        filled = dict.fromkeys(fractions, 0)
        for position in rng.permutation(len(label_groups)):
            members = label_groups[int(position)]
            destination = "train"
            for split in fractions:
                if filled[split] + len(members) <= targets[split]:
                    destination = split
                    filled[split] += len(members)
                    break
            assigned[destination].extend(members)
    return assigned


def check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise MartError(f"{name} must be at least 0 and below 1, got {value!r}")


def plan_splits(rows: Sequence[Mapping[str, Any]], spec: SplitSpec) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Assign row indices to splits so that no group spans two splits.

    Args:
        rows: Catalog rows with at least ``sha256``, ``label``, ``source``,
            ``source_split``, ``source_path`` and ``patient_id``.
        spec: The split specification.

    Returns:
        The row indices of each split, and the leakage report.

    Raises:
        MartError: If ``spec`` is invalid, or ``from_source`` is asked for rows
            without a source split.
    """
    check_fraction("val_fraction", spec.val_fraction)
    check_fraction("test_fraction", spec.test_fraction)
    groups = _group_rows(rows, spec.near_distance if spec.group_near else None)
    has_patients = any(row.get("patient_id") for row in rows)
    grouped_by = ["sha256"]
    if has_patients:
        grouped_by.append("patient_id")
    if spec.group_near:
        grouped_by.append("phash")
    leakage: dict[str, Any] = {
        "grouped_by": grouped_by,
        "groups": len(groups),
        "groups_with_copies": sum(1 for members in groups if len({rows[i]["sha256"] for i in members}) < len(members)),
        "groups_with_conflicting_labels": sum(1 for members in groups if len({rows[i]["label"] for i in members}) > 1),
    }
    if not has_patients:
        leakage["note"] = (
            "no patient ids in these items: groups are formed by identical bytes only, "
            "so slices of one patient may still land in different splits"
        )

    if spec.folds is not None:
        return _plan_folds(rows, groups, spec, leakage, spec.folds)

    if not spec.from_source:
        if spec.val_fraction + spec.test_fraction >= 1.0:
            raise MartError(
                f"val_fraction + test_fraction must be below 1, got "
                f"{spec.val_fraction!r} + {spec.test_fraction!r}"
            )
        fractions = {"test": spec.test_fraction, "val": spec.val_fraction}
        assigned = _assign_groups(rows, groups, fractions, spec.seed)
        leakage.update(groups_crossing_source_splits=0, dropped=[])
        return assigned, leakage

    return _plan_from_source(rows, groups, spec, leakage)


def _plan_folds(
    rows: Sequence[Mapping[str, Any]],
    groups: Sequence[Sequence[int]],
    spec: SplitSpec,
    leakage: dict[str, Any],
    folds: int,
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Deal groups into ``folds`` folds, stratified by label; fold ``spec.fold`` is the test split."""
    by_label: dict[str, list[Sequence[int]]] = defaultdict(list)
    for members in groups:
        by_label[_group_label(rows, members)].append(members)

    rng = np.random.default_rng(spec.seed)
    test: list[int] = []
    rest: list[Sequence[int]] = []
    for label in sorted(by_label):
        label_groups = by_label[label]
        sizes = [0] * folds
        for position in rng.permutation(len(label_groups)):
            members = label_groups[int(position)]
            # The smallest fold so far takes the group; ties go to the lowest fold.
            target = min(range(folds), key=lambda index: (sizes[index], index))
            sizes[target] += len(members)
            if target == spec.fold:
                test.extend(members)
            else:
                rest.append(members)

    carved = _assign_groups(rows, rest, {"val": spec.val_fraction}, spec.seed)
    assigned = {"train": carved["train"], "val": carved["val"], "test": test}
    leakage.update(groups_crossing_source_splits=0, dropped=[])
    return assigned, leakage


def _plan_from_source(
    rows: Sequence[Mapping[str, Any]],
    groups: Sequence[Sequence[int]],
    spec: SplitSpec,
    leakage: dict[str, Any],
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    # 1. Every row needs a source split this planner understands.
    unknown = Counter(str(row["source_split"]) for row in rows if row["source_split"] not in SPLITS)
    if unknown:
        raise MartError(
            f"split(from_source=True) needs every item's source_split to be one of {SPLITS}; "
            f"found {dict(unknown)!r}. Filter those items out with where(source_split=[...]) "
            "or use a random split"
        )
    source_has_val = any(row["source_split"] == "val" for row in rows)

    # 2. A group goes to the earliest split it occurs in (train, then val, then
    #    test); its copies in later splits are dropped, because they would leak.
    assigned: dict[str, list[int]] = {split: [] for split in SPLITS}
    train_groups: list[list[int]] = []
    dropped: list[dict[str, Any]] = []
    crossing = 0
    for members in groups:
        present = {rows[index]["source_split"] for index in members}
        home = next(split for split in SPLITS if split in present)
        crossing += len(present) > 1
        kept = [index for index in members if rows[index]["source_split"] == home]
        for index in members:
            if rows[index]["source_split"] != home:
                dropped.append(
                    {
                        "item_id": rows[index]["item_id"],
                        "source_path": rows[index]["source_path"],
                        "from_split": rows[index]["source_split"],
                        "kept_in": home,
                    }
                )
        if home == "train" and not source_has_val:
            train_groups.append(kept)
        else:
            assigned[home].extend(kept)

    # 3. Without a validation split in the source, carve one out of training.
    if train_groups:
        carved = _assign_groups(rows, train_groups, {"val": spec.val_fraction}, spec.seed)
        assigned["train"].extend(carved["train"])
        assigned["val"].extend(carved["val"])

    leakage["groups_crossing_source_splits"] = crossing
    leakage["dropped"] = sorted(dropped, key=lambda entry: (entry["from_split"], entry["source_path"]))
    return assigned, leakage


def split_from_column(row: Mapping[str, Any], spec: SplitSpec) -> str:
    column = spec.column or ""
    if column.startswith("extra."):
        value = json.loads(row.get("extra") or "{}").get(column.removeprefix("extra."))
    else:
        value = row.get(column)
    if value in spec.test_values:
        return "test"
    if value in spec.val_values:
        return "val"
    return "train"
