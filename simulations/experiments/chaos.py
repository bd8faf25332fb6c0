"""Chaos runs: real `swarmflower peer` processes killed at random, then restarted.

One run makes a fresh swarm with `swarmflower init`, starts every site as its
own process (with the seal-before-announce drill armed in one round), sends
SIGKILL to random sites at random moments, restarts each killed site after a
short pause, and waits for every process to exit. The run converged if every
peer exited 0 at the last round on one ledger head and one model hash, and
every replica re-verifies from genesis to that head. The seed fixes the
swarm, the drill's round and the kill schedule; the moments are wall-clock
times, so the protocol point a kill hits still varies.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from swarmflower.errors import SwarmflowerError
from swarmflower.ledger import Ledger, LedgerError

FINISHED = re.compile(
    r"(finished|stopped|left) at round (\d+); head block (0x[0-9a-f]+); model (\S+)"
)


@dataclass
class ChaosOutcome:
    """What one chaos run did and how every site ended."""

    seed: int
    kills: list[tuple[float, str]] = field(default_factory=list)  # (s, site)
    restarts: int = 0
    exit_codes: dict[str, int] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    problem: str = ""
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return not self.problem

    @property
    def drill_fired(self) -> bool:
        """Whether a leader died between sealing and announcing (it does not
        when the round's elected leader was already down)."""
        return any("not announced" in out for out in self.outputs.values())


def free_base_port(count: int, start: int = 47200) -> int:
    """A base port such that base+1 .. base+count are free on 127.0.0.1."""
    for base in range(start, 60000, 97):
        sockets = []
        try:
            for k in range(1, count + 1):
                s = socket.socket()
                s.bind(("127.0.0.1", base + k))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports on 127.0.0.1")


def swarmflower(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "swarmflower", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_peer(site: Path, faults: str = "") -> subprocess.Popen:
    extra = ["--faults", faults] if faults else []
    return subprocess.Popen(
        [sys.executable, "-m", "swarmflower", "peer", "--config", str(site), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class _Site:
    """One site's process, restarted after a kill; keeps every run's output."""

    def __init__(self, folder: Path, faults: str) -> None:
        self.name = folder.name
        self.config = folder / "site.toml"
        self.outputs: list[str] = []
        self.process = start_peer(self.config, faults)
        self.restart_at: float | None = None

    def collect(self) -> None:
        output, _ = self.process.communicate()
        self.outputs.append(output)

    @property
    def done(self) -> bool:
        """Exited for good: a site killed with SIGKILL is restarted first."""
        code = self.process.poll()
        return self.restart_at is None and code not in (None, -signal.SIGKILL)


def run_chaos(
    seed: int,
    folder: Path,
    *,
    sites: int = 3,
    rounds: int = 6,
    round_timeout: int = 3,
    kills: int = 3,
    kill_window_s: tuple[float, float] = (3.0, 16.0),
    restart_after_s: tuple[float, float] = (0.5, 3.0),
    deadline_s: float = 300.0,
) -> ChaosOutcome:
    """One seeded chaos run of a fresh swarm in `folder` (made here)."""
    rng = random.Random(seed)
    outcome = ChaosOutcome(seed)
    made = swarmflower(
        "init",
        *("--task", "heart", "--sites", str(sites), "--rounds", str(rounds)),
        *("--round-timeout", str(round_timeout), "--seed", str(seed)),
        *("--base-port", str(free_base_port(sites)), "--out", str(folder)),
    )
    if made.returncode != 0:
        outcome.problem = f"init failed: {made.stderr.strip()}"
        return outcome
    silent_round = rng.randint(2, rounds - 1)
    kill_times = sorted(rng.uniform(*kill_window_s) for _ in range(kills))
    started = time.monotonic()
    runners = [
        _Site(folder / f"site-{k}", f"seal-no-announce:{silent_round}")
        for k in range(1, sites + 1)
    ]
    try:
        while not all(site.done for site in runners):
            now = time.monotonic() - started
            if now > deadline_s:
                outcome.problem = f"not all peers exited within {deadline_s:.0f} s"
                break
            alive = [s for s in runners if s.process.poll() is None]
            if kill_times and now >= kill_times[0] and alive:
                # (with every site down at once, the kill waits for one back)
                kill_times.pop(0)
                victim = rng.choice(alive)
                victim.process.send_signal(signal.SIGKILL)
                outcome.kills.append((round(now, 1), victim.name))
            for site in runners:
                _restart_if_killed(site, rng, restart_after_s, outcome)
            time.sleep(0.05)
    finally:
        for site in runners:
            if site.process.poll() is None:
                site.process.kill()
            site.collect()
    outcome.wall_s = time.monotonic() - started
    _judge(runners, rounds, outcome)
    return outcome


def _restart_if_killed(
    site: _Site, rng: random.Random, pause: tuple[float, float], outcome: ChaosOutcome
) -> None:
    """A site that died of SIGKILL (ours or the drill's) comes back later."""
    code = site.process.poll()
    if code is None:
        return
    if site.restart_at is None:
        if code != -signal.SIGKILL:
            return
        site.collect()
        site.restart_at = time.monotonic() + rng.uniform(*pause)
    elif time.monotonic() >= site.restart_at:
        site.restart_at = None
        site.process = start_peer(site.config)  # without the drill
        outcome.restarts += 1


def _judge(runners: list[_Site], rounds: int, outcome: ChaosOutcome) -> None:
    for site in runners:
        output = "".join(site.outputs)
        outcome.outputs[site.name] = output
        outcome.exit_codes[site.name] = site.process.returncode
        match = FINISHED.search(site.outputs[-1])
        if match:
            outcome.rounds[site.name] = int(match.group(2))
            outcome.heads[site.name] = match.group(3)
            outcome.models[site.name] = match.group(4)
    if outcome.problem:
        return
    if any(code != 0 for code in outcome.exit_codes.values()):
        outcome.problem = f"exit codes {outcome.exit_codes}"
    elif set(outcome.rounds.values()) != {rounds} or len(outcome.rounds) != len(
        runners
    ):
        outcome.problem = f"final rounds {outcome.rounds}"
    elif len(set(outcome.heads.values())) != 1:
        outcome.problem = f"different heads {outcome.heads}"
    elif len(set(outcome.models.values())) != 1:
        outcome.problem = f"different models {outcome.models}"
    else:
        for site in runners:
            if problem := _verify(site.config.parent, outcome.heads[site.name]):
                outcome.problem = f"{site.name}: {problem}"
                return


def _verify(folder: Path, head: str) -> str:
    """Re-verify a site's replica from genesis, as `swarmflower ledger verify`
    does; what is wrong with it, if anything."""
    try:
        ledger = Ledger.open(folder)
    except SwarmflowerError as exc:  # ledger errors included
        return f"replica does not open: {exc}"
    try:
        verified = ledger.verify()
    except LedgerError as exc:
        return f"replica does not verify: {exc}"
    finally:
        ledger.close()
    if f"0x{verified.hash.hex()}" != head:
        return f"verified head 0x{verified.hash.hex()} is not the reported {head}"
    return ""
