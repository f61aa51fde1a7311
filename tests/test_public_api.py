"""The public API: what ``import brainlake`` offers."""

from __future__ import annotations

import brainlake as bl


def test_all_names_exist() -> None:
    missing = [name for name in bl.__all__ if not hasattr(bl, name)]
    assert missing == []


def test_all_is_sorted_and_unique() -> None:
    assert len(bl.__all__) == len(set(bl.__all__))


def test_public_callables_have_docstrings() -> None:
    undocumented = [name for name in bl.__all__
                    if callable(getattr(bl, name)) and not (getattr(bl, name).__doc__ or "").strip()]
    assert undocumented == []


def test_errors_share_one_root() -> None:
    errors = [getattr(bl, name) for name in bl.__all__ if name.endswith("Error")]
    assert all(issubclass(error, bl.BrainlakeError) for error in errors)


def test_lookup_errors_are_key_errors() -> None:
    assert issubclass(bl.UnknownModelError, KeyError)
    assert issubclass(bl.LakeNotFoundError, FileNotFoundError)
    assert issubclass(bl.MartError, ValueError)
