"""A Flower app's plan as the genesis fixes it, so every real site plays one plan.

Real sites have no server to hand them the strategy. Each site runs the
app's `ServerApp.main` itself, from its own copy of the project, up to
`strategy.start` (`flower_app.server_plan`). The genesis records what that
gave at `init` (the strategy and its options, the rounds, the per-round
train and evaluate configs, the central `evaluate_fn`, the run config) and
a hash of the project's files. A site whose copy gives anything else is
refused before it starts, with the differences named, so no site can play
another strategy, another learning rate or other code than the swarm agreed
on.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from swarmflower.errors import ConfigError
from swarmflower.flower_app import FlowerApp, ServerPlan
from swarmflower.strategies import strategy_options

APP_FOLDER = "app"  # the project's copy inside a site's folder
# What a project's source is made of (as a Flower app bundle holds it);
# data, models and caches are not part of the app.
APP_SUFFIXES = frozenset({".py", ".toml", ".md", ".txt", ".json", ".yaml", ".yml"})
_SKIPPED_PARTS = ("__pycache__", "build", "dist")


def app_files(directory: Path) -> list[Path]:
    """The project's source files, relative to it, in a fixed order."""
    found = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if not path.is_file() or path.suffix not in APP_SUFFIXES:
            continue
        if any(
            part.startswith(".") or part in _SKIPPED_PARTS or part.endswith(".egg-info")
            for part in relative.parts
        ):
            continue
        found.append(relative)
    return found


def files_hash(directory: Path) -> str:
    """SHA-256 over the project's source files (names and contents)."""
    digest = hashlib.sha256()
    for relative in app_files(directory):
        content = (directory / relative).read_bytes()
        digest.update(f"{relative.as_posix()}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def copy_app(source: Path, target: Path) -> None:
    """A copy of the project's source files, for a site's folder."""
    for relative in app_files(source):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target / relative)


def plan_record(app: FlowerApp, plan: ServerPlan) -> dict[str, Any]:
    """The plan as plain JSON values, for the genesis."""
    return {
        "name": app.name,
        "files": files_hash(app.directory),
        "run_config": _plain(dict(app.run_config), "run config"),
        "strategy": type(plan.strategy).__name__,
        "options": _plain(strategy_options(plan.strategy), "strategy option"),
        "rounds": plan.num_rounds,
        "train_config": _plain(dict(plan.train_config), "train_config"),
        "evaluate_config": _plain(dict(plan.evaluate_config), "evaluate_config"),
        "evaluate_fn": _callable_name(plan.evaluate_fn),
    }


def check_plan(agreed: Mapping[str, Any], own: Mapping[str, Any], where: str) -> None:
    """Refuse a site whose app gives another plan than the genesis's."""
    differences = [
        _difference(key, agreed.get(key), own.get(key))
        for key in sorted(set(agreed) | set(own))
        if agreed.get(key) != own.get(key)
    ]
    if differences:
        raise ConfigError(
            f"{where}: this site's app does not give the swarm's plan "
            f"(the genesis): {'; '.join(differences)}. Every site runs the same "
            "app with the same run config; a site's own settings belong in "
            "[node_config] of its site.toml"
        )


def _difference(key: str, agreed: Any, own: Any) -> str:
    if key == "files":
        return "its files differ from the app the swarm was founded with"
    if isinstance(agreed, Mapping) and isinstance(own, Mapping):
        keys = sorted(set(agreed) | set(own))
        changed = [k for k in keys if agreed.get(k) != own.get(k)]
        return ", ".join(
            f"{key} {k} is {own.get(k)!r}, the genesis says {agreed.get(k)!r}"
            for k in changed
        )
    return f"{key} is {own!r}, the genesis says {agreed!r}"


def _plain(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    return {key: _json_value(value, f"{what} {key!r}") for key, value in values.items()}


def _json_value(value: Any, what: str) -> Any:
    """A value as JSON can hold it; a function by its import name."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_json_value(v, what) for v in value]
    if callable(value):
        return _callable_name(value)
    raise ConfigError(
        f"the ServerApp's {what} is a {type(value).__name__}, which a genesis "
        "cannot record (use numbers, strings, booleans or functions)"
    )


def _callable_name(function: Callable | None) -> str | None:
    if function is None:
        return None
    module = getattr(function, "__module__", None) or "?"
    name = getattr(function, "__qualname__", None) or type(function).__name__
    return f"{module}:{name}"
