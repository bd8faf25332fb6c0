"""Proof-of-authority seal: the proposer's secp256k1 signature in `extra_data`.

`extra_data` = 32-byte vanity (magic, version, reason, view) + 65-byte
signature over the header hash taken with the vanity alone. Post-merge py-evm
VMs check no seal at all, so every replica checks this one itself.
"""

from __future__ import annotations

import struct

from eth_keys.datatypes import PrivateKey
from eth_utils import to_checksum_address

from .commitments import recover_address
from .errors import BadSeal
from .records import Reason

MAGIC = b"SWFL"
VERSION = 1
VANITY_BYTES = 32
SIGNATURE_BYTES = 65
EXTRA_DATA_BYTES = VANITY_BYTES + SIGNATURE_BYTES


def vanity(view: int, reason: Reason) -> bytes:
    """The unsigned part of `extra_data`: says which view sealed and why."""
    head = MAGIC + struct.pack(">BBI", VERSION, int(reason), view)
    return head + bytes(VANITY_BYTES - len(head))


def parse_vanity(extra_data: bytes) -> tuple[int, Reason]:
    """(view, reason) from a sealed header's `extra_data`; BadSeal if malformed."""
    if len(extra_data) != EXTRA_DATA_BYTES or extra_data[:4] != MAGIC:
        raise BadSeal(f"extra_data of {len(extra_data)} bytes is not a swarm seal")
    version, reason, view = struct.unpack(">BBI", extra_data[4:10])
    if version != VERSION or extra_data[10:VANITY_BYTES] != bytes(VANITY_BYTES - 10):
        raise BadSeal(f"seal version {version} or vanity padding is not understood")
    try:
        return view, Reason(reason)
    except ValueError as exc:
        raise BadSeal(f"seal names unknown reason {reason}") from exc


def seal_hash(header) -> bytes:
    """What the proposer signs: the header with the vanity but no signature."""
    return header.copy(extra_data=header.extra_data[:VANITY_BYTES]).hash


def seal_header(header, key: PrivateKey):
    """Return `header` with the proposer's signature appended to its vanity."""
    if len(header.extra_data) != VANITY_BYTES:
        raise ValueError("seal a header whose extra_data is exactly the vanity")
    signature = key.sign_msg_hash(header.hash).to_bytes()
    return header.copy(extra_data=header.extra_data + signature)


def seal_signer(header) -> bytes:
    """The canonical address that sealed `header`; BadSeal unless it is the coinbase."""
    parse_vanity(header.extra_data)
    try:
        signer = recover_address(seal_hash(header), header.extra_data[VANITY_BYTES:])
    except Exception as exc:  # coincurve raises bare errors on bad signatures
        raise BadSeal(f"block #{header.block_number}: unreadable seal ({exc})") from exc
    if signer != header.coinbase:
        raise BadSeal(
            f"block #{header.block_number}: sealed by {to_checksum_address(signer)}, "
            f"not by its coinbase {to_checksum_address(header.coinbase)}"
        )
    return signer
