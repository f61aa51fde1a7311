"""verify finds every damaged or missing object without changing the lake, and repairs from another lake."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

import brainlake as bl
from brainlake.exceptions import ReadOnlyLakeError

SEEDS = range(10)


def object_path(lake_root: Path, digest: str) -> Path:
    return lake_root / "objects" / "sha256" / digest[:2] / digest[2:4] / digest


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def flip_byte(path: Path, generator: random.Random) -> int:
    data = bytearray(path.read_bytes())
    offset = generator.randrange(len(data))
    data[offset] ^= 1 << generator.randrange(8)
    path.write_bytes(bytes(data))
    return offset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("verify") / "lake"
    bl.Datalake(root).ingest(sample_dir, source="sample", split_from="grandparent", progress=False)
    return root


def damage(lake_root: Path, seed: int) -> tuple[dict[str, list[str]], set[str], set[str]]:
    """Flip one bit in some objects and delete others, chosen by ``seed``.

    Returns the items of each digest, and the digests corrupted and deleted.
    """
    lake = bl.Datalake.open(lake_root)
    items_of: dict[str, list[str]] = {}
    for row in lake.items(["item_id", "sha256"]).to_pylist():
        items_of.setdefault(row["sha256"], []).append(row["item_id"])
    generator = random.Random(seed)
    chosen = generator.sample(sorted(items_of), generator.randint(2, 12))
    split = generator.randint(1, len(chosen) - 1)
    corrupted, deleted = set(chosen[:split]), set(chosen[split:])
    for digest in corrupted:
        flip_byte(object_path(lake_root, digest), generator)
    for digest in deleted:
        object_path(lake_root, digest).unlink()
    return items_of, corrupted, deleted


@pytest.mark.parametrize("seed", SEEDS)
def test_verify_finds_damage_read_only(pristine: Path, tmp_path: Path, seed: int) -> None:
    root = tmp_path / "lake"
    shutil.copytree(pristine, root)
    items_of, corrupted, deleted = damage(root, seed)
    lake = bl.Datalake.open(root)
    paths = dict(zip(*lake.items(["item_id", "source_path"]).to_pydict().values()))
    before = snapshot(root)

    report = lake.verify()

    assert snapshot(root) == before
    assert not report.ok
    assert sorted(report.corrupt) == sorted((item, digest) for digest in corrupted for item in items_of[digest])
    assert sorted(report.missing) == sorted((item, digest) for digest in deleted for item in items_of[digest])
    assert report.objects_checked == len(items_of) - len(deleted)
    assert report.items_checked == 56
    assert len(report.problems) == len(report.corrupt) + len(report.missing)
    for problem in report.problems:
        assert problem.kind == ("corrupt" if problem.sha256 in corrupted else "missing")
        assert problem.object_path == str(object_path(root, problem.sha256))
        assert problem.source_path == paths[problem.item_id]
    assert report.orphaned == []


def test_verify_reports_orphans_and_leftovers(pristine: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    shutil.copytree(pristine, root)
    orphan = "ab" * 32
    object_path(root, orphan).parent.mkdir(parents=True, exist_ok=True)
    object_path(root, orphan).write_bytes(b"unreferenced")
    temporary = object_path(root, orphan).parent / f".{orphan}.5678.tmp"
    temporary.write_bytes(b"half")

    report = bl.Datalake.open(root).verify()

    assert report.ok
    assert report.orphaned == [orphan]
    assert report.temporary == [str(temporary)]


@pytest.mark.parametrize("seed", SEEDS)
def test_repair_restores_from_backup(pristine: Path, tmp_path: Path, seed: int) -> None:
    root = tmp_path / "lake"
    shutil.copytree(pristine, root)
    _, corrupted, deleted = damage(root, seed)
    backup = bl.Datalake.open(pristine, read_only=True)
    lake = bl.Datalake.open(root)

    report = lake.verify(repair_from=backup)

    assert sorted(report.repaired) == sorted(corrupted | deleted)
    assert report.unrepaired == []
    assert report.ok
    after = lake.verify()
    assert after.ok
    assert after.missing == []
    assert after.corrupt == []
    for digest in corrupted | deleted:
        assert object_path(root, digest).read_bytes() == object_path(pristine, digest).read_bytes()
    assert list((root / "objects").rglob("*.tmp")) == []


def test_repair_skips_bad_or_absent_copies(pristine: Path, tmp_path: Path) -> None:
    root, backup_root = tmp_path / "lake", tmp_path / "backup"
    shutil.copytree(pristine, root)
    shutil.copytree(pristine, backup_root)
    digests = sorted(path.name for path in (root / "objects").rglob("*") if path.is_file())
    generator = random.Random(7)
    both_corrupt, backup_lacks, repairable = digests[0], digests[1], digests[2]
    flip_byte(object_path(root, both_corrupt), generator)
    flip_byte(object_path(backup_root, both_corrupt), generator)
    damaged_bytes = object_path(root, both_corrupt).read_bytes()
    object_path(root, backup_lacks).unlink()
    object_path(backup_root, backup_lacks).unlink()
    object_path(root, repairable).unlink()

    report = bl.Datalake.open(root).verify(repair_from=str(backup_root))

    assert report.repaired == [repairable]
    assert sorted(report.unrepaired) == sorted([both_corrupt, backup_lacks])
    assert not report.ok
    assert object_path(root, both_corrupt).read_bytes() == damaged_bytes
    assert not object_path(root, backup_lacks).exists()
    assert report.to_dict()["unrepaired"] == report.unrepaired


def test_repair_needs_a_writable_lake(pristine: Path) -> None:
    lake = bl.Datalake.open(pristine, read_only=True)
    with pytest.raises(ReadOnlyLakeError, match="repair"):
        lake.verify(repair_from=pristine)


def test_verify_checks_run_checkpoints(pristine: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    shutil.copytree(pristine, root)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"checkpoint bytes")
    lake = bl.Datalake.open(root)
    record = bl.record_run(lake, model="fc", hyperparameters={}, history=[], evaluation={},
                           mart={"name": "m", "recipe_hash": "h", "lake_version": 1}, checkpoint=checkpoint)
    assert record.checkpoint_sha256 is not None
    flip_byte(object_path(root, record.checkpoint_sha256), random.Random(3))

    report = lake.verify()

    assert report.corrupt == [(f"run:{record.run_id}", record.checkpoint_sha256)]
    assert report.problems[0].source_path is None
