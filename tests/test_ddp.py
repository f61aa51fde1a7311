"""Tests for data-parallel training: two gloo ranks on the CPU, launched by torchrun.

Run as a script, this file is the worker that torchrun starts on each rank:
``python -m torch.distributed.run --nproc_per_node=2 tests/test_ddp.py LAKE MART OUT``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import brainlake as bl
from brainlake.mart import ShardSampler
from brainlake.training import Trainer

MART = "ddp-32"
EPOCHS = 2
WORLD_SIZE = 2


def run_worker(lake_url: str, mart_name: str, output: Path) -> None:
    """Train and evaluate on this rank's shard, then write what the rank saw to ``output``."""
    rank = int(os.environ["RANK"])
    logging.basicConfig(filename=output / f"log-rank{rank}.txt", level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    mart = bl.Datalake.open(lake_url).open_mart(mart_name)
    train = mart.loader("train", batch_size=8, shuffle=True, seed=3)
    train_indices: dict[int, list[int]] = {}

    def record_shard(trainer: Trainer, row: dict[str, Any]) -> None:
        sampler = train.sampler
        assert isinstance(sampler, ShardSampler)
        train_indices[int(row["epoch"])] = list(sampler)

    torch.manual_seed(0)
    model = bl.create_model("cnn1", num_classes=len(mart.classes))
    trainer = Trainer(model, device="cpu", max_epochs=EPOCHS, class_names=mart.classes,
                      checkpoint_dir=output / f"checkpoints-rank{rank}", progress=False,
                      callbacks=[record_shard])
    trainer.fit(train, mart.loader("val", batch_size=8))
    evaluation = trainer.evaluate(mart.loader("test", batch_size=8))
    result = {
        "rank": trainer.rank,
        "world_size": trainer.world_size,
        "history": trainer.history,
        "evaluation": evaluation.to_dict(),
        "train_indices": train_indices,
    }
    (output / f"result-rank{rank}.json").write_text(json.dumps(result))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ddp_mart(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> bl.BuiltMart:
    lake = bl.Datalake(tmp_path_factory.mktemp("ddp") / "lake")
    lake.ingest(sample_dir, source="sample", label_from="parent", split_from="grandparent", progress=False)
    return (
        lake.mart(MART)
        .split(from_source=True, val_fraction=0.2, seed=0)
        .preprocess(size=32)
        .build(progress=False)
    )


@pytest.fixture(scope="module")
def ddp_run(ddp_mart: bl.BuiltMart, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Launch the two-rank job once; the tests below check what it left behind."""
    output = tmp_path_factory.mktemp("ddp-run")
    lake_url = str(ddp_mart.path.parents[2])
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD_SIZE}",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        __file__, lake_url, MART, str(output),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    seconds = time.perf_counter() - started
    results = {
        rank: json.loads(path.read_text())
        for rank in range(WORLD_SIZE)
        if (path := output / f"result-rank{rank}.json").exists()
    }
    return {"completed": completed, "output": output, "results": results, "seconds": seconds}


def test_ddp_job_exits_cleanly(ddp_run: dict[str, Any]) -> None:
    completed = ddp_run["completed"]
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(ddp_run["results"]) == [0, 1]
    for rank, result in ddp_run["results"].items():
        assert result["rank"] == rank
        assert result["world_size"] == WORLD_SIZE


def test_ddp_only_rank0_writes_checkpoints(ddp_run: dict[str, Any], ddp_mart: bl.BuiltMart) -> None:
    output: Path = ddp_run["output"]
    assert sorted(path.name for path in (output / "checkpoints-rank0").iterdir()) == ["best.pt", "last.pt"]
    assert not (output / "checkpoints-rank1").exists()

    payload = torch.load(output / "checkpoints-rank0" / "last.pt", weights_only=True)
    assert not [name for name in payload["model_state"] if name.startswith("module.")]
    plain_model = bl.create_model("cnn1", num_classes=len(ddp_mart.classes))
    plain_model.load_state_dict(payload["model_state"])


def test_ddp_only_rank0_logs(ddp_run: dict[str, Any]) -> None:
    output: Path = ddp_run["output"]
    rank0_log = (output / "log-rank0.txt").read_text()
    rank1_log = (output / "log-rank1.txt").read_text()
    assert f"epoch 1/{EPOCHS}" in rank0_log
    assert f"epoch {EPOCHS}/{EPOCHS}" in rank0_log
    assert "brainlake.training" not in rank1_log


def test_ddp_evaluation_counts_test_split_once(ddp_run: dict[str, Any], ddp_mart: bl.BuiltMart) -> None:
    test_count = len(ddp_mart.dataset("test"))
    evaluations = [ddp_run["results"][rank]["evaluation"] for rank in range(WORLD_SIZE)]
    for evaluation in evaluations:
        assert evaluation["num_samples"] == test_count
        assert sum(map(sum, evaluation["confusion_matrix"])) == test_count
    assert evaluations[0] == evaluations[1]

    # The weights of the best epoch, evaluated in one process, give the same matrix.
    payload = torch.load(ddp_run["output"] / "checkpoints-rank0" / "best.pt", weights_only=True)
    model = bl.create_model("cnn1", num_classes=len(ddp_mart.classes))
    model.load_state_dict(payload["model_state"])
    single = Trainer(model, device="cpu", class_names=ddp_mart.classes, progress=False, distributed=False)
    expected = single.evaluate(ddp_mart.loader("test", batch_size=8))
    assert evaluations[0]["confusion_matrix"] == expected.confusion_matrix


def test_ddp_ranks_train_on_disjoint_shards(ddp_run: dict[str, Any], ddp_mart: bl.BuiltMart) -> None:
    train_count = len(ddp_mart.dataset("train"))
    shards = [ddp_run["results"][rank]["train_indices"] for rank in range(WORLD_SIZE)]
    for epoch in map(str, range(1, EPOCHS + 1)):
        first, second = set(shards[0][epoch]), set(shards[1][epoch])
        assert not first & second
        assert len(shards[0][epoch]) == len(shards[1][epoch])
        assert len(first | second) == train_count - train_count % WORLD_SIZE
    assert shards[0]["1"] != shards[0]["2"]


def test_ddp_ranks_share_one_history(ddp_run: dict[str, Any]) -> None:
    histories = [ddp_run["results"][rank]["history"] for rank in range(WORLD_SIZE)]
    assert len(histories[0]) == EPOCHS
    for first, second in zip(*histories, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1"):
            assert first[key] == second[key]


def test_ddp_job_runtime_is_modest(ddp_run: dict[str, Any]) -> None:
    # Two ranks starting Python and torch, then two epochs on about 40 images of 32 px.
    assert ddp_run["seconds"] < 120


def test_cli_train_under_torchrun_records_one_run(ddp_mart: bl.BuiltMart) -> None:
    lake_url = str(ddp_mart.path.parents[2])
    lake = bl.Datalake.open(lake_url)
    runs_before = {record.run_id for record in bl.list_runs(lake)}
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD_SIZE}",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "brainlake", "train", "--lake", lake_url, "--mart", MART, "--model", "cnn1",
        "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--json",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)

    assert completed.returncode == 0, completed.stderr[-3000:]
    new_runs = [record for record in bl.list_runs(lake) if record.run_id not in runs_before]
    assert len(new_runs) == 1
    assert new_runs[0].hyperparameters["world_size"] == WORLD_SIZE
    assert new_runs[0].evaluation["num_samples"] == len(ddp_mart.dataset("test"))
    assert json.loads(completed.stdout)["run_id"] == new_runs[0].run_id


@pytest.mark.parametrize("length", [0, 1, 7, 8, 41])
@pytest.mark.parametrize("shuffle", [False, True])
def test_shard_sampler_shards_are_disjoint(length: int, shuffle: bool) -> None:
    shards = [
        list(ShardSampler(length, num_replicas=3, rank=rank, shuffle=shuffle, seed=5, even=False))
        for rank in range(3)
    ]

    assert sorted(index for shard in shards for index in shard) == list(range(length))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("length", [0, 1, 7, 8, 41])
def test_shard_sampler_even_shards_have_equal_length(length: int) -> None:
    samplers = [ShardSampler(length, num_replicas=3, rank=rank, shuffle=True, seed=5, even=True) for rank in range(3)]
    shards = [list(sampler) for sampler in samplers]

    assert {len(shard) for shard in shards} == {length // 3}
    assert [len(sampler) for sampler in samplers] == [length // 3] * 3
    covered = [index for shard in shards for index in shard]
    assert len(set(covered)) == len(covered) == length - length % 3


def test_shard_sampler_epoch_changes_order() -> None:
    sampler = ShardSampler(40, num_replicas=2, rank=0, shuffle=True, seed=1, even=True)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(2)
    second = list(sampler)
    sampler.set_epoch(1)

    assert first != second
    assert list(sampler) == first


def test_shard_sampler_rejects_bad_rank() -> None:
    with pytest.raises(ValueError, match=r"rank must be in 0\.\.1, got 2"):
        ShardSampler(10, num_replicas=2, rank=2, shuffle=False)


def test_mart_loader_shards_under_torchrun_variables(
    ddp_mart: bl.BuiltMart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    test_count = len(ddp_mart.dataset("test"))

    sharded = ddp_mart.loader("test", batch_size=4)
    whole = ddp_mart.loader("test", batch_size=4, distributed=False)

    assert isinstance(sharded.sampler, ShardSampler)
    assert sum(labels.numel() for _, labels in sharded) == test_count // 2
    assert sum(labels.numel() for _, labels in whole) == test_count


def test_mart_loader_distributed_needs_job(ddp_mart: bl.BuiltMart, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(bl.MartError, match="distributed=True needs a torch.distributed job"):
        ddp_mart.loader("train", distributed=True)


def test_trainer_distributed_needs_job(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    model = bl.create_model("cnn1", num_classes=2)
    with pytest.raises(bl.TrainingError, match="distributed=True needs a torch.distributed job"):
        Trainer(model, device="cpu", distributed=True)


def test_trainer_rejects_partial_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    model = bl.create_model("cnn1", num_classes=2)
    with pytest.raises(bl.TrainingError, match=r"not \['RANK', 'LOCAL_RANK'\]"):
        Trainer(model, device="cpu")


def test_trainer_alone_ignores_world_size_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    trainer = Trainer(bl.create_model("cnn1", num_classes=2), device="cpu", progress=False)

    assert trainer.world_size == 1
    assert trainer.rank == 0


if __name__ == "__main__":
    run_worker(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
