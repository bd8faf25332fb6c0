"""torchexample: the ClientApp, training and evaluating on this node's digits."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from torchexample.task import load_data, make_model
from torchexample.task import test as test_model
from torchexample.task import train as train_model

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on the local data."""
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    server_round = int(msg.content["config"]["server-round"])
    seed = int(context.run_config["seed"]) + 1000 * server_round + partition_id

    model = make_model(int(context.run_config["hidden-units"]), seed)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())

    trainloader, _ = load_data(
        partition_id,
        num_partitions,
        batch_size=int(context.run_config["batch-size"]),
        seed=seed,
    )
    train_loss = train_model(
        model,
        trainloader,
        epochs=int(context.run_config["local-epochs"]),
        lr=float(msg.content["config"]["lr"]),
    )

    metrics = {"train_loss": train_loss, "num-examples": len(trainloader.dataset)}
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord(metrics),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local test data."""
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    seed = int(context.run_config["seed"])

    model = make_model(int(context.run_config["hidden-units"]), seed)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())

    _, testloader = load_data(
        partition_id,
        num_partitions,
        batch_size=int(context.run_config["batch-size"]),
        seed=seed,
    )
    eval_loss, eval_acc = test_model(model, testloader)

    metrics = {
        "eval_loss": eval_loss,
        "eval_acc": eval_acc,
        "num-examples": len(testloader.dataset),
    }
    content = RecordDict({"metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)
