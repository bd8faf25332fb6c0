"""The `swarmflower` command line."""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
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

DEFAULT_METHODS = "swarm,swarm+ft,fedavg,fedavg+ft,local,local_own,pooled"
DEFAULT_FT_STEPS = 10
ENGINES = ("inproc", "ray")

# Options shared by the commands that run a task.
Task = Annotated[
    str,
    typer.Option(
        help="heart, breast-cancer, transcriptome, or csv:PATH for your own table."
    ),
]
Rounds = Annotated[int, typer.Option(help="Training rounds (same budget everywhere).")]
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


@app.callback()
def root() -> None:
    """Swarm Learning on Flower: train one model across sites, no central server."""


TASK_OPTIONS = (
    *("task", "sites", "alpha", "site_column", "target", "model"),
    *("local_steps", "batch_size", "lr", "optimizer", "seed"),
)


def _task_spec(options: dict):
    """The `TaskSpec` a command's task options describe (pass its `locals()`).

    The csv options (`--positive`, `--min-site-rows`) become task options
    when given; a task that takes none refuses them by name.
    """
    from swarmflower.datasets.csv_table import CSV_OPTIONS
    from swarmflower.tasks import TaskSpec

    chosen = {name: options[name] for name in TASK_OPTIONS}
    chosen["learning_rate"] = chosen.pop("lr")
    chosen["num_sites"] = chosen.pop("sites")
    extra = {k: options[k] for k in CSV_OPTIONS if options.get(k) is not None}
    return TaskSpec(**chosen, options=extra)


def _run_live(methods: Sequence[str], rounds: int, run):
    """Run `run(live)` under a bar per method (and the Ray engine's round table)."""
    from swarmflower.live import LiveRounds

    with LiveRounds(console, methods, rounds) as live:
        return run(live)


def _describe(spec, rounds: int) -> str:
    """The run's one-line description, after the data's notices (if any)."""
    data = spec.load()
    for notice in getattr(data, "notices", ()):
        console.print(f"[yellow]note[/]: {notice}", soft_wrap=True, highlight=False)
    return (
        f"[bold]{data.name}[/]: {data.num_sites} sites, {data.num_features} features, "
        f"{rounds} rounds x {spec.local_steps} local steps"
    )


def _report(results, out: Path, rounds: int, spec, html: bool = False) -> None:
    """Print the results table and legend; write the result files (and page)."""
    from swarmflower.reports import (
        legend_line,
        results_table,
        site_table,
        write_results,
    )

    data = spec.load()
    seeds = len({r.seed for r in results})
    over = f", mean ± sd over {seeds} seeds" if seeds > 1 else ""
    heading = f"{data.name}: test figures after {rounds} rounds{over}"
    console.print(site_table(results, "test accuracy at each site"))
    console.print(results_table(results, heading))
    console.print(legend_line([r.method for r in results]), highlight=False)
    swarm = [r.wall_s for r in results if r.method == "swarm"]
    fedavg = [r.wall_s for r in results if r.method == "fedavg"]
    if swarm and fedavg:
        ratio = sum(swarm) / sum(fedavg)
        console.print(f"swarm wall time / Flower FedAvg wall time: {ratio:.2f}")
    written = write_results(
        results, out, heading, data=data, task=spec.task, rounds=rounds
    )
    if html:
        from swarmflower.report import write_report

        written.append(write_report(out))
    console.print("wrote " + ", ".join(str(p) for p in written), soft_wrap=True)


