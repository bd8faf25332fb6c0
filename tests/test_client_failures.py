"""A site's ClientApp that raises fails that site's round, as in Flower, on
every engine; only when no round can be sealed does the run stop, at once."""

import functools
import logging
import math
import os
import sys
import time

import pytest
import ray
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from swarmflower.app_calls import AppFailure, call_app
from swarmflower.errors import AppFailedError, SwarmflowerError
from swarmflower.identity import simulated_identities
from swarmflower.simulations.engine.ray_engine import run_ray_swarm
from swarmflower.simulations.experiments import swarm as swarm_method
from swarmflower.swarm import run_swarm
from swarmflower.tasks import TaskSpec, initial_model, make_client_app

SPEC = TaskSpec(local_steps=5)
NAMES = ["cleveland", "hungary", "switzerland", "va"]
VA, HUNGARY = 3, 1
LINE = "site va: ClientApp failed in round {}: KeyError: 'lr'"


def flaky_app(
    spec: TaskSpec, train_fails: dict[int, Exception], evaluate_fails=None
) -> ClientApp:
    """The task's ClientApp, raising at the given sites (site -> exception)."""
    inner = make_client_app(spec)
    app = ClientApp()

    def failing_at(errors):
        def call(msg: Message, context: Context) -> Message:
            error = errors.get(context.node_config["partition-id"])
            if error is not None:
                raise type(error)(*error.args)
            return inner(msg, context)

        return call

    app.train()(failing_at(train_fails))
    app.evaluate()(failing_at(evaluate_fails or {}))
    return app


NO_LR = KeyError("lr")
EVAL_HUNGARY = {HUNGARY: NO_LR}


def initial() -> ArrayRecord:
    return ArrayRecord(initial_model(SPEC, SPEC.load().num_features).state_dict())


def failure_lines(caplog) -> list[str]:
    """The warnings naming a failed ClientApp call."""
    return [
        r.getMessage()
        for r in caplog.records
        if "ClientApp failed" in r.getMessage() and r.levelno >= logging.WARNING
    ]


def test_a_failure_is_a_value_with_one_line():
    def boom():
        raise ValueError("first line\nsecond line")

    assert call_app(boom) == AppFailure("ValueError: first line")
    assert call_app(dict, {}) == {}
    assert call_app(lambda: None) == AppFailure("the ClientApp replied with an error")
    assert call_app(dict.__getitem__, {}, "lr") == AppFailure("KeyError: 'lr'", "lr")


def test_a_site_whose_app_raises_sits_its_rounds_out(caplog):
    rounds = 3
    result = run_swarm(
        flaky_app(SPEC, {VA: NO_LR}),
        4,
        initial(),
        rounds,
        site_names=NAMES,
        # The leader stops waiting for va's update long before any backup
        # would step in: no fork, so each round is trained exactly once.
        round_timeout=5,
        update_wait=0.3,
    )
    va = result.sites[VA]
    assert [r.round for r in result.rounds] == [1, 2, 3]
    for record in result.rounds:
        assert va.address not in record.contributors
        assert len(record.commitments) == 3
    assert [(r, str(f)) for r, f in va.log.failed] == [
        (r, "KeyError: 'lr'") for r in range(1, rounds + 1)
    ]
    assert va.log.trained == []
    # It adopted every round, and so trained on each new model again.
    assert [a.round for a in va.log.adopted] == [1, 2, 3]
    # Named once, at its first round; it sat out every round all the same.
    assert failure_lines(caplog) == [LINE.format(1)]


def test_every_site_failing_stops_the_run_at_once_with_a_hint():
    started = time.monotonic()
    with pytest.raises(AppFailedError) as caught:
        run_swarm(
            flaky_app(SPEC, dict.fromkeys(range(4), NO_LR)),
            4,
            initial(),
            3,
            round_timeout=1,
        )
    assert time.monotonic() - started < 5  # a few round timeouts at most
    assert isinstance(caught.value, SwarmflowerError)  # one line from the CLI
    assert str(caught.value) == (
        "every site failed in round 1: KeyError: 'lr' (if the app reads "
        "context.run_config['lr'], pass --run-config \"lr=...\" or set it in "
        "[tool.flwr.app.config])"
    )


def test_too_few_sites_left_to_seal_stops_the_run_naming_the_commonest_failure():
    app = flaky_app(SPEC, {0: MemoryError("out of memory"), 1: NO_LR, 2: NO_LR})
    with pytest.raises(AppFailedError) as caught:
        run_swarm(app, 4, initial(), 2, min_peers=2, round_timeout=1)
    assert str(caught.value) == (
        "3 of 4 sites failed in round 1 (2 updates are needed to seal it): "
        "KeyError: 'lr' at 2 of 3 sites (if the app reads context.run_config['lr'], "
        'pass --run-config "lr=..." or set it in [tool.flwr.app.config])'
    )


def test_an_evaluate_failure_leaves_that_sites_score_missing(monkeypatch, caplog):
    factory = functools.partial(
        flaky_app, train_fails={}, evaluate_fails={HUNGARY: NO_LR}
    )
    monkeypatch.setattr(swarm_method, "make_client_app", factory)
    result = swarm_method.run_swarm_method(SPEC, 2, round_timeout=1)
    assert [r.round for r in result.rounds] == [1, 2]
    for record in result.rounds:
        assert math.isnan(record.site_accuracy[HUNGARY])
        others = [a for k, a in enumerate(record.site_accuracy) if k != HUNGARY]
        assert all(0 < a <= 1 for a in others)
    assert failure_lines(caplog) == [
        "site hungary: ClientApp failed to evaluate round 1: KeyError: 'lr'"
    ]


@pytest.fixture(scope="module")
def ray_session():
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    # The hosts build this module's ClientApp: Ray's workers cannot import it.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def test_on_ray_a_failing_site_sits_out_and_a_failed_score_is_nan(ray_session, caplog):
    rounds = 3
    factory = functools.partial(flaky_app, SPEC, {VA: NO_LR}, {HUNGARY: NO_LR})
    result = run_ray_swarm(
        factory, 4, initial(), rounds, hosts=1, site_names=NAMES, round_timeout=1
    )
    va = simulated_identities(NAMES, 0)[VA].address
    assert [r.round for r in result.rounds] == [1, 2, 3]
    for record in result.rounds:
        assert va not in record.contributors
        assert len(record.commitments) == 3
    for report in result.reports:
        assert math.isnan(report.site_accuracy[HUNGARY])
        assert not math.isnan(report.site_accuracy[VA])
    evaluate = "site hungary: ClientApp failed to evaluate round {}: KeyError: 'lr'"
    # Each failure named once, at the first round it happened.
    assert sorted(failure_lines(caplog)) == sorted([LINE.format(1), evaluate.format(1)])
