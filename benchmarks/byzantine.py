"""Which merge holds against poisoned sites: every attack against every merge.

The protocol of the Byzantine-robustness benchmarks (Karimireddy, He and
Jaggi, ICLR 2022): 25 sites, 5 of them attacking (20%), non-IID data, and
the attacks bit/sign flip, label flip, IPM, ALIE and mimic; here on our own
tasks: `breast-cancer` split by Dirichlet(0.5) class shares, and the
`transcriptome` task with whole studies per site. Every merge of
`strategies/` the swarm offers, each with and without bucketing (K = 2),
and several seeds. It prints one CSV line per run (mean per-site test
accuracy, and AUC on the union of the test sets), then per task and merge
the no-attack figures, the worst case over the attacks and the drop. Also
(`--heart`) the no-attack cost of each merge on heart's four very unequal
hospitals.

Each run drives `LeaderStrategy.merge`, the function every swarm site runs
and verifies (the swarm's tests show it ends bit-identical to the swarm's
own rounds), on the updates the sites' own ClientApps train; the ledger and
the network, which change no model, are left out so that the ~1,000 runs
fit on a laptop. The colluding attackers see every honest update of the
round (`collusion.py`), the strongest assumption.

    python benchmarks/byzantine.py [--rounds 10] [--seeds 0 1 2] [--workers 2]
    python benchmarks/byzantine.py --heart --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import itertools
import logging
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp

from swarmflower.attacks import Attack
from swarmflower.collusion import change_of
from swarmflower.datasets import FederatedDataset
from swarmflower.flower_messages import TRAIN, model_instruction, site_context
from swarmflower.logs import quiet_flower
from swarmflower.strategies import LeaderStrategy, Update, build_strategy
from swarmflower.tasks import TaskSpec, initial_model, make_client_app
from swarmflower.tasks.models import build_model
from swarmflower.tasks.training import evaluate

SITES, ATTACKERS = 25, 5  # the attackers are the first five sites
MIMICKED = ATTACKERS + 1  # mimic copies the first honest site (from 1)
ATTACKS = ("sign-flip", "label-flip", "alie", "ipm:0.1", "ipm:10", f"mimic:{MIMICKED}")
MERGES = (
    "FedAvg",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "MultiKrum",
    "Bulyan",
    "GeometricMedian",
    "CenteredClipping",
    "NormBoundedAvg",
    "AlignedAvg",
)
BUCKET = 2


@dataclass(frozen=True)
class Run:
    task: str
    seed: int
    merge: str
    bucketing: int
    attack: str  # "" for none
    rounds: int
    local_steps: int

    def spec(self) -> TaskSpec:
        if self.task == "heart":
            return TaskSpec(local_steps=self.local_steps, seed=self.seed)
        if self.task == "breast-cancer":
            return TaskSpec(
                task="breast-cancer",
                num_sites=SITES,
                alpha=0.5,
                local_steps=self.local_steps,
                seed=self.seed,
            )
        return TaskSpec(
            task="transcriptome",
            num_sites=SITES,
            local_steps=self.local_steps,
            seed=self.seed,
            options={"partition": "studies"},
        )


def play(run: Run) -> dict[str, object]:
    """One run: the final model's mean per-site accuracy and union AUC."""
    started = time.perf_counter()
    torch.set_num_threads(1)  # one run per core: threads would only contend
    torch.manual_seed(run.seed)
    spec = run.spec()
    data = spec.load()
    app = make_client_app(spec)
    attack = (
        Attack.parse(run.attack, range(ATTACKERS), data.num_sites)
        if run.attack
        else None
    )
    leader = build_strategy(run.merge, run.bucketing, **merge_options(run))
    with quiet_flower(logging.ERROR):
        current = _train_and_merge(run, spec, data, app, attack, leader)
    accuracy, auc = _score(spec, data, current)
    return {
        **run.__dict__,
        "accuracy": accuracy,
        "auc": auc,
        "wall_s": round(time.perf_counter() - started, 2),
    }


def _train_and_merge(
    run: Run,
    spec: TaskSpec,
    data: FederatedDataset,
    app: ClientApp,
    attack: Attack | None,
    leader: LeaderStrategy,
) -> ArrayRecord:
    """Every round: each site's ClientApp trains, attackers send their
    attack, the leader strategy merges; the final model."""
    contexts = [site_context(k, data.num_sites) for k in range(data.num_sites)]
    current = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    state = leader.initial_state(current)
    for server_round in range(1, run.rounds + 1):
        config = leader.train_config(server_round)
        trained = {}
        for k in range(data.num_sites):
            extra = attack.train_config(k) if attack else {}
            message = model_instruction(
                current,
                TRAIN,
                server_round,
                dst_node_id=k + 1,
                config={**config, **extra},
            )
            reply = app(message, contexts[k]).content
            examples = int(next(iter(reply.metric_records.values()))["num-examples"])
            trained[k] = (examples, reply["arrays"])
        updates = _sent(attack, server_round, current, trained)
        outcome = leader.merge(server_round, current, updates, state)
        current, state = outcome.arrays, outcome.state
    return current