@app.command()
def compare(
    task: Task = "heart",
    rounds: Rounds = 20,
    sites: Sites = 4,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for summary.csv, rounds.csv, roc.csv, run.json, curves.png."
        ),
    ] = Path("swarmflower-results/compare"),
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated: swarm, swarm+ft, fedavg, fedavg+ft, local, "
            "local_own, pooled."
        ),
    ] = DEFAULT_METHODS,
    seeds: Annotated[
        int,
        typer.Option(
            help="Run every method with this many seeds (--seed, --seed+1, ...): "
            "model initialisation and data order; results as mean, sd and 95% "
            "interval."
        ),
    ] = 1,
    ft_steps: Annotated[
        int,
        typer.Option(
            help="+ft methods: local steps each site fine-tunes the final model for."
        ),
    ] = DEFAULT_FT_STEPS,
    ft_threshold: Annotated[
        bool,
        typer.Option(
            help="+ft methods: each site also picks its decision threshold on "
            "its own training split."
        ),
    ] = True,
    report: Annotated[
        bool, typer.Option(help="Also write report.html (see `swarmflower report`).")
    ] = False,
    engine: Engine = "inproc",
    ray_address: RayAddress = None,
    hosts: Hosts = None,
    site_column: SiteColumn = None,
    target: Target = None,
    positive: Positive = None,
    min_site_rows: MinSiteRows = None,
    alpha: Alpha = 1.0,
    model: Model = "logreg",
    local_steps: LocalSteps = None,
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

    The swarm (in process, or on Ray with --engine ray), Flower's own FedAvg
    (Flower's simulation engine), each site alone, and all data pooled: same
    data, seeds and training budget; `+ft` rows personalise a final model at
    each site. Every final model is scored on each site's test set (local
    models on every site's, as FLamby does) and on their union.
    """
    from swarmflower.simulations.compare import (
        check_methods,
        check_seeds,
        run_compare,
        trained_methods,
    )
    from swarmflower.simulations.personalise import FineTuning

    _check_engine(engine)
    ray_options = _ray_options(engine, ray_address, hosts)
    if scenario is not None:
        _compare_scenario(scenario, out, engine, ray_options, report)
        return

    spec = _task_spec(locals())
    chosen = check_methods([m.strip() for m in methods.split(",") if m.strip()])
    check_seeds(seeds)
    tuning = FineTuning(steps=ft_steps, threshold=ft_threshold)
    console.print(_describe(spec, rounds))
    results = _run_live(
        trained_methods(chosen),
        rounds * seeds,
        lambda live: run_compare(
            spec,
            rounds,
            chosen,
            live.advance,
            {"engine": engine, **_with_table(ray_options, live)},
            seeds=seeds,
            tuning=tuning,
        ),
    )
    _report(results, out, rounds, spec, html=report)


@app.command("report")
def report_command(
    directory: Annotated[
        Path, typer.Argument(help="A run's --out folder (with summary.csv).")
    ],
) -> None:
    """Write DIR/report.html from a run's result files: one page, no server.

    The headline table with intervals, per-site tables, learning curves, ROC
    curves, the swarm's rounds and what was left out and why.
    """
    from swarmflower.report import write_report

    console.print(f"wrote {write_report(directory)}", soft_wrap=True)


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine '{engine}': use {' or '.join(ENGINES)}")


def _ray_options(engine: str, address: str | None, hosts: int | None) -> dict:
    """The Ray engine's own options; refused with the in-process engine."""
    if engine != "ray":
        if address or hosts:
            raise ConfigError("--ray-address and --hosts need --engine ray")
        return {}
    if hosts is not None and hosts < 1:
        raise ConfigError(f"hosts must be at least 1, got {hosts}")
    return {"ray_address": address, "hosts": hosts}


def _with_table(ray_options: dict, live) -> dict:
    """Ray options plus the live round table, when the engine is Ray."""
    return {**ray_options, "on_round": live.swarm_round} if ray_options else {}


def _compare_scenario(
    name: str, out: Path, engine: str, ray_options: dict, html: bool = False
) -> None:
    from swarmflower.simulations.compare import run_scenario
    from swarmflower.simulations.scenarios import load_scenario

    scenario = load_scenario(name)
    _announce(scenario)
    console.print(_describe(scenario.spec, scenario.rounds))
    _warn_inproc_faults(scenario.faults, engine)
    results = _run_live(
        scenario.methods,
        scenario.rounds,
        lambda live: run_scenario(
            scenario, live.advance, engine, **_with_table(ray_options, live)
        ),
    )
    _report(results, out, scenario.rounds, scenario.spec, html=html)


def _announce(scenario) -> None:
    """The scenario's name and description, its file's line breaks folded."""
    console.print(
        f"[bold]scenario {scenario.name}[/]: {' '.join(scenario.description.split())}"
    )


def _warn_inproc_faults(faults, engine: str) -> None:
    if engine == "inproc" and (
        faults.dropout or faults.sites or faults.slowdown != 1.0
    ):
        console.print(
            "the in-process engine inflicts the scenario's crashes and dishonest "
            "leaders; its dropout, slowdowns and links need --engine ray"
        )


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
    engine: Engine = "inproc",
    rounds: Rounds = 20,
    sites: Sites = 4,
    faults: Annotated[
        str,
        typer.Option(
            help="Faults to inject, e.g. 'leader-crash-every:4,recover-after:1', "
            "'leader-crash:3', 'dishonest-leader:2', 'site-crash:1@5'; inproc "
            "also plays the drills 'seal-no-announce:R', 'crash-mid-fetch:S@R', "
            "'drop-sends:PERCENT', 'bad-update:S@R:KIND' (README: Fault drills)."
        ),
    ] = "",
    dropout: Annotated[
        float,
        typer.Option(help="ray: chance that a site misses a given round."),
    ] = 0.0,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="A scenario name or TOML file: its task, rounds, strategy and "
            "faults (dropout, slow sites, links) replace the options here."
        ),
    ] = None,
    ray_address: RayAddress = None,
    hosts: Hosts = None,
    strategy: Strategy = "FedAvg",
    round_timeout: RoundTimeout = 10,
    min_peers: MinPeers = None,
    out: Annotated[
        Path, typer.Option(help="Folder for summary.csv, rounds.csv, curves.png.")
    ] = Path("swarmflower-results/simulate"),
    site_column: SiteColumn = None,
    target: Target = None,
    positive: Positive = None,
    min_site_rows: MinSiteRows = None,
    alpha: Alpha = 1.0,
    model: Model = "logreg",
    local_steps: LocalSteps = None,
    batch_size: BatchSize = 4,
    lr: Lr = 0.01,
    optimizer: Optimizer = "sgd",
    seed: Seed = 0,
) -> None:
    """Run the swarm alone, optionally with faults, and show its rounds.

    With --engine ray the sites are virtual peers on a pool of Ray actors;
    the report gives wall time and the time the rounds would take at real
    sites (simulated from their speeds, links and the round timeout).
    """
    from swarmflower.faults import FaultPlan
    from swarmflower.reports import rounds_table
    from swarmflower.simulations.scenarios import Faults, load_scenario
    from swarmflower.simulations.swarm import run_swarm_method

    _check_engine(engine)
    ray_options = _ray_options(engine, ray_address, hosts)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if dropout and engine != "ray":
        raise ConfigError("--dropout needs --engine ray")
    if scenario is not None:
        if faults or dropout:
            raise ConfigError(
                "--scenario brings its own faults: drop --faults/--dropout"
            )
        chosen = load_scenario(scenario)
        spec, rounds, strategy = chosen.spec, chosen.rounds, chosen.strategy
        round_timeout = max(1, math.ceil(chosen.round_timeout))
        _announce(chosen)
        _warn_inproc_faults(chosen.faults, engine)
        plan = chosen.faults.fault_plan(rounds)
        profile = chosen.faults
    else:
        spec = _task_spec(locals())
        plan = FaultPlan.parse(faults, spec.load().num_sites, rounds)
        profile = Faults(dropout=dropout)
    num_sites = spec.load().num_sites
    if engine == "ray":
        ray_options["heterogeneity"] = profile.heterogeneity(num_sites)
    ledger_dir = out if engine == "ray" else out / "sites"
    _clear_replicas(out)
    console.print(_describe(spec, rounds))
    result = _run_live(
        ["swarm"],
        rounds,
        lambda live: run_swarm_method(
            spec,
            rounds,
            lambda r: live.advance("swarm", r),
            strategy=strategy,
            faults=plan,
            round_timeout=round_timeout,
            min_peers=min_peers,
            ledger_dir=ledger_dir,
            engine=engine,
            **_with_table(ray_options, live),
        ),
    )
    console.print(rounds_table(result))
    if engine == "ray":
        _print_times(result)
    from swarmflower.simulations.yardsticks import add_yardsticks

    add_yardsticks([result], spec)
    _report([result], out, rounds, spec)
    replica = (
        out / "observer" if engine == "ray" else out / "sites" / result.site_names[0]
    )
    console.print(
        f"a ledger replica is in {replica}/ledger: swarmflower ledger verify {replica}",
        soft_wrap=True,
    )


