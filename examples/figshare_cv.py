"""Figshare brain tumor dataset: 5-fold cross-validation with folds grouped by patient.

The figshare dataset (Jun Cheng et al., 3,064 T1-weighted slices of 233
patients, doi:10.6084/m9.figshare.1512427) ships ``cvind.mat``, which assigns
every slice to one of five folds so that all slices of a patient share a fold.
This script ingests the ``.mat`` slices and builds one mart per fold, with
that fold as the test split, the next fold as validation and the other three
for training. It checks that no patient appears in both training and test,
trains a model on each mart, and prints the accuracy per fold and its mean.

Point ``--data`` (or ``$BRAINLAKE_FIGSHARE``) at the unpacked download, a
folder of ``N.mat`` files with ``cvind.mat``. Without it the script writes
synthetic slices in the same file format (noise with a bright square
whose place gives the class, a few slices per invented patient) and prints a notice on every run:
its accuracies then show that the pipeline works, not how a model does on MRI.

Needs the ``mat`` extra (h5py, scipy). Time on 2 CPU cores: about 6 s with
the synthetic slices and the defaults. On the real dataset (3,064 slices,
mostly 512 x 512 pixels) ingest and training take longer; that time is not
measured. ``--size`` and ``--epochs`` control the training time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import brainlake as bl

FOLDS = 5
# The dataset's label codes: 1 meningioma, 2 glioma, 3 pituitary.
LABEL_CODES = (1, 2, 3)
SYNTHETIC_BANNER = (
    "NO FIGSHARE DATA GIVEN: using SYNTHETIC .mat slices (random pixels, invented patients). "
    "The accuracies below test the pipeline and say nothing about MRI. "
    "Pass --data or set $BRAINLAKE_FIGSHARE to run on the real dataset."
)


def _v73_header() -> bytes:
    """Return the 128-byte text header MATLAB writes at the start of a v7.3 file."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


