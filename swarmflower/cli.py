"""The `swarmflower` command line."""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from swarmflower.cli_options import (
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_MAX_UPDATE_RATIO,
    AttackersOption,
    AttackOption,
    BasePort,
    BucketingOption,
    CompareApp,
    CompareOut,
    CompareScenario,
    Dropout,
    Engine,
    FaultDrills,
    FtSteps,
    FtThreshold,
    Hosts,
    InitApp,
    InitHosts,
    InitialModel,
    InitOut,
    InitRounds,
    InitSites,
    InitTask,
    MaxExamples,
    MaxUpdateRatio,
    Methods,
    MinPeers,
    RayAddress,
    Rounds,
    RoundTimeout,
    RunConfigOption,
    Seed,
    Seeds,
    SimulateApp,
    SimulateOut,
    SimulateScenario,
    StartGrace,
    Strategy,
    TaskArgs,
    WriteReport,
    task_options,
)
from swarmflower.errors import ConfigError, SwarmflowerError

if TYPE_CHECKING:
    from swarmflower.faults import FaultPlan
    from swarmflower.simulations.experiments.scenarios import Faults
    from swarmflower.strategies import LeaderStrategy
    from swarmflower.tasks import TaskSpec

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


@app.callback()
def root() -> None:
    """Swarm Learning on Flower: train one model across sites, no central server."""


def _run_live(methods: Sequence[str], rounds: int, run):
    """Run `run(live)` under a bar per method (and the Ray engine's round table)."""
    from swarmflower.live import LiveRounds

    with LiveRounds(console, methods, rounds) as live:
        return run(live)


def _describe(spec, rounds: int) -> str:
    """The run's one-line description, after the data's notices (if any)."""
    data = spec.load()
    for notice in data.notices:
        console.print(f"[yellow]note[/]: {notice}", soft_wrap=True, highlight=False)
    return (
        f"[bold]{data.name}[/]: {data.num_sites} sites, {data.num_features} features, "
        f"{rounds} rounds x {spec.local_steps} local steps"
    )


def _report(results, out: Path, rounds: int, spec, html: bool = False) -> None:
    """Print the results table and legend; write the result files (and page)."""
    from swarmflower.reports import (
        flagged_lines,
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
    for line in flagged_lines(results):
        console.print(line, soft_wrap=True, highlight=False)
    written = write_results(
        results, out, heading, data=data, task=spec.task, rounds=rounds
    )
    if html:
        from swarmflower.report import write_report

        written.append(write_report(out))
    console.print("wrote " + ", ".join(str(p) for p in written), soft_wrap=True)


@app.command()
@task_options
def compare(
    rounds: Rounds = 20,
    out: CompareOut = Path("swarmflower-results/compare"),
    methods: Methods = DEFAULT_METHODS,
    seeds: Seeds = 1,
    ft_steps: FtSteps = DEFAULT_FT_STEPS,
    ft_threshold: FtThreshold = True,
    report: WriteReport = False,
    engine: Engine = "inproc",
    ray_address: RayAddress = None,
    hosts: Hosts = None,
    strategy: Strategy = "FedAvg",
    attack: AttackOption = "",
    attackers: AttackersOption = "1",
    bucketing: BucketingOption = 0,
    *,
    task_args: TaskArgs,
    scenario: CompareScenario = None,
    app_dir: CompareApp = None,
    run_config: RunConfigOption = "",
) -> None:
    """Run the swarm and its yardsticks on one task and print a table.

    The swarm (in process, or on Ray with --engine ray), Flower's own FedAvg
    (Flower's simulation engine), each site alone, and all data pooled: same
    data, seeds and training budget; `+ft` rows personalise a final model at
    each site. Every final model is scored on each site's test set (local
    models on every site's, as FLamby does) and on their union. With
    --attack, the chosen sites poison what they send in the swarm and in
    Flower's FedAvg alike; --strategy is the swarm's merge.
    """
    from swarmflower.simulations.experiments.compare import (
        check_methods,
        check_seeds,
        run_compare,
        trained_methods,
    )
    from swarmflower.simulations.experiments.personalise import FineTuning

    _check_engine(engine)
    ray_options = _ray_options(engine, ray_address, hosts)
    if scenario is not None or app_dir is not None:
        if attack or strategy != "FedAvg" or bucketing:
            raise ConfigError(
                "--scenario and --app bring their own plan: drop --attack, "
                "--strategy and --bucketing"
            )
        experiment = (scenario, app_dir, run_config)
        _compare_experiment(*experiment, out, engine, ray_options, report)
        return

    spec = task_args.spec()
    swarm_options: dict = {
        "engine": engine,
        "strategy": _bucketed(strategy, bucketing) if bucketing else strategy,
    }
    baseline_options: dict = {}
    if (chosen_attack := _attack_of(spec, attack, attackers)) is not None:
        from swarmflower.faults import FaultPlan

        swarm_options["faults"] = FaultPlan(attack=chosen_attack)
        baseline_options["attack"] = chosen_attack
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
            {**swarm_options, **_with_table(ray_options, live)},
            seeds=seeds,
            tuning=tuning,
            baseline_options=baseline_options,
        ),
    )
    _report(results, out, rounds, spec, html=report)


