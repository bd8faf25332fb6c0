"""The Swarm Learning paper's four AML designs: swarm against each node and pooled.

Runs each scenario file (swarm, local, pooled) and prints one markdown table
per design. Every model is judged on the same yardstick, the union of all
sites' test sets: AUC, balanced accuracy, sensitivity and specificity, so a
node that calls everyone a control cannot look good on a 1:99 design. The
paper's shape is: the swarm well above the weakest node alone, and close to
the pooled model.

    python benchmarks/paper_scenarios.py [--scenarios aml-studies ...]
        [--engine inproc|ray] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from swarmflower.reports import write_results
from swarmflower.simulations.experiments.compare import run_scenario
from swarmflower.simulations.experiments.results import GLOBAL, MethodResult
from swarmflower.simulations.experiments.scenarios import load_scenario

PAPER = ("aml-studies", "aml-few-cases", "aml-1-to-99", "aml-platforms")
FIGURES = ("auc", "balanced_accuracy", "sensitivity", "specificity", "accuracy")
HEADLINE = "auc"
# (row label, method, metric suffix): local's headline rows are the mean node.
ROWS = (
    ("swarm", "swarm", ""),
    ("pooled", "pooled", ""),
    ("weakest node alone", "local", "_weakest"),
    ("mean node alone", "local", ""),
)


def figures(result: MethodResult) -> dict[str, float]:
    """A result's all-site figures (`site` empty), by metric name."""
    return {m.metric: m.value for m in result.metrics() if not m.site}


def weakest_site(local: MethodResult) -> str:
    """The site whose model is the `global_*_weakest` rows (same AUC, first)."""
    key = f"{GLOBAL}{HEADLINE}"
    value = figures(local)[f"{key}_weakest"]
    rows = [m for m in local.metrics() if m.site and m.metric == key]
    return next(m.site for m in rows if m.value == value)


def markdown_table(name: str, results: Sequence[MethodResult]) -> str:
    """The design's table: one row per model, global figures and wall time.

    A local row's wall time is that of training every node alone, in turn.
    """
    by_method = {r.method: r for r in results}
    header = ["model", *(f"global {f.replace('_', ' ')}" for f in FIGURES), "wall s"]
    lines = [
        f"**{name}**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for label, method, suffix in ROWS:
        if method not in by_method:
            continue
        values = figures(by_method[method])
        if suffix == "_weakest":
            label = f"{label} ({weakest_site(by_method[method])})"
        cells = [f"{values[f'{GLOBAL}{f}{suffix}']:.3f}" for f in FIGURES]
        wall = values["wall_s"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {wall:.0f} |")
    return "\n".join(lines)


def shape_line(results: Sequence[MethodResult]) -> str:
    """The paper's claim in two numbers: swarm minus weakest, swarm minus pooled."""
    by_method = {r.method: figures(r) for r in results}
    key = f"{GLOBAL}{HEADLINE}"
    swarm = by_method["swarm"][key]
    weakest = by_method["local"][f"{key}_weakest"]
    pooled = by_method["pooled"][key]
    return (
        f"global {HEADLINE}: swarm - weakest node = {swarm - weakest:+.3f}, "
        f"swarm - pooled = {swarm - pooled:+.3f}"
    )


def run_design(name: str, engine: str, out: Path | None) -> list[MethodResult]:
    """One scenario's methods, every final model scored by the yardsticks."""
    scenario = load_scenario(name)
    results = run_scenario(scenario, engine=engine)
    if out is not None:
        write_results(
            results,
            out / name,
            name,
            data=scenario.spec.load(),
            task=scenario.spec.task,
            rounds=scenario.rounds,
        )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(PAPER))
    parser.add_argument("--engine", choices=("inproc", "ray"), default="inproc")
    parser.add_argument("--out", type=Path, help="also write each design's files")
    args = parser.parse_args(argv)
    for name in args.scenarios:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results = run_design(name, args.engine, args.out)
        table = markdown_table(f"{name} ({args.engine})", results)
        print(table, "", shape_line(results), "", sep="\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
