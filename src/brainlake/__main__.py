"""Run the ``brainlake`` command as ``python -m brainlake``."""

import sys

from .cli import main

sys.exit(main())
