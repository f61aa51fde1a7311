"""Train on the shipped sample with two data-parallel processes on the CPU.

Shows a script that runs unchanged in one process or under ``torchrun``. Rank 0
ingests the sample (56 images) and builds a 64 px mart (``--size``) while the other ranks
wait at a barrier. Then every rank trains ``cnn1`` on its shard of the training
split, and the evaluation counts each test image once. Rank 0 writes the
checkpoint, a report (``report.json`` and, with the ``plots`` extra, PNGs) and
the run record. Run it with::

    torchrun --nproc_per_node=2 --master_addr 127.0.0.1 --master_port 29500 \\
        examples/train_ddp.py ./brainlake-ddp-demo

or in one process with ``python examples/train_ddp.py``. Each way took about 22 s
on 2 shared CPU cores, most of it starting Python and torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

import brainlake as bl
from brainlake.training import write_report

def prepare_mart(lake_path: Path, size: int) -> bl.BuiltMart:
    """Build the mart on rank 0 while the other ranks wait, then open it everywhere."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        lake = bl.Datalake(lake_path)
        lake.ingest(bl.datasets.sample_path(), source="sample", label_from="parent",
                    split_from="grandparent", progress=False)
        lake.mart(f"ddp-demo-{size}").split(from_source=True, val_fraction=0.2, seed=0).preprocess(size=size).build(
            progress=False)
    if dist.is_initialized():
        dist.barrier()
    return bl.Datalake.open(lake_path).open_mart(f"ddp-demo-{size}")


def main(lake_path: Path, epochs: int, size: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Under torchrun, join the job before the lake work, because the barrier
    # in prepare_mart needs a group. The Trainer then uses this group as it is.
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group("gloo")
    mart = prepare_mart(lake_path, size)

    torch.manual_seed(0)
    model = bl.create_model("cnn1", num_classes=len(mart.classes))
    checkpoints = lake_path.parent / f"{lake_path.name}-checkpoints"
    trainer = bl.Trainer(model, device="cpu", max_epochs=epochs, class_names=mart.classes,
                         checkpoint_dir=checkpoints, progress=False)
    trainer.fit(mart.loader("train", batch_size=8, shuffle=True), mart.loader("val", batch_size=32))
    evaluation = trainer.evaluate(mart.loader("test", batch_size=32))
    if trainer.rank != 0:
        return

    report = lake_path.parent / f"{lake_path.name}-report"
    write_report(report, history=trainer.history, evaluation=evaluation,
                 png=importlib.util.find_spec("matplotlib") is not None)
    record = bl.record_run(
        bl.Datalake.open(lake_path),
        model="cnn1",
        hyperparameters={**trainer.hyperparameters, "batch_size": 8},
        mart={"name": mart.name, "recipe_hash": mart.recipe_hash, "lake_version": mart.lake_version},
        history=trainer.history,
        evaluation=evaluation.to_dict(),
        checkpoint=trainer.best_checkpoint_path,
        report=report,
    )
    print(evaluation)
    print(f"run {record.run_id} (world size {trainer.world_size}); "
          f"brainlake runs show {record.run_id} --lake {lake_path} --items")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lake", nargs="?", default="./brainlake-ddp-demo",
                        help="lake folder, created if absent (default: ./brainlake-ddp-demo)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default: 4)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    arguments = parser.parse_args()
    main(Path(arguments.lake).resolve(), arguments.epochs, arguments.size)
