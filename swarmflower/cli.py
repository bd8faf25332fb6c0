"""The `swarmflower` command line."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from swarmflower.errors import ConfigError, SwarmflowerError

app = typer.Typer(
    help="Swarm Learning on Flower: train one model across sites, no central server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

DEFAULT_METHODS = "swarm,fedavg,local,pooled"

# Options shared by the commands that run a task.
Task = Annotated[
    str, typer.Option(help="heart, breast-cancer, or csv:PATH for your own table.")
]
Rounds = Annotated[int, typer.Option(help="Training rounds (same budget everywhere).")]
Sites = Annotated[
    int, typer.Option(help="Sites for a partitioned task (breast-cancer).")
]
SiteColumn = Annotated[
    str | None, typer.Option(help="csv: the column naming each row's site.")
]
Target = Annotated[str | None, typer.Option(help="csv: the binary target column.")]
Alpha = Annotated[float, typer.Option(help="Dirichlet label skew (breast-cancer).")]
Model = Annotated[str, typer.Option(help="logreg or mlp.")]
LocalSteps = Annotated[int, typer.Option(help="Optimiser updates per site per round.")]
BatchSize = Annotated[int, typer.Option(help="Mini-batch size.")]
Lr = Annotated[float, typer.Option(help="Learning rate.")]
Optimizer = Annotated[str, typer.Option(help="sgd or adam.")]
Seed = Annotated[int, typer.Option(help="Seed for model, partition and training.")]
Strategy = Annotated[
    str, typer.Option(help="The Flower strategy each round's leader runs.")
]
RoundTimeout = Annotated[
    int, typer.Option(help="Seconds before the next backup replaces a silent leader.")
]
MinPeers = Annotated[
    int | None, typer.Option(help="Updates needed to seal a round (default: majority).")
]


@app.callback()
def root() -> None:
    """Swarm Learning on Flower: train one model across sites, no central server."""


TASK_OPTIONS = (
    *("task", "sites", "alpha", "site_column", "target", "model"),
    *("local_steps", "batch_size", "lr", "optimizer", "seed"),
)


def _task_spec(options: dict):
    """The `TaskSpec` a command's task options describe (pass its `locals()`)."""
    from swarmflower.tasks import TaskSpec

    chosen = {name: options[name] for name in TASK_OPTIONS}
    chosen["learning_rate"] = chosen.pop("lr")
    chosen["num_sites"] = chosen.pop("sites")
    return TaskSpec(**chosen)


def _run_with_progress(methods: Sequence[str], rounds: int, run):
    """Run `run(progress)` under one progress bar per method."""
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bars = {m: progress.add_task(m, total=rounds, start=False) for m in methods}

        def advance(method: str, done: int) -> None:
            progress.start_task(bars[method])
            progress.update(bars[method], completed=done)

        return run(advance)


def _describe(spec, rounds: int) -> str:
    data = spec.load()
    return (
        f"[bold]{data.name}[/]: {data.num_sites} sites, {data.num_features} features, "
        f"{rounds} rounds x {spec.local_steps} local steps"
    )


def _report(results, out: Path, rounds: int, task_name: str) -> None:
    from swarmflower.reports import results_table, write_results

    heading = f"{task_name}: mean per-site test accuracy after {rounds} rounds"
    console.print(results_table(results, heading))
    by_method = {r.method: r for r in results}
    if "swarm" in by_method and "fedavg" in by_method:
        ratio = by_method["swarm"].wall_s / by_method["fedavg"].wall_s
        console.print(f"swarm wall time / Flower FedAvg wall time: {ratio:.2f}")
    written = write_results(results, out, heading)
    console.print("wrote " + ", ".join(str(p) for p in written), soft_wrap=True)


@app.command()
def compare(
    task: Task = "heart",
    rounds: Rounds = 20,
    sites: Sites = 4,
    out: Annotated[
        Path, typer.Option(help="Folder for summary.csv, rounds.csv, curves.png.")
    ] = Path("swarmflower-results/compare"),
    methods: Annotated[
        str, typer.Option(help="Comma-separated: swarm, fedavg, local, pooled.")
    ] = DEFAULT_METHODS,
    site_column: SiteColumn = None,
    target: Target = None,
    alpha: Alpha = 1.0,
    model: Model = "logreg",
    local_steps: LocalSteps = 100,
    batch_size: BatchSize = 4,
    lr: Lr = 0.01,
    optimizer: Optimizer = "sgd",
    seed: Seed = 0,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="A scenario (a name from `swarmflower scenarios`, or a TOML "
            "file): its task, rounds, methods, strategy and faults replace the "
            "options above."
        ),
    ] = None,
) -> None:
    """Run the swarm and its yardsticks on one task and print a table.

    The swarm (in process), Flower's own FedAvg (Flower's simulation engine),
    each site alone, and all data pooled: same data, seeds and training budget.
    """
    from swarmflower.simulations.compare import check_methods, run_compare

    if scenario is not None:
        _compare_scenario(scenario, out)
        return

    spec = _task_spec(locals())
    chosen = check_methods([m.strip() for m in methods.split(",") if m.strip()])
    console.print(_describe(spec, rounds))
    results = _run_with_progress(
        chosen, rounds, lambda advance: run_compare(spec, rounds, chosen, advance)
    )
    _report(results, out, rounds, spec.load().name)