def _compare_experiment(
    scenario: str | None,
    app_dir: Path | None,
    run_config: str,
    out: Path,
    engine: str,
    ray_options: dict,
    html: bool = False,
) -> None:
    """`compare --scenario` or `compare --app`: an experiment of its own."""
    if app_dir is not None and scenario is not None:
        raise ConfigError("--app and --scenario are two experiments: give one")
    if scenario is not None:
        _compare_scenario(scenario, out, engine, ray_options, html)
    else:
        _compare_app(app_dir, run_config, out)


def _compare_app(app_dir: Path, run_config: str, out: Path) -> None:
    """`compare --app`: the app as a swarm and under Flower's own engine."""
    from swarmflower.app_compare import compare_app
    from swarmflower.app_run import sites_for
    from swarmflower.flower_app import load_flower_app, server_plan
    from swarmflower.reports import app_comparison_table, write_app_comparison

    flower_app = load_flower_app(app_dir, run_config)
    plan = server_plan(flower_app)
    sites = sites_for(flower_app, None)
    console.print(
        f"[bold]{flower_app.name}[/]: {sites} sites, {plan.num_rounds} rounds of "
        f"{type(plan.strategy).__name__}: as a swarm, then local-only, then on "
        "Flower's own simulation engine",
        highlight=False,
    )
    with console.status("the swarm, local-only, then Flower's engine ..."):
        comparison = compare_app(flower_app, sites, plan, out / "flower")
    console.print(app_comparison_table(comparison))
    written = write_app_comparison(comparison, out)
    console.print("wrote " + ", ".join(str(p) for p in written), soft_wrap=True)


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
    from swarmflower.simulations.experiments.compare import run_scenario
    from swarmflower.simulations.experiments.scenarios import load_scenario

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


@app.command("run")
def run_app(
    app_dir: Annotated[
        Path, typer.Argument(help="A Flower app project (with pyproject.toml).")
    ] = Path("."),
    sites: Annotated[
        int | None,
        typer.Option(
            help="Sites (default: the project's local-simulation num-supernodes)."
        ),
    ] = None,
    run_config: RunConfigOption = "",
    engine: Engine = "inproc",
    round_timeout: RoundTimeout = 10,
    seed: Seed = 0,
    attack: AttackOption = "",
    attackers: AttackersOption = "1",
    out: Annotated[
        Path, typer.Option(help="Folder for rounds.csv, summary.csv, final_model.npz.")
    ] = Path("swarmflower-results/run"),
) -> None:
    """Run a Flower app project as a swarm: its ClientApp at every site, its
    ServerApp's strategy and config played by the rotating leaders.

    Reads the project's pyproject.toml as `flwr run` does (components and run
    config); every round's model is evaluated by the app's own evaluate and
    aggregated by its own strategy. With --attack, the chosen sites poison
    the updates they send (label-flip needs an app that reads `label-flip`
    from its train config).
    """
    _play_app(
        app_dir, sites, run_config, engine, round_timeout, seed, out, attack, attackers
    )


