"""brainlake: a data lake, leakage-safe datamarts, a model registry and a trainer for brain-tumor MRI.

The public API in one place::

    import brainlake as bl

    lake = bl.Datalake("./lake")
    lake.ingest("data/brain-tumor-mri", source="kaggle-brain-mri", split_from="grandparent")
    mart = lake.mart("kaggle-128").split(from_source=True).preprocess(size=128).build()
    model = bl.create_model("cnn2", num_classes=len(mart.classes), in_channels=1)
    trainer = bl.Trainer(model, device="auto", max_epochs=8)
    trainer.fit(mart.loader("train", shuffle=True), mart.loader("val"))
    print(trainer.evaluate(mart.loader("test")))

Log messages go to the ``brainlake`` logger, which has no handlers of its own:
configure :mod:`logging` to see them.
"""

import importlib
from typing import TYPE_CHECKING

from . import datasets
from ._version import __version__
from .exceptions import (
    BrainlakeError,
    CatalogError,
    DeviceError,
    DuplicateNameError,
    ImageDecodeError,
    IngestError,
    LakeError,
    LakeFormatError,
    LakeNotFoundError,
    MartError,
    MartNotFoundError,
    MissingDependencyError,
    QueryError,
    ReadOnlyLakeError,
    StorageError,
    TrainingError,
    UnknownDatasetError,
    UnknownModelError,
    UnknownReaderError,
    VersionNotFoundError,
)
from .ingest import SourceProblem, SourceRecord, list_readers, register_reader
from .ingest._pipeline import IngestReport
from .lake import Datalake, DuplicateGroup, ForgetReport, ObjectProblem, VacuumReport, VerifyReport

if TYPE_CHECKING:
    from .augment import Augmentation
    from .mart import BuiltMart, Datamart, MartDataset, MartPlan
    from .models import ModelCard, create_model, is_model, list_models, model_card, register_model
    from .runs import RunRecord, list_runs, load_run, record_run, run_items
    from .training import Evaluation, Trainer, resolve_device, resolve_precision

# Names whose modules import PyTorch are loaded on first use, so that the lake
# and the CLI's catalog commands start without paying for the torch import.
_LAZY_MODULES = {
    "Augmentation": "augment",
    **dict.fromkeys(["BuiltMart", "Datamart", "MartDataset", "MartPlan"], "mart"),
    **dict.fromkeys(["ModelCard", "create_model", "is_model", "list_models", "model_card", "register_model"],
                    "models"),
    **dict.fromkeys(["RunRecord", "list_runs", "load_run", "record_run", "run_items"], "runs"),
    **dict.fromkeys(["Evaluation", "Trainer", "resolve_device", "resolve_precision"], "training"),
}


def __getattr__(name: str) -> object:
    module_name = _LAZY_MODULES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'brainlake' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES))


__all__ = [
    "Augmentation",
    "BrainlakeError",
    "BuiltMart",
    "CatalogError",
    "Datalake",
    "Datamart",
    "DeviceError",
    "DuplicateGroup",
    "DuplicateNameError",
    "Evaluation",
    "ForgetReport",
    "ImageDecodeError",
    "IngestError",
    "IngestReport",
    "LakeError",
    "LakeFormatError",
    "LakeNotFoundError",
    "MartDataset",
    "MartError",
    "MartNotFoundError",
    "MartPlan",
    "MissingDependencyError",
    "ModelCard",
    "ObjectProblem",
    "QueryError",
    "ReadOnlyLakeError",
    "RunRecord",
    "SourceProblem",
    "SourceRecord",
    "StorageError",
    "Trainer",
    "TrainingError",
    "UnknownDatasetError",
    "UnknownModelError",
    "UnknownReaderError",
    "VacuumReport",
    "VerifyReport",
    "VersionNotFoundError",
    "__version__",
    "create_model",
    "datasets",
    "is_model",
    "list_models",
    "list_readers",
    "list_runs",
    "load_run",
    "model_card",
    "record_run",
    "register_model",
    "register_reader",
    "resolve_device",
    "resolve_precision",
    "run_items",
]