def merge_options(run: Run) -> dict[str, int]:
    """What the Krums and Bulyan are told: the attackers to expect (none on
    heart, whose four sites are too few for Krum to expect one), and
    MultiKrum keeps the rest (of the sites, or of the buckets)."""
    if run.merge not in ("Krum", "MultiKrum", "Bulyan"):
        return {}
    sites, expected = (4, 0) if run.task == "heart" else (SITES, ATTACKERS)
    replies = -(-sites // run.bucketing) if run.bucketing else sites
    options = {"num_malicious_nodes": expected}
    if run.merge == "MultiKrum":
        options["num_nodes_to_select"] = replies - expected
    return options


def _sent(
    attack: Attack | None,
    server_round: int,
    current: ArrayRecord,
    trained: dict[int, tuple[int, ArrayRecord]],
) -> list[Update]:
    """What each site sends: its update, or the attack's (colluders see the
    honest changes of the round)."""
    if attack is None:
        return [Update(k, arrays, n) for k, (n, arrays) in trained.items()]
    honest = {
        k: change_of(current, arrays)
        for k, (_, arrays) in trained.items()
        if not attack.plays(k)
    }
    return [
        Update(k, attack.poison(k, server_round, current, arrays, honest), n)
        for k, (n, arrays) in trained.items()
    ]


def _score(
    spec: TaskSpec, data: FederatedDataset, arrays: ArrayRecord
) -> tuple[float, float]:
    model = build_model(spec, data.num_features)
    model.load_state_dict(arrays.to_torch_state_dict())
    accuracies = [evaluate(model, s.x_test, s.y_test).accuracy for s in data.sites]
    x = np.concatenate([s.x_test for s in data.sites])
    y = np.concatenate([s.y_test for s in data.sites])
    union = evaluate(model, x, y)
    return float(np.nanmean(accuracies)), float(union.auc or float("nan"))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task and merge: no-attack figures, the worst over attacks, the drop
    (means over seeds first)."""
    means = (
        frame.groupby(["task", "merge", "bucketing", "attack"], dropna=False)[
            ["accuracy", "auc"]
        ]
        .mean()
        .reset_index()
    )
    rows = []
    for (task, merge, bucketing), group in means.groupby(
        ["task", "merge", "bucketing"]
    ):
        clean = group[group.attack == ""]
        attacked = group[group.attack != ""]
        if clean.empty:
            continue
        row = {
            "task": task,
            "merge": merge + (f"+bucketing{bucketing}" if bucketing else ""),
            "clean_accuracy": float(clean.accuracy.iloc[0]),
            "clean_auc": float(clean.auc.iloc[0]),
        }
        if not attacked.empty:
            worst_acc = attacked.loc[attacked.accuracy.idxmin()]
            worst_auc = attacked.loc[attacked.auc.idxmin()]
            row |= {
                "worst_accuracy": float(worst_acc.accuracy),
                "worst_accuracy_attack": worst_acc.attack,
                "worst_auc": float(worst_auc.auc),
                "worst_auc_attack": worst_auc.attack,
                "accuracy_drop": row["clean_accuracy"] - float(worst_acc.accuracy),
                "auc_drop": row["clean_auc"] - float(worst_auc.auc),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", nargs="+", default=["breast-cancer", "transcriptome"]
    )
    parser.add_argument("--merges", nargs="+", default=list(MERGES))
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    parser.add_argument("--bucketing", type=int, nargs="+", default=[0, BUCKET])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=20)
    parser.add_argument("--heart", action="store_true", help="no-attack cost on heart")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="byzantine.csv")
    args = parser.parse_args()
    tasks = ["heart"] if args.heart else args.tasks
    attacks = [""] if args.heart else ["", *args.attacks]
    bucketing = [0] if args.heart else args.bucketing
    runs = [
        Run(task, seed, merge, k, attack, args.rounds, args.local_steps)
        for task, seed, merge, k, attack in itertools.product(
            tasks, args.seeds, args.merges, bucketing, attacks
        )
        if not (merge == "Bulyan" and k)  # 13 buckets: Bulyan needs 4 x 5 + 3
    ]
    print(f"{len(runs)} runs on {args.workers} workers", flush=True)
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for row in pool.imap_unordered(play, runs):
            rows.append(row)
            print(",".join(str(v) for v in row.values()), flush=True)
    frame = pd.DataFrame(rows).sort_values(
        ["task", "merge", "bucketing", "attack", "seed"]
    )
    frame.to_csv(args.out, index=False)
    table = summary(frame)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
