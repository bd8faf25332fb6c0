"""torchexample: the model (a small MLP), the digits data, train and test."""

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DATA_SEED = 1234  # the same shuffle on every node, so the partitions are disjoint
TEST_FRACTION = 0.2


class Net(nn.Module):
    """An MLP for the 8x8 digit images."""

    def __init__(self, hidden_units: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden_units)
        self.fc2 = nn.Linear(hidden_units, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def make_model(hidden_units: int, seed: int) -> Net:
    """A fresh model whose initial weights depend only on the seed."""
    torch.manual_seed(seed)
    return Net(hidden_units)


def load_data(partition_id: int, num_partitions: int, batch_size: int, seed: int):
    """This node's slice of digits as (trainloader, testloader)."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    part = np.array_split(order, num_partitions)[partition_id]
    n_test = max(1, round(len(part) * TEST_FRACTION))
    test_idx, train_idx = part[:n_test], part[n_test:]

    def dataset(idx: np.ndarray) -> TensorDataset:
        features = torch.tensor(x[idx] / 16.0, dtype=torch.float32)
        labels = torch.tensor(y[idx], dtype=torch.long)
        return TensorDataset(features, labels)

    generator = torch.Generator().manual_seed(seed)
    trainloader = DataLoader(
        dataset(train_idx), batch_size=batch_size, shuffle=True, generator=generator
    )
    testloader = DataLoader(dataset(test_idx), batch_size=batch_size)
    return trainloader, testloader


def train(net: Net, trainloader: DataLoader, epochs: int, lr: float) -> float:
    """Train with plain SGD; returns the average training loss."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    net.train()
    total_loss, total_batches = 0.0, 0
    for _ in range(epochs):
        for features, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(features), labels)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            total_batches += 1
    return total_loss / max(total_batches, 1)


def test(net: Net, testloader: DataLoader) -> tuple[float, float]:
    """Average loss and accuracy on the test data."""
    criterion = nn.CrossEntropyLoss(reduction="sum")
    net.eval()
    loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for features, labels in testloader:
            outputs = net(features)
            loss += criterion(outputs, labels).item()
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            total += len(labels)
    return loss / total, correct / total
