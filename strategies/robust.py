"""Merges that a few poisoned sites cannot steer, as Flower strategies.

A size-weighted mean follows any single update that is large enough. These
strategies bound what one site can do, and they are deterministic (fixed
iteration counts, no BLAS reductions, float64 throughout), so every site of
a swarm recomputes the leader's merge bit for bit and refuses a leader that
skipped the clipping. Each subclasses Flower's `FedAvg`, so a ServerApp
can use it as it uses Flower's own (`GeometricMedian()` in place of
`FedAvg()`), and it keeps the metric aggregation and reply checks of FedAvg.

- `GeometricMedian`: the example-weighted geometric median of the sites'
  models (RFA, Pillutla et al., IEEE TSP 2022), by Weiszfeld's algorithm.
- `NormBoundedAvg`: the weighted mean of the sites' changes to the model,
  each change clipped to `bound_factor` times the median change norm of the
  round (norm-bounded averaging, Sun et al. 2019, with a bound set from the
  round itself so it needs no tuning per model).
- `CenteredClipping`: changes clipped around a centre, the previous round's
  merged change scaled by `momentum`, with radius `clip_radius` (0, the
  default: the round's median distance to the centre) and `iterations`
  passes (Karimireddy, He and Jaggi, ICML 2021). The merged change is
  carried to the next round as strategy state.
- `AlignedAvg`: the weighted mean of the changes whose cosine with the
  round's coordinate-wise median change exceeds `min_cosine` (0), each
  clipped to `bound_factor` (2) times the median norm of those kept: a
  direction check in the spirit of FLTrust (Cao et al., NDSS 2021) with the
  sites' own median as the trusted direction, then norm-bounded averaging.

After each merge `last_report` says, per reply in the order given, the
weight it had in the merge and whether its change was clipped; a swarm's
leader publishes it in the round's state, which the block hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg

Layout = list[tuple[str, tuple[int, ...], np.dtype]]


@dataclass(frozen=True)
class MergeReport:
    """What a robust merge did to each reply, in reply order."""

    weights: tuple[float, ...]  # share of the merge (sums to 1)
    clipped: tuple[int, ...] = ()  # positions of the replies it clipped
    norms: tuple[float, ...] = ()  # each change's norm before clipping
    bound: float = 0.0  # the clip bound or radius used (0: none)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "weights": [round(w, 12) for w in self.weights],
            "clipped": list(self.clipped),
            "norms": [round(n, 12) for n in self.norms],
            "bound": round(self.bound, 12),
            **self.extra,
        }


# --- flat float64 vectors, and back ---------------------------------------------


def flatten(record: ArrayRecord) -> tuple[np.ndarray, Layout]:
    """One float64 vector of every array in `record`, and how to cut it back."""
    layout: Layout = []
    parts = []
    for key, array in record.items():
        values = array.numpy()
        layout.append((key, values.shape, values.dtype))
        parts.append(np.asarray(values, dtype=np.float64).ravel())
    return (np.concatenate(parts) if parts else np.zeros(0)), layout


def unflatten(vector: np.ndarray, layout: Layout) -> ArrayRecord:
    """Inverse of `flatten`, each array in its own dtype again."""
    record = ArrayRecord()
    start = 0
    for key, shape, dtype in layout:
        size = int(np.prod(shape, dtype=np.int64))
        part = vector[start : start + size].reshape(shape)
        record[key] = Array(np.asarray(part.astype(dtype, copy=False)))
        start += size
    return record


def norm(vector: np.ndarray) -> float:
    """The Euclidean norm by a plain sum (no BLAS: the same bits everywhere)."""
    return float(np.sqrt(np.sum(vector * vector)))


def weighted_sum(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ weights[i] · rows[i], row by row in order (no matrix product)."""
    total = np.zeros(rows.shape[1])
    for row, weight in zip(rows, weights, strict=True):
        total += weight * row
    return total


def clip(change: np.ndarray, bound: float) -> tuple[np.ndarray, bool]:
    """`change` scaled down to norm `bound` if longer; whether it was."""
    length = norm(change)
    if bound <= 0 or length <= bound:
        return change, False
    return change * (bound / length), True


