"""numpyexample: a Flower app training softmax regression on iris in NumPy."""
