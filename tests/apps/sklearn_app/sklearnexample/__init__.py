"""sklearnexample: a Flower app training scikit-learn's SGDClassifier on digits."""
