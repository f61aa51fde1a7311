"""Datamarts: recipes that cut a filtered, split, preprocessed view out of a lake.

A :class:`Datamart` is an immutable builder: :meth:`~Datamart.where`,
:meth:`~Datamart.split`, :meth:`~Datamart.preprocess` and :meth:`~Datamart.at`
each return a new recipe and nothing runs until :meth:`~Datamart.plan` or
:meth:`~Datamart.build`. Building writes, under
``marts/<name>/<recipe-hash>/``, one uint8 array per split, its labels, its
item list and a manifest with the recipe, the pinned lake version, the counts
and the leakage report. The lake itself is never changed, except for the
``mart_build`` event that records the build.

Splits assign whole groups: items are grouped by identical bytes and, where
the catalog has them, by patient id, and no group ever spans two splits.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ._version import __version__
from .exceptions import MartError, MartNotFoundError
from .augment import Augmentation
from .imaging import ResizeMode, near_duplicate_components, to_uint8_array
from .lake import conditions_to_filters
from .loaders import (
    AugmentedLoader,
    MartDataset,
    ResidentLoader,
    ResidentMart,
    ShardSampler,
    distributed_rank_and_size,
    keep_batch,
)
from .splitting import SPLITS, SplitSpec, check_fraction, plan_splits, split_from_column
from .storage import cache_root, with_retries

if TYPE_CHECKING:
    from .lake import Datalake

__all__ = [
    "SPLITS",
    "AugmentedLoader",
    "BuiltMart",
    "ResidentLoader",
    "ResidentMart",
    "ShardSampler",
    "Datamart",
    "MartDataset",
    "MartPlan",
    "Preprocessing",
    "Recipe",
    "SplitSpec",
    "cache_root",
    "plan_splits",
]

logger = logging.getLogger(__name__)

MART_FORMAT = 1
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PLAN_COLUMNS = ["item_id", "sha256", "phash", "label", "source", "source_path", "source_split", "patient_id"]


# Recipe ------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """The conversion of stored images into arrays.

    Attributes:
        size: Side of the square output in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        resize: ``"pad"`` or ``"crop"`` keeps the aspect ratio; ``"stretch"`` does not.
        intensity: For deep images (16-bit PNG, int16 MRI from ``.mat`` or
            DICOM), the percentiles of each image's own intensities that map
            to 0 and 255. 8-bit images are kept as they are.
    """

    size: int = 128
    channels: Literal[1, 3] = 1
    resize: ResizeMode = "pad"
    intensity: tuple[float, float] = (0.5, 99.5)


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a mart's content.

    Attributes:
        filters: Catalog conditions ``(column, op, value)``, combined with *and*.
        split: The split specification.
        preprocessing: The preprocessing.
        version: The lake version to read; ``None`` pins the current one at build.
        label_map: Pairs ``(catalog label, mart class)``; items with other
            labels are left out. ``None`` keeps every label as it is.
        class_order: The mart's classes in label-index order; ``None`` sorts them.
        dedupe: ``"exact"`` or ``"near"`` to keep one item per duplicate group.
        dedupe_distance: The perceptual-hash distance for ``dedupe="near"``.
        limit_per_class: Keep at most this many items per class.
        limit_seed: Seed of the sample that ``limit_per_class`` draws.
    """

    filters: tuple[tuple[str, str, Any], ...] = ()
    split: SplitSpec = field(default_factory=SplitSpec)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    version: int | None = None
    label_map: tuple[tuple[str, str], ...] | None = None
    class_order: tuple[str, ...] | None = None
    dedupe: Literal["exact", "near"] | None = None
    dedupe_distance: int = 4
    limit_per_class: int | None = None
    limit_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe as plain JSON values."""
        return {
            "filters": [[column, op, value] for column, op, value in self.filters],
            "split": dataclasses.asdict(self.split),
            "preprocessing": dataclasses.asdict(self.preprocessing),
            "version": self.version,
            "label_map": [list(pair) for pair in self.label_map] if self.label_map is not None else None,
            "class_order": list(self.class_order) if self.class_order is not None else None,
            "dedupe": self.dedupe,
            "dedupe_distance": self.dedupe_distance,
            "limit_per_class": self.limit_per_class,
            "limit_seed": self.limit_seed,
        }

    def hash(self) -> str:
        """Return the 16-hex-digit digest naming this recipe's folder."""
        canonical = json.dumps({"mart_format": MART_FORMAT, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# Planning ----------------------------------------------------------------------


@dataclass
class MartPlan:
    """The items a recipe puts in each split, known before any image is decoded.

    Attributes:
        recipe: The recipe with its lake version pinned.
        classes: Class names in label-index order.
        splits: For each split, its rows (dicts of the planned catalog
            columns), sorted by label, source path and item id.
        leakage: The leakage report: how items were grouped, which groups
            crossed the source's splits, and what was dropped to resolve them.
    """

    recipe: Recipe
    classes: list[str]
    splits: dict[str, list[dict[str, Any]]]
    leakage: dict[str, Any]

    def counts(self) -> dict[str, dict[str, int]]:
        """Return the number of items per split and class."""
        return {
            split: {name: sum(1 for row in rows if row["label"] == name) for name in self.classes}
            for split, rows in self.splits.items()
        }


# The builder -------------------------------------------------------------------


class Datamart:
    """An immutable recipe for a datamart of one lake.

    Create one with :meth:`brainlake.Datalake.mart`; every method returns a new
    :class:`Datamart`, so a partly built recipe can be reused.

    Example:
        >>> mart = (lake.mart("kaggle-128")
        ...             .where(source="kaggle-brain-mri")
        ...             .split(from_source=True, val_fraction=0.15, seed=0)
        ...             .preprocess(size=128, channels=1)
        ...             .build())  # doctest: +SKIP
    """

    def __init__(self, lake: Datalake, name: str, recipe: Recipe | None = None) -> None:
        if not _NAME_PATTERN.match(name):
            raise MartError(
                f"mart name {name!r} is invalid; use letters, digits, '.', '_' and '-' "
                "(it becomes a folder name), starting with a letter or digit"
            )
        self._lake = lake
        self._name = name
        self._recipe = recipe or Recipe()

    @property
    def name(self) -> str:
        """The mart's name (its folder under ``marts/``)."""
        return self._name

    @property
    def recipe(self) -> Recipe:
        """The recipe as built up so far."""
        return self._recipe

    def __repr__(self) -> str:
        return f"Datamart({self._name!r}, {self._recipe!r})"

    def _with(self, **changes: Any) -> Datamart:
        return Datamart(self._lake, self._name, dataclasses.replace(self._recipe, **changes))

    def where(self, **conditions: Any) -> Datamart:
        """Keep only items matching every condition.

        Conditions are pushed into the catalog scan. Calling ``where`` again
        adds conditions; it never removes earlier ones.

        Args:
            **conditions: On any catalog column: ``column=value`` (equality),
                ``column=[a, b]`` (membership), or a suffixed test such as
                ``width__ge=256``, ``label__not_in=["notumor"]`` or
                ``patient_id__isnull=False``. The suffixes are ``ne``, ``lt``,
                ``le``, ``gt``, ``ge``, ``in``, ``not_in`` and ``isnull``.
        """
        from .catalog import ITEM_SCHEMA

        unknown = sorted({key.partition("__")[0] for key in conditions} - set(ITEM_SCHEMA.names))
        if unknown:
            raise MartError(f"unknown catalog column(s) {unknown!r}; known columns: {', '.join(ITEM_SCHEMA.names)}")
        try:
            new = tuple(conditions_to_filters(conditions))
        except ValueError as error:
            raise MartError(str(error)) from error
        return self._with(filters=tuple(sorted(set(self._recipe.filters) | set(_hashable(new)), key=repr)))

    def split(
        self,
        *,
        from_source: bool = False,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
        column: str | None = None,
        test_values: Sequence[Any] = (),
        val_values: Sequence[Any] = (),
        group_near: bool = False,
        near_distance: int = 4,
    ) -> Datamart:
        """Choose how items are divided into train, val and test.

        Exactly one way applies: the source's own split (``from_source``),
        k folds (``folds``), a column's values (``column``), or, by default,
        seeded random fractions. Every way is stratified by label and assigns
        whole groups (identical bytes, one patient), so no group spans two
        splits.

        Args:
            from_source: Keep the source's Training/Testing split and carve
                validation out of Training.
            val_fraction: Share of the non-test items put in validation.
            test_fraction: Share of all items put in test (random split only).
            seed: Seed of the group shuffle.
            folds: Divide the items into this many folds; fold ``fold`` is the
                test split. Build one mart per fold for cross-validation.
            fold: The test fold, from 0 to ``folds - 1``.
            column: A catalog column, or ``"extra.<key>"`` for a value in the
                ``extra`` JSON, whose values name the split, such as
                figshare's patient-level ``"extra.cv_fold"``.
            test_values: The ``column`` values that put an item in test.
            val_values: The ``column`` values that put an item in validation;
                when empty, validation is carved out of the rest.
            group_near: Also keep near-identical images (re-encoded or resized
                copies of a slice) in one split.
            near_distance: The perceptual-hash distance in bits for ``group_near``.

        Example:
            >>> lake.mart("figshare-fold1").split(column="extra.cv_fold", test_values=[1])  # doctest: +SKIP
        """
        ways = sum([from_source, folds is not None, column is not None])
        if ways > 1:
            raise MartError("split() takes one of from_source=True, folds=... or column=...; got more than one")
        if folds is not None and (not isinstance(folds, int) or folds < 2 or not 0 <= fold < folds):
            raise MartError(f"folds must be at least 2 and fold between 0 and folds - 1, got folds={folds!r}, fold={fold!r}")
        if column is not None and not test_values:
            raise MartError(f"split(column={column!r}) needs test_values naming the values that mean test")
        spec = SplitSpec(
            from_source=from_source, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
            folds=folds, fold=fold, column=column,
            test_values=tuple(test_values), val_values=tuple(val_values),
            group_near=group_near, near_distance=near_distance,
        )
        if not 0 <= near_distance <= 64:
            raise MartError(f"near_distance must be between 0 and 64 bits, got {near_distance!r}")
        check_fraction("val_fraction", spec.val_fraction)
        check_fraction("test_fraction", spec.test_fraction)
        return self._with(split=spec)

    def preprocess(
        self,
        *,
        size: int = 128,
        channels: Literal[1, 3] = 1,
        resize: ResizeMode = "pad",
        intensity: tuple[float, float] = (0.5, 99.5),
    ) -> Datamart:
        """Choose the array size, channel count, resize mode and intensity window of the mart.

        Args:
            size: Side of the square arrays in pixels.
            channels: 1 (grayscale) or 3 (RGB).
            resize: ``"pad"`` keeps the aspect ratio by padding with black;
                ``"stretch"`` scales each axis on its own; ``"crop"`` keeps the
                aspect ratio and cuts the long side to a centred square.
            intensity: For deep images (16-bit, int16, float), the percentiles of
                each image's intensities that become 0 and 255, so a few
                extreme pixels do not flatten the contrast; 8-bit images are
                kept as they are.
        """
        if not isinstance(size, int) or size < 8:
            raise MartError(f"size must be an integer of at least 8 pixels, got {size!r}")
        if channels not in (1, 3):
            raise MartError(f"channels must be 1 or 3, got {channels!r}")
        if resize not in ("pad", "stretch", "crop"):
            raise MartError(f"resize must be 'pad', 'stretch' or 'crop', got {resize!r}")
        low, high = (float(value) for value in intensity)
        if not 0.0 <= low < high <= 100.0:
            raise MartError(f"intensity must be two percentiles with 0 <= low < high <= 100, got {intensity!r}")
        return self._with(
            preprocessing=Preprocessing(size=size, channels=channels, resize=resize, intensity=(low, high))
        )

    def labels(self, classes: Sequence[str] | Mapping[str, str], *, order: Sequence[str] | None = None) -> Datamart:
        """Choose, rename or merge classes, and fix their order.

        Args:
            classes: A list of catalog labels keeps only those classes, in that
                order. A mapping from catalog label to mart class renames and
                merges: ``{"glioma": "tumor", "meningioma": "tumor",
                "pituitary": "tumor", "notumor": "notumor"}`` makes a two-class
                mart. Items whose label is not named are left out.
            order: The mart classes in label-index order, for a mapping; by
                default the order in which the mapping first names them.

        Example:
            >>> lake.mart("tumor-vs-none").labels(
            ...     {"glioma": "tumor", "meningioma": "tumor", "pituitary": "tumor", "notumor": "none"})  # doctest: +SKIP
        """
        if isinstance(classes, Mapping):
            pairs = tuple((str(source), str(target)) for source, target in classes.items())
            targets = list(dict.fromkeys(target for _, target in pairs))
        else:
            names = [str(name) for name in classes]
            if len(set(names)) != len(names):
                raise MartError(f"labels() got a class more than once: {names!r}")
            pairs = tuple((name, name) for name in names)
            targets = names
        if not pairs:
            raise MartError("labels() needs at least one class")
        if order is not None:
            if sorted(order) != sorted(targets):
                raise MartError(f"order {list(order)!r} must name each mart class {sorted(targets)!r} exactly once")
            targets = list(order)
        return self._with(label_map=pairs, class_order=tuple(targets))

    def dedupe(self, *, exact: bool = True, near: bool = False, max_distance: int = 4) -> Datamart:
        """Keep one item per group of duplicates before splitting.

        The kept item is the first by source split (train, val, test), then
        source path, so a copy that occurs in training is the one kept.

        Args:
            exact: Group items with identical bytes.
            near: Also group items with near-identical pixels (perceptual hash).
            max_distance: The largest hash distance in bits that counts as near-identical.
        """
        if not 0 <= max_distance <= 64:
            raise MartError(f"max_distance must be between 0 and 64 bits, got {max_distance!r}")
        mode: Literal["exact", "near"] | None = None
        if near:
            mode = "near"
        elif exact:
            mode = "exact"
        return self._with(dedupe=mode, dedupe_distance=max_distance)

    def limit_per_class(self, count: int, *, seed: int = 0) -> Datamart:
        """Keep at most ``count`` items of each class, drawn at random with ``seed``.

        Drawing the same number from every class balances a mart.
        """
        if not isinstance(count, int) or count < 1:
            raise MartError(f"limit_per_class needs a positive count, got {count!r}")
        return self._with(limit_per_class=count, limit_seed=seed)

    def at(self, version: int) -> Datamart:
        """Build from a past lake version instead of the current one."""
        if not isinstance(version, int) or version < 0:
            raise MartError(f"version must be a non-negative integer, got {version!r}")
        return self._with(version=version)

    def plan(self) -> MartPlan:
        """Select and split the items without decoding any image."""
        recipe = self._recipe
        if recipe.version is None:
            recipe = dataclasses.replace(recipe, version=self._lake.version)
        spec = recipe.split
        columns = list(_PLAN_COLUMNS)
        if spec.column is not None:
            columns.append("extra" if spec.column.startswith("extra.") else spec.column)
        table = self._lake._catalog.items(
            columns=list(dict.fromkeys(columns)), filters=[tuple(f) for f in recipe.filters], version=recipe.version
        )
        rows = [row for row in table.to_pylist() if row["label"] is not None]
        unlabelled = table.num_rows - len(rows)
        if spec.column is not None:
            rows = [{**row, "source_split": split_from_column(row, spec)} for row in rows]
            spec = dataclasses.replace(spec, from_source=True)
        rows, selection = _select_rows(rows, recipe)
        if not rows:
            raise MartError(
                f"mart {self._name!r} selects no labelled items (filters {recipe.to_dict()['filters']!r}, "
                f"lake version {recipe.version}); check the where() conditions"
            )
        rows.sort(key=lambda row: (row["label"], row["source_path"], row["item_id"]))

        assigned, leakage = plan_splits(rows, spec)
        leakage["unlabelled_skipped"] = unlabelled
        leakage.update(selection)
        classes = list(recipe.class_order) if recipe.class_order else sorted({row["label"] for row in rows})
        splits = {
            split: sorted((rows[index] for index in assigned[split]),
                          key=lambda row: (row["label"], row["source_path"], row["item_id"]))
            for split in SPLITS
            if assigned[split]
        }
        leakage["sha256_in_two_splits"] = _shared_digests(splits)
        return MartPlan(recipe=recipe, classes=classes, splits=splits, leakage=leakage)

    def build(self, *, workers: int | None = None, progress: bool | None = None) -> BuiltMart:
        """Materialize the mart, or reuse it when this recipe was built before.

        Args:
            workers: Threads decoding images; all cores by default.
            progress: Show a progress bar; by default only on a terminal.

        Returns:
            The built mart, ready for :meth:`BuiltMart.loader`.
        """
        plan = self.plan()
        recipe_hash = plan.recipe.hash()
        existing = _find_built(self._lake, self._name, recipe_hash)
        if existing is not None:
            logger.info("reusing mart %s/%s", self._name, recipe_hash)
            return existing
        return _materialize(self._lake, self._name, plan, workers=workers, progress=progress)


_SPLIT_RANK = {"train": 0, "val": 1, "test": 2}


def _select_rows(rows: list[dict[str, Any]], recipe: Recipe) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Apply the label map, deduplication and per-class limit, in that order."""
    report = {"excluded_by_label_map": 0, "dropped_as_duplicates": 0, "dropped_by_limit": 0}

    if recipe.label_map is not None:
        mapping = dict(recipe.label_map)
        kept = [{**row, "label": mapping[row["label"]]} for row in rows if row["label"] in mapping]
        report["excluded_by_label_map"] = len(rows) - len(kept)
        rows = kept

    if recipe.dedupe is not None:
        rows.sort(key=lambda row: (_SPLIT_RANK.get(row["source_split"], 3), row["source_path"], row["item_id"]))
        if recipe.dedupe == "near":
            hashes = [row["phash"] or row["sha256"][:16] for row in rows]
            components = near_duplicate_components(hashes, recipe.dedupe_distance)
        else:
            by_digest: dict[str, list[int]] = defaultdict(list)
            for index, row in enumerate(rows):
                by_digest[row["sha256"]].append(index)
            components = [members for members in by_digest.values() if len(members) > 1]
        # Rows are in order of preference, so each group keeps its first row.
        # Identical bytes have identical hashes, so near groups contain exact ones.
        dropped = {index for members in components for index in sorted(members)[1:]}
        report["dropped_as_duplicates"] = len(dropped)
        rows = [row for index, row in enumerate(rows) if index not in dropped]

    if recipe.limit_per_class is not None:
        rng = np.random.default_rng(recipe.limit_seed)
        by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in sorted(rows, key=lambda row: (row["label"], row["source_path"], row["item_id"])):
            by_label[row["label"]].append(row)
        limited: list[dict[str, Any]] = []
        for label in sorted(by_label):
            members = by_label[label]
            chosen = sorted(rng.permutation(len(members))[: recipe.limit_per_class])
            limited.extend(members[int(index)] for index in chosen)
        report["dropped_by_limit"] = len(rows) - len(limited)
        rows = limited
    return rows, report


def _hashable(filters: Sequence[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    return [(column, op, tuple(value) if isinstance(value, list) else value) for column, op, value in filters]


def _shared_digests(splits: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
    seen: dict[str, str] = {}
    shared = set()
    for split, rows in splits.items():
        for row in rows:
            other = seen.setdefault(row["sha256"], split)
            if other != split:
                shared.add(row["sha256"])
    return len(shared)


# Materialization ---------------------------------------------------------------


def _mart_relative(name: str, recipe_hash: str) -> str:
    return f"marts/{name}/{recipe_hash}"


def _materialize(lake: Datalake, name: str, plan: MartPlan, *, workers: int | None, progress: bool | None) -> BuiltMart:
    lake._require_writable(f"build mart {name!r}")
    recipe_hash = plan.recipe.hash()
    relative = _mart_relative(name, recipe_hash)
    location = lake.location
    if location.is_local:
        staging_parent = Path(location.path("marts", name))
    else:
        staging_parent = cache_root() / lake.lake_id / "marts" / name
    staging_parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{recipe_hash}.", dir=staging_parent))

    # 1. Decode every split into a memory-mapped array in a staging folder.
    try:
        files = _write_splits(lake, plan, staging, workers=workers, progress=progress)
        manifest = _manifest(lake, name, plan, files)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

        # 2. Move it into place (local) or upload it, manifest last (remote).
        if location.is_local:
            final = Path(location.path(relative))
            if final.exists():
                shutil.rmtree(staging)
            else:
                os.replace(staging, final)
        else:
            final = staging_parent / recipe_hash
            _upload(lake, staging, relative)
            if final.exists():
                shutil.rmtree(staging)
            else:
                os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    # 3. Record the build in the lake's history.
    lake.record_event(
        "mart_build",
        parameters={"name": name, "recipe_hash": recipe_hash, "recipe": plan.recipe.to_dict()},
        summary={"counts": manifest["counts"], "dropped": len(plan.leakage["dropped"])},
    )
    logger.info("built mart %s/%s at %s", name, recipe_hash, final)
    return BuiltMart(final)


def _upload(lake: Datalake, staging: Path, relative: str) -> None:
    fs = lake.location.fs
    names = sorted(path.name for path in staging.iterdir() if path.name != "manifest.json")
    for file_name in [*names, "manifest.json"]:
        source, target = str(staging / file_name), lake.location.path(relative, file_name)
        with_retries("upload", lake.location.url_of(relative, file_name),
                     lambda: fs.put_file(source, target))
    lake.location.refresh(relative)


def _decoded_blocks(
    lake: Datalake, rows: Sequence[Mapping[str, Any]], plan: MartPlan, pool: ThreadPoolExecutor
) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """Yield ``(first row, stacked arrays)`` for consecutive blocks of rows, decoded on the pool."""
    prep = plan.recipe.preprocessing

    def decode(row: Mapping[str, Any], data: bytes | None = None) -> NDArray[np.uint8]:
        if data is None:
            data = lake.read_object(row["sha256"])
        return to_uint8_array(data, size=prep.size, channels=prep.channels, resize=prep.resize,
                              name=row["source_path"], window=prep.intensity)

    block = 256
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        if lake.location.is_local:
            decoded = pool.map(decode, chunk)
        else:
            # One concurrent fetch per block: a request per object, made
            # from the few decoding threads, would leave the link idle.
            blobs = lake._objects.get_many([row["sha256"] for row in chunk])
            decoded = pool.map(decode, chunk, blobs)
        yield start, np.stack(list(decoded))


def _write_splits(
    lake: Datalake, plan: MartPlan, folder: Path, *, workers: int | None, progress: bool | None
) -> dict[str, dict[str, Any]]:
    prep = plan.recipe.preprocessing
    class_index = {name: index for index, name in enumerate(plan.classes)}
    total = sum(len(rows) for rows in plan.splits.values())
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=total, desc="build mart", unit="img", disable=not show)
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    files: dict[str, dict[str, Any]] = {}
    try:
        for split, rows in plan.splits.items():
            shape = (len(rows), prep.channels, prep.size, prep.size)
            images_path = folder / f"{split}-images.npy"
            images = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=shape)
            stats = _ChannelStats(prep.channels)
            for start, block in _decoded_blocks(lake, rows, plan, pool):
                # One slice assignment per block: per-image writes into a
                # memmap cost more than the decode of a small image.
                images[start : start + len(block)] = block
                stats.add(block)
                bar.update(len(block))
            images.flush()
            del images
            mean, std = stats.result()

            labels = np.array([class_index[row["label"]] for row in rows], dtype=np.int64)
            np.save(folder / f"{split}-labels.npy", labels)
            _write_item_list(folder / f"{split}-items.csv", rows)
            files[split] = {"shape": list(shape), "mean": mean, "std": std}
    finally:
        pool.shutdown(wait=True)
        bar.close()
    for split in files:
        files[split]["sha256"] = {
            kind: _file_digest(folder / f"{split}-{kind}") for kind in ("images.npy", "labels.npy", "items.csv")
        }
    return files


class _ChannelStats:
    """Per-channel mean and standard deviation in [0, 1] units, accumulated exactly in integers."""

    def __init__(self, channels: int) -> None:
        self._count = 0
        self._sums = np.zeros(channels, dtype=np.uint64)
        self._squares = np.zeros(channels, dtype=np.uint64)

    def add(self, block: NDArray[np.uint8]) -> None:
        self._count += block.shape[0] * block.shape[2] * block.shape[3]
        self._sums += block.sum(axis=(0, 2, 3), dtype=np.uint64)
        wide = block.astype(np.uint32)
        self._squares += (wide * wide).sum(axis=(0, 2, 3), dtype=np.uint64)

    def result(self) -> tuple[list[float], list[float]]:
        count = max(self._count, 1)
        mean = self._sums.astype(np.float64) / count / 255.0
        variance = self._squares.astype(np.float64) / count / 255.0**2 - mean**2
        std = np.sqrt(np.maximum(variance, 0.0))
        return [round(float(value), 6) for value in mean], [round(float(value), 6) for value in std]


_ITEM_COLUMNS = ["item_id", "sha256", "label", "source", "source_path", "source_split", "patient_id"]


def _write_item_list(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(_ITEM_COLUMNS)
        for row in rows:
            writer.writerow(["" if row.get(column) is None else row[column] for column in _ITEM_COLUMNS])


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(lake: Datalake, name: str, plan: MartPlan, files: Mapping[str, Any]) -> dict[str, Any]:
    # No timestamps here: rebuilding the same recipe must give identical bytes.
    # The build time is in the lake's mart_build event.
    train_stats = files.get("train") or next(iter(files.values()))
    return {
        "mart_format": MART_FORMAT,
        "name": name,
        "recipe_hash": plan.recipe.hash(),
        "recipe": plan.recipe.to_dict(),
        "lake": {"lake_id": lake.lake_id, "version": plan.recipe.version},
        "library_version": __version__,
        "classes": plan.classes,
        "counts": plan.counts(),
        "normalization": {"mean": train_stats["mean"], "std": train_stats["std"]},
        "leakage": plan.leakage,
        "splits": dict(files),
    }


# Opening a built mart ----------------------------------------------------------


def _find_built(lake: Datalake, name: str, recipe_hash: str) -> BuiltMart | None:
    location = lake.location
    relative = _mart_relative(name, recipe_hash)
    if location.is_local:
        folder = Path(location.path(relative))
        return BuiltMart(folder) if (folder / "manifest.json").exists() else None

    cached = cache_root() / lake.lake_id / relative
    if (cached / "manifest.json").exists():
        return BuiltMart(cached)
    # Another process may have built it since this filesystem cached the listing.
    location.refresh(relative)
    if not location.fs.exists(location.path(relative, "manifest.json")):
        return None
    # Staged beside the cache folder, so the final rename stays on one file system.
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{recipe_hash}.", dir=cached.parent))
    try:
        for remote in sorted(location.fs.ls(location.path(relative), detail=False)):
            base = remote.rstrip("/").rsplit("/", 1)[-1]
            if base != "manifest.json":
                with_retries("download", location.url_of(relative, base),
                             lambda: location.fs.get_file(remote, str(staging / base)))
        with_retries("download", location.url_of(relative, "manifest.json"),
                     lambda: location.fs.get_file(location.path(relative, "manifest.json"),
                                                  str(staging / "manifest.json")))
        if cached.exists():
            shutil.rmtree(staging)  # another process cached it meanwhile
        else:
            os.replace(staging, cached)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuiltMart(cached)


def open_built_mart(lake: Datalake, name: str, recipe_hash: str | None = None) -> BuiltMart:
    """Open a built mart by name, taking the most recently built recipe by default.

    Raises:
        MartNotFoundError: If no build of that name (and recipe) exists.
    """
    candidates: list[str]
    if recipe_hash is not None:
        candidates = [recipe_hash]
    else:
        events = lake.history().to_pylist()
        candidates = []
        for event in reversed(events):
            if event["kind"] != "mart_build":
                continue
            parameters = json.loads(event["parameters"] or "{}")
            if parameters.get("name") == name:
                candidates.append(parameters["recipe_hash"])
    for candidate in candidates:
        found = _find_built(lake, name, candidate)
        if found is not None:
            return found
    built = sorted(
        folder.rstrip("/").rsplit("/", 1)[-1]
        for folder in (lake.location.fs.ls(lake.location.path("marts"), detail=False)
                       if lake.location.fs.exists(lake.location.path("marts")) else [])
    )
    recipe = f" with recipe {recipe_hash!r}" if recipe_hash else ""
    raise MartNotFoundError(
        f"no built mart {name!r}{recipe} in lake {lake.url!r} (built marts: {', '.join(built) or 'none'}); "
        f"build it first with lake.mart({name!r})...build() or brainlake mart build"
    )


class BuiltMart:
    """A materialized datamart: arrays per split, their labels, items and manifest.

    Get one from :meth:`Datamart.build` or :meth:`brainlake.Datalake.open_mart`.

    Args:
        folder: The local folder holding the mart's files.

    Attributes:
        affected: Notes of :meth:`Datalake.forget` calls that removed items
            this mart contains, read from ``affected.json``; empty when none did.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            raise MartNotFoundError(f"{os.fspath(folder)!r} contains no built mart (manifest.json not found)")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        affected_path = self.path / "affected.json"
        self.affected: list[dict[str, Any]] = (
            json.loads(affected_path.read_text()) if affected_path.exists() else []
        )
        if self.affected:
            logger.warning(
                "mart %s/%s contains %d items since removed from the lake by forget (events %s); "
                "rebuild it from the current lake version",
                self.name, self.recipe_hash, sum(note.get("items_removed", 0) for note in self.affected),
                ", ".join(note.get("forget_event_id", "?") for note in self.affected),
            )

    @property
    def name(self) -> str:
        """The mart's name."""
        return str(self.manifest["name"])

    @property
    def recipe_hash(self) -> str:
        """The digest of the recipe that built this mart."""
        return str(self.manifest["recipe_hash"])

    @property
    def classes(self) -> list[str]:
        """Class names in label-index order."""
        return list(self.manifest["classes"])

    @property
    def splits(self) -> list[str]:
        """The splits this mart holds, in train, val, test order."""
        return [split for split in SPLITS if split in self.manifest["splits"]]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Items per split and class."""
        return dict(self.manifest["counts"])

    @property
    def leakage(self) -> dict[str, Any]:
        """The leakage report written at build time."""
        return dict(self.manifest["leakage"])

    @property
    def lake_version(self) -> int:
        """The lake version the mart was built from."""
        return int(self.manifest["lake"]["version"])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={sum(self.counts[split].values())}" for split in self.splits)
        return f"BuiltMart({self.name!r}, recipe={self.recipe_hash}, {sizes})"

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise MartError(f"mart {self.name!r} has no split {split!r}; its splits are {self.splits!r}")

    def dataset(self, split: str, *, normalize: bool = True) -> MartDataset:
        """Return one split as a torch dataset.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            normalize: Standardize with the training split's per-channel mean and
                standard deviation (stored in the manifest); otherwise only scale to [0, 1].
        """
        self._check_split(split)
        stats = self.manifest["normalization"]
        channels = len(stats["mean"])
        mean = stats["mean"] if normalize else [0.0] * channels
        std = stats["std"] if normalize else [1.0] * channels
        return MartDataset(self.path, split, mean, std)

    def loader(
        self,
        split: str,
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        normalize: bool = True,
        num_workers: int = 0,
        augment: Augmentation | bool | None = None,
        device: str | torch.device | None = None,
        distributed: bool | None = None,
    ) -> DataLoader[tuple[torch.Tensor, int]] | AugmentedLoader:
        """Return a DataLoader yielding ``(images, labels)`` batches of one split.

        Batches are read with one slice of the memory-mapped array each, so a
        single process usually keeps up with training; ``num_workers`` adds
        worker processes when it does not.

        With ``augment``, each batch is augmented as a whole by tensor
        operations (:class:`~brainlake.augment.Augmentation`), after it is
        moved to ``device``, so on a GPU the augmentation runs there. Its
        random stream is seeded from ``seed`` and the epoch, so two loaders
        with the same seed give the same batches, and each epoch differs.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            batch_size: Items per batch.
            shuffle: Reshuffle every epoch, from a generator seeded with ``seed``.
            seed: Seed of the shuffle.
            drop_last: Drop a last, smaller batch.
            normalize: As in :meth:`dataset`.
            num_workers: Worker processes for loading.
            augment: ``True`` for the default :class:`~brainlake.augment.Augmentation`,
                or one configured; usually only for the training split.
            device: Move each batch there before augmenting it (the trainer
                moves batches itself, so this matters for augmentation speed).
            distributed: Give each process of a ``torch.distributed`` job a
                disjoint shard of the split through a :class:`ShardSampler`.
                A shuffled split is cut into equal shards (dropping up to
                ``world_size - 1`` items per epoch) so that DDP ranks run the
                same number of steps; an unshuffled one, for evaluation, keeps
                every item. ``None`` shards when the process is in a job: an
                initialized process group or ``torchrun``'s ``WORLD_SIZE`` above 1.

        Raises:
            MartError: If ``distributed=True`` but the process is not in a job.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        dataset = self.dataset(split, normalize=normalize)
        rank, world_size = distributed_rank_and_size()
        if distributed and world_size == 1:
            raise MartError(
                "distributed=True needs a torch.distributed job of 2 or more processes, but this process "
                "has none; launch it with torchrun, or pass distributed=None"
            )
        sampler: ShardSampler | None = None
        if distributed is not False and world_size > 1:
            sampler = ShardSampler(
                len(dataset), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, even=shuffle
            )
        generator = torch.Generator().manual_seed(seed)
        loader: DataLoader[tuple[torch.Tensor, int]] = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            collate_fn=keep_batch,
            generator=generator,
            pin_memory=device is not None and torch.device(device).type == "cuda",
        )
        if not augment and device is None:
            return loader
        augmentation = Augmentation() if augment is True else augment or None
        return AugmentedLoader(loader, augmentation, seed=seed, device=device)

    def to_device(self, device: str | torch.device, *, splits: Sequence[str] | None = None) -> ResidentMart:
        """Copy whole splits onto a device as uint8 tensors, for loading without the host.

        A split of 5,000 images at 224 px takes 250 MB as uint8, little on a
        GPU, and batches then never cross the PCIe bus.

        Args:
            device: The device to keep the splits on, such as ``"cuda"``.
            splits: The splits to copy; all of them by default.

        Raises:
            MartError: If the splits do not fit in the device's free memory.
        """
        target = torch.device(device)
        chosen = list(splits) if splits is not None else self.splits
        for split in chosen:
            self._check_split(split)
        needed = sum(int(np.prod(self.manifest["splits"][split]["shape"])) for split in chosen)
        if target.type == "cuda":
            free, _ = torch.cuda.mem_get_info(target)
            if needed > free:
                raise MartError(
                    f"splits {chosen!r} need {needed / 2**20:.0f} MiB on {target} but only {free / 2**20:.0f} MiB "
                    "are free; load them with loader() instead, or choose fewer splits"
                )
        stats = self.manifest["normalization"]
        return ResidentMart(
            {split: self.dataset(split) for split in chosen}, target, mean=stats["mean"], std=stats["std"]
        )

    def items(self, split: str) -> list[dict[str, str]]:
        """Return the items of one split (id, digest, label, source path), in array order."""
        self._check_split(split)
        with (self.path / f"{split}-items.csv").open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def summary(self) -> str:
        """Return a short text report: counts per split and class, and the leakage found."""
        lines = [f"mart {self.name} (recipe {self.recipe_hash}, lake version {self.lake_version})"]
        header = "split  " + "  ".join(f"{name:>10}" for name in self.classes) + "       total"
        lines.append(header)
        for split in self.splits:
            counts = self.counts[split]
            cells = "  ".join(f"{counts.get(name, 0):>10}" for name in self.classes)
            lines.append(f"{split:<5}  {cells}  {sum(counts.values()):>10}")
        leakage = self.leakage
        lines.append(
            f"leakage: {leakage['groups_crossing_source_splits']} groups crossed the source's splits; "
            f"{len(leakage['dropped'])} copies dropped; "
            f"{leakage['sha256_in_two_splits']} digests shared between splits"
        )
        return "\n".join(lines)
