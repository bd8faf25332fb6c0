"""Typed ledger errors: every message names the problem and the block or site.

They share swarmflower's root, `SwarmflowerError`, so every caller (the CLI
above all) reports them as one line like any other user-facing error.
"""

from __future__ import annotations

from swarmflower.errors import SwarmflowerError


class LedgerError(SwarmflowerError):
    """Base of every error the ledger raises on purpose."""


class InvalidBlock(LedgerError):
    """A block that a replica refuses; the replica's head is unchanged."""


class MalformedBlock(InvalidBlock):
    """Bytes that do not decode to a block of this swarm's shape."""


class UnknownParent(InvalidBlock):
    """The block's parent is not known here yet: sync earlier blocks first."""

    def __init__(self, message: str, parent_hash: bytes = b"") -> None:
        super().__init__(message)
        self.parent_hash = parent_hash  # what to fetch next to connect the block


class BadSeal(InvalidBlock):
    """The proof-of-authority seal is missing, malformed or not the coinbase's."""


class WrongProposer(InvalidBlock):
    """The block is sealed by a site that the contract did not elect for it."""


class BadStateRoot(InvalidBlock):
    """Re-executing the block gives a different state root than its header."""


class BadCommitmentSignature(InvalidBlock):
    """A commitment in the block is not signed by the site it names."""


class ReplayedTransaction(InvalidBlock):
    """The block carries a transaction that was already executed (stale nonce)."""


class UnknownSite(InvalidBlock):
    """The block names a site that is not enrolled in the swarm."""


class FutureBlock(InvalidBlock):
    """Stamped too far ahead of the local clock; may become valid later."""


class BadRound(InvalidBlock):
    """The block's round, view, reason, timestamp or body break the round rules."""


class LedgerStateError(LedgerError):
    """A request that the ledger's current state cannot serve (e.g. unknown round)."""


class StoreError(LedgerError):
    """The on-disk replica is missing, of another swarm, or corrupt."""
