"""The model registry: register factories by name and build models from them.

A factory is any callable ``(num_classes, in_channels, **kwargs) -> nn.Module``.
:func:`register_model` stores it with a short description, the input size it was
designed for and a reference, :func:`create_model` validates the two shape
arguments and calls it, and :func:`list_models`, :func:`is_model` and
:func:`model_card` describe what is registered.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from torch import nn

from brainlake.exceptions import DuplicateNameError, UnknownModelError

__all__ = [
    "ModelCard",
    "ModelFactory",
    "create_model",
    "is_model",
    "list_models",
    "model_card",
    "register_model",
]

logger = logging.getLogger(__name__)

# The class count and channel count that model cards report parameters for:
# the four labels of the brain-tumor MRI datasets, one grey channel.
_CARD_NUM_CLASSES = 4
_CARD_IN_CHANNELS = 1


ModelFactory: TypeAlias = Callable[..., nn.Module]
"""A callable ``(num_classes, in_channels, **kwargs) -> nn.Module`` that builds a classifier.

Its keyword arguments are model options that :func:`create_model` passes through.
"""

FactoryT = TypeVar("FactoryT", bound=ModelFactory)


@dataclass(frozen=True)
class ModelCard:
    """Description of a registered model.

    Attributes:
        name: The name that :func:`create_model` accepts.
        description: One or more sentences on the architecture.
        default_input_size: Image height and width in pixels that the model was
            designed and tuned for. Every built-in model also accepts other sizes.
        reference: Paper or documentation the architecture follows, or ``None``.
        num_parameters: Number of parameters of the model built with
            ``num_classes=4`` and ``in_channels=1``.
    """

    name: str
    description: str
    default_input_size: tuple[int, int]
    reference: str | None
    num_parameters: int


@dataclass(frozen=True)
class _Entry:
    factory: ModelFactory
    description: str
    default_input_size: tuple[int, int]
    reference: str | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str,
    *,
    override: bool = False,
    description: str | None = None,
    default_input_size: int | tuple[int, int] = (128, 128),
    reference: str | None = None,
) -> Callable[[FactoryT], FactoryT]:
    """Register a model factory under ``name``; use it as a decorator.

    Example:
        >>> from torch import nn
        >>> from brainlake.models import create_model, register_model
        >>> @register_model("tiny_linear", description="One linear layer on a 16x16 grid.")
        ... def tiny_linear(num_classes: int, in_channels: int) -> nn.Module:
        ...     return nn.Sequential(
        ...         nn.AdaptiveAvgPool2d(16),
        ...         nn.Flatten(),
        ...         nn.Linear(in_channels * 256, num_classes),
        ...     )
        >>> create_model("tiny_linear", num_classes=4)[-1].out_features
        4

    Args:
        name: Registry key. Names are case-sensitive.
        override: Replace an existing entry of the same name instead of raising.
        description: Text for the model card. Defaults to the first paragraph of
            the factory's docstring.
        default_input_size: Input size in pixels that the model was designed for,
            as one number for square images or ``(height, width)``.
        reference: Paper or documentation the architecture follows.

    Returns:
        A decorator that registers the factory and returns it unchanged.

    Raises:
        DuplicateNameError: ``name`` is already registered and ``override`` is false.
        ValueError: ``name`` is empty or ``default_input_size`` is not positive.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    input_size = _normalize_input_size(default_input_size)
    if name in _REGISTRY and not override:
        raise DuplicateNameError(
            f"a model named {name!r} is already registered; "
            "pass override=True to replace it or choose another name"
        )

    def decorator(factory: FactoryT) -> FactoryT:
        if name in _REGISTRY:
            logger.info("replacing the registered model %r", name)
        _REGISTRY[name] = _Entry(
            factory=factory,
            description=description if description is not None else _first_paragraph(factory),
            default_input_size=input_size,
            reference=reference,
        )
        return factory

    return decorator


def create_model(name: str, *, num_classes: int, in_channels: int = 1, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with freshly initialized weights.

    Weight initialization draws from torch's global random generator, so call
    ``torch.manual_seed`` first for a reproducible model.

    Args:
        name: A name from :func:`list_models`.
        num_classes: Number of output logits, at least 2.
        in_channels: Number of input image channels, at least 1 (MRI slices are
            single-channel).
        **kwargs: Passed to the factory, for example ``dropout=`` for the CNNs or
            ``weights=`` for ``resnet18``.

    Returns:
        The model in training mode, on the CPU.

    Raises:
        UnknownModelError: No model is registered under ``name``.
        ValueError: ``num_classes`` or ``in_channels`` is out of range.
    """
    entry = _lookup(name)
    _check_count("num_classes", num_classes, minimum=2)
    _check_count("in_channels", in_channels, minimum=1)
    model = entry.factory(num_classes, in_channels, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"the factory registered as {name!r} returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    return model


def list_models(pattern: str | None = None) -> list[str]:
    """List registered model names in sorted order.

    Args:
        pattern: Shell-style glob such as ``"cnn*"`` (:mod:`fnmatch` rules,
            case-sensitive). ``None`` lists every model.
    """
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]


def is_model(name: str) -> bool:
    """Return whether a model is registered under ``name``."""
    return name in _REGISTRY


def model_card(name: str) -> ModelCard:
    """Describe the registered model ``name``.

    The parameter count comes from building the model once with four classes
    and one input channel, so this call costs one model construction.

    Raises:
        UnknownModelError: No model is registered under ``name``.
    """
    entry = _lookup(name)
    model = create_model(name, num_classes=_CARD_NUM_CLASSES, in_channels=_CARD_IN_CHANNELS)
    return ModelCard(
        name=name,
        description=entry.description,
        default_input_size=entry.default_input_size,
        reference=entry.reference,
        num_parameters=sum(parameter.numel() for parameter in model.parameters()),
    )


def _lookup(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(known_name) for known_name in sorted(_REGISTRY))
        raise UnknownModelError(
            f"no model is registered as {name!r}; known models: {known}. "
            "Register a new one with brainlake.models.register_model."
        ) from None


def _check_count(argument: str, value: object, *, minimum: int) -> None:
    # bool is an int subclass, but num_classes=True is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")


def _normalize_input_size(size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(side, int) and side > 0 for side in pair):
        raise ValueError(
            f"default_input_size must be a positive int or a (height, width) pair, got {size!r}"
        )
    return (int(pair[0]), int(pair[1]))


def _first_paragraph(factory: Callable[..., Any]) -> str:
    doc = factory.__doc__ or ""
    paragraph = doc.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())
