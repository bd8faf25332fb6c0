"""Signed commitments: a site's promise of (round, parent, update hash, examples).

The parent is the block whose model the site trained on: a commitment can
only be sealed on that block, so a block's commitments prove how many sites
built on its parent (the finality of `forkchoice.py`), and no leader can
move a site's support to another branch. Packed as fixed 157-byte records
so a leader can ship a whole round's commitments as one calldata blob;
every replica checks every signature here (coincurve), which is far cheaper
than one EVM transaction per site.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from coincurve import PublicKey
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak, to_canonical_address, to_checksum_address

from .errors import BadCommitmentSignature, BadRound

RECORD_BYTES = 157  # site 20 | parent 32 | update hash 32 | examples 8 | sig 65
_DOMAIN = b"swarmflower/commitment/v2"


def commitment_digest(
    swarm_id: bytes, round: int, parent: bytes, update_hash: bytes, num_examples: int
) -> bytes:
    """The 32-byte hash a site signs; binds swarm, round and the block the
    update was trained on against replay."""
    return keccak(
        _DOMAIN
        + swarm_id
        + struct.pack(">Q", round)
        + parent
        + update_hash
        + struct.pack(">Q", num_examples)
    )


# Sites recur every round: caching their address conversions keeps a
# 1000-site block's validation dominated by the signature checks themselves.
checksum = lru_cache(maxsize=16384)(to_checksum_address)
canonical = lru_cache(maxsize=16384)(to_canonical_address)


@lru_cache(maxsize=16384)
def _address_of(public_key: bytes) -> bytes:
    return keccak(public_key[1:])[12:]


_HALF_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2


def recover_address(digest: bytes, signature: bytes) -> bytes:
    """The canonical address whose key produced `signature` over `digest`.

    Only low-s signatures count (as for Ethereum transactions): otherwise
    anyone could flip a signature into a second valid one, and so mint a
    second block or commitment blob with the same content but another hash.
    """
    if len(signature) != 65 or int.from_bytes(signature[32:64], "big") > _HALF_N:
        raise ValueError("not a 65-byte low-s signature")
    public = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    return _address_of(public.format(compressed=False))


@dataclass(frozen=True)
class Commitment:
    """A site's signed promise about its update for one round."""

    site: str
    round: int
    update_hash: bytes
    num_examples: int
    signature: bytes
    parent: bytes  # the block the update was trained on (genesis: the swarm id)

    @classmethod
    def sign(
        cls,
        key: PrivateKey,
        swarm_id: bytes,
        round: int,
        update_hash: bytes,
        num_examples: int,
        parent: bytes,
    ) -> Commitment:
        if len(update_hash) != 32 or len(parent) != 32:
            raise ValueError("update_hash and parent must be 32 bytes")
        if num_examples < 0:
            raise ValueError("num_examples must be non-negative")
        digest = commitment_digest(swarm_id, round, parent, update_hash, num_examples)
        return cls(
            site=key.public_key.to_checksum_address(),
            round=round,
            update_hash=update_hash,
            num_examples=num_examples,
            signature=key.sign_msg_hash(digest).to_bytes(),
            parent=parent,
        )

    @classmethod
    def unpack(cls, record: bytes, round: int) -> Commitment:
        """Inverse of `pack` (the caller checks the record's length)."""
        return cls(
            site=checksum(bytes(record[:20])),
            round=round,
            parent=bytes(record[20:52]),
            update_hash=bytes(record[52:84]),
            num_examples=struct.unpack(">Q", record[84:92])[0],
            signature=bytes(record[92:]),
        )

    def verify(self, swarm_id: bytes) -> None:
        """Raise BadCommitmentSignature unless `site` signed this commitment."""
        digest = commitment_digest(
            swarm_id, self.round, self.parent, self.update_hash, self.num_examples
        )
        try:
            signer = recover_address(digest, self.signature)
        except Exception as exc:  # coincurve raises bare ValueError/Exception
            raise BadCommitmentSignature(
                f"commitment of {self.site} for round {self.round}: "
                f"unreadable signature ({exc})"
            ) from exc
        if signer != canonical(self.site):
            raise BadCommitmentSignature(
                f"commitment of {self.site} for round {self.round} is signed by "
                f"{checksum(signer)}"
            )

    def pack(self) -> bytes:
        return (
            canonical(self.site)
            + self.parent
            + self.update_hash
            + struct.pack(">Q", self.num_examples)
            + self.signature
        )


def pack_commitments(commitments: Iterable[Commitment]) -> bytes:
    """One blob in the fixed contributor order (ascending site address)."""
    ordered = sorted(commitments, key=lambda c: canonical(c.site))
    return b"".join(c.pack() for c in ordered)


def unpack_commitments(blob: bytes, round: int) -> tuple[Commitment, ...]:
    """Decode a blob; refuses ragged blobs and a site listed twice or unordered."""
    if len(blob) % RECORD_BYTES:
        raise BadRound(f"commitments blob of {len(blob)} bytes is ragged")
    out: list[Commitment] = []
    previous = b""
    for offset in range(0, len(blob), RECORD_BYTES):
        record = blob[offset : offset + RECORD_BYTES]
        site = record[:20]
        if site <= previous:
            raise BadRound(
                f"round {round}: commitments not in strictly ascending site order "
                f"at {checksum(site)}"
            )
        previous = site
        out.append(Commitment.unpack(record, round))
    return tuple(out)


def verify_all(commitments: Sequence[Commitment], swarm_id: bytes) -> None:
    for commitment in commitments:
        commitment.verify(swarm_id)


_LEAVE_DOMAIN = b"swarmflower/leave/v1"


def leave_digest(swarm_id: bytes, site: str) -> bytes:
    """The hash a site signs to leave the swarm: only the site itself can ask.

    Binding the swarm is enough against replay: a site that comes back is
    enrolled again with a new key (`swarmflower enroll`), so a new address.
    """
    return keccak(_LEAVE_DOMAIN + swarm_id + canonical(site))


def sign_leave(key: PrivateKey, swarm_id: bytes) -> bytes:
    """The site's signature over its request to leave the swarm."""
    site = key.public_key.to_checksum_address()
    return key.sign_msg_hash(leave_digest(swarm_id, site)).to_bytes()


def verify_leave(swarm_id: bytes, site: str, signature: bytes) -> None:
    """Raise BadCommitmentSignature unless `site` signed its own leave."""
    try:
        signer = recover_address(leave_digest(swarm_id, site), signature)
    except Exception as exc:  # coincurve raises bare ValueError/Exception
        raise BadCommitmentSignature(
            f"leave of {site}: unreadable signature ({exc})"
        ) from exc
    if signer != canonical(site):
        raise BadCommitmentSignature(f"leave of {site}: signed by someone else")
