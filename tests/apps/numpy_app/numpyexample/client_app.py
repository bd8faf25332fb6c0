"""numpyexample: the ClientApp, training and evaluating on this node's iris."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from numpyexample.task import evaluate as evaluate_model
from numpyexample.task import load_data
from numpyexample.task import train as train_model

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on the local data."""
    params = msg.content["arrays"].to_numpy_ndarrays()
    config = msg.content["config"]

    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    (x_train, y_train), _ = load_data(partition_id, num_partitions)

    # A different, reproducible batch order for every node and round
    seed = int(context.run_config["seed"])
    seed += 1000 * int(config["server-round"]) + partition_id
    new_params, train_loss = train_model(
        params,
        x_train,
        y_train,
        epochs=int(context.run_config["local-epochs"]),
        lr=float(config["lr"]),
        batch_size=int(context.run_config["batch-size"]),
        seed=seed,
    )

    metrics = {"train_loss": train_loss, "num-examples": len(y_train)}
    content = RecordDict(
        {"arrays": ArrayRecord(new_params), "metrics": MetricRecord(metrics)}
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local test data."""
    params = msg.content["arrays"].to_numpy_ndarrays()

    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    _, (x_test, y_test) = load_data(partition_id, num_partitions)

    eval_loss, eval_acc = evaluate_model(params, x_test, y_test)
    metrics = {
        "eval_loss": eval_loss,
        "eval_acc": eval_acc,
        "num-examples": len(y_test),
    }
    content = RecordDict({"metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)
