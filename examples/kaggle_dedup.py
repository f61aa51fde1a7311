"""Kaggle brain MRI dataset: find the images shared by Training and Testing, and train without them.

The Kaggle "Brain Tumor MRI Dataset" repeats some files across its Training
and Testing folders, byte for byte or re-encoded. A model tested on those
copies looks better than it is. This script ingests the dataset and lists
the duplicate groups: identical bytes, and near-identical pixels by perceptual
hash. It then builds a mart that keeps the source's split but drops every test
image whose group also occurs in training, trains on it and evaluates on the
clean test split. It prints how many test images were dropped and why.

Data: ``--data``, else ``$BRAINLAKE_DATA``, else ``../shared/data/brain-tumor-mri``
beside the repository, else the 56-image sample shipped with brainlake (then
it prints a notice). Time on 2 CPU cores with the defaults (cnn2, 8 epochs at 128
px): about 20 s on the sample. On the 1,527-image subset, ingest and the mart
build take about 10 s, then each epoch 25 to 50 s. ``--size`` and
``--epochs`` shorten it.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
import tempfile

import torch

import brainlake as bl


def find_data(given: str | None) -> tuple[Path, str]:
    """Return the data folder and the source name to store with its items."""
    candidates = [Path(given)] if given else []
    if os.environ.get("BRAINLAKE_DATA"):
        candidates.append(Path(os.environ["BRAINLAKE_DATA"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri")
    for candidate in candidates:
        if (candidate / "Training").is_dir():
            return candidate, "kaggle-brain-mri"
    if given:
        raise SystemExit(f"--data {given!r} has no Training folder; give the folder holding Training/ and Testing/")
    print("Kaggle data not found: using the 56-image sample shipped with brainlake.")
    return bl.datasets.sample_path(), bl.datasets.SAMPLE_SOURCE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None,
                        help="folder with Training/<class>/ and Testing/<class>/ (default: see above)")
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--model", default="cnn2", help="registered model name (default: cnn2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--near", action="store_true",
                        help="also keep near-identical images (re-encoded, resized copies) out of the test split")
    arguments = parser.parse_args(argv)
    if arguments.epochs < 1 or arguments.size < 8:
        parser.error(f"--epochs must be at least 1 and --size at least 8, got {arguments.epochs} and {arguments.size}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    data, source = find_data(arguments.data)
    with tempfile.TemporaryDirectory(prefix="brainlake-kaggle-") as scratch:
        lake = bl.Datalake(arguments.lake or Path(scratch) / "lake")
        print(lake.ingest(data, source=source, label_from="parent", split_from="grandparent", progress=False))

        exact = lake.duplicates(source=source)
        near = lake.duplicates(source=source, near=True)
        print(f"identical bytes: {len(exact)} groups, {sum(group.spans_splits for group in exact)} "
              "spanning Training and Testing")
        print(f"near-identical pixels: {len(near)} groups, {sum(group.spans_splits for group in near)} "
              "spanning Training and Testing")
        for group in [group for group in exact if group.spans_splits][:3]:
            print("  e.g. " + " = ".join(group.source_paths))

        mart = (
            lake.mart(f"{source}-clean-{arguments.size}")
            .where(source=source)
            .split(from_source=True, val_fraction=0.15, seed=0, group_near=arguments.near)
            .preprocess(size=arguments.size, channels=1)
            .build(progress=False)
        )
        print(mart.summary())
        dropped = [entry for entry in mart.leakage["dropped"] if entry["from_split"] == "test"]
        print(f"{len(dropped)} test images dropped because their group is in training")

        torch.manual_seed(0)
        model = bl.create_model(arguments.model, num_classes=len(mart.classes), in_channels=1)
        trainer = bl.Trainer(model, device=arguments.device, max_epochs=arguments.epochs, seed=0,
                             class_names=mart.classes, progress=False)
        trainer.fit(mart.loader("train", batch_size=64, shuffle=True), mart.loader("val", batch_size=256))
        print(trainer.evaluate(mart.loader("test", batch_size=256)))


if __name__ == "__main__":
    main()
