"""torchexample: the ServerApp, running FedAdam and saving the final model."""

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam

from torchexample.task import make_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run federated training, then save the global model."""
    num_rounds = int(context.run_config["num-server-rounds"])
    fraction_train = float(context.run_config["fraction-train"])
    fraction_evaluate = float(context.run_config["fraction-evaluate"])
    lr = float(context.run_config["lr"])
    server_eta = float(context.run_config["server-eta"])

    # The initial global model, the same for a given seed
    model = make_model(
        int(context.run_config["hidden-units"]), int(context.run_config["seed"])
    )
    initial_arrays = ArrayRecord(model.state_dict())

    # Wait for every node before sampling, so that each round trains them all.
    everyone = int(context.run_config["min-available-nodes"])
    strategy = FedAdam(
        fraction_train=fraction_train,
        fraction_evaluate=fraction_evaluate,
        min_available_nodes=everyone,
        min_train_nodes=everyone,
        eta=server_eta,
        eta_l=lr,
        beta_1=0.9,
        beta_2=0.99,
        tau=1e-3,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=initial_arrays,
        num_rounds=num_rounds,
        train_config=ConfigRecord({"lr": lr}),
    )

    print("\nSaving final model to disk...")
    state_dict = result.arrays.to_torch_state_dict()
    torch.save(state_dict, "final_model.pt")
