"""`python -m benchmarks.chaos` (`make chaos`)."""

from __future__ import annotations

import sys

from benchmarks.chaos.main import main

sys.exit(main(sys.argv[1:]))
