"""A local Ray, the swarm engine's or Flower's baseline's, listens on loopback only.

Ray has no authentication by default: a simulation on a laptop must not open
its GCS, raylet, workers or agents to the network. The test runs the real
command line and, while it runs, records every listening socket of its whole
process tree (TCP in LISTEN, UDP bound without a peer).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

POLL_S = 0.5
MAX_POLLS = 240  # two minutes


def is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def listeners(tree: list[psutil.Process]) -> set[tuple[str, str, str, int]]:
    """(process, protocol, address, port) of every socket open to connections."""
    found = set()
    for proc in tree:
        try:
            name = proc.name()
            sockets = proc.net_connections(kind="inet")
        except psutil.Error:
            continue  # it exited meanwhile
        for s in sockets:
            if s.type == socket.SOCK_STREAM and s.status == psutil.CONN_LISTEN:
                found.add((name, "tcp", s.laddr.ip, s.laddr.port))
            elif s.type == socket.SOCK_DGRAM and not s.raddr:
                found.add((name, "udp", s.laddr.ip, s.laddr.port))
    return found


def watch(tmp_path: Path, *args: str) -> tuple[int, set[tuple[str, str, str, int]]]:
    """Run `swarmflower ARGS`; return its exit code and what its tree listened on.

    Whatever of the tree outlives the run (a Ray process left behind) is
    killed before returning.
    """
    env = {
        **os.environ,
        "FLWR_TELEMETRY_ENABLED": "0",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    }
    seen: set[tuple[str, str, str, int]] = set()
    procs: dict[int, psutil.Process] = {}
    with open(tmp_path / "stderr.txt", "w") as stderr:
        run = subprocess.Popen(
            [sys.executable, "-m", "swarmflower", *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    root = psutil.Process(run.pid)
    try:
        for _ in range(MAX_POLLS):
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            procs.update((p.pid, p) for p in tree)
            seen |= listeners(tree)
            if run.poll() is not None:
                break
            time.sleep(POLL_S)
        else:
            raise AssertionError(f"swarmflower {args[0]} ran over two minutes")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        _, alive = psutil.wait_procs(procs.values(), timeout=10)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
    return run.returncode, seen


def assert_loopback_only(seen: set[tuple[str, str, str, int]]) -> None:
    assert seen, "no listening socket seen: the check saw nothing to check"
    exposed = sorted(entry for entry in seen if not is_loopback(entry[2]))
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_ray_engine_listens_on_loopback_only(tmp_path):
    """One `compare` starts both Rays: the swarm's engine (`--engine ray`)
    and Flower's simulation engine for the FedAvg baseline."""
    code, seen = watch(
        tmp_path,
        *("compare", "--engine", "ray", "--methods", "swarm,fedavg"),
        *("--task", "heart", "--rounds", "2", "--local-steps", "5"),
        *("--out", str(tmp_path)),
    )
    assert code == 0, (tmp_path / "stderr.txt").read_text()
    assert_loopback_only(seen)
    rounds = (tmp_path / "rounds.csv").read_text()
    assert "\nswarm," in rounds and "\nfedavg," in rounds  # both engines ran
