"""The sdist and wheel build, pass ``twine check``, hold what they should, and the wheel installs and runs.

The build runs on a copy of the files a clean checkout has (tracked, and
untracked but not ignored) plus some typical working-tree junk. So the test
writes nothing into the working tree and does not depend on what else lies
in it. The wheel goes into a new virtual environment with ``--no-deps``;
that environment sees this one's site-packages through a ``.pth`` file, so
torch and the other dependencies are not installed a second time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import brainlake as bl

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = 56


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``command``; fail the test with its output if it exits non-zero, else return stdout."""
    completed = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                               timeout=300, env=env)
    assert completed.returncode == 0, (
        f"{' '.join(map(str, command))} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def checkout_copy(destination: Path) -> Path:
    """Copy the files of a clean checkout of the repository to ``destination``, plus build junk."""
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=REPO)
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # What a working tree usually has lying around; none of it may be packaged.
    (destination / "src" / "brainlake" / "__pycache__").mkdir(exist_ok=True)
    (destination / "src" / "brainlake" / "__pycache__" / "lake.cpython-311.pyc").write_bytes(b"\x00")
    (destination / "docs" / "_build" / "html").mkdir(parents=True, exist_ok=True)
    (destination / "docs" / "_build" / "html" / "index.html").write_text("<html></html>")
    return destination


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the sdist and the wheel once for this module and return their folder."""
    pytest.importorskip("build")
    tree = checkout_copy(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, tree)
    return out


def only(folder: Path, pattern: str) -> Path:
    matches = sorted(folder.glob(pattern))
    assert len(matches) == 1, f"expected one {pattern} in {folder}, found {matches}"
    return matches[0]


def test_twine_accepts_sdist_and_wheel(dist: Path) -> None:
    pytest.importorskip("twine")
    output = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert output.count("PASSED") == 2


def test_artifacts_named_after_version(dist: Path) -> None:
    assert only(dist, "*.whl").name == f"brainlake-{bl.__version__}-py3-none-any.whl"
    assert only(dist, "*.tar.gz").name == f"brainlake-{bl.__version__}.tar.gz"


def test_wheel_contents(dist: Path) -> None:
    names = zipfile.ZipFile(only(dist, "*.whl")).namelist()
    assert "brainlake/py.typed" in names
    assert "brainlake/sample/README.md" in names
    assert sum(name.startswith("brainlake/sample/brain-tumor-mri/") and name.endswith(".jpg")
               for name in names) == SAMPLE_IMAGES
    top_levels = {name.split("/", 1)[0] for name in names}
    assert top_levels == {"brainlake", f"brainlake-{bl.__version__}.dist-info"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_sdist_contents(dist: Path) -> None:
    with tarfile.open(only(dist, "*.tar.gz")) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert "src/brainlake/py.typed" in names
    assert "src/brainlake/sample/README.md" in names
    assert sum(name.startswith("src/brainlake/sample/brain-tumor-mri/") and name.endswith(".jpg")
               for name in names) == SAMPLE_IMAGES
    assert "examples/quickstart.py" in names
    assert "docs/conf.py" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "docs/_build"))]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_wheel_installs_and_runs_cli(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    # Plain path lines put this environment's packages after the new venv's own;
    # .pth files in those folders (this checkout's editable install among them)
    # are not processed, so `brainlake` can only come from the wheel.
    visible = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "outer-environment.pth").write_text("\n".join(visible) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet",
        only(dist, "*.whl"))

    imported_from = Path(run(python, "-c", "import brainlake; print(brainlake.__file__)").strip())
    assert imported_from.is_relative_to(site_packages), f"brainlake imported from {imported_from}, not the wheel"

    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    brainlake = venv / "bin" / "brainlake"
    assert run(brainlake, "--version", env=env).strip() == f"brainlake {bl.__version__}"
    demo_help = run(brainlake, "demo", "--help", env=env)
    assert "example:" in demo_help

    # The sample inside the wheel is complete: ingest it from there.
    lake = tmp_path / "lake"
    sample = run(python, "-c", "import brainlake; print(brainlake.datasets.sample_path())", env=env).strip()
    assert Path(sample).is_relative_to(site_packages)
    output = run(brainlake, "ingest", sample, "--lake", lake, "--source", "sample", "--split-from", "grandparent",
                 "--quiet", env=env)
    assert f"{SAMPLE_IMAGES} added" in output