def _play_app(
    app_dir: Path,
    sites: int | None,
    run_config: str,
    engine: str,
    round_timeout: int,
    seed: int,
    out: Path,
    attack: str = "",
    attackers: str = "1",
) -> None:
    """`run` (and `simulate --app`): the app's swarm, its table and files."""
    from swarmflower.app_run import run_flower_app, sites_for
    from swarmflower.flower_app import (
        APP_OUTPUT,
        finish_server_app,
        load_flower_app,
        server_plan,
    )
    from swarmflower.reports import app_rounds_table, write_app_results

    _check_engine(engine)
    flower_app = load_flower_app(app_dir, run_config)
    from swarmflower.faults import FaultPlan

    count = sites_for(flower_app, sites)
    plan = server_plan(flower_app)
    faults = FaultPlan(attack=_attack_on(attack, attackers, count))
    console.print(
        f"[bold]{flower_app.name}[/] ({flower_app.directory}): {count} sites, "
        f"{plan.num_rounds} rounds of {type(plan.strategy).__name__}, "
        f"run config {flower_app.run_config}",
        soft_wrap=True,
        highlight=False,
    )
    result = _run_live(
        ["swarm"],
        plan.num_rounds,
        lambda live: run_flower_app(
            flower_app,
            count,
            plan=plan,
            progress=lambda r: live.advance("swarm", r),
            round_timeout=round_timeout,
            seed=seed,
            engine=engine,
            faults=faults,
        ),
    )
    console.print(app_rounds_table(result))
    written = write_app_results(result, out)
    written += finish_server_app(flower_app, result.flower_result(), out / APP_OUTPUT)
    console.print("wrote " + ", ".join(str(p) for p in written), soft_wrap=True)


@app.command()
def scenarios() -> None:
    """List the shipped scenario files (run one with `compare --scenario NAME`)."""
    from rich.table import Table

    from swarmflower.simulations.experiments.scenarios import (
        list_scenarios,
        load_scenario,
    )

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


@dataclass(frozen=True)
class _Simulation:
    """What `simulate` runs: from a scenario, or from the command's options."""

    spec: TaskSpec
    rounds: int
    strategy: str | LeaderStrategy  # a built one with --bucketing
    round_timeout: int
    plan: FaultPlan
    profile: Faults  # the dropout, slow sites and links (Ray engine)


@app.command()
@task_options
def simulate(
    engine: Engine = "inproc",
    rounds: Rounds = 20,
    faults: FaultDrills = "",
    attack: AttackOption = "",
    attackers: AttackersOption = "1",
    bucketing: BucketingOption = 0,
    dropout: Dropout = 0.0,
    scenario: SimulateScenario = None,
    ray_address: RayAddress = None,
    hosts: Hosts = None,
    strategy: Strategy = "FedAvg",
    round_timeout: RoundTimeout = 10,
    min_peers: MinPeers = None,
    out: SimulateOut = Path("swarmflower-results/simulate"),
    app_dir: SimulateApp = None,
    run_config: RunConfigOption = "",
    *,
    task_args: TaskArgs,
) -> None:
    """Run the swarm alone, optionally with faults, and show its rounds.

    With --engine ray the sites are virtual peers on a pool of Ray actors;
    the report gives wall time and the time the rounds would take at real
    sites (simulated from their speeds, links and the round timeout). With
    --app, a Flower app project plays instead of a task, as `run` plays it.
    """
    if app_dir is not None:
        if scenario is not None or faults or dropout or min_peers is not None:
            raise ConfigError(
                "--app plays the app's own plan: --scenario, --faults, "
                "--dropout and --min-peers do not apply to it yet"
            )
        sites, seed = task_args.sites, task_args.seed
        _play_app(
            app_dir,
            sites,
            run_config,
            engine,
            round_timeout,
            seed,
            out,
            attack,
            attackers,
        )
        return
    if run_config:
        raise ConfigError("--run-config is for a Flower app: add --app APP_DIR")
    _check_engine(engine)
    ray_options = _ray_options(engine, ray_address, hosts)
    _check_dropout(dropout, engine)
    if scenario is not None:
        if attack:
            raise ConfigError("--scenario brings its own faults: drop --attack")
        run = _scenario_simulation(scenario, engine, faults, dropout)
    else:
        run = _options_simulation(
            task_args.spec(), rounds, strategy, round_timeout, faults, dropout
        )
        run = _with_attack(run, attack, attackers)
    if bucketing:
        if scenario is not None:
            raise ConfigError("--scenario brings its own strategy: drop --bucketing")
        run = replace(run, strategy=_bucketed(run.strategy, bucketing))
    num_sites = run.spec.load().num_sites
    if engine == "ray":
        ray_options["heterogeneity"] = run.profile.heterogeneity(num_sites)
    result = _run_simulation(run, engine, ray_options, min_peers, out)
    _report_simulation(result, run, engine, out)


