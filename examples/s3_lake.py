"""A lake on S3 or any S3-compatible store (MinIO, SeaweedFS, Ceph): ingest, build a mart, train.

The lake's objects go through s3fs and its catalog through delta-rs, both
given the same location and credentials. This script ingests the sample
shipped with brainlake (or ``--data``) into ``--url``, reopens the lake as a
second client would, builds a mart, trains a small model on it and records
the run in the lake. It prints the lake's history at the end.

Credentials: ``--key``/``--secret``/``--endpoint-url``, or the usual
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` and
``AWS_REGION`` variables, which both s3fs and delta-rs read. The bucket must
exist. Needs the ``s3`` extra (s3fs).

Example against a local S3-compatible server::

    python examples/s3_lake.py --url s3://my-bucket/lake --endpoint-url http://127.0.0.1:8333 \\
        --key ACCESS_KEY --secret SECRET_KEY

Time: about 15 s against a server on the same machine, 2 CPU cores.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

import brainlake as bl


def storage_options(arguments: argparse.Namespace) -> dict[str, Any]:
    """Return the fsspec storage options given on the command line; the rest comes from AWS_* variables."""
    options: dict[str, Any] = {}
    if arguments.key or arguments.secret:
        options["key"] = arguments.key
        options["secret"] = arguments.secret
    if arguments.endpoint_url:
        options["endpoint_url"] = arguments.endpoint_url
    if arguments.region:
        options["region_name"] = arguments.region
    return options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="lake location, e.g. s3://bucket/prefix (the bucket must exist)")
    parser.add_argument("--endpoint-url", default=None,
                        help="S3 endpoint for a non-AWS store, e.g. http://127.0.0.1:8333 "
                             "(default: $AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--key", default=None, help="access key id (default: $AWS_ACCESS_KEY_ID)")
    parser.add_argument("--secret", default=None, help="secret access key (default: $AWS_SECRET_ACCESS_KEY)")
    parser.add_argument("--region", default=None, help="region name (default: $AWS_REGION)")
    parser.add_argument("--data", default=None,
                        help="image folder with Training/<class>/ and Testing/<class>/ "
                             "(default: the sample shipped with brainlake)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default: 32)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default: 2)")
    parser.add_argument("--model", default="cnn1", help="registered model name (default: cnn1)")
    arguments = parser.parse_args(argv)
    if bool(arguments.key) != bool(arguments.secret):
        parser.error("--key and --secret go together; give both or neither")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    options = storage_options(arguments)
    data = arguments.data or bl.datasets.sample_path()
    source = "images" if arguments.data else bl.datasets.SAMPLE_SOURCE

    try:
        lake = bl.Datalake(arguments.url, storage_options=options)
    except bl.StorageError as error:
        parser.exit(1, f"cannot reach the lake: {error}\n")
    print(lake.ingest(data, source=source, label_from="parent", split_from="grandparent", progress=False))

    # A second client (another process or machine) opening the same lake reads the same version.
    reader = bl.Datalake.open(arguments.url, storage_options=options)
    print(f"lake {reader.url}: version {reader.version}, {reader.items(['item_id']).num_rows} items")

    mart = (
        reader.mart(f"s3-example-{arguments.size}")
        .where(source=source)
        .split(from_source=True, val_fraction=0.2, seed=0)
        .preprocess(size=arguments.size, channels=1)
        .build(progress=False)
    )
    print(mart.summary())

    torch.manual_seed(0)
    model = bl.create_model(arguments.model, num_classes=len(mart.classes), in_channels=1)
    trainer = bl.Trainer(model, device="auto", max_epochs=arguments.epochs, seed=0,
                         class_names=mart.classes, progress=False)
    trainer.fit(mart.loader("train", batch_size=16, shuffle=True), mart.loader("val", batch_size=64))
    evaluation = trainer.evaluate(mart.loader("test", batch_size=64))
    print(f"test accuracy {evaluation.accuracy:.3f}, macro-F1 {evaluation.macro_f1:.3f}")

    record = bl.record_run(
        reader,
        model=arguments.model,
        hyperparameters={"epochs": arguments.epochs, "size": arguments.size},
        mart={"name": mart.name, "recipe_hash": mart.recipe_hash, "lake_version": mart.lake_version},
        history=trainer.history,
        evaluation=evaluation.to_dict(),
    )
    print(f"run {record.run_id} stored under {arguments.url.rstrip('/')}/runs/")
    history = reader.history()
    print(f"{history.num_rows} events: {', '.join(history.column('kind').to_pylist())}")


if __name__ == "__main__":
    main()
