"""Importing the package must not import Ray (Ray is imported inside the functions that need it)."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_pull_in_ray() -> None:
    code = "import sys, catalytic, catalytic.distributed; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False"