def _with_attack(run: _Simulation, attack: str, attackers: str) -> _Simulation:
    """`run` with `--attack` played by `--attackers` (nothing if no attack)."""
    chosen = _attack_of(run.spec, attack, attackers)
    if chosen is None:
        return run
    return replace(run, plan=replace(run.plan, attack=chosen))


def _bucketed(strategy: str, bucketing: int):
    """The swarm's strategy with `--bucketing` (a built strategy object)."""
    from swarmflower.strategies import build_strategy

    return build_strategy(strategy, bucketing=bucketing)


def _attack_of(spec: TaskSpec, attack: str, attackers: str):
    """`--attack` played by `--attackers` on `spec`'s sites, said once."""
    if not attack:
        return None

    if attack.startswith("label-flip") and ":" in spec.task:
        raise ConfigError(
            "--attack label-flip flips the labels of the built-in tasks; "
            "a module:app would not know it is attacked"
        )
    return _attack_on(attack, attackers, spec.load().num_sites)


def _attack_on(attack: str, attackers: str, num_sites: int):
    """`--attack` played by `--attackers` of `num_sites` sites, said once
    (None without an attack)."""
    if not attack:
        return None
    from swarmflower.attacks import Attack, attacker_sites

    chosen = Attack.parse(attack, attacker_sites(attackers, num_sites), num_sites)
    names = ", ".join(str(k + 1) for k in sorted(chosen.sites))
    console.print(f"sites {names} play the attack {attack}", soft_wrap=True)
    return chosen


def _check_dropout(dropout: float, engine: str) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if dropout and engine != "ray":
        raise ConfigError("--dropout needs --engine ray")


def _scenario_simulation(
    name: str, engine: str, faults: str, dropout: float
) -> _Simulation:
    """The scenario's task, rounds, strategy, round timeout and faults."""
    from swarmflower.simulations.experiments.scenarios import load_scenario

    if faults or dropout:
        raise ConfigError("--scenario brings its own faults: drop --faults/--dropout")
    chosen = load_scenario(name)
    _announce(chosen)
    _warn_inproc_faults(chosen.faults, engine)
    return _Simulation(
        spec=chosen.spec,
        rounds=chosen.rounds,
        strategy=chosen.strategy,
        round_timeout=max(1, math.ceil(chosen.round_timeout)),
        plan=chosen.faults.fault_plan(chosen.rounds),
        profile=chosen.faults,
    )


def _options_simulation(
    spec: TaskSpec,
    rounds: int,
    strategy: str,
    round_timeout: int,
    faults: str,
    dropout: float,
) -> _Simulation:
    """The command's own task, rounds, strategy, --faults and --dropout."""
    from swarmflower.faults import FaultPlan
    from swarmflower.simulations.experiments.scenarios import Faults

    plan = FaultPlan.parse(faults, spec.load().num_sites, rounds)
    return _Simulation(
        spec, rounds, strategy, round_timeout, plan, Faults(dropout=dropout)
    )


def _run_simulation(
    run: _Simulation, engine: str, ray_options: dict, min_peers: int | None, out: Path
):
    """Train the swarm under a live bar; the ledger replicas go below `out`."""
    from swarmflower.simulations.experiments.swarm import run_swarm_method

    ledger_dir = out if engine == "ray" else out / "sites"
    _clear_replicas(out)
    console.print(_describe(run.spec, run.rounds))
    return _run_live(
        ["swarm"],
        run.rounds,
        lambda live: run_swarm_method(
            run.spec,
            run.rounds,
            lambda r: live.advance("swarm", r),
            strategy=run.strategy,
            faults=run.plan,
            round_timeout=run.round_timeout,
            min_peers=min_peers,
            ledger_dir=ledger_dir,
            engine=engine,
            **_with_table(ray_options, live),
        ),
    )


