"""Separate hosts on one machine: one Linux network namespace per site.

A hub namespace holds a bridge; each site's namespace joins it through a
veth pair and gets its own address in NETNS_RANGE, the one private range the
tests use besides loopback (nothing else is ever addressed). Cutting a site's
link takes its veth end in the hub down: packets stop both ways, as when a
hospital's line drops, and TCP connections hang rather than close. Every
namespace is removed on exit. Needs root and a kernel that allows network
namespaces: `Lan.skip_reason()` says why not, for `pytest.skip`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

NETNS_RANGE = "10.213.7.0/24"
_PREFIX = "10.213.7."
_COMMAND_TIMEOUT_S = 10


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(("-n", netns) if netns else ()), *args]
    subprocess.run(command, check=True, capture_output=True, timeout=_COMMAND_TIMEOUT_S)


class Lan:
    """`count` hosts, host K (1..count) at `address(K)` in its own namespace."""

    def __init__(self, count: int) -> None:
        tag = f"sf{os.getpid() % 100_000}"
        self.count = count
        self.hub = f"{tag}hub"
        self.hosts = [f"{tag}h{k}" for k in range(1, count + 1)]
        self._timers: list[threading.Timer] = []

    @staticmethod
    def skip_reason() -> str | None:
        """Why namespaces cannot be made here, or None if they can."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        probe = f"sfprobe{os.getpid() % 100_000}"
        try:
            _ip("netns", "add", probe)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"the kernel or sandbox refuses network namespaces ({exc})"
        _ip("netns", "del", probe)
        return None

    @staticmethod
    def address(k: int) -> str:
        return f"{_PREFIX}{k + 1}"

    def __enter__(self) -> Lan:
        try:
            _ip("netns", "add", self.hub)
            _ip("link", "add", "br0", "type", "bridge", netns=self.hub)
            _ip("link", "set", "br0", "up", netns=self.hub)
            for k, host in enumerate(self.hosts, start=1):
                _ip("netns", "add", host)
                _ip(
                    "link", "add", f"v{k}", "netns", self.hub, "type", "veth",
                    "peer", "name", "eth0", "netns", host,
                )  # fmt: skip
                _ip("link", "set", f"v{k}", "master", "br0", "up", netns=self.hub)
                _ip("addr", "add", f"{self.address(k)}/24", "dev", "eth0", netns=host)
                _ip("link", "set", "eth0", "up", netns=host)
                _ip("link", "set", "lo", "up", netns=host)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for timer in self._timers:
            timer.cancel()
        for name in [*self.hosts, self.hub]:
            subprocess.run(
                ["ip", "netns", "del", name],
                capture_output=True,
                timeout=_COMMAND_TIMEOUT_S,
            )

    def command(self, k: int, argv: Sequence[str]) -> list[str]:
        """`argv` run on host K."""
        return ["ip", "netns", "exec", self.hosts[k - 1], *argv]

    def run(self, k: int, argv: Sequence[str]) -> str:
        """Run `argv` on host K; its standard output."""
        return subprocess.run(
            self.command(k, argv),
            check=True,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
        ).stdout

    def start_peer(self, k: int, site: Path) -> subprocess.Popen:
        return self.start_cli(k, "peer", "--config", str(site / "site.toml"))

    def start_cli(self, k: int, *args: str) -> subprocess.Popen:
        """`swarmflower ARGS...` on host K (its output piped)."""
        return subprocess.Popen(
            self.command(k, [sys.executable, "-m", "swarmflower", *args]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def cut(self, k: int, seconds: float) -> None:
        """Host K's link down both ways now, back up after `seconds`."""
        _ip("link", "set", f"v{k}", "down", netns=self.hub)
        timer = threading.Timer(
            seconds, _ip, ("link", "set", f"v{k}", "up"), {"netns": self.hub}
        )
        self._timers.append(timer)
        timer.start()
