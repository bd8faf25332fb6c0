"""sklearnexample: the model (SGDClassifier, logistic loss) and the digits data."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss

NUM_FEATURES = 64
NUM_CLASSES = 10
DATA_SEED = 99  # the same shuffle on every node, so the partitions are disjoint
TEST_FRACTION = 0.2


def load_data(partition_id: int, num_partitions: int):
    """This node's slice of digits, split into (train, test)."""
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    part = np.array_split(order, num_partitions)[partition_id]
    n_test = max(1, round(len(part) * TEST_FRACTION))
    test_idx, train_idx = part[:n_test], part[n_test:]
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


def get_model(
    lr: float, local_epochs: int, penalty: str, alpha: float, seed: int
) -> SGDClassifier:
    """A logistic-regression SGDClassifier that keeps training from its coef_."""
    return SGDClassifier(
        loss="log_loss",
        penalty=penalty,
        alpha=alpha,
        learning_rate="constant",
        eta0=lr,
        max_iter=local_epochs,
        tol=None,
        warm_start=True,
        random_state=seed,
    )


def initial_params() -> list[np.ndarray]:
    """coef_ and intercept_ of an untrained model: zeros."""
    return [np.zeros((NUM_CLASSES, NUM_FEATURES)), np.zeros(NUM_CLASSES)]


def get_params(model: SGDClassifier) -> list[np.ndarray]:
    return [model.coef_, model.intercept_]


def set_params(model: SGDClassifier, params: list[np.ndarray]) -> SGDClassifier:
    """Put global parameters into the model (it then counts as fitted)."""
    coef, intercept = params
    model.coef_ = np.array(coef, dtype=np.float64)
    model.intercept_ = np.array(intercept, dtype=np.float64)
    model.classes_ = np.arange(NUM_CLASSES)
    return model


def evaluate(model: SGDClassifier, x: np.ndarray, y: np.ndarray):
    """Log loss and accuracy of the model on (x, y)."""
    probs = model.predict_proba(x)
    loss = log_loss(y, probs, labels=np.arange(NUM_CLASSES))
    accuracy = accuracy_score(y, model.predict(x))
    return float(loss), float(accuracy)