def _report_simulation(result, run: _Simulation, engine: str, out: Path) -> None:
    """The rounds, the times (Ray), the result files and where a replica is."""
    from swarmflower.reports import rounds_table
    from swarmflower.simulations.experiments.yardsticks import add_yardsticks

    console.print(rounds_table(result))
    if engine == "ray":
        _print_times(result)
    add_yardsticks([result], run.spec)
    _report([result], out, run.rounds, run.spec)
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
@task_options(task=InitTask, sites=(InitSites, None))
def init(
    out: InitOut,
    rounds: InitRounds = None,
    round_timeout: RoundTimeout = 10,
    min_peers: MinPeers = None,
    strategy: Strategy = "FedAvg",
    base_port: BasePort = 47100,
    initial_model: InitialModel = None,
    app_dir: InitApp = None,
    run_config: RunConfigOption = "",
    hosts: InitHosts = None,
    start_grace: StartGrace = None,
    bucketing: BucketingOption = 0,
    *,
    task_args: TaskArgs,
    max_examples: MaxExamples = DEFAULT_MAX_EXAMPLES,
    max_update_ratio: MaxUpdateRatio = DEFAULT_MAX_UPDATE_RATIO,
) -> None:
    """Create a new swarm: its CA, each site's keys and certificate, the genesis.

    With --app, the swarm plays a Flower app project: its ServerApp's
    strategy, options, rounds and initial model go into the genesis and
    every site folder gets a copy of the project.
    """
    from swarmflower.provision import init_app_swarm, init_swarm
    from swarmflower.site_config import TaskConfig
    from swarmflower.site_hosts import parse_hosts

    _check_update_limits(max_examples, max_update_ratio)
    founding: dict = {
        "round_timeout": round_timeout,
        "min_peers": min_peers,
        "base_port": base_port,
        "max_examples": max_examples,
        "max_update_ratio": max_update_ratio,
        "start_grace": 3 * round_timeout if start_grace is None else start_grace,
        "bucketing": bucketing,
    }
    if founding["start_grace"] < 0:
        raise ConfigError(f"--start-grace must be at least 0, got {start_grace}")
    if hosts is not None:
        founding["addresses"] = parse_hosts(hosts, base_port)
        if task_args.sites is None:  # one site per host
            task_args = replace(task_args, sites=len(founding["addresses"]))
    if app_dir is not None:
        from swarmflower.flower_app import load_flower_app

        if rounds is not None or initial_model is not None:
            raise ConfigError(
                "--app takes the rounds and the initial model from the app's "
                "ServerApp: drop --rounds/--initial-model (set the rounds in the "
                "app's run config, e.g. --run-config num-server-rounds=5)"
            )
        flower_app = load_flower_app(app_dir, run_config)
        layout = init_app_swarm(out, flower_app, num_sites=task_args.sites, **founding)
    else:
        if rounds is None:
            raise ConfigError("--rounds is required (or --app APP_DIR)")
        if run_config:
            raise ConfigError("--run-config is for a Flower app: add --app APP_DIR")
        spec = replace(task_args, sites=task_args.sites or 4).spec()
        layout = init_swarm(
            out,
            TaskConfig(spec, 0),
            num_sites=task_args.sites,
            rounds=rounds,
            strategy=strategy,
            initial_model=initial_model,
            **founding,
        )
    _print_swarm(layout, out)
    _print_next_steps(layout, out)


def _print_swarm(layout, out: Path) -> None:
    """The swarm's parameters, its sites and (when not the defaults) its limits."""
    from rich.table import Table

    params = layout.genesis.params
    table = Table(
        title=f"swarm in {out}: {params.rounds} rounds, {params.strategy}"
        + (f" over buckets of {params.bucketing}" if params.bucketing else "")
        + f", min_peers {params.min_peers}, round timeout {params.round_timeout} s"
    )
    table.add_column("site")
    table.add_column("listens on")
    advertised = any(site.advertise for site in layout.sites)
    if advertised:
        table.add_column("dialled at")
    table.add_column("address", no_wrap=True, min_width=42)
    for site, founder in zip(layout.sites, layout.genesis.sites, strict=True):
        dialled = [site.dialled_address] if advertised else []
        table.add_row(site.name, site.listen_address, *dialled, founder.address)
    console.print(table)
    if params.start_grace:
        console.print(
            f"round 1 waits up to {params.start_grace} s for every site to start, "
            f"then goes on with {params.min_peers}",
            highlight=False,
        )
    if layout.genesis.app is not None:
        plan = layout.genesis.app
        console.print(
            f"app {plan['name']}: {plan['strategy']} with its ServerApp's options, "
            f"run config {plan['run_config']} (all in the genesis)",
            soft_wrap=True,
            highlight=False,
        )
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


