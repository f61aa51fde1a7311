"""Faults a lake must survive: killed ingests, concurrent writers, vacuum, read-only opens, hostile pickles."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import brainlake as bl
from brainlake.exceptions import ReadOnlyLakeError

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
CRASH_TRIALS = 20

# The child opens the lake, reports that it is ready, then ingests and
# reports how long the ingest alone took.
_INGEST_CHILD = """
import sys, time
import brainlake as bl
lake = bl.Datalake.open(sys.argv[1])
print("ready", flush=True)
started = time.perf_counter()
lake.ingest(sys.argv[2], source=sys.argv[3], progress=False)
print("done", time.perf_counter() - started, flush=True)
"""


def write_synthetic_folder(root: Path, count: int, seed: int, size: int = 96) -> Path:
    """Write ``count`` distinct noise PNGs as ``Training/<class>/img_<n>.png``."""
    generator = np.random.default_rng(seed)
    for index in range(count):
        folder = root / "Training" / CLASSES[index % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = generator.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{seed}_{index:05d}.png")
    return root


def stored_digests(lake_root: Path) -> set[str]:
    base = lake_root / "objects" / "sha256"
    return {path.name for path in base.rglob("*") if path.is_file() and len(path.name) == 64} if base.exists() else set()


def temporary_files(lake_root: Path) -> list[Path]:
    return [path for path in (lake_root / "objects").rglob(".*.tmp")] if (lake_root / "objects").exists() else []


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Return every file under ``root`` with its bytes and modification time in nanoseconds."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def start_ingest(lake_root: Path, folder: Path, source: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _INGEST_CHILD, str(lake_root), str(folder), source],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "ready", child.stderr.read() if child.stderr else line
    return child


# Crash consistency ---------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # About 1 s of ingest on 2 cores: long enough to kill it at many points.
    return write_synthetic_folder(tmp_path_factory.mktemp("crash") / "source", 1500, seed=1)


def test_killed_ingest_leaves_a_consistent_lake(tmp_path: Path, crash_source: Path) -> None:
    # 1. Measure an ingest that is not killed; its items are the reference.
    reference_root = tmp_path / "reference"
    bl.Datalake(reference_root)
    child = start_ingest(reference_root, crash_source, "synthetic")
    output, errors = child.communicate(timeout=120)
    assert child.returncode == 0, errors
    duration = float(output.split()[-1])
    reference = bl.Datalake.open(reference_root)
    expected_ids = sorted(reference.items(["item_id"]).column("item_id").to_pylist())
    assert len(expected_ids) == 1500

    # 2. Kill ingests at delays spread over that duration (one per stratum, seeded).
    generator = random.Random(20261205)
    delays = [duration * 1.2 * (index + generator.random()) / CRASH_TRIALS for index in range(CRASH_TRIALS)]
    outcomes: list[tuple[float, int, int, int]] = []
    started = time.perf_counter()
    for trial, delay in enumerate(delays):
        lake_root = tmp_path / f"trial-{trial}"
        bl.Datalake(lake_root)
        child = start_ingest(lake_root, crash_source, "synthetic")
        time.sleep(delay)
        child.kill()
        child.communicate(timeout=60)

        # 3. The catalog is readable and every item's object is intact.
        lake = bl.Datalake.open(lake_root)
        committed = lake.items(["item_id", "sha256"])
        lake.history()
        found = lake.verify()
        assert found.missing == [], f"trial {trial} (killed after {delay:.3f} s)"
        assert found.corrupt == [], f"trial {trial} (killed after {delay:.3f} s)"
        assert committed.num_rows in (0, 1500), f"trial {trial}: a partial commit of {committed.num_rows} items"

        # 4. verify lists exactly the objects no item references; vacuum removes them and the temporary files.
        referenced = set(committed.column("sha256").to_pylist())
        orphans = stored_digests(lake_root) - referenced
        leftovers = len(temporary_files(lake_root))
        assert found.orphaned == sorted(orphans)
        cleaned = lake.vacuum(grace_period=timedelta(0))
        assert sorted(cleaned.objects_removed) == sorted(orphans)
        assert stored_digests(lake_root) == referenced
        assert temporary_files(lake_root) == []
        assert lake.verify().orphaned == []

        # 5. Running the ingest again completes it, without duplicates.
        report = lake.ingest(crash_source, source="synthetic", progress=False)
        item_ids = lake.items(["item_id"]).column("item_id").to_pylist()
        assert sorted(item_ids) == expected_ids
        assert report.added == 1500 - committed.num_rows
        assert lake.verify().ok
        assert stored_digests(lake_root) == set(reference.items(["sha256"]).column("sha256").to_pylist())
        outcomes.append((delay, committed.num_rows, len(orphans), leftovers))

    elapsed = time.perf_counter() - started
    killed_before_commit = sum(1 for _, rows, _, _ in outcomes if rows == 0)
    print(f"crash trials: {CRASH_TRIALS} in {elapsed:.1f} s; ingest {duration:.2f} s; "
          f"killed before the commit {killed_before_commit}; outcomes {outcomes}")
    assert killed_before_commit >= CRASH_TRIALS // 2
    assert any(orphans > 0 for _, _, orphans, _ in outcomes)


# Concurrent writers ---------------------------------------------------------------

_WRITER_CHILD = """
import os, sys, time
import brainlake as bl
lake = bl.Datalake.open(sys.argv[1])
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
for folder in sys.argv[4:]:
    lake.ingest(folder, source=sys.argv[3] + "/" + os.path.basename(folder), progress=False)
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    writers, batches, per_batch = 4, 3, 25
    lake_root = tmp_path / "lake"
    bl.Datalake(lake_root)
    go = tmp_path / "go"
    children = []
    expected_sources = set()
    for writer in range(writers):
        folders = []
        for batch in range(batches):
            folder = tmp_path / f"writer-{writer}" / f"batch-{batch}"
            write_synthetic_folder(folder, per_batch, seed=100 * writer + batch, size=48)
            folders.append(str(folder))
            expected_sources.add(f"writer-{writer}/batch-{batch}")
        children.append(subprocess.Popen(
            [sys.executable, "-c", _WRITER_CHILD, str(lake_root), str(go), f"writer-{writer}", *folders],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    time.sleep(1.0)  # let every writer import and wait at the start line
    go.touch()
    for child in children:
        _, errors = child.communicate(timeout=300)
        assert child.returncode == 0, errors

    lake = bl.Datalake.open(lake_root)
    items = lake.items(["item_id", "source", "event_id"]).to_pylist()
    events = [event for event in lake.history().to_pylist() if event["kind"] == "ingest"]
    assert len(items) == writers * batches * per_batch
    assert len({item["item_id"] for item in items}) == len(items)
    assert {item["source"] for item in items} == expected_sources
    assert lake.version == writers * batches
    assert len(events) == writers * batches
    assert sorted(event["items_version"] for event in events) == list(range(1, writers * batches + 1))
    for event in events:
        batch_items = [item for item in items if item["event_id"] == event["event_id"]]
        assert len(batch_items) == per_batch
        assert json.loads(event["summary"])["added"] == per_batch
    assert lake.verify().ok


# Vacuum -----------------------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _put_orphan(lake_root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    target = lake_root / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return digest


@pytest.fixture()
def vacuum_lake(tmp_path: Path, sample_dir: Path) -> bl.Datalake:
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(sample_dir, source="sample", split_from="grandparent", progress=False)
    return lake


def test_vacuum_removes_old_orphans_only(vacuum_lake: bl.Datalake, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    referenced = stored_digests(root)
    old = _put_orphan(root, b"left by a killed ingest")
    recent = _put_orphan(root, b"written by an ingest still running")
    old_path = root / "objects" / "sha256" / old[:2] / old[2:4] / old
    _age(old_path, 7200)
    temporary = old_path.parent / f".{old}.0123.tmp"
    temporary.write_bytes(b"half an object")
    _age(temporary, 7200)

    dry = vacuum_lake.vacuum(dry_run=True)
    assert dry.objects_removed == [old]
    assert dry.objects_kept_recent == 1
    assert stored_digests(root) == referenced | {old, recent}
    assert temporary.exists()

    report = vacuum_lake.vacuum()
    assert report.objects_removed == [old]
    assert report.bytes_freed == len(b"left by a killed ingest")
    assert report.temporary_removed == [str(temporary)]
    assert stored_digests(root) == referenced | {recent}
    assert not temporary.exists()

    assert vacuum_lake.vacuum(grace_period=timedelta(0)).objects_removed == [recent]
    assert stored_digests(root) == referenced
    assert vacuum_lake.verify().ok


def test_vacuum_spares_old_orphan_reused_by_ingest(vacuum_lake: bl.Datalake, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    data = b"orphaned long ago, stored again by a running ingest"
    digest = _put_orphan(root, data)
    _age(root / "objects" / "sha256" / digest[:2] / digest[2:4] / digest, 7200)

    _, written = vacuum_lake._objects.put(data)

    assert not written
    report = vacuum_lake.vacuum()
    assert report.objects_removed == []
    assert report.objects_kept_recent == 1
    assert digest in stored_digests(root)


def test_vacuum_keeps_run_and_mart_references(vacuum_lake: bl.Datalake, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    checkpoint = tmp_path / "best.pt"
    torch.save({"weights": torch.zeros(3)}, checkpoint)
    record = bl.record_run(vacuum_lake, model="fc", hyperparameters={}, history=[], evaluation={},
                           mart={"name": "m", "recipe_hash": "0" * 16, "lake_version": 1}, checkpoint=checkpoint)
    vacuum_lake.mart("tiny").split(from_source=True).preprocess(size=16).build(progress=False)
    manifest_path = next((root / "marts" / "tiny").glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["attachments"] = {"report_sha256": _put_orphan(root, b"a mart attachment")}
    manifest_path.write_text(json.dumps(manifest))
    for path in (root / "objects").rglob("*"):
        if path.is_file():
            _age(path, 7200)

    report = vacuum_lake.vacuum(grace_period=timedelta(0))

    assert report.objects_removed == []
    assert record.checkpoint_sha256 in stored_digests(root)
    assert manifest["attachments"]["report_sha256"] in stored_digests(root)
    assert vacuum_lake.verify().ok


def test_vacuum_removes_mart_staging_folders(vacuum_lake: bl.Datalake, tmp_path: Path) -> None:
    staging = tmp_path / "lake" / "marts" / "tiny" / ".0123abcd.x1y2"
    staging.mkdir(parents=True)
    (staging / "train-images.npy").write_bytes(b"partial")
    assert vacuum_lake.vacuum(grace_period=timedelta(0)).temporary_removed == [str(staging)]
    assert not staging.exists()


def test_vacuum_history_ends_time_travel(vacuum_lake: bl.Datalake, sample_dir: Path) -> None:
    vacuum_lake.ingest(sample_dir / "Testing", source="second", progress=False)
    assert vacuum_lake.items(version=1).num_rows == 56
    vacuum_lake.vacuum(history=True)

    with pytest.raises(bl.VersionNotFoundError, match="history was removed"):
        vacuum_lake.items(version=1)
    assert vacuum_lake.items().num_rows == 56 + 14
    assert bl.Datalake.open(vacuum_lake.url).items(["item_id"]).num_rows == 56 + 14


def test_vacuum_rejects_negative_grace_period(vacuum_lake: bl.Datalake) -> None:
    with pytest.raises(bl.LakeError, match="grace_period"):
        vacuum_lake.vacuum(grace_period=timedelta(seconds=-1))


# Read-only lakes ----------------------------------------------------------------------


def test_read_only_open_never_creates(tmp_path: Path) -> None:
    with pytest.raises(bl.LakeNotFoundError):
        bl.Datalake(tmp_path / "absent", read_only=True)
    with pytest.raises(bl.LakeNotFoundError):
        bl.Datalake.open(tmp_path / "absent", read_only=True)
    assert not (tmp_path / "absent").exists()


def test_read_only_lake_rejects_every_write(vacuum_lake: bl.Datalake, tmp_path: Path, sample_dir: Path) -> None:
    vacuum_lake.mart("built").split(from_source=True).preprocess(size=16).build(progress=False)
    backup = bl.Datalake(tmp_path / "backup")
    backup.ingest(sample_dir, source="sample", split_from="grandparent", progress=False)
    checkpoint = tmp_path / "best.pt"
    torch.save({"weights": torch.zeros(1)}, checkpoint)
    root = tmp_path / "lake"
    before = snapshot(root)

    lake = bl.Datalake.open(root, read_only=True)
    item_id = lake.items(["item_id"]).column("item_id")[0].as_py()
    writes: dict[str, Callable[[], Any]] = {
        "ingest": lambda: lake.ingest(sample_dir, source="other", progress=False),
        "forget": lambda: lake.forget(item_ids=[item_id]),
        "vacuum": lambda: lake.vacuum(grace_period=timedelta(0)),
        "vacuum history": lambda: lake.vacuum(history=True),
        "record_event": lambda: lake.record_event("note"),
        "record_run": lambda: bl.record_run(lake, model="fc", hyperparameters={}, history=[], evaluation={},
                                            mart={"name": "m", "recipe_hash": "h", "lake_version": 1},
                                            checkpoint=checkpoint),
        "mart build": lambda: lake.mart("new").split(seed=1).preprocess(size=8).build(progress=False),
        "verify repair": lambda: lake.verify(repair_from=backup),
    }
    for name, write in writes.items():
        with pytest.raises(ReadOnlyLakeError, match="read-only"):
            write()
        assert snapshot(root) == before, f"{name} changed the lake"

    # Reading works, and a built mart opens; a dry-run vacuum changes nothing.
    assert lake.read_only
    assert lake.items().num_rows == 56
    assert lake.verify().ok
    assert lake.open_mart("built").name == "built"
    assert lake.vacuum(dry_run=True, history=True).dry_run
    assert snapshot(root) == before
    assert isinstance(ReadOnlyLakeError("x"), PermissionError)


# Hostile checkpoints ---------------------------------------------------------------------


class _CreatesMarker:
    """Unpickling this object calls ``Path.touch`` on the marker: code run by the loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model_state": {"weight": torch.zeros(2)}, "payload": _CreatesMarker(marker)}, path)
    return path


def test_pickle_payload_really_runs_code(tmp_path: Path) -> None:
    # The control: without weights_only the file runs its code, so the
    # refusals below are refusals of a real attack.
    marker = tmp_path / "marker"
    torch.load(_malicious_checkpoint(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_trainer_rejects_malicious_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    checkpoint = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    model = bl.create_model("fc", num_classes=2, in_channels=1)
    trainer = bl.Trainer(model, device="cpu", max_epochs=1)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        trainer.load_checkpoint(checkpoint)
    assert not marker.exists()


def test_resnet_weights_reject_malicious_file(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    weights = _malicious_checkpoint(tmp_path / "evil.pt", marker)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        bl.create_model("resnet18", num_classes=2, in_channels=1, weights=weights)
    assert not marker.exists()


def test_lake_checkpoint_rejects_malicious_pickle(vacuum_lake: bl.Datalake, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    checkpoint = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    record = bl.record_run(vacuum_lake, model="fc", hyperparameters={}, history=[], evaluation={},
                           mart={"name": "m", "recipe_hash": "h", "lake_version": 1}, checkpoint=checkpoint)
    assert record.checkpoint_sha256 is not None
    restored = tmp_path / "restored.pt"
    restored.write_bytes(vacuum_lake.read_object(record.checkpoint_sha256))
    model = bl.create_model("fc", num_classes=2, in_channels=1)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        bl.Trainer(model, device="cpu", max_epochs=1).load_checkpoint(restored)
    assert bl.load_run(vacuum_lake, record.run_id).checkpoint_sha256 == record.checkpoint_sha256
    assert not marker.exists()


# Hostile archives -------------------------------------------------------------------------


def test_zip_pixel_bomb_rejected_by_name(tmp_path: Path, sample_dir: Path) -> None:
    # Member names, links and byte sizes are covered in test_archive.py; this
    # is the decompression bomb: a small file whose header declares 10^10 pixels.
    import struct
    import zipfile
    import zlib
    from io import BytesIO

    buffer = BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", 100_000, 100_000) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    good = next((sample_dir / "Training" / "glioma").glob("*.jpg"))
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("Training/glioma/bomb.png", bytes(data))
        handle.writestr("Training/glioma/good.jpg", good.read_bytes())

    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(archive, source="upload", reader="zip", progress=False)

    assert report.added == 1
    assert [problem.source_path for problem in report.failed] == ["Training/glioma/bomb.png"]
    assert "pixels" in report.failed[0].reason
    assert lake.items(["source_path"]).column("source_path").to_pylist() == ["Training/glioma/good.jpg"]
