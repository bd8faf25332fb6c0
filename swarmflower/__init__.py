"""Swarm Learning on Flower: one model across sites, a ledger-elected leader."""

import os

from swarmflower.compat import serialise_ast_parse

# Sites run without outside network: Flower must not try to send telemetry.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
serialise_ast_parse()

__version__ = "0.1.0"
