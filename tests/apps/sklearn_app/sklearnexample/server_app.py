"""sklearnexample: the ServerApp, running FedAvg and saving the final model."""

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from sklearnexample.task import initial_params

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run federated training on a fraction of the nodes, then save the model."""
    num_rounds = int(context.run_config["num-server-rounds"])
    fraction_train = float(context.run_config["fraction-train"])
    fraction_evaluate = float(context.run_config["fraction-evaluate"])
    min_train_nodes = int(context.run_config["min-train-nodes"])
    alpha = float(context.run_config["alpha"])

    strategy = FedAvg(
        fraction_train=fraction_train,
        fraction_evaluate=fraction_evaluate,
        min_train_nodes=min_train_nodes,
        min_evaluate_nodes=2,
        min_available_nodes=2,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_params()),
        num_rounds=num_rounds,
        train_config=ConfigRecord({"alpha": alpha}),
    )

    print("\nSaving final model to disk...")
    coef, intercept = result.arrays.to_numpy_ndarrays()
    np.savez("final_model.npz", coef=coef, intercept=intercept)
