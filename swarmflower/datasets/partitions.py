"""Heterogeneous ways to deal rows to nodes, as pure functions of row indices.

Swarm Learning's claims rest on sites that differ: whole studies per node,
skewed labels, unequal sizes, a node with almost no cases. Each function here
returns one sorted array of row indices per node, uses every row exactly once,
is deterministic from its seed, and never loops in Python over rows (a 1,000
node split takes milliseconds). Every node is left able to split and train:
`MIN_PER_CLASS` rows of each class, or a `DataError` naming the node.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swarmflower.datasets.preprocessing import dirichlet_label_partition
from swarmflower.errors import DataError

# With 3 rows of a class, the stratified 70/30 split keeps at least one in train.
MIN_PER_CLASS = 3
SIZE_LAWS = ("lognormal", "powerlaw")


def node_name(node: int) -> str:
    """The site name a node becomes (`site-1` for node 0), used in errors."""
    return f"site-{node + 1}"


def check_partition(
    parts: Sequence[np.ndarray], y: np.ndarray, min_per_class: int = MIN_PER_CLASS
) -> None:
    """Raise a `DataError` naming the first node that could not split and train."""
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    owner = np.repeat(np.arange(len(parts)), sizes)
    rows = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    cases = np.bincount(owner, weights=y[rows] == 1, minlength=len(parts))
    controls = sizes - cases
    bad = np.flatnonzero((cases < min_per_class) | (controls < min_per_class))
    if len(bad):
        k = int(bad[0])
        raise DataError(
            f"node '{node_name(k)}' holds {int(cases[k])} case(s) and "
            f"{int(controls[k])} control(s): each node needs at least "
            f"{min_per_class} of each class to split and train"
        )


def _groups(owner: np.ndarray, num_nodes: int) -> list[np.ndarray]:
    """Row indices grouped by owning node, each group sorted (one argsort)."""
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=num_nodes)
    return np.split(order, np.cumsum(counts)[:-1])


def _check_nodes(num_nodes: int) -> None:
    if num_nodes < 1:
        raise DataError(f"number of nodes must be at least 1, got {num_nodes}")


def _require_class_rows(y: np.ndarray, num_nodes: int, min_per_class: int) -> None:
    """Name the first node that cannot get `min_per_class` rows of some class."""
    for label, what in ((1, "cases"), (0, "controls")):
        have = int(np.count_nonzero(y == label))
        if have < num_nodes * min_per_class:
            raise DataError(
                f"node '{node_name(have // min_per_class)}' cannot get "
                f"{min_per_class} {what}: only {have} {what} for {num_nodes} nodes"
            )


def _even_counts(total: int, num_nodes: int) -> np.ndarray:
    """`total` split as evenly as possible (the first nodes get the remainder)."""
    counts = np.full(num_nodes, total // num_nodes, dtype=np.int64)
    counts[: total % num_nodes] += 1
    return counts


def _deal(
    owner: np.ndarray, rows: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> None:
    """Give `counts[k]` of `rows` (in random order) to node k, in place."""
    owner[rng.permutation(rows)] = np.repeat(np.arange(len(counts)), counts)


def dirichlet_partition(
    y: np.ndarray,
    num_nodes: int,
    alpha: float,
    seed: int,
    min_per_class: int = MIN_PER_CLASS,
) -> list[np.ndarray]:
    """Label skew: each class's rows shared by Dirichlet(alpha) weights."""
    _check_nodes(num_nodes)
    _require_class_rows(y, num_nodes, min_per_class)
    parts = dirichlet_label_partition(y, num_nodes, alpha, seed, min_per_class)
    check_partition(parts, y, min_per_class)
    return parts


def _size_weights(
    law: str, skew: float, num_nodes: int, rng: np.random.Generator
) -> np.ndarray:
    if law == "lognormal":
        if skew < 0:
            raise DataError(f"lognormal skew must be at least 0, got {skew}")
        return rng.lognormal(0.0, skew, num_nodes)
    if law == "powerlaw":
        if skew <= 0:
            raise DataError(f"power-law exponent must be positive, got {skew}")
        return rng.pareto(skew, num_nodes) + 1.0
    raise DataError(f"unknown size law '{law}': use one of {SIZE_LAWS}")