def bounded_mean(
    changes: np.ndarray,
    norms: Sequence[float],
    weights: np.ndarray,
    kept: Sequence[int],
    bound_factor: float,
) -> tuple[np.ndarray, np.ndarray, list[int], float]:
    """Norm-bounded averaging of the `kept` changes: each clipped to
    `bound_factor` times their median norm, then their weighted mean. Also
    every change's share (0 if not kept), the kept ones clipped, the bound."""
    bound = bound_factor * float(np.median([norms[i] for i in kept]))
    clipped = [clip(changes[i], bound) for i in kept]
    share = np.zeros(len(changes))
    share[kept] = weights[kept] / np.sum(weights[kept])
    mean = weighted_sum(np.stack([c for c, _ in clipped]), share[kept])
    cut = [i for i, (_, was_cut) in zip(kept, clipped, strict=True) if was_cut]
    return mean, share, cut, bound


def geometric_median(
    points: np.ndarray,
    weights: np.ndarray,
    iterations: int,
    tolerance: float,
    floor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted geometric median by Weiszfeld's algorithm, and each point's
    final share of it. Distances are floored at `floor` (a point on the
    median does not divide by zero); stops after `iterations` or once a step
    moves less than `tolerance` times the median's norm."""
    share = weights / np.sum(weights)
    median = weighted_sum(points, share)
    for _ in range(iterations):
        distances = np.array([norm(p - median) for p in points])
        pull = share / np.maximum(distances, floor)
        step = weighted_sum(points, pull / np.sum(pull))
        moved = norm(step - median)
        median = step
        if moved <= tolerance * max(norm(median), 1.0):
            break
    distances = np.array([norm(p - median) for p in points])
    pull = share / np.maximum(distances, floor)
    return median, pull / np.sum(pull)


# --- the strategies ----------------------------------------------------------------


class _RobustFedAvg(FedAvg):
    """FedAvg's checks and metrics; the arrays merged by `robust_merge`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.current_arrays: ArrayRecord | None = None
        self.last_report: MergeReport | None = None

    def configure_train(self, server_round, arrays, config, grid):  # type: ignore[override]
        self.current_arrays = arrays  # the centre the changes are measured from
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [message.content for message in valid]
        record_key = next(iter(contents[0].array_records))
        models = [cast(ArrayRecord, content[record_key]) for content in contents]
        weights = np.array(
            [
                float(next(iter(content.metric_records.values()))[self.weighted_by_key])
                for content in contents
            ]
        )
        points, layout = zip(*(flatten(m) for m in models), strict=True)
        merged, self.last_report = self.robust_merge(
            np.stack(points), weights, server_round
        )
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        return unflatten(merged, layout[0]), metrics

    def centre(self, width: int) -> np.ndarray:
        """The current model as a vector (what changes are measured from)."""
        if self.current_arrays is None:
            raise ValueError(
                f"{type(self).__name__} measures changes from the current model: "
                "configure_train must run before aggregate_train"
            )
        centre, _ = flatten(self.current_arrays)
        if centre.shape[0] != width:
            raise ValueError("the replies' models differ in size from the current one")
        return centre

    def robust_merge(
        self, points: np.ndarray, weights: np.ndarray, server_round: int
    ) -> tuple[np.ndarray, MergeReport]:
        raise NotImplementedError


class GeometricMedian(_RobustFedAvg):
    """The example-weighted geometric median of the sites' models (RFA)."""

    def __init__(
        self,
        *,
        max_iterations: int = 16,
        tolerance: float = 1e-7,
        distance_floor: float = 1e-9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_iterations < 1 or tolerance < 0 or distance_floor <= 0:
            raise ValueError(
                "GeometricMedian needs max_iterations >= 1, tolerance >= 0 and "
                "distance_floor > 0"
            )
        self.max_iterations = max_iterations
        self.tolerance = tolerance
        self.distance_floor = distance_floor

    def robust_merge(self, points, weights, server_round):
        median, shares = geometric_median(
            points, weights, self.max_iterations, self.tolerance, self.distance_floor
        )
        return median, MergeReport(weights=tuple(float(s) for s in shares))


class NormBoundedAvg(_RobustFedAvg):
    """The weighted mean of the changes, each clipped to `bound_factor`
    times the round's median change norm."""

    def __init__(self, *, bound_factor: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not bound_factor > 0:
            raise ValueError("NormBoundedAvg needs bound_factor > 0")
        self.bound_factor = bound_factor

    def robust_merge(self, points, weights, server_round):
        centre = self.centre(points.shape[1])
        changes = points - centre
        norms = [norm(c) for c in changes]
        kept = list(range(len(changes)))
        change, share, cut, bound = bounded_mean(
            changes, norms, weights, kept, self.bound_factor
        )
        report = MergeReport(
            weights=tuple(float(s) for s in share),
            clipped=tuple(cut),
            norms=tuple(norms),
            bound=bound,
        )
        return centre + change, report


class CenteredClipping(_RobustFedAvg):
    """Changes clipped around the previous merged change (scaled by
    `momentum`), `iterations` times; radius `clip_radius` or, if 0, the
    median distance of the changes to the centre."""

    def __init__(
        self,
        *,
        clip_radius: float = 0.0,
        momentum: float = 0.9,
        iterations: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not clip_radius >= 0:
            raise ValueError("CenteredClipping needs clip_radius >= 0 (0: automatic)")
        if not 0 <= momentum < 1 or iterations < 1:
            raise ValueError(
                "CenteredClipping needs 0 <= momentum < 1, iterations >= 1"
            )
        self.clip_radius = clip_radius
        self.momentum = momentum
        self.iterations = iterations
        self.previous_change: ArrayRecord | None = None  # carried across rounds

    def robust_merge(self, points, weights, server_round):
        centre = self.centre(points.shape[1])
        changes = points - centre
        guess = np.zeros(points.shape[1])
        if self.previous_change is not None:
            previous, _ = flatten(self.previous_change)
            guess = self.momentum * previous
        share = weights / np.sum(weights)
        cut: set[int] = set()
        radius = 0.0
        for _ in range(self.iterations):
            distances = [norm(c - guess) for c in changes]
            radius = self.clip_radius or float(np.median(distances))
            moves = []
            for i, change in enumerate(changes):
                move, was_cut = clip(change - guess, radius)
                moves.append(move)
                if was_cut:
                    cut.add(i)
            guess = guess + weighted_sum(np.stack(moves), share)
        _, layout = flatten(self.current_arrays)  # type: ignore[arg-type]
        self.previous_change = unflatten(
            guess, [(k, s, np.dtype(np.float64)) for k, s, _ in layout]
        )
        report = MergeReport(
            weights=tuple(float(s) for s in share),
            clipped=tuple(sorted(cut)),
            norms=tuple(norm(c) for c in changes),
            bound=radius,
        )
        return centre + guess, report


class AlignedAvg(_RobustFedAvg):
    """The weighted mean of the changes that point the way the round's
    coordinate-wise median change points (cosine above `min_cosine`), each
    clipped to `bound_factor` times the median norm of those kept. The
    median direction is set by the majority of sites, however few examples
    they hold, so a reversed or inflated change (sign flip, IPM, a scaled
    update) is left out whatever weight it claims."""

    def __init__(
        self, *, min_cosine: float = 0.0, bound_factor: float = 2.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not -1 <= min_cosine < 1 or not bound_factor > 0:
            raise ValueError("AlignedAvg needs -1 <= min_cosine < 1, bound_factor > 0")
        self.min_cosine = min_cosine
        self.bound_factor = bound_factor

    def robust_merge(self, points, weights, server_round):
        centre = self.centre(points.shape[1])
        changes = points - centre
        norms = [norm(c) for c in changes]
        reference = np.median(changes, axis=0)
        cosines = [
            _cosine(c, n, reference) for c, n in zip(changes, norms, strict=True)
        ]
        kept = [i for i, c in enumerate(cosines) if c > self.min_cosine]
        if not kept:  # no direction to agree with (all changes zero, say)
            kept = list(range(len(changes)))
        change, share, cut, bound = bounded_mean(
            changes, norms, weights, kept, self.bound_factor
        )
        left_out = sorted(set(range(len(changes))) - set(kept))
        report = MergeReport(
            weights=tuple(float(s) for s in share),
            clipped=tuple(sorted(left_out + cut)),
            norms=tuple(norms),
            bound=bound,
            extra={
                "left_out": left_out,
                "cosines": [round(c, 12) for c in cosines],
            },
        )
        return centre + change, report


def _cosine(change: np.ndarray, length: float, reference: np.ndarray) -> float:
    """Cosine of the angle between `change` and `reference` (0 if either is
    zero), by plain sums."""
    scale = length * norm(reference)
    return float(np.sum(change * reference)) / scale if scale > 0 else 0.0


ROBUST_STRATEGIES: Sequence[type[_RobustFedAvg]] = (
    GeometricMedian,
    NormBoundedAvg,
    CenteredClipping,
    AlignedAvg,
)