def _compare_scenario(name: str, out: Path) -> None:
    from swarmflower.simulations.compare import run_scenario
    from swarmflower.simulations.scenarios import load_scenario

    scenario = load_scenario(name)
    console.print(f"[bold]scenario {scenario.name}[/]: {scenario.description}")
    console.print(_describe(scenario.spec, scenario.rounds))
    faults = scenario.faults
    if faults.dropout or faults.sites or faults.slowdown != 1.0:
        console.print(
            "the in-process engine inflicts the scenario's crashes and dishonest "
            "leaders; its dropout, slowdowns and links need the Ray engine"
        )
    results = _run_with_progress(
        scenario.methods,
        scenario.rounds,
        lambda advance: run_scenario(scenario, advance),
    )
    _report(results, out, scenario.rounds, scenario.spec.load().name)


@app.command()
def scenarios() -> None:
    """List the shipped scenario files (run one with `compare --scenario NAME`)."""
    from rich.table import Table

    from swarmflower.simulations.scenarios import list_scenarios, load_scenario

    names = list_scenarios()
    table = Table(title="scenarios")
    table.add_column("name", no_wrap=True, min_width=max(map(len, names)))
    for column in ("task", "sites", "rounds", "methods", "description"):
        table.add_column(column)
    for name in names:
        s = load_scenario(name)
        table.add_row(
            s.name,
            s.spec.task,
            str(s.spec.num_sites),
            str(s.rounds),
            ",".join(s.methods),
            textwrap.shorten(s.description, 70, placeholder="..."),
        )
    console.print(table)


@app.command()
def simulate(
    task: Task = "heart",
    engine: Annotated[
        str, typer.Option(help="inproc: every site a thread of this process.")
    ] = "inproc",
    rounds: Rounds = 20,
    sites: Sites = 4,
    faults: Annotated[
        str,
        typer.Option(
            help="Faults to inject, e.g. 'leader-crash-every:4,recover-after:1', "
            "'leader-crash:3', 'dishonest-leader:2', 'site-crash:1@5'."
        ),
    ] = "",
    strategy: Strategy = "FedAvg",
    round_timeout: RoundTimeout = 10,
    min_peers: MinPeers = None,
    out: Annotated[
        Path, typer.Option(help="Folder for summary.csv, rounds.csv, curves.png.")
    ] = Path("swarmflower-results/simulate"),
    site_column: SiteColumn = None,
    target: Target = None,
    alpha: Alpha = 1.0,
    model: Model = "logreg",
    local_steps: LocalSteps = 100,
    batch_size: BatchSize = 4,
    lr: Lr = 0.01,
    optimizer: Optimizer = "sgd",
    seed: Seed = 0,
) -> None:
    """Run the swarm alone, optionally with faults, and show its rounds."""
    from swarmflower.faults import FaultPlan
    from swarmflower.reports import rounds_table
    from swarmflower.simulations.swarm import run_swarm_method

    if engine != "inproc":
        raise ConfigError(f"unknown engine '{engine}': use inproc")
    spec = _task_spec(locals())
    plan = FaultPlan.parse(faults, spec.load().num_sites, rounds)
    console.print(_describe(spec, rounds))
    result = _run_with_progress(
        ["swarm"],
        rounds,
        lambda advance: run_swarm_method(
            spec,
            rounds,
            lambda r: advance("swarm", r),
            strategy=strategy,
            faults=plan,
            round_timeout=round_timeout,
            min_peers=min_peers,
            ledger_dir=out / "sites",
        ),
    )
    console.print(rounds_table(result))
    _report([result], out, rounds, spec.load().name)
    console.print(
        f"each site's ledger replica is in {out / 'sites'}/<site>/ledger: "
        f"swarmflower ledger verify {out / 'sites' / result.site_names[0]}",
        soft_wrap=True,
    )