def quantity_partition(
    y: np.ndarray,
    num_nodes: int,
    seed: int,
    *,
    skew: float = 1.0,
    law: str = "lognormal",
    min_per_class: int = MIN_PER_CLASS,
) -> list[np.ndarray]:
    """Quantity skew: node sizes from a log-normal (sigma=`skew`) or a Pareto law.

    Labels stay mixed at random; only the amounts differ. Each node first gets
    `min_per_class` rows of each class, the rest is cut by the drawn weights.
    """
    _check_nodes(num_nodes)
    _require_class_rows(y, num_nodes, min_per_class)
    rng = np.random.default_rng(seed)
    weights = _size_weights(law, skew, num_nodes, rng)
    owner = np.empty(len(y), dtype=np.int64)
    reserved = []
    for label in (1, 0):
        rows = rng.permutation(np.flatnonzero(y == label))
        head = rows[: num_nodes * min_per_class]
        owner[head] = np.repeat(np.arange(num_nodes), min_per_class)
        reserved.append(rows[num_nodes * min_per_class :])
    rest = rng.permutation(np.concatenate(reserved))
    cuts = np.floor(np.cumsum(weights) / weights.sum() * len(rest)).astype(np.int64)
    counts = np.diff(np.concatenate(([0], cuts)))
    counts[-1] += len(rest) - counts.sum()
    owner[rest] = np.repeat(np.arange(num_nodes), counts)
    return _groups(owner, num_nodes)


def special_node_partition(
    y: np.ndarray,
    num_nodes: int,
    seed: int,
    *,
    node: int,
    node_cases: int,
    node_controls: int,
    min_per_class: int = MIN_PER_CLASS,
) -> list[np.ndarray]:
    """One node gets exactly `node_cases` cases and `node_controls` controls.

    The other nodes share the remaining cases and controls evenly (stratified),
    the shape of the paper's "one hospital with few cases" experiments.
    """
    if num_nodes < 2:
        raise DataError(f"a special node needs at least 2 nodes, got {num_nodes}")
    if not 0 <= node < num_nodes:
        raise DataError(f"node {node + 1} does not exist among {num_nodes} nodes")
    name = node_name(node)
    for count, what in ((node_cases, "case"), (node_controls, "control")):
        if count < min_per_class:
            raise DataError(
                f"node '{name}' would hold {count} {what}(s): at least "
                f"{min_per_class} are needed to split and train"
            )
    rng = np.random.default_rng(seed)
    owner = np.empty(len(y), dtype=np.int64)
    for label, wanted, what in (
        (1, node_cases, "cases"),
        (0, node_controls, "controls"),
    ):
        rows = np.flatnonzero(y == label)
        if wanted > len(rows):
            raise DataError(
                f"node '{name}' asks for {wanted} {what}: only {len(rows)} exist"
            )
        rest = _even_counts(len(rows) - wanted, num_nodes - 1)
        counts = np.insert(rest, node, wanted)
        starved = np.flatnonzero(counts < min_per_class)
        if len(starved):
            k = int(starved[0])
            raise DataError(
                f"node '{node_name(k)}' would hold {int(counts[k])} {what}: "
                f"only {len(rows) - wanted} left for {num_nodes - 1} nodes"
            )
        _deal(owner, rows, counts, rng)
    return _groups(owner, num_nodes)


def _ordinary_size(y: np.ndarray, num_nodes: int, node_size: int | None) -> int:
    """A special node's size: `node_size`, or an equal share n/N of the rows."""
    return len(y) // max(num_nodes, 1) if node_size is None else node_size


def few_cases_partition(
    y: np.ndarray,
    num_nodes: int,
    seed: int,
    *,
    node: int = 0,
    cases: int = 5,
    node_size: int | None = None,
    min_per_class: int = MIN_PER_CLASS,
) -> list[np.ndarray]:
    """One node of ordinary size (`node_size`, default n/N) with only `cases` cases."""
    size = _ordinary_size(y, num_nodes, node_size)
    if cases > size:
        raise DataError(
            f"node '{node_name(node)}' cannot hold {cases} cases in {size} rows"
        )
    controls = size - cases
    return special_node_partition(
        y,
        num_nodes,
        seed,
        node=node,
        node_cases=cases,
        node_controls=controls,
        min_per_class=min_per_class,
    )


def case_ratio_partition(
    y: np.ndarray,
    num_nodes: int,
    seed: int,
    *,
    node: int = 0,
    case_share: float = 0.01,
    node_size: int | None = None,
    min_per_class: int = MIN_PER_CLASS,
) -> list[np.ndarray]:
    """One node whose case:control ratio is `case_share` (0.01 is 1:99)."""
    if not 0 < case_share < 1:
        raise DataError(f"case share must be between 0 and 1, got {case_share}")
    size = _ordinary_size(y, num_nodes, node_size)
    cases = int(round(size * case_share))
    return few_cases_partition(
        y,
        num_nodes,
        seed,
        node=node,
        cases=cases,
        node_size=size,
        min_per_class=min_per_class,
    )


