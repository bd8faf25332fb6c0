"""Swarm Learning on Flower: train one model across sites with a ledger-elected leader."""

__version__ = "0.1.0"
