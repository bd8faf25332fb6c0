"""Swarm Learning on Flower: one model across sites, a ledger-elected leader."""

__version__ = "0.1.0"
