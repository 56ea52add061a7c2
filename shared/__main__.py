"""``python -m shared`` is the ``hardway`` command."""

import sys

from shared.cli import main

sys.exit(main())
