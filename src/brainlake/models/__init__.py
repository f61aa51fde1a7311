"""Classification models for MRI slices, built by name from a registry.

>>> from brainlake.models import create_model, list_models
>>> list_models("cnn*")
['cnn1', 'cnn2', 'cnn3']
>>> model = create_model("cnn2", num_classes=4, in_channels=1)

The built-in models are ``fc``, ``cnn1``, ``cnn2``, ``cnn3`` and ``resnet18``.
Each architecture family has its own module (:mod:`~brainlake.models.fc`,
:mod:`~brainlake.models.cnn`, :mod:`~brainlake.models.resnet`), imported here so
that its models are registered. Register your own with :func:`register_model`.
"""

from __future__ import annotations

# The family modules register their models when imported.
from brainlake.models import cnn, fc, resnet  # noqa: F401
from brainlake.models._registry import (
    ModelCard,
    ModelFactory,
    create_model,
    is_model,
    list_models,
    model_card,
    register_model,
)

__all__ = [
    "ModelCard",
    "ModelFactory",
    "create_model",
    "is_model",
    "list_models",
    "model_card",
    "register_model",
]