def _clear_replicas(out: Path) -> None:
    """A simulation's replicas belong to its run: a new run replaces them,
    as it replaces the result files."""
    import shutil

    for folder in (out / "sites", out / "observer"):
        if folder.is_dir():
            shutil.rmtree(folder)
            console.print(f"replaced the ledger replicas of an earlier run in {folder}")


def _print_times(result) -> None:
    details = result.details
    console.print(
        f"wall {result.wall_s:.1f} s: start-up {details.setup_s:.1f} s, "
        f"{details.round_wall_s:.2f} s per round on {details.hosts} Ray actors; "
        f"simulated time at real sites {details.sim_s:.1f} s "
        f"({details.sim_s / len(details.rounds):.2f} s per round)",
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
    positive: Positive = None,
    min_site_rows: MinSiteRows = None,
    alpha: Alpha = 1.0,
    model: Model = "logreg",
    local_steps: LocalSteps = None,
    batch_size: BatchSize = 4,
    lr: Lr = 0.01,
    optimizer: Optimizer = "sgd",
    seed: Seed = 0,
    max_examples: MaxExamples = DEFAULT_MAX_EXAMPLES,
    max_update_ratio: MaxUpdateRatio = DEFAULT_MAX_UPDATE_RATIO,
) -> None:
    """Create a new swarm: its CA, each site's keys and certificate, the genesis."""
    from rich.table import Table

    from swarmflower.provision import init_swarm
    from swarmflower.site_config import TaskConfig

    _check_update_limits(max_examples, max_update_ratio)
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
        max_examples=max_examples,
        max_update_ratio=max_update_ratio,
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
    if (params.max_examples, params.max_update_ratio) != (
        DEFAULT_MAX_EXAMPLES,
        DEFAULT_MAX_UPDATE_RATIO,
    ):
        console.print(
            f"update limits: num_examples 1..{params.max_examples}, "
            f"||update - model|| <= {params.max_update_ratio:g} x max(||model||, 1)",
            soft_wrap=True,
            highlight=False,
        )
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


def _check_update_limits(max_examples: int, max_update_ratio: float) -> None:
    """The update limits, refused before anything is loaded or written."""
    if max_examples < 1:
        raise ConfigError(f"--max-examples must be at least 1, got {max_examples}")
    if not (math.isfinite(max_update_ratio) and max_update_ratio > 0):
        raise ConfigError(
            f"--max-update-ratio must be finite and > 0, got {max_update_ratio}"
        )


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
            help="Fault drill, as for simulate (e.g. 'leader-crash:3', "
            "'seal-no-announce:2', 'crash-mid-write:1@3', 'drop-sends:20'): "
            "this site kills itself with SIGKILL there (README: Fault drills)."
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
    from swarmflower.ledger import LedgerError

    try:
        app()
    except (SwarmflowerError, LedgerError) as exc:
        one_line = " ".join(str(exc).split())  # py-evm messages span lines
        message = Text.assemble(("error: ", "bold red"), one_line)
        errors.print(message, highlight=False, soft_wrap=True)
        sys.exit(1)
