"""The test apps (`tests/apps/`) as swarms against Flower's own simulation.

For each Flower app project: `swarmflower run` in process (the swarm's final
model and wall time) and Flower's simulation engine on the same project, as
`flwr run` starts it (`tests/flower_ground_truth.py`, in a fresh process and
working folder, where the app's ServerApp saves its final model). Prints the
largest difference between the two final models and both wall times (an
app with `fraction_train` < 1 differs: Flower samples the sites to train at
random, the swarm trains every site).

    python benchmarks/flower_apps.py [--apps numpy_app torch_app sklearn_app]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from swarmflower.app_run import run_flower_app
from swarmflower.flower_app import load_flower_app

TESTS = Path(__file__).resolve().parent.parent / "tests"
SAVED = ("final_model.npz", "final_model.pt")


def flower_final(app_dir: Path, sites: int) -> tuple[list[np.ndarray], float]:
    """Flower's final model of the app (as its ServerApp saved it), wall s."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(TESTS / "flower_ground_truth.py"),
                str(app_dir),
                str(sites),
            ],
            cwd=folder,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        saved = next(
            Path(folder) / name for name in SAVED if (Path(folder) / name).exists()
        )
        if saved.suffix == ".pt":
            state = torch.load(saved)
            return [t.numpy() for t in state.values()], wall
        with np.load(saved) as arrays:
            return [arrays[key] for key in arrays.files], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--apps", nargs="+", default=["numpy_app", "torch_app", "sklearn_app"]
    )
    args = parser.parse_args()
    print(
        "app,strategy,fraction_train,sites,rounds,max_abs_diff,swarm_wall_s,flower_wall_s"
    )
    for name in args.apps:
        app = load_flower_app(TESTS / "apps" / name)
        run = run_flower_app(app)
        ours = run.final_arrays.to_numpy_ndarrays()
        theirs, flower_wall = flower_final(app.directory, len(run.swarm.sites))
        diff = max(
            float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            for a, b in zip(ours, theirs, strict=True)
        )
        print(
            f"{name},{type(run.plan.strategy).__name__},"
            f"{run.plan.strategy.fraction_train:g},{len(run.swarm.sites)},"
            f"{run.plan.num_rounds},{diff:.2e},{run.wall_s:.1f},{flower_wall:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