def _assign_studies(
    study: np.ndarray,
    y: np.ndarray,
    num_nodes: int,
    rng: np.random.Generator,
    case_shares: np.ndarray | None,
    min_per_class: int,
) -> np.ndarray:
    """Node of each row, whole studies per node, greedy largest study first.

    Each study goes to the node where it costs least: load over the mean load,
    distance from the node's target case share, and a bonus for supplying a
    class the node still lacks. Empty nodes are served first, so every node
    gets a study. O(studies x nodes) in numpy, never per row.
    """
    ids, inverse = np.unique(study, return_inverse=True)
    if len(ids) < num_nodes:
        raise DataError(
            f"node '{node_name(len(ids))}' gets no study: only {len(ids)} "
            f"studies for {num_nodes} nodes"
        )
    sizes = np.bincount(inverse)
    cases = np.bincount(inverse, weights=y == 1).astype(np.int64)
    order = np.lexsort((rng.permutation(len(ids)), -sizes))
    load = np.zeros(num_nodes, dtype=np.int64)
    load_cases = np.zeros(num_nodes, dtype=np.int64)
    mean_load = len(y) / num_nodes
    node_of_study = np.empty(len(ids), dtype=np.int64)
    for s in order:
        new_load = load + sizes[s]
        cost = new_load / mean_load
        if case_shares is not None:
            cost = cost + 4.0 * np.abs((load_cases + cases[s]) / new_load - case_shares)
        needs_cases = (load_cases < min_per_class) & (cases[s] > 0)
        needs_controls = (load - load_cases < min_per_class) & (sizes[s] > cases[s])
        cost = cost - 2.0 * needs_cases - 2.0 * needs_controls - 100.0 * (load == 0)
        k = int(np.argmin(cost))
        node_of_study[s] = k
        load[k] += sizes[s]
        load_cases[k] += cases[s]
    return node_of_study[inverse]


def study_partition(
    study: np.ndarray,
    y: np.ndarray,
    num_nodes: int,
    seed: int,
    *,
    case_shares: Sequence[float] | None = None,
    min_per_class: int = MIN_PER_CLASS,
) -> list[np.ndarray]:
    """Natural split: whole studies per node, sizes balanced, optional case shares.

    `case_shares` (one per node) steers each node's share of cases, the way the
    paper set unequal case:control ratios while keeping studies whole.
    """
    _check_nodes(num_nodes)
    targets = None
    if case_shares is not None:
        targets = np.asarray(case_shares, dtype=float)
        if targets.shape != (num_nodes,):
            raise DataError(f"{len(targets)} case shares given for {num_nodes} nodes")
    rng = np.random.default_rng(seed)
    owner = _assign_studies(study, y, num_nodes, rng, targets, min_per_class)
    parts = _groups(owner, num_nodes)
    check_partition(parts, y, min_per_class)
    return parts


def platform_partition(
    platform: np.ndarray,
    study: np.ndarray,
    y: np.ndarray,
    num_nodes: int,
    seed: int,
    *,
    min_per_class: int = MIN_PER_CLASS,
) -> list[np.ndarray]:
    """One platform per node, whole studies per node (the paper's A1/A2/A3 split).

    Nodes are shared among platforms in proportion to their rows (at least
    one each), then each platform's studies are dealt to its nodes.
    """
    _check_nodes(num_nodes)
    kinds, inverse = np.unique(platform, return_inverse=True)
    if num_nodes < len(kinds):
        raise DataError(
            f"{num_nodes} nodes for {len(kinds)} platforms: platform "
            f"{kinds[num_nodes].item()!r} gets no node (one node per platform at least)"
        )
    rows = np.bincount(inverse)
    nodes = np.ones(len(kinds), dtype=np.int64)
    extra = rows / rows.sum() * (num_nodes - len(kinds))
    nodes += np.floor(extra).astype(np.int64)
    short = num_nodes - nodes.sum()
    nodes[np.argsort(-(extra - np.floor(extra)), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    owner = np.empty(len(y), dtype=np.int64)
    first = 0
    for p in range(len(kinds)):
        mine = np.flatnonzero(inverse == p)
        local = _assign_studies(
            study[mine], y[mine], int(nodes[p]), rng, None, min_per_class
        )
        owner[mine] = local + first
        first += int(nodes[p])
    parts = _groups(owner, num_nodes)
    check_partition(parts, y, min_per_class)
    return parts