def _print_next_steps(layout, out: Path) -> None:
    """Where the genesis and the CA key are, and the command each site runs."""
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
    advertise: Annotated[
        str,
        typer.Option(
            help="The name or address the other sites dial (default: --host); "
            "also in its certificate."
        ),
    ] = "",
    outbound_only: Annotated[
        bool,
        typer.Option(
            "--outbound-only",
            help="It listens nowhere (its firewall lets no connection in): the "
            "members it dials relay its traffic. Its peers list names them.",
        ),
    ] = False,
) -> None:
    """Admit a new site: keys, certificate, folder, and an enrollment to submit."""
    from swarmflower.provision import enroll_site

    site = enroll_site(
        swarm,
        name,
        host=host,
        port=port,
        partition_id=partition_id,
        advertise=advertise,
        outbound_only=outbound_only,
    )
    e = site.enrollment
    where = (
        "listens nowhere (only dials out)"
        if site.config.outbound_only
        else f"listens on {site.config.listen_address}, "
        f"dialled at {site.config.dialled_address}"
    )
    console.print(
        f"site [bold]{name}[/] in {site.config.folder}, {where}"
        f"\naddress {e.address}\n"
        f"cert sha256 {e.cert_fingerprint.hex()}",
        soft_wrap=True,
    )
    relayed = ", which relay its traffic," if site.config.outbound_only else ""
    console.print(
        f"copy {site.config.folder} to the new site and start it there: "
        f"swarmflower peer --config {site.config.folder.name}/site.toml\n"
        f"it dials the {len(site.config.peers)} members{relayed} asks to join, "
        "and trains from the round after the block that enrolls it",
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
    repair: Annotated[
        bool,
        typer.Option(
            help="Move a damaged ledger replica or damaged model files aside "
            "(kept for inspection) and rebuild them from the genesis and the "
            "peers; without it such damage stops the site with one line."
        ),
    ] = False,
) -> None:
    """Run one real site until the swarm's rounds are done, then exit 0.

    Its ledger replica and models live in the site's folder: after a crash,
    the same command resumes where the site stopped. SIGTERM stops it cleanly.
    """
    from swarmflower.faults import FaultPlan
    from swarmflower.site_runtime import run_site

    outcome = run_site(
        config,
        report=lambda line: console.print(line, highlight=False, soft_wrap=True),
        faults=FaultPlan.parse(faults, num_sites=10_000),
        repair=repair,
    )
    model = outcome.model_hash.hex() if outcome.model_hash else "none"
    console.print(
        f"{outcome.state} at round {outcome.round}; "
        f"head block 0x{outcome.head_hash.hex()}; model 0x{model}",
        soft_wrap=True,
    )


@app.command()
def leave(
    config: Annotated[Path, typer.Option(help="The leaving site's site.toml.")],
    wait: Annotated[
        float,
        typer.Option(help="Seconds to wait for a block that takes the leave."),
    ] = 60.0,
) -> None:
    """Leave a running swarm for good: a request signed by the site's key.

    The next leader's block carries it and every replica checks the
    signature; from that round on the site is neither counted nor elected,
    and its certificate is refused. Its own `peer` stops by itself.
    """
    from swarmflower.site_leave import leave_swarm

    departure = leave_swarm(
        config,
        wait_s=wait,
        report=lambda line: console.print(line, highlight=False, soft_wrap=True),
    )
    console.print(
        f"left the swarm with round {departure.round}; "
        f"block 0x{departure.block_hash.hex()}",
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
    except SwarmflowerError as exc:  # ledger errors included
        one_line = " ".join(str(exc).split())  # py-evm messages span lines
        message = Text.assemble(("error: ", "bold red"), one_line)
        errors.print(message, highlight=False, soft_wrap=True)
        sys.exit(1)
