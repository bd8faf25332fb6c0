"""The Ray engine at scale: wall time and peak memory of a 1,000-site swarm.

Runs exactly the command a user types,

    swarmflower simulate --engine ray --task transcriptome --sites N --rounds R

in a child process, and samples the memory of its whole process tree (the
driver, Ray's own processes and the actors) twice a second. Memory is the
sum of proportional set sizes (PSS), so pages Ray's object store shares
between processes count once. Prints one CSV line.

    pip install -e ".[bench]"
    python benchmarks/ray_scale.py [--sites 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil


def tree_pss(root: psutil.Process) -> int:
    """Bytes of memory held by `root` and all its descendants (PSS)."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run(sites: int, rounds: int, out: Path) -> tuple[float, int, int]:
    """Wall seconds, peak tree memory in bytes, and the exit code."""
    command = [
        *("swarmflower", "simulate", "--engine", "ray", "--task", "transcriptome"),
        *("--sites", str(sites), "--rounds", str(rounds), "--out", str(out)),
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                peak = max(peak, tree_pss(root))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return wall, peak, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        wall, peak, code = run(args.sites, args.rounds, out)
        if code:
            sys.exit(f"swarmflower simulate failed with exit code {code}")
        summary = pd.read_csv(out / "summary.csv")
        overall = summary[summary["site"].isna()].set_index("metric")["value"]
    print("sites,rounds,wall_s,peak_gib,round_wall_s,setup_s,sim_s,accuracy,hosts")
    print(
        f"{args.sites},{args.rounds},{wall:.1f},{peak / 2**30:.2f},"
        f"{overall['round_wall_s']:.2f},{overall['setup_s']:.1f},"
        f"{overall['sim_s']:.1f},{overall['accuracy']:.3f},{int(overall['hosts'])}"
    )


if __name__ == "__main__":
    main()
