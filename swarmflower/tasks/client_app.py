"""Built-in tasks as Flower `ClientApp`s (Message API).

The same app serves Flower's simulation engine, direct calls from the swarm
peer and the local baseline. A site is `node_config["partition-id"]`, as in
Flower's simulation engine.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from swarmflower.attacks import LABEL_FLIP_KEY
from swarmflower.tasks.models import build_model
from swarmflower.tasks.spec import TaskSpec
from swarmflower.tasks.training import evaluate, round_seed, train_steps, warm_up

PARTITION_KEY = "partition-id"


def site_index(context: Context, num_sites: int) -> int:
    """The site this ClientApp instance stands for, checked against the task."""
    site = int(context.node_config[PARTITION_KEY])
    if not 0 <= site < num_sites:
        raise ValueError(
            f"partition-id {site} is not a site of this task (0..{num_sites - 1})"
        )
    return site


def make_client_app(spec: TaskSpec) -> ClientApp:
    """A Flower `ClientApp` that trains and evaluates the task's model on one site."""
    warm_up()
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        data = spec.load()
        site = data.sites[site_index(context, data.num_sites)]
        config = msg.content["config"]
        server_round = int(config.get("server-round", 0))
        model = build_model(spec, data.num_features)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        labels = site.y_train
        if config.get(LABEL_FLIP_KEY):  # a poisoned site (attacks.py)
            labels = 1 - labels
        loss = train_steps(
            model,
            site.x_train,
            labels,
            steps=int(config.get("local-steps", spec.local_steps)),
            batch_size=spec.batch_size,
            learning_rate=float(config.get("lr", spec.learning_rate)),
            optimizer=spec.optimizer,
            seed=round_seed(
                spec.seed, site_index(context, data.num_sites), server_round
            ),
            proximal_mu=float(config.get("proximal-mu", 0.0)),
        )
        metrics = MetricRecord({"train_loss": loss, "num-examples": site.num_train})
        content = RecordDict(
            {"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}
        )
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate_model(msg: Message, context: Context) -> Message:
        data = spec.load()
        index = site_index(context, data.num_sites)
        site = data.sites[index]
        model = build_model(spec, data.num_features)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        result = evaluate(model, site.x_test, site.y_test)
        # Every site replies with the same keys, as Flower's strategies require
        # to aggregate them: a test set of one class has AUC NaN, not none.
        values: dict[str, float | int] = {
            "accuracy": result.accuracy,
            "loss": result.loss,
            "auc": float("nan") if result.auc is None else result.auc,
            "num-examples": result.num_examples,
            "site": index,
        }
        return Message(
            content=RecordDict({"metrics": MetricRecord(values)}), reply_to=msg
        )

    return app
