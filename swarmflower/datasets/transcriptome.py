"""Synthetic blood transcriptomes shaped like the Swarm Learning paper's AML data.

Warnat-Herresthal et al. (Nature 2021) pooled 16,400 blood transcriptomes from
127 studies on three platforms; hospitals held whole studies, with very
unequal case:control ratios. That data cannot ship here, so this module draws
a stand-in with the same sources of heterogeneity, reproducibly from a seed:

- genes: a baseline level and noise per gene, plus a few shared latent
  factors (co-expressed programmes), so genes are correlated as in blood;
- a disease signature: some genes up, some down in cases, scaled by a
  per-sample severity, so a linear model can learn it but not perfectly;
- studies: unequal sizes (log-normal), their own case share (Beta), their own
  batch effect (a per-gene shift and scale of expression);
- platforms: each study is measured on one; platform 0 is the reference, the
  others distort each gene (affine) and do not measure some genes (zeros).

Rows are drawn study by study from per-study seeds, so memory stays near the
size of the result (16,400 x 2,000 float32 is 131 MB) and a study's rows do
not depend on how the study is later dealt to nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from swarmflower.datasets.base import FederatedDataset
from swarmflower.datasets.partitions import (
    case_ratio_partition,
    dirichlet_partition,
    few_cases_partition,
    platform_partition,
    quantity_partition,
    study_partition,
)
from swarmflower.datasets.preprocessing import split_and_standardise
from swarmflower.errors import ConfigError

TEST_SIZE = 0.3
PARTITIONS = (
    "studies",
    "platforms",
    "dirichlet",
    "quantity",
    "few-cases",
    "case-ratio",
)


@dataclass(frozen=True)
class TranscriptomeShape:
    """The generator's knobs; the defaults follow the paper's AML dataset."""

    genes: int = 2000
    studies: int = 127
    samples: int = 16400
    platforms: int = 3
    signature_genes: int | None = None  # default: 5% of the genes (100 of 2,000)
    effect: float = 0.35  # mean |shift| of a signature gene in cases (raw units)
    case_share: float = 0.3  # mean case share of a study
    case_share_spread: float = 2.0  # Beta concentration: small = extreme studies
    batch_shift: float = 0.5  # sd of a study's per-gene shift
    batch_scale: float = 0.2  # sd of a study's per-gene log scale
    platform_distortion: float = 0.3  # sd of a platform's per-gene log scale
    missing_genes: float = 0.05  # share of genes a non-reference platform lacks
    factors: int = 10
    min_study_size: int = 10

    def __post_init__(self) -> None:
        for name in ("genes", "studies", "samples", "platforms", "min_study_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if not 1 <= self.num_signature_genes <= self.genes:
            raise ConfigError(
                f"signature_genes must be between 1 and genes ({self.genes}), "
                f"got {self.signature_genes}"
            )
        if self.samples < self.studies * self.min_study_size:
            raise ConfigError(
                f"samples ({self.samples}) must be at least studies x "
                f"min_study_size ({self.studies} x {self.min_study_size})"
            )
        if not 0 < self.case_share < 1:
            raise ConfigError(f"case_share must be in (0, 1), got {self.case_share}")
        if not 0 <= self.missing_genes < 1:
            raise ConfigError(
                f"missing_genes must be in [0, 1), got {self.missing_genes}"
            )

    @property
    def num_signature_genes(self) -> int:
        if self.signature_genes is None:
            return max(1, self.genes // 20)
        return self.signature_genes


# Every option and the kinds of value it takes (a TOML integer passes as a float).
OPTION_KINDS: dict[str, tuple[type, ...]] = {
    **{f.name: (int,) for f in fields(TranscriptomeShape) if "int" in str(f.type)},
    **{f.name: (int, float) for f in fields(TranscriptomeShape) if f.type == "float"},
    "partition": (str,),
    "skew": (int, float),
    "law": (str,),
    "node": (int,),
    "cases": (int,),
    "node_share": (int, float),
    "node_size": (int,),
    "case_shares": (tuple,),
}
SHAPE_OPTIONS = tuple(f.name for f in fields(TranscriptomeShape))
PARTITION_OPTIONS = tuple(k for k in OPTION_KINDS if k not in SHAPE_OPTIONS)
OPTIONS = tuple(OPTION_KINDS)


@dataclass(frozen=True)
class Transcriptome:
    """All samples in one place, with the metadata partitions need."""

    x: np.ndarray  # (samples, genes) float32, raw expression after effects
    y: np.ndarray  # (samples,) int64, 1 = AML case
    study: np.ndarray  # (samples,) int64
    study_platform: np.ndarray  # (studies,) int64
    signature: np.ndarray  # gene indices of the disease signature
    missing: np.ndarray  # (platforms, genes) bool, genes a platform lacks

    @property
    def platform(self) -> np.ndarray:
        return self.study_platform[self.study]

    @property
    def gene_names(self) -> tuple[str, ...]:
        return tuple(f"gene-{g + 1}" for g in range(self.x.shape[1]))


def _study_sizes(shape: TranscriptomeShape, rng: np.random.Generator) -> np.ndarray:
    weights = rng.lognormal(0.0, 1.0, shape.studies)
    free = shape.samples - shape.studies * shape.min_study_size
    return shape.min_study_size + rng.multinomial(free, weights / weights.sum())


def generate_transcriptome(
    shape: TranscriptomeShape | None = None, seed: int = 0
) -> Transcriptome:
    """Draw the whole cohort; the same shape and seed give bit-identical data."""
    shape = shape or TranscriptomeShape()
    rng = np.random.default_rng([seed, 0])
    g = shape.genes
    baseline = rng.normal(7.0, 1.5, g).astype(np.float32)
    noise_sd = rng.lognormal(0.0, 0.25, g).astype(np.float32)
    loadings = rng.normal(0.0, 0.3, (shape.factors, g)).astype(np.float32)
    signature = np.sort(rng.choice(g, shape.num_signature_genes, replace=False))
    direction = np.where(np.arange(shape.num_signature_genes) % 2 == 0, 1.0, -1.0)
    delta = rng.permutation(direction) * np.abs(
        rng.normal(shape.effect, shape.effect / 4, shape.num_signature_genes)
    )
    delta = delta.astype(np.float32)
    p_scale = np.exp(rng.normal(0.0, shape.platform_distortion, (shape.platforms, g)))
    p_shift = rng.normal(0.0, 1.0, (shape.platforms, g))
    missing = rng.random((shape.platforms, g)) < shape.missing_genes
    p_scale[0], p_shift[0], missing[0] = 1.0, 0.0, False  # the reference platform
    p_scale, p_shift = p_scale.astype(np.float32), p_shift.astype(np.float32)

    sizes = _study_sizes(shape, rng)
    m = shape.case_share
    shares = rng.beta(
        m * shape.case_share_spread, (1 - m) * shape.case_share_spread, shape.studies
    )
    study_platform = rng.permutation(np.arange(shape.studies) % shape.platforms)

    x = np.empty((shape.samples, g), dtype=np.float32)
    y = np.zeros(shape.samples, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)))
    for s in range(shape.studies):
        lo, hi = int(starts[s]), int(starts[s + 1])
        srng = np.random.default_rng([seed, 1, s])
        n = hi - lo
        ys = (np.arange(n) < int(round(shares[s] * n))).astype(np.int64)
        ys = srng.permutation(ys)
        shift = srng.normal(0.0, shape.batch_shift, g).astype(np.float32)
        scale = np.exp(srng.normal(0.0, shape.batch_scale, g)).astype(np.float32)
        p = study_platform[s]
        # ((level + noise + factors + signature) * scale + shift) * p_scale + p_shift,
        # with the per-gene scales folded in so the big array is touched few times.
        gain = scale * p_scale[p]
        chunk = srng.standard_normal((n, g), dtype=np.float32)
        chunk *= noise_sd * gain
        chunk += baseline * gain + shift * p_scale[p] + p_shift[p]
        factors = srng.standard_normal((n, shape.factors), dtype=np.float32)
        chunk += factors @ (loadings * gain)
        severity = srng.lognormal(0.0, 0.3, n).astype(np.float32) * ys
        chunk[:, signature] += severity[:, None] * (delta * gain[signature])
        chunk[:, missing[p]] = 0.0
        x[lo:hi] = chunk
        y[lo:hi] = ys
    study = np.repeat(np.arange(shape.studies), sizes)
    return Transcriptome(x, y, study, study_platform, signature, missing)


def partition_transcriptome(
    data: Transcriptome,
    num_sites: int,
    seed: int,
    *,
    partition: str = "studies",
    alpha: float = 1.0,
    skew: float = 1.0,
    law: str = "lognormal",
    node: int = 1,
    cases: int = 5,
    node_share: float = 0.01,
    node_size: int | None = None,
    case_shares: tuple[float, ...] | None = None,
) -> list[np.ndarray]:
    """Row indices per site for a partition by name (`node` counts from 1)."""
    y = data.y
    if partition == "studies":
        return study_partition(data.study, y, num_sites, seed, case_shares=case_shares)
    if partition == "platforms":
        return platform_partition(data.platform, data.study, y, num_sites, seed)
    if partition == "dirichlet":
        return dirichlet_partition(y, num_sites, alpha, seed)
    if partition == "quantity":
        return quantity_partition(y, num_sites, seed, skew=skew, law=law)
    if partition == "few-cases":
        return few_cases_partition(
            y, num_sites, seed, node=node - 1, cases=cases, node_size=node_size
        )
    if partition == "case-ratio":
        return case_ratio_partition(
            y,
            num_sites,
            seed,
            node=node - 1,
            case_share=node_share,
            node_size=node_size,
        )
    raise ConfigError(f"unknown partition '{partition}': use one of {PARTITIONS}")


def check_options(options: dict[str, object]) -> None:
    """Refuse unknown option names and values of the wrong kind, before loading."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown transcriptome option(s) {', '.join(unknown)}: "
            f"use {', '.join(OPTIONS)}"
        )
    for name, value in options.items():
        kinds = OPTION_KINDS[name]
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(
                f"transcriptome option '{name}' must be {wanted}, got {value!r}"
            )
    partition = options.get("partition", "studies")
    if partition not in PARTITIONS:
        raise ConfigError(f"unknown partition '{partition}': use one of {PARTITIONS}")


