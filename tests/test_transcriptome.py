"""The synthetic transcriptome: reproducible, heterogeneous by study, learnable."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from swarmflower.datasets import load_dataset
from swarmflower.datasets.transcriptome import (
    TranscriptomeShape,
    generate_transcriptome,
)
from swarmflower.errors import ConfigError
from swarmflower.tasks import TaskSpec

SMALL = TranscriptomeShape(genes=200, studies=20, samples=2000, platforms=2)
SMALL_OPTIONS = (("genes", 200), ("studies", 20), ("samples", 2000))


@pytest.fixture(scope="module")
def cohort():
    return generate_transcriptome(SMALL, seed=3)


def test_same_seed_gives_bit_identical_data(cohort) -> None:
    again = generate_transcriptome(SMALL, seed=3)
    assert np.array_equal(cohort.x, again.x)
    assert np.array_equal(cohort.y, again.y)
    assert np.array_equal(cohort.study, again.study)


def test_another_seed_gives_other_data(cohort) -> None:
    other = generate_transcriptome(SMALL, seed=4)
    assert not np.array_equal(cohort.x, other.x)


def test_shapes_and_dtypes(cohort) -> None:
    assert cohort.x.shape == (2000, 200)
    assert cohort.x.dtype == np.float32
    assert cohort.y.shape == cohort.study.shape == (2000,)
    assert set(np.unique(cohort.y)) == {0, 1}
    assert len(np.unique(cohort.study)) == 20
    assert cohort.study_platform.shape == (20,)
    assert set(cohort.study_platform) == {0, 1}
    assert len(cohort.signature) == 10  # 5% of the genes by default


def test_studies_differ_in_case_share(cohort) -> None:
    shares = np.bincount(cohort.study, weights=cohort.y) / np.bincount(cohort.study)
    assert shares.max() - shares.min() > 0.4


def test_studies_differ_in_batch_effect(cohort) -> None:
    """Controls of two studies on the same platform: gene means far apart."""
    controls = cohort.y == 0
    reference = np.flatnonzero(cohort.study_platform == 0)
    a, b = (cohort.x[controls & (cohort.study == s)] for s in reference[:2])
    pooled_sd = cohort.x[controls].std(axis=0).mean()
    shift = np.abs(a.mean(axis=0) - b.mean(axis=0)).mean()
    assert shift > 0.3 * pooled_sd


def test_platforms_miss_genes(cohort) -> None:
    assert not cohort.missing[0].any()
    lacking = np.flatnonzero(cohort.missing[1])
    assert len(lacking) > 0
    assert np.all(cohort.x[cohort.platform == 1][:, lacking] == 0)


def test_signature_is_learnable() -> None:
    options = dict(SMALL_OPTIONS, partition="quantity", skew=0.0)
    data = load_dataset("transcriptome", num_sites=2, seed=0, **options)
    x, y = data.pooled_train()
    x_test = np.concatenate([s.x_test for s in data.sites])
    y_test = np.concatenate([s.y_test for s in data.sites])
    model = LogisticRegression(max_iter=500).fit(x, y)
    auc = roc_auc_score(y_test, model.decision_function(x_test))
    assert auc > 0.75  # chance is 0.5, whatever the case share


def test_task_spec_loads_the_transcriptome() -> None:
    spec = TaskSpec(
        task="transcriptome",
        num_sites=4,
        options=(("partition", "studies"), *SMALL_OPTIONS),
    )
    same = TaskSpec(task="transcriptome", num_sites=4, options=dict(spec.options))
    assert same == spec and hash(same) == hash(spec)
    data = spec.load()
    assert data.num_sites == 4 and data.num_features == 200
    assert [s.name for s in data.sites] == ["site-1", "site-2", "site-3", "site-4"]
    assert sum(s.num_train + s.num_test for s in data.sites) == 2000
    for site in data.sites:
        assert site.x_train.dtype == np.float32
        assert abs(float(site.x_train.mean())) < 1e-3  # standardised per site
        assert len(np.unique(site.y_train)) == 2
    assert spec.as_dict()["options"]["partition"] == "studies"
    assert "options" not in TaskSpec().as_dict()


def test_unknown_option_or_partition_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="colour"):
        TaskSpec(task="transcriptome", options=(("colour", "red"),))
    with pytest.raises(ConfigError, match="partition 'random'"):
        TaskSpec(task="transcriptome", options={"partition": "random"})
    with pytest.raises(ConfigError, match="'genes' must be int"):
        TaskSpec(task="transcriptome", options={"genes": "many"})
    with pytest.raises(ConfigError, match="takes no options"):
        TaskSpec(task="heart", options={"genes": 10})
