"""Run the real command line in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarmflower", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
