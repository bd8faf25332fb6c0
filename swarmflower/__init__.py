"""Swarm Learning on Flower: one model across sites, a ledger-elected leader."""

import os

# Sites run without outside network: Flower must not try to send telemetry.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

__version__ = "0.1.0"
