"""Logging helpers: keep Flower's per-call INFO lines out of swarm and baseline runs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_flower(level: int = logging.WARNING) -> Iterator[None]:
    """Raise the `flwr` logger's level for the duration of a run.

    Flower logs every aggregation and, for `run_simulation`, a deprecation
    notice in favour of `flwr run` (which needs a packaged app; the engine
    underneath is the same).
    """
    logger = logging.getLogger("flwr")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
