"""A user's Flower app project, as `flwr run` reads it, ready for the swarm.

The unit a Flower user brings is a project folder: `pyproject.toml` names
the `ServerApp` and `ClientApp` (`[tool.flwr.app.components]`) and the run
config (`[tool.flwr.app.config]`), overridden by `--run-config "k=v ..."`
(Flower's syntax). Reading and fusing them is Flower's own code
(`flwr.common.config`); loading the components too (`flwr.supercore`).

There is no server in a swarm, so the app's `ServerApp` is not run as a
server: its `main` runs once, up to the moment it hands its strategy to
`strategy.start(...)`, and what it passes there (the strategy with its
options, the initial model, the number of rounds, the train config) is what
every site's swarm then plays. Once the swarm is done, `main` runs once more
with `start` returning the swarm's `Result` at once, so that what it does
after `start` (saving the final model, say) runs too (`finish_server_app`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result, Strategy

from swarmflower.errors import ConfigError

log = logging.getLogger("swarmflower.app")

PYPROJECT = "pyproject.toml"
APP_OUTPUT = "app_output"  # the folder the ServerApp's ending runs (writes) in
RunConfig = dict[str, bool | float | int | str]


@dataclass(frozen=True)
class FlowerApp:
    """A Flower app project: its folder, components and fused run config."""

    directory: Path
    name: str
    serverapp: str  # "package.module:attribute"
    clientapp: str
    run_config: RunConfig
    num_supernodes: int | None = None  # the local simulation federation's size

    def client_app(self) -> ClientApp:
        return client_app_of(str(self.directory), self.clientapp)

    def server_app(self) -> ServerApp:
        return _load(self.serverapp, ServerApp, self.directory)


def load_flower_app(directory: str | Path, run_config: str = "") -> FlowerApp:
    """Read the project in `directory`; `run_config` overrides its config."""
    from flwr.common.config import (
        flatten_dict,
        fuse_dicts,
        get_project_config,
        parse_config_args,
    )

    directory = Path(directory).resolve()
    if not (directory / PYPROJECT).is_file():
        raise ConfigError(f"{directory}: no {PYPROJECT}, so not a Flower app project")
    try:
        project = get_project_config(directory)
        app = project["tool"]["flwr"]["app"]
        components = app["components"]
        defaults = flatten_dict(app.get("config", {}))
        overrides = parse_config_args([run_config] if run_config else None)
        fused = fuse_dicts(defaults, overrides)
    except KeyError as missing:
        raise ConfigError(
            f"{directory / PYPROJECT}: no {missing} in [tool.flwr.app]: "
            "a Flower app names its serverapp and clientapp in "
            "[tool.flwr.app.components]"
        ) from None
    except Exception as exc:  # Flower's parsers raise click/TOML/value errors
        raise ConfigError(f"{directory / PYPROJECT}: {_one_line(exc)}") from None
    return FlowerApp(
        directory=directory,
        name=str(project.get("project", {}).get("name", directory.name)),
        serverapp=components["serverapp"],
        clientapp=components["clientapp"],
        run_config=fused,
        num_supernodes=_federation_size(project),
    )


def _federation_size(project: Mapping[str, Any]) -> int | None:
    """`options.num-supernodes` of the project's default federation, if any."""
    federations = project["tool"]["flwr"].get("federations", {})
    default = federations.get(federations.get("default", ""), {})
    size = default.get("options", {}).get("num-supernodes")
    return int(size) if isinstance(size, int) else None


def client_app_of(directory: str, reference: str) -> ClientApp:
    """The project's ClientApp by its reference: a module-level function, so
    `functools.partial(client_app_of, ...)` pickles for Ray actors, which
    load the app themselves."""
    return _load(reference, ClientApp, Path(directory))


