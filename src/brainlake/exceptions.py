"""The exceptions brainlake raises.

Every error derives from :class:`BrainlakeError`, and each leaf also derives
from the built-in exception that a caller would catch without knowing
brainlake, so ``except KeyError`` still works around a registry lookup::

    BrainlakeError
    ├── LakeError
    │   ├── LakeNotFoundError (FileNotFoundError)
    │   ├── LakeFormatError (ValueError)
    │   ├── QueryError (ValueError)
    │   ├── ReadOnlyLakeError (PermissionError)
    │   └── CatalogError
    │       └── VersionNotFoundError (LookupError)
    ├── StorageError (OSError)
    ├── IngestError (ValueError)
    ├── ImageDecodeError (ValueError)
    ├── MartError (ValueError)
    │   └── MartNotFoundError (LookupError)
    ├── UnknownModelError (KeyError)
    ├── DuplicateNameError (ValueError)
    ├── UnknownReaderError (KeyError)
    ├── UnknownDatasetError (KeyError)
    ├── DeviceError (RuntimeError)
    ├── TrainingError (RuntimeError)
    └── MissingDependencyError (ImportError)
"""

from __future__ import annotations

__all__ = [
    "BrainlakeError",
    "CatalogError",
    "DeviceError",
    "DuplicateNameError",
    "ImageDecodeError",
    "IngestError",
    "LakeError",
    "LakeFormatError",
    "LakeNotFoundError",
    "MartError",
    "MartNotFoundError",
    "MissingDependencyError",
    "QueryError",
    "ReadOnlyLakeError",
    "StorageError",
    "TrainingError",
    "UnknownModelError",
    "UnknownDatasetError",
    "UnknownReaderError",
    "VersionNotFoundError",
]


class BrainlakeError(Exception):
    """Base class of every error raised by brainlake."""


class LakeError(BrainlakeError):
    """A lake cannot be opened, read or written as requested."""


class LakeNotFoundError(LakeError, FileNotFoundError):
    """No lake exists at the given location and creating one was not allowed."""


class LakeFormatError(LakeError, ValueError):
    """The location contains something that is not a lake this version can read."""


class QueryError(LakeError, ValueError):
    """A condition or argument of a lake query (items, duplicates) is invalid."""


class ReadOnlyLakeError(LakeError, PermissionError):
    """A write was attempted on a lake opened with ``read_only=True``."""


class CatalogError(LakeError):
    """The metadata catalog could not be read or committed."""


class VersionNotFoundError(CatalogError, LookupError):
    """A requested catalog version does not exist or was vacuumed."""


class StorageError(BrainlakeError, OSError):
    """An object could not be stored or read back intact."""


class IngestError(BrainlakeError, ValueError):
    """An ingest call was given arguments it cannot act on."""


class ImageDecodeError(BrainlakeError, ValueError):
    """Bytes could not be decoded as a supported image."""


class MartError(BrainlakeError, ValueError):
    """A datamart recipe is invalid or cannot be built from the lake."""


class MartNotFoundError(MartError, LookupError):
    """No built datamart matches the requested name or recipe."""


class UnknownModelError(BrainlakeError, KeyError):
    """No model is registered under the requested name."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a sentence reads better unquoted.
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(BrainlakeError, ValueError):
    """A registry already contains an entry under that name."""


class UnknownReaderError(BrainlakeError, KeyError):
    """No ingest reader is registered under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownDatasetError(BrainlakeError, KeyError):
    """No public dataset is known under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DeviceError(BrainlakeError, RuntimeError):
    """The requested device does not exist or is not available here."""


class TrainingError(BrainlakeError, RuntimeError):
    """Training cannot start or continue with the given model and data."""


class MissingDependencyError(BrainlakeError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""
