"""torchexample: a Flower app training a PyTorch MLP on digits."""
