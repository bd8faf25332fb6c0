"""sklearnexample: the ClientApp, fitting SGDClassifier on this node's digits."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from sklearnexample.task import evaluate as evaluate_model
from sklearnexample.task import get_model, get_params, load_data, set_params

app = ClientApp()


def _model_from(msg: Message, context: Context, seed: int):
    model = get_model(
        lr=float(context.run_config["lr"]),
        local_epochs=int(context.run_config["local-epochs"]),
        penalty=str(context.run_config["penalty"]),
        alpha=float(msg.content["config"].get("alpha", context.run_config["alpha"])),
        seed=seed,
    )
    return set_params(model, msg.content["arrays"].to_numpy_ndarrays())


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Fit the received model on the local data (warm start)."""
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    server_round = int(msg.content["config"]["server-round"])
    seed = int(context.run_config["seed"]) + 1000 * server_round + partition_id

    (x_train, y_train), _ = load_data(partition_id, num_partitions)
    model = _model_from(msg, context, seed)
    model.fit(x_train, y_train)

    train_logloss, train_acc = evaluate_model(model, x_train, y_train)
    metrics = {
        "train_logloss": train_logloss,
        "train_acc": train_acc,
        "num-examples": len(y_train),
    }
    content = RecordDict(
        {
            "arrays": ArrayRecord(get_params(model)),
            "metrics": MetricRecord(metrics),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local test data."""
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])

    _, (x_test, y_test) = load_data(partition_id, num_partitions)
    model = _model_from(msg, context, int(context.run_config["seed"]))

    eval_logloss, eval_acc = evaluate_model(model, x_test, y_test)
    metrics = {
        "eval_logloss": eval_logloss,
        "eval_acc": eval_acc,
        "num-examples": len(y_test),
    }
    content = RecordDict({"metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)
