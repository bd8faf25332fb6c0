"""Real sites for the process tests: `swarmflower init` and `peer` as OS processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from cli_helpers import run_cli

from swarmflower.ledger import Ledger
from swarmflower.simulations.experiments.chaos import FINISHED
from swarmflower.simulations.experiments.chaos import free_base_port as free_port_block


def init_swarm(
    out: Path, sites: int, rounds: int, round_timeout: int = 3, *options: str
) -> None:
    result = run_cli(
        "init",
        "--task",
        "heart",
        "--sites",
        str(sites),
        "--rounds",
        str(rounds),
        "--round-timeout",
        str(round_timeout),
        "--base-port",
        str(free_port_block(sites)),
        "--out",
        str(out),
        *options,
    )
    assert result.returncode == 0, result.stderr


def start_peer(site: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swarmflower",
            "peer",
            "--config",
            str(site / "site.toml"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"peer did not finish:\n{output}") from None
    return process.returncode, output


def outcome(output: str) -> tuple[str, int, str, str]:
    match = FINISHED.search(output)
    assert match, output
    return match.group(1), int(match.group(2)), match.group(3), match.group(4)


def verify_head(site: Path, cli: bool = False) -> str:
    """The head a full re-verification of the site's replica ends on, through
    `swarmflower ledger verify` if `cli`, else the same check in process."""
    if cli:
        result = run_cli("ledger", "verify", str(site))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]
    ledger = Ledger.open(site)
    try:
        return f"0x{ledger.verify().hash.hex()}"
    finally:
        ledger.close()


class Watched:
    """A peer process whose output is read line by line as it comes."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"no '{text}':\n{''.join(self.lines)}"
            time.sleep(0.1)

    def finish(self, timeout: float = 180) -> tuple[int, str]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            output = "".join(self.lines)
            raise AssertionError(f"peer did not finish:\n{output}") from None
        self._reader.join(timeout=10)
        return self.process.returncode, "".join(self.lines)