@app.command()
def init(
    out: Annotated[Path, typer.Option(help="New, empty folder for the swarm.")],
    rounds: Rounds,
    task: Annotated[
        str,
        typer.Option(
            help="heart, breast-cancer, csv:PATH, or module:app (your ClientApp)."
        ),
    ] = "heart",
    sites: Annotated[
        int | None,
        typer.Option(help="Number of sites (default: all of the task's sites)."),
    ] = None,
    round_timeout: RoundTimeout = 10,
    min_peers: MinPeers = None,
    strategy: Strategy = "FedAvg",
    base_port: Annotated[
        int, typer.Option(help="Site K listens on 127.0.0.1:BASE+K.")
    ] = 47100,
    initial_model: Annotated[
        str | None,
        typer.Option(
            help="module:app tasks: MODULE:ATTR giving the initial torch module "
            "or ArrayRecord."
        ),
    ] = None,
    site_column: SiteColumn = None,
    target: Target = None,
    alpha: Alpha = 1.0,
    model: Model = "logreg",
    local_steps: LocalSteps = 100,
    batch_size: BatchSize = 4,
    lr: Lr = 0.01,
    optimizer: Optimizer = "sgd",
    seed: Seed = 0,
) -> None:
    """Create a new swarm: its CA, each site's keys and certificate, the genesis."""
    from rich.table import Table

    from swarmflower.provision import init_swarm
    from swarmflower.site_config import TaskConfig

    template = TaskConfig(_task_spec({**locals(), "sites": sites or 4}), 0)
    layout = init_swarm(
        out,
        template,
        num_sites=sites,
        rounds=rounds,
        round_timeout=round_timeout,
        min_peers=min_peers,
        strategy=strategy,
        base_port=base_port,
        initial_model=initial_model,
    )
    params = layout.genesis.params
    table = Table(
        title=f"swarm in {out}: {params.rounds} rounds, {params.strategy}, "
        f"min_peers {params.min_peers}, round timeout {params.round_timeout} s"
    )
    table.add_column("site")
    table.add_column("listens on")
    table.add_column("address", no_wrap=True, min_width=42)
    for site, founder in zip(layout.sites, layout.genesis.sites, strict=True):
        table.add_row(site.name, site.listen_address, founder.address)
    console.print(table)
    console.print(
        f"genesis: {out / 'genesis.json'} (a copy in every site folder)",
        soft_wrap=True,
    )
    console.print(
        f"keep {out / 'ca' / 'ca.key'} private; give each site its own folder.",
        soft_wrap=True,
    )
    console.print("next, at each site:")
    for site in layout.sites:
        console.print(
            f"  swarmflower peer --config {site.folder / 'site.toml'}", soft_wrap=True
        )
    console.print(f"a site joining later: swarmflower enroll --swarm {out} --name NAME")


@app.command()
def enroll(
    swarm: Annotated[Path, typer.Option(help="The swarm folder made by init.")],
    name: Annotated[str, typer.Option(help="The new site's name (its folder).")],
    host: Annotated[str, typer.Option(help="The address it listens on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int | None, typer.Option(help="Its port (default: the next free one).")
    ] = None,
    partition_id: Annotated[
        int | None,
        typer.Option(help="Its part of the task's data (default: the next one)."),
    ] = None,
) -> None:
    """Admit a new site: keys, certificate, folder, and an enrollment to submit."""
    from swarmflower.provision import enroll_site

    site = enroll_site(swarm, name, host=host, port=port, partition_id=partition_id)
    e = site.enrollment
    console.print(
        f"site [bold]{name}[/] in {site.config.folder}, listens on "
        f"{site.config.listen_address}\naddress {e.address}\n"
        f"cert sha256 {e.cert_fingerprint.hex()}",
        soft_wrap=True,
    )
    console.print(
        f"added to the peer lists of {len(site.config.peers)} sites; the members "
        f"put {site.enrollment_path} on the ledger in their next sealed round, "
        f"then: swarmflower peer --config {site.config.folder / 'site.toml'}",
        soft_wrap=True,
    )


@app.command()
def peer(
    config: Annotated[
        Path, typer.Option(help="The site's site.toml, as `swarmflower init` wrote it.")
    ],
    faults: Annotated[
        str,
        typer.Option(
            help="Fault drill, as for simulate (e.g. 'leader-crash:3'): "
            "this site kills itself with SIGKILL there."
        ),
    ] = "",
) -> None:
    """Run one real site until the swarm's rounds are done, then exit 0.

    Its ledger replica and models live in the site's folder: after a crash,
    the same command resumes where the site stopped. SIGTERM stops it cleanly.
    """
    from swarmflower.faults import FaultPlan
    from swarmflower.site_runtime import run_site

    outcome = run_site(
        config,
        report=lambda line: console.print(line, highlight=False),
        faults=FaultPlan.parse(faults, num_sites=10_000),
    )
    state = "finished" if outcome.finished else "stopped"
    model = outcome.model_hash.hex() if outcome.model_hash else "none"
    console.print(
        f"{state} at round {outcome.round}; head block 0x{outcome.head_hash.hex()}; "
        f"model 0x{model}",
        soft_wrap=True,
    )


def _mount_subcommands() -> None:
    """Attach the command groups that live in the side packages."""
    from swarmflower.ledger.cli import app as ledger_app

    app.add_typer(ledger_app, name="ledger", help="Inspect and verify a ledger.")


def main() -> None:
    """Console-script entry point: user errors become one line and exit code 1."""
    _mount_subcommands()
    try:
        app()
    except SwarmflowerError as exc:
        message = Text.assemble(("error: ", "bold red"), str(exc))
        errors.print(message, highlight=False, soft_wrap=True)
        sys.exit(1)
