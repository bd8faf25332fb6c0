"""A site's identity: one secp256k1 key whose Ethereum address names the site."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from eth_keys.datatypes import PrivateKey
from eth_utils import keccak


@dataclass(frozen=True)
class SiteIdentity:
    """Who a site is: its index in the swarm, a readable name, and its key."""

    index: int
    name: str
    key: PrivateKey

    @cached_property
    def address(self) -> str:
        """Derived once: a checksum address costs a keccak and a hex pass."""
        return self.key.public_key.to_checksum_address()

    @property
    def cert_fingerprint(self) -> bytes:
        """Stand-in fingerprint for simulated sites, which hold no certificate."""
        return keccak(b"swarmflower/simulated-cert/" + self.key.public_key.to_bytes())


def simulated_identities(names: list[str], seed: int) -> list[SiteIdentity]:
    """Deterministic keys for simulated sites: same seed, same swarm, same ledger.

    Never use these for real sites: anyone who knows the seed has the keys.
    """
    return [simulated_identity(i, name, seed) for i, name in enumerate(names)]


def simulated_identity(index: int, name: str, seed: int) -> SiteIdentity:
    """Site `index`'s simulated identity alone (a Ray host makes only its own)."""
    key = PrivateKey(keccak(f"swarmflower/simulated-site/{seed}/{index}".encode()))
    return SiteIdentity(index=index, name=name, key=key)
