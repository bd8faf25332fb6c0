"""Built-in tasks: data, model and local training, served as Flower ClientApps."""

from swarmflower.tasks.client_app import make_client_app
from swarmflower.tasks.models import build_model, initial_model
from swarmflower.tasks.spec import TaskSpec

__all__ = ["TaskSpec", "build_model", "initial_model", "make_client_app"]
