"""numpyexample: the model (softmax regression in NumPy) and the iris data."""

import numpy as np
from sklearn.datasets import load_iris

NUM_FEATURES = 4
NUM_CLASSES = 3
DATA_SEED = 2024  # the same shuffle on every node, so the partitions are disjoint
TEST_FRACTION = 0.2


def _load_iris_shuffled() -> tuple[np.ndarray, np.ndarray]:
    """Iris with standardized features, shuffled once with a fixed seed."""
    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    return x[order], y[order]


def load_data(partition_id: int, num_partitions: int):
    """This node's slice of iris, split into (train, test)."""
    x, y = _load_iris_shuffled()
    x_part = np.array_split(x, num_partitions)[partition_id]
    y_part = np.array_split(y, num_partitions)[partition_id]
    n_test = max(1, round(len(y_part) * TEST_FRACTION))
    train = (x_part[n_test:], y_part[n_test:])
    test = (x_part[:n_test], y_part[:n_test])
    return train, test


def load_centralized_data() -> tuple[np.ndarray, np.ndarray]:
    """All of iris, for the ServerApp's own evaluation of the global model."""
    return _load_iris_shuffled()


def initial_params() -> list[np.ndarray]:
    """Weights and bias of the softmax regression, all zeros."""
    return [np.zeros((NUM_FEATURES, NUM_CLASSES)), np.zeros(NUM_CLASSES)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def evaluate(params: list[np.ndarray], x: np.ndarray, y: np.ndarray):
    """Cross-entropy loss and accuracy of the model on (x, y)."""
    weights, bias = params
    probs = _softmax(x @ weights + bias)
    loss = -np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12))
    accuracy = np.mean(probs.argmax(axis=1) == y)
    return float(loss), float(accuracy)


def train(
    params: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
):
    """Mini-batch gradient descent; returns the new params and the train loss."""
    weights, bias = (np.array(p, dtype=np.float64) for p in params)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            grad_logits = _softmax(x[batch] @ weights + bias)
            grad_logits[np.arange(len(batch)), y[batch]] -= 1.0
            grad_logits /= len(batch)
            weights -= lr * x[batch].T @ grad_logits
            bias -= lr * grad_logits.sum(axis=0)
    new_params = [weights, bias]
    train_loss, _ = evaluate(new_params, x, y)
    return new_params, train_loss
