"""`--ray-address`: the Ray engine joins a cluster someone else started."""

import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from cli_helpers import run_cli

RAY = (sys.executable, "-m", "ray.scripts.scripts")  # the `ray` command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster():
    """A real Ray head node in its own process group, stopped afterwards."""
    port = free_port()
    env = {**os.environ, "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    head = subprocess.Popen(
        [
            *RAY,
            *("start", "--head", "--block", "--port", str(port)),
            *("--num-cpus", "2", "--include-dashboard=false"),
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while subprocess.run(
        [*RAY, "status", "--address", address], capture_output=True, env=env
    ).returncode:
        assert time.monotonic() < deadline, "the Ray head did not come up"
        assert head.poll() is None, "the Ray head exited"
        time.sleep(1)
    yield address
    os.killpg(head.pid, signal.SIGTERM)
    head.wait(timeout=60)


def test_simulate_joins_an_existing_cluster(cluster, tmp_path):
    done = run_cli(
        *("simulate", "--engine", "ray", "--ray-address", cluster),
        *("--rounds", "2", "--local-steps", "5", "--out", str(tmp_path)),
    )
    assert done.returncode == 0, done.stderr
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert list(rounds["round"]) == [1, 2]
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("metric")
    assert summary.loc["hosts", "value"] == 2  # the cluster's two CPUs
    # The cluster outlives the run: it was not ours to stop.
    status = subprocess.run([*RAY, "status", "--address", cluster], capture_output=True)
    assert status.returncode == 0
