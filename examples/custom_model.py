"""Register your own model and train it like the built-in ones.

A model factory is a function ``(num_classes, in_channels) -> torch.nn.Module``.
Decorated with :func:`brainlake.register_model`, it joins the registry under a
name, so :func:`brainlake.create_model`, the trainer, ``brainlake train --model``
(when the module defining it is imported first) and the run records treat it like
``cnn2`` or ``resnet18``. This script registers a small depthwise-separable
network, builds a mart from the sample shipped with brainlake, trains it,
evaluates it and records the run in the lake with the mart it came from.

Time on 2 CPU cores: about 6 s with the defaults.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

import brainlake as bl


@bl.register_model("separable", description="Three depthwise-separable conv blocks and a linear head.",
                   default_input_size=64, override=True)
def separable(num_classes: int, in_channels: int = 1) -> nn.Module:
    """Return a small network of depthwise-separable convolutions (about 9k parameters)."""

    def block(channels_in: int, channels_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1, groups=channels_in, bias=False),
            nn.Conv2d(channels_in, channels_out, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(in_channels, 16), block(16, 32), block(32, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default: 4)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    card = bl.model_card("separable")
    print(f"{card.name}: {card.description} ({card.num_parameters} parameters)")
    with tempfile.TemporaryDirectory(prefix="brainlake-custom-model-") as scratch:
        lake = bl.Datalake(arguments.lake or Path(scratch) / "lake")
        lake.ingest(bl.datasets.sample_path(), source=bl.datasets.SAMPLE_SOURCE,
                    label_from="parent", split_from="grandparent", progress=False)
        mart = (
            lake.mart(f"sample-{arguments.size}")
            .split(from_source=True, val_fraction=0.2, seed=0)
            .preprocess(size=arguments.size, channels=1)
            .build(progress=False)
        )

        torch.manual_seed(0)
        model = bl.create_model("separable", num_classes=len(mart.classes), in_channels=1)
        print(f"separable: {sum(parameter.numel() for parameter in model.parameters())} parameters")
        trainer = bl.Trainer(model, device=arguments.device, max_epochs=arguments.epochs, seed=0,
                             class_names=mart.classes, checkpoint_dir=Path(scratch) / "checkpoints",
                             progress=False)
        trainer.fit(mart.loader("train", batch_size=16, shuffle=True), mart.loader("val", batch_size=64))
        evaluation = trainer.evaluate(mart.loader("test", batch_size=64))
        print(evaluation)

        record = bl.record_run(
            lake,
            model="separable",
            hyperparameters={"epochs": arguments.epochs, "size": arguments.size, "device": str(trainer.device)},
            mart={"name": mart.name, "recipe_hash": mart.recipe_hash, "lake_version": mart.lake_version},
            history=trainer.history,
            evaluation=evaluation.to_dict(),
        )
        print(f"run {record.run_id} recorded: mart {mart.name} ({mart.recipe_hash}), "
              f"lake version {mart.lake_version}")


if __name__ == "__main__":
    main()
