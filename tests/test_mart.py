"""Datamart recipes: selection, leakage-safe splits, materialization and loading."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brainlake as bl
from brainlake.mart import SplitSpec, plan_splits


def _source_mart(lake: bl.Datalake, name: str = "m", size: int = 32) -> bl.Datamart:
    return lake.mart(name).where(source="sample").split(from_source=True, val_fraction=0.2, seed=0).preprocess(size=size)


def test_builder_is_immutable(sample_lake: bl.Datalake) -> None:
    base = sample_lake.mart("m")
    filtered = base.where(label="glioma")
    assert base.recipe.filters == ()
    assert filtered.recipe.filters == (("label", "=", "glioma"),)
    assert filtered.preprocess(size=64).recipe.preprocessing.size == 64
    assert filtered.recipe.preprocessing.size == 128


def test_source_split_drops_leaked_test_copies(sample_lake: bl.Datalake) -> None:
    plan = _source_mart(sample_lake).plan()
    dropped = plan.leakage["dropped"]
    assert sorted(entry["source_path"] for entry in dropped) == [
        "Testing/meningioma/Te-me_0105.jpg", "Testing/notumor/Te-no_0070.jpg"]
    assert all(entry["kept_in"] == "train" for entry in dropped)
    assert plan.leakage["groups_crossing_source_splits"] == 2
    assert plan.leakage["sha256_in_two_splits"] == 0
    assert sum(len(rows) for rows in plan.splits.values()) == 54
    assert len(plan.splits["test"]) == 12


def test_no_digest_in_two_splits(sample_lake: bl.Datalake) -> None:
    plan = _source_mart(sample_lake).plan()
    digests = {split: {row["sha256"] for row in rows} for split, rows in plan.splits.items()}
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_where_membership_selects_classes(sample_lake: bl.Datalake) -> None:
    plan = _source_mart(sample_lake).where(label=["glioma", "pituitary"]).plan()
    assert plan.classes == ["glioma", "pituitary"]


def test_build_writes_arrays_and_manifest(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "arrays").build(progress=False)
    assert built.splits == ["train", "val", "test"]
    assert built.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    images = np.load(built.path / "train-images.npy", mmap_mode="r")
    labels = np.load(built.path / "train-labels.npy")
    assert images.dtype == np.uint8
    assert images.shape[1:] == (1, 32, 32)
    assert images.shape[0] == labels.shape[0] == sum(built.counts["train"].values())
    assert built.manifest["lake"]["version"] == sample_lake.version
    assert [row["item_id"] for row in built.items("test")][:1]
    assert len(built.leakage["dropped"]) == 2


def test_same_recipe_is_reused(sample_lake: bl.Datalake) -> None:
    first = _source_mart(sample_lake, "reuse").build(progress=False)
    mtime = (first.path / "train-images.npy").stat().st_mtime_ns
    second = _source_mart(sample_lake, "reuse").build(progress=False)
    assert second.path == first.path
    assert (second.path / "train-images.npy").stat().st_mtime_ns == mtime


def _digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_rebuild_is_byte_identical(sample_lake: bl.Datalake) -> None:
    first = _source_mart(sample_lake, "identical").build(progress=False)
    before = _digests(first.path)
    shutil.rmtree(first.path)
    second = _source_mart(sample_lake, "identical").build(progress=False)
    assert _digests(second.path) == before


def test_loader_yields_normalized_float_batches(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "loader").build(progress=False)
    batches = list(built.loader("train", batch_size=8, shuffle=True, seed=1))
    images, labels = batches[0]
    assert images.dtype == torch.float32
    assert images.shape == (8, 1, 32, 32)
    assert labels.dtype == torch.int64
    assert sum(len(batch[1]) for batch in batches) == len(built.dataset("train"))
    everything = torch.cat([batch[0] for batch in batches])
    assert abs(float(everything.mean())) < 0.05
    assert abs(float(everything.std()) - 1.0) < 0.05


def test_loader_shuffle_is_seeded(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "seeded").build(progress=False)
    first = [labels.tolist() for _, labels in built.loader("train", batch_size=4, shuffle=True, seed=3)]
    second = [labels.tolist() for _, labels in built.loader("train", batch_size=4, shuffle=True, seed=3)]
    assert first == second


def test_dataset_item_matches_batch(sample_lake: bl.Datalake) -> None:
    dataset = _source_mart(sample_lake, "items").build(progress=False).dataset("val")
    image, label = dataset[2]
    batch, labels = dataset.__getitems__([2])
    assert torch.equal(image, batch[0])
    assert label == int(labels[0])


def test_open_mart_finds_latest_build(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "named").build(progress=False)
    assert sample_lake.open_mart("named").path == built.path
    with pytest.raises(bl.MartNotFoundError, match="never-built"):
        sample_lake.open_mart("never-built")


def test_random_split_has_three_splits(sample_lake: bl.Datalake) -> None:
    plan = sample_lake.mart("random").split(val_fraction=0.2, test_fraction=0.2, seed=5).plan()
    assert set(plan.splits) == {"train", "val", "test"}
    assert plan.leakage["sha256_in_two_splits"] == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda mart: mart.where(tumour_grade=2), "tumour_grade"),
        (lambda mart: mart.split(val_fraction=1.5), "val_fraction"),
        (lambda mart: mart.preprocess(size=4), "size"),
        (lambda mart: mart.preprocess(channels=2), "channels"),
        (lambda mart: mart.where(label=[]), "matches nothing"),
        (lambda mart: mart.where(label="no-such-class").plan(), "no labelled items"),
    ],
)
def test_invalid_recipe_is_rejected(sample_lake: bl.Datalake, call: Any, message: str) -> None:
    with pytest.raises(bl.MartError, match=message):
        call(sample_lake.mart("bad"))


def test_invalid_mart_name_is_rejected(sample_lake: bl.Datalake) -> None:
    with pytest.raises(bl.MartError, match="invalid"):
        sample_lake.mart("../escape")


def test_build_records_event(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "event", size=16).build(progress=False)
    kinds = [event["kind"] for event in sample_lake.history().to_pylist()]
    assert "mart_build" in kinds
    assert built.lake_version == sample_lake.version


# Properties of the split planner on random catalogs ---------------------------

_row_strategy = st.tuples(
    st.integers(min_value=0, max_value=15),  # digest group
    st.sampled_from(["a", "b", "c"]),  # label
    st.one_of(st.none(), st.integers(min_value=0, max_value=6)),  # patient
    st.sampled_from(["train", "test"]),  # source split
)


def _rows(specs: list[tuple[int, str, int | None, str]]) -> list[dict[str, Any]]:
    return [
        {"item_id": f"i{index}", "sha256": f"d{digest}", "label": label, "source": "s",
         "source_path": f"p{index}", "source_split": split,
         "patient_id": None if patient is None else f"p{patient}"}
        for index, (digest, label, patient, split) in enumerate(specs)
    ]


def _split_of(assigned: dict[str, list[int]]) -> dict[int, str]:
    return {index: split for split, indices in assigned.items() for index in indices}


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(_row_strategy, min_size=1, max_size=60),
    from_source=st.booleans(),
    val_fraction=st.floats(min_value=0.0, max_value=0.45),
    test_fraction=st.floats(min_value=0.0, max_value=0.45),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_no_group_crosses_splits(
    specs: list[tuple[int, str, int | None, str]], from_source: bool, val_fraction: float,
    test_fraction: float, seed: int,
) -> None:
    rows = _rows(specs)
    spec = SplitSpec(from_source=from_source, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    assigned, leakage = plan_splits(rows, spec)
    split_of = _split_of(assigned)
    by_key: dict[tuple[str, str], set[str]] = {}
    for index, split in split_of.items():
        by_key.setdefault(("sha256", rows[index]["sha256"]), set()).add(split)
        if rows[index]["patient_id"]:
            by_key.setdefault(("patient", rows[index]["patient_id"]), set()).add(split)
    assert all(len(splits) == 1 for splits in by_key.values())
    assert len(split_of) + len(leakage["dropped"]) == len(rows)
    assert sum(len(indices) for indices in assigned.values()) == len(split_of)


@settings(max_examples=150)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=80), min_size=1, max_size=4),
    val_fraction=st.floats(min_value=0.05, max_value=0.4),
    test_fraction=st.floats(min_value=0.05, max_value=0.4),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_stratified_shares_within_one_item(
    counts: list[int], val_fraction: float, test_fraction: float, seed: int
) -> None:
    specs: list[tuple[int, str, int | None, str]] = []
    for label_index, count in enumerate(counts):
        for _ in range(count):
            specs.append((len(specs) + 1000, f"class{label_index}", None, "train"))
    rows = _rows(specs)
    assigned, _ = plan_splits(rows, SplitSpec(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed))
    for label_index, count in enumerate(counts):
        label = f"class{label_index}"
        for split, fraction in (("val", val_fraction), ("test", test_fraction)):
            got = Counter(rows[index]["label"] for index in assigned[split])[label]
            assert abs(got - fraction * count) <= 1.0


def test_where_ranges_and_nulls(sample_lake: bl.Datalake) -> None:
    wide = sample_lake.mart("w").where(width__ge=500).plan()
    assert all(row["sha256"] for rows in wide.splits.values() for row in rows)
    widths = dict(zip(sample_lake.items(["item_id", "width"]).column("item_id").to_pylist(),
                      sample_lake.items(["item_id", "width"]).column("width").to_pylist()))
    planned = [row["item_id"] for rows in wide.splits.values() for row in rows]
    assert planned
    assert all(widths[item_id] >= 500 for item_id in planned)
    assert sample_lake.items(["item_id"], patient_id__isnull=True).num_rows == 56
    assert sample_lake.items(["item_id"], patient_id__isnull=False).num_rows == 0
    assert sample_lake.items(["item_id"], label__not_in=["notumor", "glioma"]).num_rows == 28


def test_where_rejects_unknown_suffix(sample_lake: bl.Datalake) -> None:
    with pytest.raises(bl.MartError, match="unknown suffix 'around'"):
        sample_lake.mart("bad").where(width__around=3)


@given(
    threshold=st.integers(min_value=100, max_value=600),
    op=st.sampled_from(["lt", "le", "gt", "ge", "ne"]),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_pushed_down_filter_matches_python(sample_lake: bl.Datalake, threshold: int, op: str) -> None:
    import operator

    compare = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "ne": operator.ne}[op]
    everything = sample_lake.items(["item_id", "width"]).to_pylist()
    expected = sorted(row["item_id"] for row in everything if compare(row["width"], threshold))
    found = sorted(sample_lake.items(["item_id"], **{f"width__{op}": threshold}).column("item_id").to_pylist())
    assert found == expected


def test_labels_merge_into_two_classes(sample_lake: bl.Datalake) -> None:
    mapping = {"glioma": "tumor", "meningioma": "tumor", "pituitary": "tumor", "notumor": "none"}
    plan = sample_lake.mart("binary").labels(mapping, order=["none", "tumor"]).split(from_source=True).plan()
    counts = plan.counts()
    assert plan.classes == ["none", "tumor"]
    assert counts["test"] == {"none": 3, "tumor": 9}
    assert plan.leakage["excluded_by_label_map"] == 0


def test_labels_list_picks_and_orders(sample_lake: bl.Datalake) -> None:
    plan = sample_lake.mart("two").labels(["pituitary", "glioma"]).plan()
    assert plan.classes == ["pituitary", "glioma"]
    assert plan.leakage["excluded_by_label_map"] == 30


def test_labels_order_must_match_classes(sample_lake: bl.Datalake) -> None:
    with pytest.raises(bl.MartError, match="exactly once"):
        sample_lake.mart("bad").labels({"glioma": "tumor"}, order=["tumor", "none"])


def test_dedupe_keeps_one_item_per_group(sample_lake: bl.Datalake) -> None:
    plan = sample_lake.mart("dedupe").dedupe().split(from_source=True).plan()
    kept = [row for rows in plan.splits.values() for row in rows]
    assert plan.leakage["dropped_as_duplicates"] == 4
    assert len({row["sha256"] for row in kept}) == len(kept) == 52
    assert plan.leakage["dropped"] == []


def test_near_dedupe_drops_at_least_exact_copies(sample_lake: bl.Datalake) -> None:
    exact = sample_lake.mart("e").dedupe().plan()
    near = sample_lake.mart("n").dedupe(near=True, max_distance=4).plan()
    assert near.leakage["dropped_as_duplicates"] >= exact.leakage["dropped_as_duplicates"]


def test_limit_per_class_balances(sample_lake: bl.Datalake) -> None:
    plan = sample_lake.mart("limit").limit_per_class(5, seed=1).split(val_fraction=0.2, test_fraction=0.2).plan()
    totals = Counter(row["label"] for rows in plan.splits.values() for row in rows)
    again = sample_lake.mart("limit").limit_per_class(5, seed=1).split(val_fraction=0.2, test_fraction=0.2).plan()
    assert set(totals.values()) == {5}
    assert plan.splits == again.splits


def test_new_recipe_options_change_the_hash(sample_lake: bl.Datalake) -> None:
    base = sample_lake.mart("h")
    hashes = {base.recipe.hash(), base.dedupe().recipe.hash(), base.limit_per_class(3).recipe.hash(),
              base.labels(["glioma", "notumor"]).recipe.hash()}
    assert len(hashes) == 4


def test_kfold_test_splits_partition_items(sample_lake: bl.Datalake) -> None:
    tests = []
    for fold in range(4):
        plan = sample_lake.mart("kfold").split(folds=4, fold=fold, val_fraction=0.2, seed=3).plan()
        assert plan.leakage["sha256_in_two_splits"] == 0
        tests.append({row["item_id"] for row in plan.splits["test"]})
    everything = set().union(*tests)
    assert sum(len(items) for items in tests) == len(everything) == 56


def test_column_split_uses_extra_values(tmp_path: Path, sample_dir: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    source = tmp_path / "source"
    images = sorted((sample_dir / "Training" / "glioma").glob("*.jpg"))[:6] + sorted(
        (sample_dir / "Training" / "pituitary").glob("*.jpg"))[:6]
    for image in images:
        (source / image.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, source / image.parent.name / image.name)
    lake.ingest(source, source="s", progress=False)
    folds = {row["item_id"]: index % 3 + 1 for index, row in enumerate(lake.items(["item_id"]).to_pylist())}

    plan = lake.mart("by-fold").split(column="item_id", test_values=[k for k, v in folds.items() if v == 1],
                                      val_values=[k for k, v in folds.items() if v == 2]).plan()
    assert {row["item_id"] for row in plan.splits["test"]} == {k for k, v in folds.items() if v == 1}
    assert {row["item_id"] for row in plan.splits["val"]} == {k for k, v in folds.items() if v == 2}


def test_split_rejects_two_ways(sample_lake: bl.Datalake) -> None:
    with pytest.raises(bl.MartError, match="one of"):
        sample_lake.mart("bad").split(from_source=True, folds=5)
    with pytest.raises(bl.MartError, match="test_values"):
        sample_lake.mart("bad").split(column="extra.cv_fold")


def test_column_split_reads_extra_key(tmp_path: Path, sample_dir: Path) -> None:
    from brainlake.ingest import read_image_folder

    @bl.register_reader("folds-for-tests", override=True)
    def read_with_folds(root: Any, /, **options: Any) -> Any:
        for index, entry in enumerate(read_image_folder(root, **options)):
            if isinstance(entry, bl.SourceRecord):
                entry = dataclasses.replace(entry, extra={"cv_fold": index % 3 + 1})
            yield entry

    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(sample_dir / "Training", source="s", reader="folds-for-tests", progress=False)
    plan = lake.mart("cv").split(column="extra.cv_fold", test_values=[1], val_fraction=0.2).plan()
    fold_one = {row["source_path"] for row in lake.items(["source_path", "extra"]).to_pylist()
                if json.loads(row["extra"])["cv_fold"] == 1}
    test_paths = {row["source_path"] for row in plan.splits["test"]}
    # A fold-1 copy of bytes that also occur in training is dropped, not tested on.
    dropped = {entry["source_path"] for entry in plan.leakage["dropped"] if entry["from_split"] == "test"}
    assert test_paths | dropped == fold_one
    assert not test_paths & dropped
    assert "val" in plan.splits


def test_augmented_loader_is_seeded_per_epoch(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "augmented").build(progress=False)
    plain = [images for images, _ in built.loader("train", batch_size=8, seed=2)]
    loader = built.loader("train", batch_size=8, seed=2, augment=True)
    first_epoch = [images for images, _ in loader]
    second_epoch = [images for images, _ in loader]
    again = [images for images, _ in built.loader("train", batch_size=8, seed=2, augment=True)]

    assert len(loader) == len(plain)
    assert first_epoch[0].shape == plain[0].shape
    assert not torch.equal(first_epoch[0], plain[0])
    assert not torch.equal(first_epoch[0], second_epoch[0])
    assert all(torch.equal(left, right) for left, right in zip(first_epoch, again))


def test_augmented_loader_trains(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "augmented-train").build(progress=False)
    model = bl.create_model("cnn1", num_classes=len(built.classes))
    trainer = bl.Trainer(model, device="cpu", max_epochs=1, progress=False)
    history = trainer.fit(built.loader("train", batch_size=8, shuffle=True, augment=True))
    assert history[0]["train_loss"] is not None


def test_resident_loader_matches_host_loader(sample_lake: bl.Datalake) -> None:
    built = _source_mart(sample_lake, "resident").build(progress=False)
    resident = built.to_device("cpu")
    host = list(built.loader("val", batch_size=4))
    on_device = list(resident.loader("val", batch_size=4))
    assert len(on_device) == len(host) == len(resident.loader("val", batch_size=4))
    assert all(torch.allclose(a[0], b[0]) for a, b in zip(host, on_device))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(host, on_device))


def test_resident_loader_shuffles_per_epoch(sample_lake: bl.Datalake) -> None:
    resident = _source_mart(sample_lake, "resident-shuffle").build(progress=False).to_device("cpu", splits=["train"])
    loader = resident.loader("train", batch_size=8, shuffle=True, seed=4, augment=True)
    first = torch.cat([labels for _, labels in loader])
    second = torch.cat([labels for _, labels in loader])
    again = torch.cat([labels for _, labels in resident.loader("train", batch_size=8, shuffle=True, seed=4)])
    assert sorted(first.tolist()) == sorted(second.tolist())
    assert not torch.equal(first, second)
    assert torch.equal(first, again)
    with pytest.raises(bl.MartError, match="not on cpu"):
        resident.loader("test")


def test_window_sets_deep_image_contrast(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "source" / "glioma"
    folder.mkdir(parents=True)
    ramp = np.tile(np.linspace(0, 60000, 64).astype(np.uint16), (64, 1))
    for index in range(4):
        Image.fromarray(ramp + index).save(folder / f"deep{index}.png")
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(tmp_path / "source", source="s", progress=False)

    def mean_of(window: tuple[float, float]) -> float:
        built = lake.mart(f"w{int(window[1])}").split(val_fraction=0.0, test_fraction=0.0).preprocess(
            size=32, intensity=window).build(progress=False)
        return float(np.load(built.path / "train-images.npy").mean())

    assert mean_of((0.0, 50.0)) > mean_of((0.0, 100.0)) + 40
    with pytest.raises(bl.MartError, match="intensity"):
        lake.mart("bad").preprocess(intensity=(60.0, 40.0))


def test_group_near_keeps_near_copies_together(tmp_path: Path, sample_dir: Path) -> None:
    from PIL import Image

    folder = tmp_path / "source" / "glioma"
    folder.mkdir(parents=True)
    for index, image in enumerate(sorted((sample_dir / "Training" / "glioma").glob("*.jpg"))[:8]):
        shutil.copy(image, folder / f"{index}.jpg")
        Image.open(image).resize((200, 200)).save(folder / f"{index}-small.jpg", quality=70)
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(tmp_path / "source", source="s", progress=False)

    for seed in range(5):
        plan = lake.mart("near").split(val_fraction=0.25, test_fraction=0.25, seed=seed, group_near=True).plan()
        split_of = {row["source_path"].split("/")[-1].removesuffix(".jpg").removesuffix("-small"): split
                    for split, rows in plan.splits.items() for row in rows
                    if not row["source_path"].endswith("-small.jpg")}
        for split, rows in plan.splits.items():
            for row in rows:
                stem = row["source_path"].split("/")[-1].removesuffix(".jpg").removesuffix("-small")
                assert split_of[stem] == split
