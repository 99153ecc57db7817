"""``python -m closeloop``: the same command line as ``closeloop``."""

import sys

from closeloop.cli import main

sys.exit(main())