def _write_mat(path: Path, variables: dict[str, dict[str, np.ndarray] | np.ndarray]) -> None:
    """Write ``variables`` as MATLAB v7.3 does: HDF5 after a 512-byte user block, matrices transposed."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as file:
        for name, value in variables.items():
            if isinstance(value, dict):
                group = file.create_group(name)
                group.attrs["MATLAB_class"] = np.bytes_("struct")
                for field, array in value.items():
                    group.create_dataset(field, data=np.asarray(array).T)
            else:
                file.create_dataset(name, data=np.asarray(value).T)
    with path.open("r+b") as file:
        file.write(_v73_header())


def write_synthetic_figshare(folder: Path, *, patients: int = 15, slices_per_patient: int = 4,
                             side: int = 64, seed: int = 0) -> Path:
    """Write a small stand-in for the figshare download into ``folder``.

    Each invented patient has one tumor class and ``slices_per_patient``
    slices of int16 noise with a bright square whose position depends on the
    class, so a model can learn the classes. ``cvind.mat`` puts patient ``p`` in fold ``p % 5 + 1``.

    Returns:
        ``folder``, holding ``1.mat`` ... ``N.mat`` and ``cvind.mat``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    folds: list[int] = []
    number = 0
    for patient in range(patients):
        code = LABEL_CODES[patient % len(LABEL_CODES)]
        pid = f"SYN{patient:04d}"
        for _ in range(slices_per_patient):
            number += 1
            # A mart windows each slice by its own percentiles, so a class-wide
            # brightness would vanish. The class is therefore where the bright
            # "tumor" square sits: top left, centre or bottom right.
            image = rng.normal(300.0, 80.0, size=(side, side))
            corner = (code - 1) * (side // 2 - side // 8)
            mask = np.zeros((side, side), dtype=np.uint8)
            mask[corner: corner + side // 4, corner: corner + side // 4] = 1
            image = (image + 600.0 * mask).clip(-500, 1500).astype(np.int16)
            _write_mat(folder / f"{number}.mat", {"cjdata": {
                "label": np.array([[float(code)]]),
                "PID": np.array([[ord(character) for character in pid]], dtype=np.uint16),
                "image": image,
                "tumorBorder": np.array([[float(corner), float(corner), float(corner + side // 4),
                                          float(corner + side // 4)]]),
                "tumorMask": mask,
            }})
            folds.append(patient % FOLDS + 1)
    _write_mat(folder / "cvind.mat", {"cvind": np.array([folds], dtype=np.float64)})
    return folder


def patients_in(lake: bl.Datalake, mart: bl.BuiltMart, split: str) -> set[str]:
    """Return the (pseudonymised) patient ids of the items in one split of ``mart``."""
    patient_of = {row["item_id"]: row["patient_id"]
                  for row in lake.items(["item_id", "patient_id"], source="figshare").to_pylist()}
    return {patient_of[row["item_id"]] for row in mart.items(split)}


def run_fold(lake: bl.Datalake, fold: int, arguments: argparse.Namespace) -> float:
    """Build the mart whose test split is ``fold``, train on the rest and return the test accuracy.

    The next fold (5 wraps to 1) is the validation split, so validation is
    patient-disjoint from training too, and the other three folds train.
    """
    validation_fold = fold % FOLDS + 1
    mart = (
        lake.mart(f"figshare-fold{fold}-{arguments.size}")
        .where(source="figshare")
        .split(column="extra.cv_fold", test_values=[fold], val_values=[validation_fold], seed=0)
        .preprocess(size=arguments.size, channels=1)
        .build(progress=False)
    )
    shared = patients_in(lake, mart, "train") & patients_in(lake, mart, "test")
    if shared:
        raise SystemExit(f"fold {fold}: {len(shared)} patients are in both train and test; the split leaks")
    sizes = {split: sum(mart.counts[split].values()) for split in mart.splits}
    print(f"fold {fold}: {sizes['train']} train, {sizes['val']} validation, {sizes['test']} test slices; "
          "no patient in both train and test")

    torch.manual_seed(fold)
    model = bl.create_model(arguments.model, num_classes=len(mart.classes), in_channels=1)
    trainer = bl.Trainer(model, device=arguments.device, max_epochs=arguments.epochs, seed=fold,
                         class_names=mart.classes, progress=False)
    trainer.fit(mart.loader("train", batch_size=32, shuffle=True), mart.loader("val", batch_size=256))
    evaluation = trainer.evaluate(mart.loader("test", batch_size=256))
    print(f"fold {fold}: test accuracy {evaluation.accuracy:.3f}, macro-F1 {evaluation.macro_f1:.3f}")
    return evaluation.accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("BRAINLAKE_FIGSHARE"),
                        help="folder of the figshare N.mat files and cvind.mat, or the downloaded zip "
                             "(default: $BRAINLAKE_FIGSHARE; synthetic slices when unset)")
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--patients", type=int, default=15, help="synthetic patients to invent (default: 15)")
    parser.add_argument("--slices", type=int, default=4, help="synthetic slices per patient (default: 4)")
    parser.add_argument("--folds", default="1,2,3,4,5",
                        help="comma-separated test folds to run, 1 to 5 (default: all five)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default: 32)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per fold (default: 3)")
    parser.add_argument("--model", default="cnn1", help="registered model name (default: cnn1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    arguments = parser.parse_args(argv)
    if importlib.util.find_spec("h5py") is None or importlib.util.find_spec("scipy") is None:
        parser.exit(1, "figshare_cv.py needs the mat extra (h5py, scipy): pip install -e '.[mat]'\n")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    folds = [int(fold) for fold in arguments.folds.split(",")]
    if not all(1 <= fold <= FOLDS for fold in folds):
        parser.error(f"--folds must name folds from 1 to {FOLDS}, got {arguments.folds!r}")

    with tempfile.TemporaryDirectory(prefix="brainlake-figshare-") as scratch:
        if arguments.data:
            data = Path(arguments.data)
        else:
            print(SYNTHETIC_BANNER, file=sys.stderr)
            data = write_synthetic_figshare(Path(scratch) / "figshare", patients=arguments.patients,
                                            slices_per_patient=arguments.slices)

        lake = bl.Datalake(arguments.lake or Path(scratch) / "lake")
        report = lake.ingest(data, source="figshare", reader="figshare", progress=False)
        print(report)
        folds_seen = {json.loads(row["extra"]).get("cv_fold")
                      for row in lake.items(["extra"], source="figshare").to_pylist()}
        print(f"folds in the catalog: {sorted(fold for fold in folds_seen if fold is not None)}")

        accuracies = [run_fold(lake, fold, arguments) for fold in folds]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"mean test accuracy over {len(accuracies)} folds: {statistics.mean(accuracies):.3f} "
              f"(standard deviation {spread:.3f})" + ("" if arguments.data else " on SYNTHETIC data"))


if __name__ == "__main__":
    main()
