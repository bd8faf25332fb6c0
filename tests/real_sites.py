"""Real sites for the process tests: `swarmflower init` and `peer` as OS processes."""

from __future__ import annotations

import subprocess
import sys
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
