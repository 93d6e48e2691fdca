"""What every worker imports at start: the heavy libraries only some features need
stay out until used (each worker would carry them for nothing; issue 21's RSS)."""

from __future__ import annotations

import subprocess
import sys


def test_serving_imports_neither_openpyxl_nor_aio_pika_until_used() -> None:
    probe = (
        "import sys, regulator.cli, regulator.web.app\n"
        "print(sorted(m for m in ('openpyxl', 'aio_pika') if m in sys.modules))\n"
        "import regulator.exports, regulator.reporting\n"
        "print('openpyxl' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0] == "[]", f"imported at start: {out[0]}"
    assert out[1] == "False"  # the CSV exports and the reports need no workbook library
