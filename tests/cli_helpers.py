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


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], *fragments: str
) -> None:
    """The command failed with one line on stderr holding every fragment."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
