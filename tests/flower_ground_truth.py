"""Run a Flower app project under Flower's own simulation engine, as `flwr run`
does, in the current directory (where the app's ServerApp saves its model).

    python flower_ground_truth.py APP_DIR NUM_SUPERNODES

The public `run_simulation` gives every ClientApp an empty run config; `flwr
run` passes the project folder to Flower's `_run_simulation` (`app_dir`,
`is_app`), which fuses `[tool.flwr.app.config]` into every node's context.
Ray starts on loopback only, as the project's own Flower baseline does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


def main(app_dir: Path, supernodes: int) -> None:
    from flwr.app import Context, RecordDict
    from flwr.common.config import get_fused_config_from_dir
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    from swarmflower.flower_app import load_flower_app
    from swarmflower.simulations.engine.ray_engine import loopback_node
    from swarmflower.simulations.experiments.fedavg import ray_backend_config

    app = load_flower_app(app_dir)
    context = Context(
        run_id=0,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config=get_fused_config_from_dir(app_dir, {}),
    )
    with loopback_node():
        _run_simulation(
            num_supernodes=supernodes,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=app.client_app(),
            server_app=app.server_app(),
            backend_config=ray_backend_config(),
            server_app_context=context,
            app_dir=str(app_dir),
            is_app=True,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), int(sys.argv[2]))
