"""The methods `compare` knows, in table order: a module with no imports, so
that readers of result files (the report page) share it without loading the
experiments."""

METHODS = (
    *("swarm", "swarm+ft", "fedavg", "fedavg+ft"),
    *("local", "local_own", "pooled"),
)
