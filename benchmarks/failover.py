"""Failover benchmark: how long a swarm of real sites stalls when its leader dies.

Real `swarmflower peer` processes on loopback (mutual TLS, one process per
site). In round `--kill-round` the elected leader SIGKILLs itself just
before sealing (the `leader-crash` drill: the worst moment, every update
already sent to it); it is restarted a second later. Printed per round
timeout: the median interval between consecutive adoptions at a surviving
site (a normal round), the interval across the killed round, the failover
cost (the difference) and rounds per minute over the normal rounds. HPE
Swarm Learning's leader-failure timeout defaults to 600 s.

    python benchmarks/failover.py [--sites 5] [--rounds 12] [--timeouts 3,10]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from swarmflower.simulations.experiments.chaos import free_base_port

ADOPTED = re.compile(r": round (\d+)/\d+ adopted")


class Peer:
    """A peer process whose output lines are stamped as they arrive."""

    def __init__(self, site: Path, faults: str = "") -> None:
        argv = [sys.executable, "-m", "swarmflower", "peer", "--config"]
        extra = ["--faults", faults] if faults else []
        self.process = subprocess.Popen(
            [*argv, str(site / "site.toml"), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.adopted: dict[int, float] = {}  # round -> first adoption time
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if match := ADOPTED.search(line):
                self.adopted.setdefault(int(match.group(1)), time.monotonic())


def one_run(sites: int, rounds: int, timeout: int, kill_round: int) -> dict:
    """One swarm; the adoption times at the site that survives longest."""
    with tempfile.TemporaryDirectory(prefix="failover-") as folder:
        out = Path(folder) / "swarm"
        made = subprocess.run(
            [
                sys.executable, "-m", "swarmflower", "init",
                "--task", "breast-cancer", "--sites", str(sites),
                "--rounds", str(rounds), "--round-timeout", str(timeout),
                "--base-port", str(free_base_port(sites)), "--out", str(out),
            ],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if made.returncode:
            raise SystemExit(made.stderr)
        folders = [out / f"site-{k}" for k in range(1, sites + 1)]
        drill = f"leader-crash:{kill_round}"
        peers = [Peer(site, drill) for site in folders]
        restarted = None
        deadline = time.monotonic() + 60 + rounds * 3 * timeout
        while any(p.process.poll() is None for p in peers):
            if time.monotonic() > deadline:
                for p in peers:
                    p.process.kill()
                raise SystemExit("the swarm did not finish in time")
            for k, p in enumerate(peers):
                if restarted is None and p.process.poll() == -9:
                    time.sleep(1.0)
                    peers[k] = Peer(folders[k])  # back, without the drill
                    restarted = k
            time.sleep(0.05)
        survivor = next(p for k, p in enumerate(peers) if k != restarted)
        codes = [p.process.returncode for p in peers]
    return {"adopted": survivor.adopted, "codes": codes, "killed": restarted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--kill-round", type=int, default=6)
    parser.add_argument("--timeouts", default="3,10")
    args = parser.parse_args()
    for timeout in (int(t) for t in args.timeouts.split(",")):
        run = one_run(args.sites, args.rounds, timeout, args.kill_round)
        times = run["adopted"]
        gaps = {r: times[r] - times[r - 1] for r in times if r - 1 in times}
        killed_gap = gaps.pop(args.kill_round)
        normal = statistics.median(gaps.values())
        print(
            f"{args.sites} sites, round timeout {timeout} s: normal round "
            f"{normal:.2f} s ({60 / normal:.0f} rounds/min); round "
            f"{args.kill_round} with its leader killed {killed_gap:.2f} s; "
            f"failover cost {killed_gap - normal:.2f} s; exit codes "
            f"{run['codes']} (site {run['killed'] + 1} killed and restarted)",
            flush=True,
        )


if __name__ == "__main__":
    main()