def load_transcriptome(
    num_sites: int = 32, seed: int = 0, alpha: float = 1.0, **options: object
) -> FederatedDataset:
    """Generate, partition into `num_sites` sites, split and standardise each.

    `options` are `TranscriptomeShape` fields (genes, studies, samples, ...)
    and partition choices (partition, skew, law, node, cases, node_share,
    node_size, case_shares). The partition defaults to whole studies per
    site, or to quantity skew when there are more sites than studies.
    """
    check_options(options)
    shape = TranscriptomeShape(
        **{k: v for k, v in options.items() if k in SHAPE_OPTIONS}
    )
    data = generate_transcriptome(shape, seed)
    chosen = {k: v for k, v in options.items() if k in PARTITION_OPTIONS}
    if "partition" not in chosen and num_sites > shape.studies:
        # More sites than studies: whole studies per site is impossible, so
        # the default becomes log-normal site sizes (quantity skew).
        chosen["partition"] = "quantity"
    parts = partition_transcriptome(data, num_sites, seed, alpha=alpha, **chosen)
    sites = tuple(
        split_and_standardise(
            f"site-{k + 1}",
            data.x[idx],
            data.y[idx],
            test_size=TEST_SIZE,
            seed=seed,
        )
        for k, idx in enumerate(parts)
    )
    return FederatedDataset(
        name="transcriptome", sites=sites, feature_names=data.gene_names
    )
