"""Run a Flower app project under Flower's own simulation engine, as `flwr run`
does, in the current directory (where the app's ServerApp saves its model).

    python flower_ground_truth.py APP_DIR NUM_SUPERNODES

A process of its own, so that the test's Ray session and imports stay apart
(`swarmflower.app_compare.run_under_flower` does the work).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"

if __name__ == "__main__":
    from swarmflower.app_compare import run_under_flower
    from swarmflower.flower_app import load_flower_app

    app = load_flower_app(Path(sys.argv[1]).resolve())
    run_under_flower(app, int(sys.argv[2]), Path.cwd())
