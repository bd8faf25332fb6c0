"""Simulated sites: the Ray engine (`engine`) and the experiments (`experiments`)."""
