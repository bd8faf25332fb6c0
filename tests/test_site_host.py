"""A Ray engine host without Ray: its sites' ClientApps, Contexts and scores."""

import functools
import math

from flwr.app import ArrayRecord

from swarmflower.simulations.engine.site_host import SiteHost
from swarmflower.tasks import TaskSpec, initial_model, make_client_app

SPEC = TaskSpec(local_steps=5)


def _initial() -> ArrayRecord:
    data = SPEC.load()
    return ArrayRecord(initial_model(SPEC, data.num_features).state_dict())


def _counting_app(spec: TaskSpec):
    """The task's ClientApp, which also needs a run config key and counts, in
    the site's Context state, how often it trained (as a Flower app may)."""
    from flwr.app import MetricRecord
    from flwr.clientapp import ClientApp

    inner = make_client_app(spec)
    app = ClientApp()

    @app.train()
    def train(msg, context):
        assert context.run_config["scale"] == 1.0  # a KeyError without it
        calls = context.state.metric_records.get("calls", MetricRecord({"n": 0}))
        context.state.metric_records["calls"] = MetricRecord({"n": calls["n"] + 1})
        reply = inner(msg, context)
        reply.content["metrics"]["calls"] = calls["n"] + 1
        return reply

    @app.evaluate()
    def evaluate(msg, context):
        return inner(msg, context)

    return app


def test_a_site_keeps_its_context_across_rounds_with_the_run_config():
    initial = _initial()
    host = SiteHost(
        (0, 1, 2, 3),
        4,
        functools.partial(_counting_app, SPEC),
        run_config={"scale": 1.0},
    )
    for round in (1, 2):
        trained = host.train(round, initial, [(k, {}) for k in range(4)])
        assert [k for k, _ in trained] == [0, 1, 2, 3]
        assert all(isinstance(result, tuple) for _, result in trained)
    # every site's state saw both rounds: the Context outlived the first call
    calls = {host.contexts[k].state.metric_records["calls"]["n"] for k in range(4)}
    assert calls == {2}


def test_a_failing_app_is_that_sites_failure_only():
    host = SiteHost((2, 3), 4, functools.partial(_counting_app, SPEC))  # no config
    trained = host.train(1, _initial(), [(2, {}), (3, {})])
    assert [type(result).__name__ for _, result in trained] == ["AppFailure"] * 2
    assert "scale" in str(trained[0][1])
    scores, failed = host.score(_initial(), 1)
    assert set(scores) == {2, 3} and not failed
    assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in scores.values())
