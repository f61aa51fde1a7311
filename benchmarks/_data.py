"""Where the benchmarks find the real data set."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def find_data() -> Path:
    """Return the real data set: ``$BRAINLAKE_DATA``, else ``../shared/data/brain-tumor-mri``.

    Exits with a message naming both places when neither has a ``Training`` folder.
    """
    configured = os.environ.get("BRAINLAKE_DATA")
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri"
    for candidate in ([Path(configured)] if configured else []) + [shared]:
        if (candidate / "Training").is_dir():
            return candidate
    sys.exit(
        "the real data set is not here: expected a folder with Training/ and Testing/ at "
        f"{shared} or in $BRAINLAKE_DATA"
    )
