"""Write the fallback intersphinx inventories in docs/_inventories.

The docs link to Python, PyTorch, NumPy, pyarrow and fsspec objects through
intersphinx. When the projects' own ``objects.inv`` cannot be fetched (CI has
no network beyond the package registries), Sphinx reads these small files
instead. Each holds only the names listed below, each with the page and anchor
of that name on the project's site. Names that autodoc writes in their
defining module's spelling (``torch.nn.modules.module.Module``) are listed as
aliases of the documented name.

Run ``python docs/make_inventories.py`` after adding a name, then build the
docs; the script reads every file back with Sphinx's own inventory parser.
"""

from __future__ import annotations

import io
import posixpath
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent / "_inventories"

# project key -> (project name, version, {name: (domain:role, page#anchor)})
INVENTORIES: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "python": ("Python", "3", {
        "collections.abc.Callable": ("py:class", "library/collections.abc.html#collections.abc.Callable"),
        "collections.abc.Iterable": ("py:class", "library/collections.abc.html#collections.abc.Iterable"),
        "collections.abc.Iterator": ("py:class", "library/collections.abc.html#collections.abc.Iterator"),
        "collections.abc.Mapping": ("py:class", "library/collections.abc.html#collections.abc.Mapping"),
        "collections.abc.Sequence": ("py:class", "library/collections.abc.html#collections.abc.Sequence"),
        "fnmatch": ("py:module", "library/fnmatch.html#module-fnmatch"),
        "logging": ("py:module", "library/logging.html#module-logging"),
        "os.PathLike": ("py:class", "library/os.html#os.PathLike"),
        "pathlib.Path": ("py:class", "library/pathlib.html#pathlib.Path"),
        "zipfile.ZipInfo": ("py:class", "library/zipfile.html#zipfile.ZipInfo"),
    }),
    "torch": ("PyTorch", "stable", {
        "torch.Generator": ("py:class", "generated/torch.Generator.html#torch.Generator"),
        "torch._C.Generator": ("py:class", "generated/torch.Generator.html#torch.Generator"),
        "torch.Tensor": ("py:class", "tensors.html#torch.Tensor"),
        "torch.device": ("py:class", "tensor_attributes.html#torch.device"),
        "torch.nn.Module": ("py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
        "torch.nn.modules.module.Module": ("py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
        "torch.optim.lr_scheduler.OneCycleLR": (
            "py:class", "generated/torch.optim.lr_scheduler.OneCycleLR.html#torch.optim.lr_scheduler.OneCycleLR"),
        "torch.utils.data.DataLoader": ("py:class", "data.html#torch.utils.data.DataLoader"),
        "torch.utils.data.dataloader.DataLoader": ("py:class", "data.html#torch.utils.data.DataLoader"),
        "torch.utils.data.Dataset": ("py:class", "data.html#torch.utils.data.Dataset"),
    }),
    "numpy": ("NumPy", "stable", {
        "numpy.dtype": ("py:class", "reference/generated/numpy.dtype.html#numpy.dtype"),
        "numpy.float64": ("py:class", "reference/arrays.scalars.html#numpy.float64"),
        "numpy.int64": ("py:class", "reference/arrays.scalars.html#numpy.int64"),
        "numpy.ndarray": ("py:class", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
        "numpy.uint8": ("py:class", "reference/arrays.scalars.html#numpy.uint8"),
    }),
    "pyarrow": ("Apache Arrow", "stable", {
        "pyarrow.Table": ("py:class", "python/generated/pyarrow.Table.html#pyarrow.Table"),
        "pyarrow.lib.Table": ("py:class", "python/generated/pyarrow.Table.html#pyarrow.Table"),
    }),
    "fsspec": ("fsspec", "latest", {
        "fsspec.spec.AbstractFileSystem": ("py:class", "api.html#fsspec.spec.AbstractFileSystem"),
    }),
}


def inventory_bytes(project: str, version: str, names: dict[str, tuple[str, str]]) -> bytes:
    """Return an ``objects.inv`` (format version 2) listing ``names``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    # Each line: name, domain:role, priority (1: the usual target), URI, display name ("-": same as name).
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, (role, uri) in sorted(names.items()))
    return header + zlib.compress(body.encode(), 9)


def main() -> None:
    from sphinx.util.inventory import InventoryFile

    HERE.mkdir(exist_ok=True)
    for key, (project, version, names) in INVENTORIES.items():
        data = inventory_bytes(project, version, names)
        loaded = InventoryFile.load(io.BytesIO(data), "", posixpath.join)
        read_back = sum(len(entries) for entries in loaded.values())
        if read_back != len(names):
            raise SystemExit(f"{key}: Sphinx read {read_back} names back, expected {len(names)}")
        (HERE / f"{key}.inv").write_bytes(data)
        print(f"wrote {HERE / f'{key}.inv'}: {len(names)} names")


if __name__ == "__main__":
    main()
