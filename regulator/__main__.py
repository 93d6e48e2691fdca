"""``python -m regulator`` — same as the ``regulator`` console script."""

import sys

from regulator.cli import main

sys.exit(main())