def _load(reference: str, kind: type, directory: Path) -> Any:
    from flwr.supercore.object_ref import load_app

    try:
        found = load_app(reference, ConfigError, directory)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot load {reference!r}: {_one_line(exc)}") from None
    if not isinstance(found, kind):
        raise ConfigError(
            f"{reference!r} is a {type(found).__name__}, not a Flower {kind.__name__}"
        )
    return found


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line (Flower's validation errors span several)."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


@dataclass
class ServerPlan:
    """What the app's `ServerApp.main` hands to `strategy.start(...)`."""

    strategy: Strategy
    initial_arrays: ArrayRecord
    num_rounds: int
    train_config: ConfigRecord = field(default_factory=ConfigRecord)
    evaluate_config: ConfigRecord = field(default_factory=ConfigRecord)
    evaluate_fn: Callable | None = None


class _Started(Exception):
    """Raised from inside `Strategy.start` to stop `main` once it is captured."""


def _no_server(name: str) -> Callable[..., Any]:
    def refuse(self: Grid, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(
            f"the ServerApp used grid.{name}() before strategy.start(...): a "
            "swarm has no server to do that (see README: Bring your Flower app)"
        )

    return refuse


# A Grid a swarm cannot serve: `main` must reach `strategy.start` first.
_NoServerGrid = type(
    "_NoServerGrid",
    (Grid,),
    {name: _no_server(name) for name in sorted(Grid.__abstractmethods__)},
)


@contextlib.contextmanager
def strategy_start_as(
    replacement: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> Iterator[None]:
    """While inside, every Flower strategy's `start` is
    `replacement(original_start)`: how the swarm sees what a ServerApp's
    `main` starts, without changing the app."""
    original = Strategy.start
    Strategy.start = replacement(original)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Strategy.start = original  # type: ignore[method-assign]


def _recording_plan(plans: list[ServerPlan]) -> Callable:
    """A `start` that records the plan and stops `main` there."""

    def start(original: Callable[..., Any]) -> Callable[..., Any]:
        def plan_only(self, grid, initial_arrays, num_rounds=3, timeout=3600, **kw):
            plans.append(
                ServerPlan(
                    strategy=self,
                    initial_arrays=initial_arrays,
                    num_rounds=num_rounds,
                    train_config=kw.get("train_config") or ConfigRecord(),
                    evaluate_config=kw.get("evaluate_config") or ConfigRecord(),
                    evaluate_fn=kw.get("evaluate_fn"),
                )
            )
            raise _Started

        return plan_only

    return start


def server_context(app: FlowerApp) -> Context:
    """The `Context` Flower gives a ServerApp: the run config, nothing else."""
    return Context(
        run_id=0,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config=dict(app.run_config),
    )


def server_plan(app: FlowerApp) -> ServerPlan:
    """Run the app's `ServerApp.main` up to `strategy.start` and keep its plan."""
    server = app.server_app()
    if getattr(server, "_main", None) is None:  # Flower's legacy server_fn API
        raise ConfigError(
            f"the ServerApp {app.serverapp} has no @app.main() (it is built "
            "with server_fn or a strategy from flwr.server.strategy, Flower's "
            "legacy API): the swarm plays message-API apps, whose main calls "
            "strategy.start(...) of a flwr.serverapp.strategy strategy "
            "(see README: Bring your own Flower app)"
        )
    context = server_context(app)
    plans: list[ServerPlan] = []
    with strategy_start_as(_recording_plan(plans)), contextlib.chdir(app.directory):
        try:
            server(grid=_NoServerGrid(), context=context)
        except _Started:
            pass
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"the ServerApp {app.serverapp} failed: {_one_line(exc)}"
            ) from None
    if not plans:
        raise ConfigError(
            f"the ServerApp {app.serverapp} returned without calling "
            "strategy.start(...): the swarm needs the strategy it starts"
        )
    return plans[0]


def finish_server_app(app: FlowerApp, result: Result, folder: Path) -> list[Path]:
    """Run the app's `ServerApp.main` with `strategy.start` returning the
    swarm's `result` at once, in `folder`, so that its code after `start`
    (saving the final model, printing the history) runs as under Flower.
    Returns the files it wrote there; a failure is one warning, since the
    swarm's own results are already written."""

    def start(original: Callable[..., Any]) -> Callable[..., Any]:
        def finished(self, *args: Any, **kwargs: Any) -> Result:
            return result

        return finished

    folder.mkdir(parents=True, exist_ok=True)
    before = _files(folder)
    with strategy_start_as(start), contextlib.chdir(folder):
        try:
            app.server_app()(grid=_NoServerGrid(), context=server_context(app))
        except Exception as exc:  # the app's own code: anything may come out
            log.warning(
                "the ServerApp %s failed after strategy.start: %s",
                app.serverapp,
                _one_line(exc),
            )
    after = _files(folder)
    return sorted(p for p, stamp in after.items() if before.get(p) != stamp)


def _files(folder: Path) -> dict[Path, int]:
    """Each file under `folder` with its modification time (ns)."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
