"""Quickstart: ingest the real MRI data, cut a leakage-safe mart, train cnn2, evaluate.

Runs the whole brainlake flow on the 1,527-image Kaggle subset beside this
repository (``../shared/data/brain-tumor-mri``, or the folder named by
``$BRAINLAKE_DATA``), falling back to the 56-image sample shipped with the
package when that folder is absent. It prints the duplicate counts, the
mart's leakage report and the test evaluation.

Time on 2 CPU cores: about 10 s to ingest and build the mart, then about 3
minutes for 8 epochs of cnn2 at 128 px. ``--epochs`` and ``--size`` shorten it.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import torch

import brainlake as bl


def find_data() -> tuple[Path, str]:
    """Return the data folder and a source name for it."""
    configured = os.environ.get("BRAINLAKE_DATA")
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri"
    for candidate in ([Path(configured)] if configured else []) + [shared]:
        if (candidate / "Training").is_dir():
            return candidate, "kaggle-brain-mri"
    return bl.datasets.sample_path(), bl.datasets.SAMPLE_SOURCE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--model", default="cnn2", help="registered model name (default: cnn2)")
    arguments = parser.parse_args()
    if arguments.epochs < 1 or arguments.size < 8:
        parser.error(f"--epochs must be at least 1 and --size at least 8, got {arguments.epochs} and {arguments.size}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    data, source = find_data()
    if source == bl.datasets.SAMPLE_SOURCE:
        print("Kaggle data not found (set BRAINLAKE_DATA to its folder): using the 56-image sample")
    with tempfile.TemporaryDirectory(prefix="brainlake-quickstart-") as scratch:
        lake = bl.Datalake(arguments.lake or Path(scratch) / "lake")

        report = lake.ingest(data, source=source, label_from="parent", split_from="grandparent")
        print(report)
        groups = lake.duplicates(source=source)
        print(f"{len(groups)} groups of identical bytes, {sum(g.extra_copies for g in groups)} extra copies, "
              f"{sum(g.spans_splits for g in groups)} spanning Training and Testing")

        mart = (
            lake.mart(f"{source}-{arguments.size}")
            .where(source=source)
            .split(from_source=True, val_fraction=0.15, seed=0)
            .preprocess(size=arguments.size, channels=1)
            .build()
        )
        print(mart.summary())

        torch.manual_seed(0)  # the initial weights; the trainer seeds each epoch
        model = bl.create_model(arguments.model, num_classes=len(mart.classes), in_channels=1)
        trainer = bl.Trainer(model, device="auto", max_epochs=arguments.epochs, seed=0, class_names=mart.classes)
        trainer.fit(mart.loader("train", batch_size=64, shuffle=True), mart.loader("val", batch_size=256))
        print(trainer.evaluate(mart.loader("test", batch_size=256)))


if __name__ == "__main__":
    main()
