"""The ``brainlake`` command: ingest, build marts, train, inspect, and run the demo.

Exit codes: 0 on success, 1 when brainlake rejects the input (the message gives
the reason and what to do), 2 for a command-line usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .exceptions import BrainlakeError

__all__ = ["main"]

logger = logging.getLogger("brainlake.cli")

_EXAMPLES = {
    "ingest": "brainlake ingest ../data/brain-tumor-mri --lake ./lake --source kaggle-brain-mri --split-from grandparent",
    "items": "brainlake items --lake ./lake --where label=glioma --columns source_path,label --limit 5",
    "history": "brainlake history --lake ./lake",
    "duplicates": "brainlake duplicates --lake ./lake --near --max-distance 4",
    "verify": "brainlake verify --lake ./lake --repair-from /backup/lake",
    "vacuum": "brainlake vacuum --lake ./lake --dry-run",
    "forget": "brainlake forget --lake ./lake --patient-id 100360 --purge-history --delete-marts --yes",
    "mart build": "brainlake mart build kaggle-128 --lake ./lake --where source=kaggle-brain-mri --from-source --size 128",
    "train": "brainlake train --lake ./lake --mart kaggle-128 --model cnn2 --epochs 8",
    "runs": "brainlake runs --lake ./lake",
    "runs show": "brainlake runs show RUN_ID --lake ./lake --items",
    "demo": "brainlake demo --lake ./brainlake-demo",
}


def _add_command(
    commands: Any, name: str, summary: str, example_key: str | None = None
) -> argparse.ArgumentParser:
    example = _EXAMPLES[example_key or name]
    return commands.add_parser(  # type: ignore[no-any-return]
        name,
        help=summary,
        description=f"{summary}\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_common(parser: argparse.ArgumentParser, *, lake: bool = True) -> None:
    if lake:
        parser.add_argument("--lake", required=True, help="lake root: a folder or an fsspec URL such as s3://bucket/lake")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print only the result: no progress bars, and no log lines below errors")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``brainlake`` command."""
    parser = argparse.ArgumentParser(
        prog="brainlake",
        description="Keep brain MRI in a lake, cut leakage-safe datamarts, train and evaluate models.",
        epilog=(
            "example:\n"
            "  brainlake demo                      # ingest the shipped sample, build a mart, train\n"
            "  brainlake ingest --help             # every command has --help with an example\n"
            "\n"
            "exit codes: 0 success, 1 invalid input or data (the message gives the reason), 2 usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"brainlake {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = _add_command(commands, "ingest", "ingest an image folder into a lake (creates the lake if needed)")
    ingest.add_argument("path", help="what to ingest: a folder such as one with Training/<class>/*.jpg, "
                        "or a zip archive with --reader zip")
    ingest.add_argument("--source", required=True, help="name stored with every item, e.g. kaggle-brain-mri")
    ingest.add_argument("--labels", default=None, metavar="CSV",
                        help="CSV file with the columns path,label giving each image's class (folder reader); "
                             "replaces --label-from")
    ingest.add_argument("--reader", default="folder",
                        help="source reader: folder (default), zip, figshare, dicom, or one you registered")
    ingest.add_argument("--keep-identifiers", action="store_true",
                        help="store patient ids as the source gives them instead of pseudonymised")
    ingest.add_argument("--label-from", choices=["parent", "grandparent", "none"], default="parent",
                        help="folder level naming the class (default: parent)")
    ingest.add_argument("--split-from", choices=["parent", "grandparent", "none"], default="none",
                        help="folder level naming the source split, e.g. Training/Testing (default: none)")
    _add_common(ingest)

    items = _add_command(commands, "items", "list items of the catalog")
    items.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                       help="keep rows where COLUMN equals VALUE; VALUE may be a comma-separated list; "
                            "COLUMN__ge=VALUE (also ne, lt, le, gt, not_in, isnull) tests otherwise; repeatable")
    items.add_argument("--columns", default="item_id,label,source_split,source_path",
                       help="comma-separated columns to show")
    items.add_argument("--limit", type=_count, default=20, help="rows to show (0 for all; default: 20)")
    _add_read_only(items)
    _add_common(items)

    history = _add_command(commands, "history", "list the lake's events (ingests, mart builds, runs)")
    _add_read_only(history)
    _add_common(history)

    duplicates = _add_command(commands, "duplicates", "list groups of items with identical bytes or near-identical pixels")
    duplicates.add_argument("--near", action="store_true",
                            help="also group near-identical images (re-encoded or resized copies) by perceptual hash")
    duplicates.add_argument("--max-distance", type=_bits, default=None,
                            help="largest perceptual-hash distance in bits, 0 to 64, that counts as "
                                 "near-identical; implies --near (default: 4)")
    _add_read_only(duplicates)
    _add_common(duplicates)

    verify = _add_command(commands, "verify", "check that every item's object exists and is intact "
                          "(exit code 1 when an object is missing or corrupt)")
    verify.add_argument("--repair-from", default=None, metavar="URL",
                        help="another lake holding good copies: restore missing and corrupt objects from it "
                             "(each copy is checked by its hash before it is written)")
    _add_read_only(verify)
    _add_common(verify)

    vacuum = _add_command(commands, "vacuum", "remove objects nothing refers to and leftovers of interrupted writes")
    vacuum.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    vacuum.add_argument("--history", action="store_true",
                        help="also remove every past catalog version: time travel to them fails afterwards")
    vacuum.add_argument("--grace-hours", type=float, default=1.0,
                        help="keep unreferenced objects younger than this many hours, which a running ingest "
                             "may be about to commit (default: 1; 0 only when nothing else writes to the lake)")
    _add_common(vacuum)

    forget = _add_command(commands, "forget", "remove a patient's, some items' or a source's data from the lake")
    selector = forget.add_mutually_exclusive_group(required=True)
    selector.add_argument("--patient-id", default=None, metavar="ID",
                          help="the patient's identifier as the source gave it (pseudonymised before matching)")
    selector.add_argument("--item-id", nargs="+", default=None, metavar="ID", help="item ids to remove")
    selector.add_argument("--source", default=None, metavar="NAME", help="remove every item of this source")
    forget.add_argument("--delete-marts", action="store_true",
                        help="delete affected marts (they contain the removed images) instead of marking them")
    forget.add_argument("--purge-history", action="store_true",
                        help="also remove every past catalog version, which still contains the removed rows")
    forget.add_argument("--yes", action="store_true", help="confirm the permanent deletion without a prompt")
    _add_common(forget)

    mart = commands.add_parser(
        "mart", help="build datamarts",
        description=f"Build datamarts: filtered, split, preprocessed views of the lake.\n\nexample:\n  {_EXAMPLES['mart build']}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mart_commands = mart.add_subparsers(dest="mart_command", required=True, metavar="SUBCOMMAND")
    build = _add_command(mart_commands, "build", "build a datamart from the lake (reused if built before)",
                         "mart build")
    build.add_argument("name", help="mart name, e.g. kaggle-128")
    build.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                       help="select items; VALUE may be a comma-separated list; repeatable")
    build.add_argument("--from-source", action="store_true",
                       help="keep the source's Training/Testing split and carve validation out of Training")
    build.add_argument("--val-fraction", type=float, default=0.15, help="share of training items for validation (default: 0.15)")
    build.add_argument("--test-fraction", type=float, default=0.15, help="share of items for test, random split only (default: 0.15)")
    build.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    build.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    build.add_argument("--channels", type=int, choices=[1, 3], default=1, help="1 grayscale or 3 RGB (default: 1)")
    _add_common(build)

    train = _add_command(commands, "train", "train a registered model on a built mart, evaluate it on the test split "
                         "and record the run in the lake")
    _add_training_options(train)
    train.add_argument("--mart", required=True, help="name of a built mart; its latest build is used")
    train.add_argument("--recipe", default=None, help="recipe hash of a specific build of the mart")
    train.add_argument("--report", default=None, metavar="DIR",
                       help="write report.json and PNG figures (confusion matrix, training curves) to DIR "
                            "and store them with the run; the PNGs need the plots extra")
    _add_common(train)

    runs = _add_command(commands, "runs", "list the training runs recorded in the lake, or show one")
    _add_common(runs, lake=False)
    runs.add_argument("--lake", default=None, help="lake root: a folder or an fsspec URL such as s3://bucket/lake")
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    show = runs_commands.add_parser(
        "show", help="show one run: settings, model card, per-epoch metrics, evaluation, report files",
        description=f"Show one run.\n\nexample:\n  {_EXAMPLES['runs show']}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("run_id", help="the run's id, as `brainlake runs` lists it")
    show.add_argument("--items", action="store_true",
                      help="also list the items the run trained, validated and was tested on")
    # SUPPRESS keeps these options from overwriting the same ones given before "show".
    show.add_argument("--lake", default=argparse.SUPPRESS, help="lake root: a folder or an fsspec URL")
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the run as JSON")
    show.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                      help="print only the result")

    demo = _add_command(commands, "demo", "ingest the shipped sample, build a mart, train and evaluate (about a minute)")
    demo.add_argument("--lake", default="./brainlake-demo", help="lake folder to create or reuse (default: ./brainlake-demo)")
    demo.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    _add_training_options(demo, epochs=6, batch_size=16)
    _add_common(demo, lake=False)
    return parser


def _add_training_options(parser: argparse.ArgumentParser, *, epochs: int = 8, batch_size: int = 64) -> None:
    parser.add_argument("--model", default="cnn2", help="registered model name: fc, cnn1, cnn2, cnn3, resnet18 (default: cnn2)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default: {epochs})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"images per batch (default: {batch_size})")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="AdamW learning rate (default: 0.001)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling (default: 0)")


def _add_read_only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--read-only", action="store_true",
                        help="open the lake read-only: any attempt to change it fails")


def _bits(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number of bits from 0 to 64, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _parse_where(pairs: Sequence[str]) -> dict[str, Any]:
    conditions: dict[str, Any] = {}
    for pair in pairs:
        column, separator, value = pair.partition("=")
        if not separator or not column:
            raise BrainlakeError(f"--where {pair!r} is not COLUMN=VALUE, e.g. --where label=glioma")
        if column.endswith("__isnull"):
            conditions[column] = value.strip().lower() in ("true", "1", "yes")
            continue
        values = [_cli_value(part) for part in value.split(",")]
        conditions[column] = values if len(values) > 1 else values[0]
    return conditions


def _cli_value(text: str) -> str | int | float:
    # Numbers on the command line compare with numeric columns (width, height).
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _emit(arguments: argparse.Namespace, payload: Any, text: str) -> None:
    if arguments.json:
        json.dump(payload, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


def _progress(arguments: argparse.Namespace) -> bool | None:
    return False if arguments.quiet or arguments.json else None


# Commands ----------------------------------------------------------------------


def _run_ingest(arguments: argparse.Namespace) -> int:
    from .lake import Datalake

    from .ingest import is_reader, list_readers

    if not Path(arguments.path).exists():
        raise BrainlakeError(f"source {arguments.path!r} does not exist; check the path")
    if not is_reader(arguments.reader):
        raise BrainlakeError(f"unknown reader {arguments.reader!r}; readers: {', '.join(list_readers())}")
    lake = Datalake(arguments.lake)
    options: dict[str, Any] = {}
    if arguments.reader in ("folder", "zip", "dicom"):
        options["label_from"] = None if arguments.label_from == "none" else arguments.label_from
        options["split_from"] = None if arguments.split_from == "none" else arguments.split_from
    if arguments.labels is not None:
        options["labels"] = arguments.labels
    report = lake.ingest(
        arguments.path,
        source=arguments.source,
        reader=arguments.reader,
        keep_identifiers=arguments.keep_identifiers,
        progress=_progress(arguments),
        **options,
    )
    _emit(arguments, report.to_dict(), str(report))
    return 0


def _run_items(arguments: argparse.Namespace) -> int:
    from .lake import Datalake

    lake = Datalake.open(arguments.lake, read_only=arguments.read_only)
    columns = [name.strip() for name in arguments.columns.split(",") if name.strip()]
    table = lake.items(columns, **_parse_where(arguments.where))
    rows = table.to_pylist()
    total = len(rows)
    if arguments.limit > 0:
        rows = rows[: arguments.limit]
    lines = ["\t".join(columns)] + ["\t".join("" if row[c] is None else str(row[c]) for c in columns) for row in rows]
    lines.append(f"({len(rows)} of {total} items shown)")
    if total == 0 and arguments.where:
        lines.append(_known_values_hint(lake, _parse_where(arguments.where)))
    _emit(arguments, {"total": total, "items": rows}, "\n".join(lines))
    return 0


def _known_values_hint(lake: Any, conditions: dict[str, Any]) -> str:
    hints = []
    for column in sorted({key.partition("__")[0] for key in conditions}):
        values = sorted({str(value) for value in lake.items([column]).column(column).to_pylist() if value is not None})
        shown = ", ".join(values[:20]) + (", ..." if len(values) > 20 else "")
        hints.append(f"{column} has the values: {shown or 'none'}")
    return "no item matches; " + "; ".join(hints)


def _run_history(arguments: argparse.Namespace) -> int:
    from .lake import Datalake

    events = Datalake.open(arguments.lake, read_only=arguments.read_only).history().to_pylist()
    lines = [f"{'time (UTC)':<19}  {'kind':<10}  {'version':>7}  {'event id':<32}  source"]
    lines += [
        f"{event['created_at']:%Y-%m-%d %H:%M:%S}  {event['kind']:<10}  {event['items_version']:>7}  "
        f"{event['event_id']:<32}  {event['source'] or '-'}"
        for event in events
    ]
    payload = [{**event, "parameters": json.loads(event["parameters"] or "{}"),
                "summary": json.loads(event["summary"] or "{}")} for event in events]
    _emit(arguments, payload, "\n".join(lines) if events else "no events")
    return 0


def _run_duplicates(arguments: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .lake import Datalake

    near = arguments.near or arguments.max_distance is not None
    distance = 4 if arguments.max_distance is None else arguments.max_distance
    groups = Datalake.open(arguments.lake, read_only=arguments.read_only).duplicates(near=near, max_distance=distance)
    spanning = sum(group.spans_splits for group in groups)
    lines = [f"{'sha256':<12}  source paths"]
    lines += [f"{group.sha256[:12]}  {'  '.join(group.source_paths)}" for group in groups]
    kind = "near-identical images" if near else "identical bytes"
    lines.append(
        f"{len(groups)} groups of {kind}, {sum(group.extra_copies for group in groups)} extra copies, "
        f"{spanning} groups spanning source splits"
    )
    if near:
        lines.append(f"{sum(not group.exact for group in groups)} of these groups join different objects")
    payload = [{**asdict(group), "exact": group.exact} for group in groups]
    _emit(arguments, payload, "\n".join(lines))
    return 0


def _run_verify(arguments: argparse.Namespace) -> int:
    from .lake import Datalake

    if arguments.read_only and arguments.repair_from:
        raise BrainlakeError("--repair-from writes to the lake; drop --read-only to repair")
    lake = Datalake.open(arguments.lake, read_only=arguments.read_only)
    report = lake.verify(repair_from=arguments.repair_from)
    lines = [
        f"{'ok' if report.ok else 'PROBLEMS FOUND'}: {report.items_checked} items, {report.objects_checked} objects "
        f"checked; {len(report.missing)} missing, {len(report.corrupt)} corrupt, {len(report.orphaned)} orphaned, "
        f"{len(report.temporary)} temporary files"
    ]
    lines += [f"{problem.kind}: item {problem.item_id} ({problem.source_path or '-'}) object {problem.object_path}"
              for problem in report.problems]
    if arguments.repair_from:
        lines.append(f"repaired {len(report.repaired)} objects; {len(report.unrepaired)} could not be repaired")
        lines += [f"not repaired: {digest}" for digest in report.unrepaired]
    if report.orphaned or report.temporary:
        lines.append("remove orphaned objects and temporary files with `brainlake vacuum`")
    _emit(arguments, report.to_dict(), "\n".join(lines))
    return 0 if report.ok else 1


def _run_vacuum(arguments: argparse.Namespace) -> int:
    from datetime import timedelta

    from .lake import Datalake

    if arguments.grace_hours < 0:
        raise BrainlakeError(f"--grace-hours must be 0 or more, got {arguments.grace_hours!r}")
    report = Datalake.open(arguments.lake).vacuum(
        dry_run=arguments.dry_run, grace_period=timedelta(hours=arguments.grace_hours), history=arguments.history
    )
    verb = "would remove" if report.dry_run else "removed"
    text = (
        f"{verb} {len(report.objects_removed)} unreferenced objects ({report.bytes_freed} bytes), "
        f"{len(report.temporary_removed)} temporary files and {len(report.history_files_removed)} catalog files "
        f"of past versions; kept {report.objects_kept_recent} unreferenced objects younger than "
        f"{arguments.grace_hours:g} hours"
    )
    _emit(arguments, report.to_dict(), text)
    return 0


def _run_forget(arguments: argparse.Namespace) -> int:
    from .lake import Datalake

    if not arguments.yes:
        if not sys.stdin.isatty():
            raise BrainlakeError("forget deletes data permanently; pass --yes to confirm")
        answer = input("forget deletes the matching items and their objects permanently; type yes to go on: ")
        if answer.strip().lower() != "yes":
            raise BrainlakeError("forget cancelled; nothing was changed")
    report = Datalake.open(arguments.lake).forget(
        patient_id=arguments.patient_id, item_ids=arguments.item_id, source=arguments.source,
        delete_marts=arguments.delete_marts, purge_history=arguments.purge_history,
    )
    marts = ", ".join(f"{mart['name']}/{mart['recipe_hash']}" for mart in report.affected_marts) or "none"
    text = (
        f"removed {report.items_removed} items and {report.objects_removed} objects; lake version "
        f"{report.lake_version}; affected marts ({'deleted' if report.marts_deleted else 'marked'}): {marts}; "
        f"affected runs: {', '.join(report.affected_runs) or 'none'}"
    )
    _emit(arguments, report.to_dict(), text)
    if report.items_removed == 0:
        sys.stderr.write("brainlake forget: no item matches; nothing was removed\n")
        return 1
    return 0


def _run_mart_build(arguments: argparse.Namespace) -> int:
    from .lake import Datalake

    lake = Datalake.open(arguments.lake)
    recipe = lake.mart(arguments.name)
    if arguments.where:
        recipe = recipe.where(**_parse_where(arguments.where))
    built = (
        recipe.split(from_source=arguments.from_source, val_fraction=arguments.val_fraction,
                     test_fraction=arguments.test_fraction, seed=arguments.seed)
        .preprocess(size=arguments.size, channels=arguments.channels)
        .build(progress=_progress(arguments))
    )
    _emit(arguments, built.manifest, f"{built.summary()}\nstored at {built.path}")
    return 0


def _train_and_evaluate(lake: Any, mart: Any, arguments: argparse.Namespace, progress: bool | None) -> dict[str, Any]:
    import torch

    from .models import create_model
    from .runs import record_run
    from .training import Trainer, write_report
    from .training.report import require_matplotlib

    # The trainer seeds each epoch; the initial weights are seeded here.
    torch.manual_seed(arguments.seed)
    model = create_model(arguments.model, num_classes=len(mart.classes),
                         in_channels=int(mart.manifest["recipe"]["preprocessing"]["channels"]))
    report = getattr(arguments, "report", None)
    if report is not None:
        require_matplotlib()
    with tempfile.TemporaryDirectory(prefix="brainlake-run-") as folder:
        # Under torchrun each rank trains on its shard of the mart (the loaders
        # shard themselves) and only rank 0 writes the checkpoint and the run.
        trainer = Trainer(model, device=arguments.device, max_epochs=arguments.epochs,
                          learning_rate=arguments.learning_rate, seed=arguments.seed,
                          class_names=mart.classes, checkpoint_dir=folder, progress=progress)
        started = time.perf_counter()
        trainer.fit(mart.loader("train", batch_size=arguments.batch_size, shuffle=True, seed=arguments.seed),
                    mart.loader("val", batch_size=256) if "val" in mart.splits else None)
        seconds = time.perf_counter() - started
        evaluation = trainer.evaluate(mart.loader("test", batch_size=256))
        if trainer.rank != 0:
            return {"run_id": None, "train_seconds": round(seconds, 1), "evaluation": evaluation, "rank": trainer.rank}
        if report is not None:
            write_report(report, history=trainer.history, evaluation=evaluation)
        checkpoint = Path(folder) / "best.pt"
        record = record_run(
            lake,
            model=arguments.model,
            hyperparameters={**trainer.hyperparameters, "batch_size": arguments.batch_size},
            mart={"name": mart.name, "recipe_hash": mart.recipe_hash, "lake_version": mart.lake_version},
            history=trainer.history,
            evaluation=evaluation.to_dict(),
            checkpoint=checkpoint if checkpoint.exists() else None,
            report=report,
        )
    return {"run_id": record.run_id, "train_seconds": round(seconds, 1), "evaluation": evaluation}


def _run_train(arguments: argparse.Namespace) -> int:
    from .lake import Datalake

    lake = Datalake.open(arguments.lake)
    mart = lake.open_mart(arguments.mart, arguments.recipe)
    if "test" not in mart.splits:
        raise BrainlakeError(f"mart {mart.name!r} has no test split to evaluate on; rebuild it with a test split")
    result = _train_and_evaluate(lake, mart, arguments, _progress(arguments))
    if result["run_id"] is None:
        # Ranks other than 0 of a torchrun job leave the output to rank 0.
        return 0
    evaluation = result["evaluation"]
    _emit(arguments, {**result, "evaluation": evaluation.to_dict()},
          f"{evaluation}\nrun {result['run_id']} recorded in {lake.url} ({result['train_seconds']} s of training)")
    return 0


def _run_runs(arguments: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .lake import Datalake
    from .runs import list_runs

    if arguments.lake is None:
        raise BrainlakeError("the option --lake is required: the lake root, a folder or an fsspec URL")
    if arguments.runs_command == "show":
        return _run_runs_show(arguments, Datalake.open(arguments.lake))
    records = list_runs(Datalake.open(arguments.lake))
    lines = [f"{'time (UTC)':<19}  {'run id':<32}  {'model':<9}  {'test accuracy':>13}  mart/recipe"]
    lines += [
        f"{record.created_at[:19].replace('T', ' ')}  {record.run_id:<32}  {record.model:<9}  "
        f"{record.evaluation.get('accuracy', float('nan')):>13.4f}  {record.mart['name']}/{record.mart['recipe_hash']}"
        for record in records
    ]
    _emit(arguments, [asdict(record) for record in records], "\n".join(lines) if records else "no runs")
    return 0


def _run_runs_show(arguments: argparse.Namespace, lake: Any) -> int:
    from dataclasses import asdict

    from .runs import load_run, run_items

    record = load_run(lake, arguments.run_id)
    payload: dict[str, Any] = asdict(record)
    lines = [
        f"run {record.run_id} ({record.created_at[:19].replace('T', ' ')} UTC)",
        f"model: {record.model}" + (f" ({record.model_card['num_parameters']:,} parameters with 4 classes)"
                                    if record.model_card else ""),
        f"mart: {record.mart['name']}, recipe {record.mart['recipe_hash']}, lake version {record.mart['lake_version']}",
        "hyperparameters: " + ", ".join(f"{key}={value}" for key, value in sorted(record.hyperparameters.items())),
        "versions: " + ", ".join(f"{key} {value}" for key, value in sorted(record.versions.items())),
        f"checkpoint object: {record.checkpoint_sha256 or 'none'}",
        f"epoch  {'train_loss':>10}  {'val_loss':>10}  {'val_accuracy':>12}",
    ]
    lines += [
        f"{row.get('epoch')!s:>5}  {_cell(row.get('train_loss'), 10)}  {_cell(row.get('val_loss'), 10)}  "
        f"{_cell(row.get('val_accuracy'), 12)}"
        for row in record.history
    ]
    evaluation = record.evaluation
    lines.append(f"test: accuracy {_cell(evaluation.get('accuracy'), 0)}, macro F1 "
                 f"{_cell(evaluation.get('macro_f1'), 0)} on {evaluation.get('num_samples', '?')} samples")
    if record.report_files:
        lines.append("report files: " + ", ".join(
            lake.location.path("runs", record.run_id, name) for name in record.report_files))
    if arguments.items:
        items = run_items(lake, record.run_id).to_pylist()
        payload["items"] = items
        lines.append(f"{'split':<5}  {'label':<12}  {'item id':<32}  source path")
        lines += [f"{item['split']:<5}  {item['label']:<12}  {item['item_id']:<32}  {item['source_path']}"
                  for item in items]
        lines.append(f"({len(items)} items)")
    _emit(arguments, payload, "\n".join(lines))
    return 0


def _cell(value: Any, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.4f}"


def _run_demo(arguments: argparse.Namespace) -> int:
    from .datasets import SAMPLE_SOURCE, sample_path
    from .lake import Datalake

    progress = _progress(arguments)
    lake = Datalake(arguments.lake)
    logger.info("demo lake: %s", lake.url)
    report = lake.ingest(sample_path(), source=SAMPLE_SOURCE, label_from="parent", split_from="grandparent",
                         progress=progress)
    groups = lake.duplicates(source=SAMPLE_SOURCE)
    mart = (
        lake.mart(f"demo-{arguments.size}")
        .where(source=SAMPLE_SOURCE)
        .split(from_source=True, val_fraction=0.15, seed=arguments.seed)
        .preprocess(size=arguments.size, channels=1)
        .build(progress=progress)
    )
    result = _train_and_evaluate(lake, mart, arguments, progress)
    evaluation = result["evaluation"]
    text = "\n".join([
        f"1. ingest: {report.added} new items ({report.already_present} already in the lake) from {sample_path()}",
        f"2. duplicates: {len(groups)} groups of identical bytes, "
        f"{sum(group.spans_splits for group in groups)} spanning Training and Testing",
        f"3. {mart.summary()}",
        f"4. trained {arguments.model} for {arguments.epochs} epochs in {result['train_seconds']} s; on the test split:",
        str(evaluation),
        f"run {result['run_id']} recorded; list runs with `brainlake runs --lake {arguments.lake}`",
        "(the sample has 56 images, so these figures only show the pipeline works; "
        "run the same steps on a full dataset for real results)",
    ])
    payload = {"ingest": report.to_dict(), "duplicate_groups": len(groups), "mart": mart.manifest,
               "run_id": result["run_id"], "evaluation": evaluation.to_dict()}
    _emit(arguments, payload, text)
    return 0


_HANDLERS = {
    "ingest": _run_ingest,
    "items": _run_items,
    "history": _run_history,
    "duplicates": _run_duplicates,
    "verify": _run_verify,
    "vacuum": _run_vacuum,
    "forget": _run_forget,
    "train": _run_train,
    "runs": _run_runs,
    "demo": _run_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``brainlake`` command and return its exit code."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    level = logging.INFO
    if arguments.quiet:
        level = logging.ERROR
    elif arguments.json:
        level = logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = _run_mart_build if arguments.command == "mart" else _HANDLERS[arguments.command]
    try:
        return handler(arguments)
    except BrainlakeError as error:
        sys.stderr.write(f"brainlake {arguments.command}: error: {error}\n")
        return 1
    except FileNotFoundError as error:
        sys.stderr.write(f"brainlake {arguments.command}: error: {error}\n")
        return 1
