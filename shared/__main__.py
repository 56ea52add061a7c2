"""``python -m shared`` is the ``hardway`` command."""

import sys

from shared.tooling.cli import main

sys.exit(main())
