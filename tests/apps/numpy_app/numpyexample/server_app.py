"""numpyexample: the ServerApp, running FedAvg and saving the final model."""

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from numpyexample.task import evaluate, initial_params, load_centralized_data

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run federated training, then save the global model."""
    num_rounds = int(context.run_config["num-server-rounds"])
    fraction_train = float(context.run_config["fraction-train"])
    fraction_evaluate = float(context.run_config["fraction-evaluate"])
    lr = float(context.run_config["lr"])

    # Wait for every node before sampling, so that each round trains them all.
    everyone = int(context.run_config["min-available-nodes"])
    strategy = FedAvg(
        fraction_train=fraction_train,
        fraction_evaluate=fraction_evaluate,
        min_available_nodes=everyone,
        min_train_nodes=everyone,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_params()),
        num_rounds=num_rounds,
        train_config=ConfigRecord({"lr": lr}),
        evaluate_fn=global_evaluate,
    )

    print("\nSaving final model to disk...")
    weights, bias = result.arrays.to_numpy_ndarrays()
    np.savez("final_model.npz", weights=weights, bias=bias)


def global_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Evaluate the global model on the whole iris dataset."""
    x, y = load_centralized_data()
    loss, accuracy = evaluate(arrays.to_numpy_ndarrays(), x, y)
    return MetricRecord({"central_loss": loss, "central_acc": accuracy})
