"""The command line's options: their types, defaults and help, each written once.

`TaskArgs` declares the task options that `compare`, `simulate` and `init`
share; the `task_options` decorator gives a command those options and hands
it one `TaskArgs` in their place. The other `Annotated` types are the options
of one or a few commands.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from swarmflower.errors import ConfigError

if TYPE_CHECKING:
    from swarmflower.tasks import TaskSpec

# The options that run a task (`TaskArgs` below holds them).
Task = Annotated[
    str,
    typer.Option(
        help="heart, breast-cancer, transcriptome, or csv:PATH for your own table."
    ),
]
Sites = Annotated[
    int,
    typer.Option(help="Sites for a partitioned task (breast-cancer, transcriptome)."),
]
SiteColumn = Annotated[
    str | None, typer.Option(help="csv: the column naming each row's site.")
]
Target = Annotated[str | None, typer.Option(help="csv: the binary target column.")]
Positive = Annotated[
    str | None,
    typer.Option(help="csv: the target value that is the positive class (a case)."),
]
MinSiteRows = Annotated[
    int | None,
    typer.Option(
        help="csv: sites with fewer rows are left out, with a notice (default 10)."
    ),
]
Alpha = Annotated[float, typer.Option(help="Dirichlet label skew (breast-cancer).")]
Model = Annotated[str, typer.Option(help="logreg or mlp.")]
LocalSteps = Annotated[
    int | None,
    typer.Option(
        help="Optimiser updates per site per round (default: 100; transcriptome 20)."
    ),
]
BatchSize = Annotated[int, typer.Option(help="Mini-batch size.")]
Lr = Annotated[float, typer.Option(help="Learning rate.")]
Optimizer = Annotated[str, typer.Option(help="sgd or adam.")]
Seed = Annotated[int, typer.Option(help="Seed for model, partition and training.")]


@dataclass(frozen=True)
class TaskArgs:
    """The task options as given: the fields are the options, in `--help` order."""

    task: Task = "heart"
    sites: Sites = 4
    site_column: SiteColumn = None
    target: Target = None
    positive: Positive = None
    min_site_rows: MinSiteRows = None
    alpha: Alpha = 1.0
    model: Model = "logreg"
    local_steps: LocalSteps = None
    batch_size: BatchSize = 4
    lr: Lr = 0.01
    optimizer: Optimizer = "sgd"
    seed: Seed = 0

    def spec(self) -> TaskSpec:
        """The `TaskSpec` these options describe.

        The csv options (`--positive`, `--min-site-rows`) become task options
        when given; a task that takes none refuses them by name.
        """
        from swarmflower.datasets.csv_table import CSV_OPTIONS
        from swarmflower.tasks import TaskSpec

        given = {name: getattr(self, name, None) for name in CSV_OPTIONS}
        return TaskSpec(
            task=self.task,
            num_sites=self.sites,
            alpha=self.alpha,
            site_column=self.site_column,
            target=self.target,
            model=self.model,
            local_steps=self.local_steps,
            batch_size=self.batch_size,
            learning_rate=self.lr,
            optimizer=self.optimizer,
            seed=self.seed,
            options={k: v for k, v in given.items() if v is not None},
        )


_FIELDS = tuple(f.name for f in fields(TaskArgs))
# `--task` and `--sites` lead a command's options; the rest stand together.
LEADING = ("task", "sites")


def task_options(command: Callable | None = None, /, **overrides: Any) -> Callable:
    """Give `command` the task options; it receives one `TaskArgs` instead.

    `command` declares one keyword-only parameter typed `TaskArgs`: the task
    options take its place, `--task` and `--sites` ahead of the command's
    first option with a default. `overrides` gives a command's own reading of
    an option, by name: a new annotation, or an (annotation, default) pair.
    """
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise TypeError(f"no task option(s) {unknown} to override")
    if command is None:
        return functools.partial(task_options, **overrides)
    marker, signature = _with_task_options(command, _shared_parameters(overrides))

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _FIELDS}
        return command(**kwargs, **{marker: TaskArgs(**given)})

    run.__signature__ = signature  # typer reads the options from here
    run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return run


def _shared_parameters(overrides: dict) -> dict[str, inspect.Parameter]:
    """The task options as keyword-only parameters, `overrides` applied."""
    hints = typing.get_type_hints(TaskArgs, include_extras=True)
    shared = {}
    for field in fields(TaskArgs):
        given = overrides.get(field.name, hints[field.name])
        annotation, default = (
            given if isinstance(given, tuple) else (given, field.default)
        )
        shared[field.name] = inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=default,
            annotation=annotation,
        )
    return shared


def _with_task_options(
    command: Callable, shared: dict[str, inspect.Parameter]
) -> tuple[str, inspect.Signature]:
    """The name of `command`'s `TaskArgs` parameter, and `command`'s signature
    with the task options in its place (`--task` and `--sites` further up)."""
    hints = typing.get_type_hints(command, include_extras=True)
    own = inspect.signature(command)
    markers = [name for name in own.parameters if hints.get(name) is TaskArgs]
    if len(markers) != 1:
        raise TypeError(f"{command.__name__} needs one parameter typed TaskArgs")
    clash = sorted(set(own.parameters) & set(shared))
    if clash:
        raise TypeError(f"{command.__name__} declares task option(s) {clash}")
    leading = [shared.pop(name) for name in LEADING]
    params = []
    for p in own.parameters.values():
        if leading and (p.name == markers[0] or p.default is not p.empty):
            params, leading = [*params, *leading], []
        if p.name == markers[0]:
            params.extend(shared.values())
        else:
            annotation = hints.get(p.name, p.annotation)
            params.append(p.replace(kind=p.KEYWORD_ONLY, annotation=annotation))
    return markers[0], own.replace(
        parameters=params,
        return_annotation=hints.get("return", own.return_annotation),
    )


# Options of more than one command.
Rounds = Annotated[int, typer.Option(help="Training rounds (same budget everywhere).")]
Strategy = Annotated[
    str, typer.Option(help="The Flower strategy each round's leader runs.")
]
RoundTimeout = Annotated[
    int, typer.Option(help="Seconds before the next backup replaces a silent leader.")
]
Engine = Annotated[
    str,
    typer.Option(
        help="The swarm's engine: inproc (a thread per site) or ray (virtual sites "
        "on a pool of Ray actors, with simulated time)."
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(help="ray: join this Ray cluster (default: start a local one)."),
]
Hosts = Annotated[
    int | None,
    typer.Option(help="ray: actors that host the sites (default: one per CPU)."),
]
MinPeers = Annotated[
    int | None, typer.Option(help="Updates needed to seal a round (default: majority).")
]

# compare's options.
CompareOut = Annotated[
    Path,
    typer.Option(
        help="Folder for summary.csv, rounds.csv, roc.csv, run.json, curves.png."
    ),
]
Methods = Annotated[
    str,
    typer.Option(
        help="Comma-separated: swarm, swarm+ft, fedavg, fedavg+ft, local, "
        "local_own, pooled."
    ),
]
Seeds = Annotated[
    int,
    typer.Option(
        help="Run every method with this many seeds (--seed, --seed+1, ...): "
        "model initialisation and data order; results as mean, sd and 95% "
        "interval."
    ),
]
FtSteps = Annotated[
    int,
    typer.Option(
        help="+ft methods: local steps each site fine-tunes the final model for."
    ),
]
FtThreshold = Annotated[
    bool,
    typer.Option(
        help="+ft methods: each site also picks its decision threshold on "
        "its own training split."
    ),
]
WriteReport = Annotated[
    bool, typer.Option(help="Also write report.html (see `swarmflower report`).")
]
CompareScenario = Annotated[
    str | None,
    typer.Option(
        help="A scenario (a name from `swarmflower scenarios`, or a TOML "
        "file): its task, rounds, methods, strategy and faults replace the "
        "options above."
    ),
]

# simulate's options.
FaultDrills = Annotated[
    str,
    typer.Option(
        help="Faults to inject, e.g. 'leader-crash-every:4,recover-after:1', "
        "'leader-crash:3', 'dishonest-leader:2', 'site-crash:1@5'; both "
        "engines also play the drills 'seal-no-announce:R', 'crash-mid-fetch:S@R', "
        "'drop-sends:PERCENT', 'bad-update:S@R:KIND' (README: Fault drills)."
    ),
]
AttackOption = Annotated[
    str,
    typer.Option(
        "--attack",
        help="Poisoned sites: 'sign-flip', 'scale:K', 'gaussian:SIGMA', "
        "'label-flip' (built-in tasks), or colluding, from the honest updates "
        "of the round: 'alie[:Z]', 'ipm:EPS', 'mimic:SITE'. They sign what "
        "they send, so the ledger names them.",
    ),
]
BucketingOption = Annotated[
    int,
    typer.Option(
        "--bucketing",
        help="Merge the means of random buckets of K updates (drawn from the "
        "ledger, the same at every site) with the strategy; 0: off.",
    ),
]
AttackersOption = Annotated[
    str,
    typer.Option(
        "--attackers",
        help="Who plays --attack: N (the first N sites) or sites like 1,3,5.",
    ),
]
Dropout = Annotated[
    float,
    typer.Option(help="ray: chance that a site misses a given round."),
]
SimulateScenario = Annotated[
    str | None,
    typer.Option(
        help="A scenario name or TOML file: its task, rounds, strategy and "
        "faults (dropout, slow sites, links) replace the options here."
    ),
]
SimulateOut = Annotated[
    Path, typer.Option(help="Folder for summary.csv, rounds.csv, curves.png.")
]

# init's options.
InitOut = Annotated[Path, typer.Option(help="New, empty folder for the swarm.")]
InitTask = Annotated[
    str,
    typer.Option(
        help="heart, breast-cancer, csv:PATH, or module:app (your ClientApp)."
    ),
]
InitSites = Annotated[
    int | None,
    typer.Option(help="Number of sites (default: all of the task's sites)."),
]
SimulateApp = Annotated[
    Path | None,
    typer.Option(
        "--app",
        help="A Flower app project to simulate as `swarmflower run` does (its "
        "ServerApp's plan; the task options other than --sites do not apply).",
    ),
]
InitRounds = Annotated[
    int | None,
    typer.Option(help="Training rounds (required, except with --app)."),
]
InitApp = Annotated[
    Path | None,
    typer.Option(
        "--app",
        help="A Flower app project: the swarm plays its ServerApp's strategy, "
        "options, rounds and initial model (fixed in the genesis) with its "
        "ClientApp at every site (the task options other than --sites do not "
        "apply).",
    ),
]
BasePort = Annotated[
    int, typer.Option(help="Site K listens on port BASE+K (127.0.0.1 without --hosts).")
]
StartGrace = Annotated[
    int | None,
    typer.Option(
        help="Seconds round 1 waits for every founding site to start before it "
        "goes on with --min-peers (default: 3 round timeouts; 0: no wait)."
    ),
]
InitHosts = Annotated[
    str | None,
    typer.Option(
        help="Sites on separate machines: 'HOST1,HOST2,...' (site K on host K, "
        "port BASE+K; IP addresses or DNS names, put in each certificate) or a "
        "TOML file with one [[site]] table each (host, port, advertise)."
    ),
]
InitialModel = Annotated[
    str | None,
    typer.Option(
        help="module:app tasks: MODULE:ATTR giving the initial torch module "
        "or ArrayRecord."
    ),
]
# The genesis's update limits (ledger.records.DEFAULT_MAX_EXAMPLES and
# DEFAULT_MAX_UPDATE_RATIO; not imported here: the ledger is slow to import).
DEFAULT_MAX_EXAMPLES = 10_000_000
DEFAULT_MAX_UPDATE_RATIO = 1000.0


def _whole_number(text: str) -> int:
    """--max-examples as given: a whole number, or one line saying it is not."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"--max-examples must be a whole number of at least 1, got {text!r}"
        ) from None


MaxExamples = Annotated[
    int,
    typer.Option(
        parser=_whole_number,
        metavar="INTEGER",
        show_default=True,
        help="Largest num_examples one site's update may claim (its weight in "
        "the merge); every site refuses an update outside 1..N. Fixed at genesis.",
    ),
]
MaxUpdateRatio = Annotated[
    float,
    typer.Option(
        help="How far one update may move the model: every site refuses an "
        "update with ||update - model|| > R x max(||model||, 1). Fixed at genesis.",
    ),
]

CompareApp = Annotated[
    Path | None,
    typer.Option(
        "--app",
        help="A Flower app project: compare it as a swarm against Flower's own "
        "simulation engine running it unchanged (its metrics, its strategy, its "
        "rounds; the task, method and seed options do not apply).",
    ),
]
RunConfigOption = Annotated[
    str,
    typer.Option(
        help="Override the app's run config (its pyproject's "
        r"\[tool.flwr.app.config]), e.g. 'lr=0.1 local-epochs=2' (Flower's syntax)."
    ),
]
