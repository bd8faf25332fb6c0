"""Baselines, comparison runs and (later) the Ray engine for simulated sites."""
