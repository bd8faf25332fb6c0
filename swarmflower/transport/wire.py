"""The bytes peers exchange over a network: explicit, versioned, no pickle.

Every message starts with the same 6-byte envelope, `b"SWFL"`, a version byte
and a kind byte, so a peer from another release (or random bytes) is refused
with a clear `WireFormatError` instead of being half-read. Header integers
are big endian. Arrays travel in the one byte form the ledger hashes
(`swarmflower.codec`), so the receiver can check them against a model or
update hash without re-encoding anything.

    OFFER         round i64, commitment round i64, site_index u32,
                  commitment (157 bytes, `Commitment.pack`), arrays (rest)
    ANNOUNCE      round i64, RLP block (rest)
    FETCH_ARRAYS  digest (32 bytes), largest chunk accepted u32
    FETCH_BLOB    digest (32 bytes), largest chunk accepted u32
    FETCH_BLOCKS  start u64, end u64 (end exclusive)
    CHUNK         index u32, count u32, total u64, digest (32 bytes), data (rest)
    BLOCK         height u64, RLP block (rest)
    FETCH_BLOCK   block hash (32 bytes)
    HEAD          (empty: asks for the peer's canonical head)
    HEAD_REPLY    height u64, view u64, block hash (32 bytes)
    JOIN          address (20), cert fingerprint (32), listen length u16,
                  listen (UTF-8), certificate PEM (rest)
    LEAVE         address (20), signature (65)
    FORWARD       origin (20), destination (20; zeros: everyone), the inner
                  message (rest: OFFER, ANNOUNCE, JOIN or LEAVE)
    ROUTES        relay (20), count u16, the sites attached to it (20 each)

FORWARD and ROUTES serve sites that only dial out (`relay.py`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from flwr.app import ArrayRecord

from swarmflower import codec
from swarmflower.codec import CodecError, encode_arrays
from swarmflower.errors import WireFormatError
from swarmflower.ledger import BlockRef
from swarmflower.ledger.commitments import RECORD_BYTES, Commitment, checksum
from swarmflower.transport.base import (
    BlockAnnouncement,
    JoinRequest,
    LeaveRequest,
    PeerMessage,
    UpdateOffer,
)

MAGIC = b"SWFL"
VERSION = 1

OFFER = 1
ANNOUNCE = 2
FETCH_ARRAYS = 3
FETCH_BLOB = 4
FETCH_BLOCKS = 5
CHUNK = 6
BLOCK = 7
FETCH_BLOCK = 8
HEAD = 9
HEAD_REPLY = 10
JOIN = 11
LEAVE = 12
FORWARD = 13
ROUTES = 14

DIGEST_BYTES = 32

_ENVELOPE = struct.Struct(">4sBB")
_OFFER = struct.Struct(">qqI")
_ANNOUNCE = struct.Struct(">q")
_FETCH = struct.Struct(">32sI")
_RANGE = struct.Struct(">QQ")
_CHUNK = struct.Struct(">IIQ32s")
_HEIGHT = struct.Struct(">Q")
_HEAD = struct.Struct(">QQ32s")
_JOIN = struct.Struct(">20s32sH")
_LEAVE = struct.Struct(">20s65s")
_FORWARD = struct.Struct(">20s20s")
_ROUTES = struct.Struct(">20sH")
_EVERYONE = bytes(20)


def _envelope(kind: int) -> bytes:
    return _ENVELOPE.pack(MAGIC, VERSION, kind)


def _open(data: bytes, kinds: tuple[int, ...]) -> tuple[int, memoryview]:
    """Check the envelope; return the kind and the body after it."""
    if len(data) < _ENVELOPE.size:
        raise WireFormatError(f"message of {len(data)} bytes is too short")
    magic, version, kind = _ENVELOPE.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError("not a swarmflower message (bad magic)")
    if version != VERSION:
        raise WireFormatError(f"wire version {version} is not supported")
    if kind not in kinds:
        raise WireFormatError(f"message kind {kind} is not expected here")
    return kind, memoryview(data)[_ENVELOPE.size :]


def _fixed(body: memoryview, layout: struct.Struct, what: str) -> tuple:
    if len(body) < layout.size:
        raise WireFormatError(f"{what} is truncated")
    return layout.unpack_from(body)


# --- messages (Deliver) -----------------------------------------------------


def decode_arrays(data: bytes) -> ArrayRecord:
    """Inverse of `encode_arrays` (the codec's); corrupt bytes: `WireFormatError`."""
    try:
        return codec.decode_arrays(data)
    except CodecError as err:
        raise WireFormatError(f"arrays are corrupt: {err}") from err


def unpack_commitment(record: bytes, round: int) -> Commitment:
    """Inverse of `Commitment.pack` (site | parent | hash | examples | sig)."""
    if len(record) != RECORD_BYTES:
        raise WireFormatError(f"commitment of {len(record)} bytes, not {RECORD_BYTES}")
    return Commitment.unpack(record, round)


def encode_message(message: PeerMessage) -> bytes:
    """Bytes for `Deliver`; raises `WireFormatError` for values out of range."""
    try:
        if isinstance(message, UpdateOffer):
            commitment = message.commitment
            return (
                _envelope(OFFER)
                + _OFFER.pack(message.round, commitment.round, message.site_index)
                + commitment.pack()
                + encode_arrays(message.arrays)
            )
        if isinstance(message, BlockAnnouncement):
            return _envelope(ANNOUNCE) + _ANNOUNCE.pack(message.round) + message.block
        if isinstance(message, JoinRequest):
            listen = message.listen.encode()
            return (
                _envelope(JOIN)
                + _JOIN.pack(
                    _address_bytes(message.address),
                    message.cert_fingerprint,
                    len(listen),
                )
                + listen
                + message.cert_pem
            )
        if isinstance(message, LeaveRequest):
            return _envelope(LEAVE) + _LEAVE.pack(
                _address_bytes(message.site), message.signature
            )
    except (struct.error, ValueError, TypeError) as err:
        name = type(message).__name__
        raise WireFormatError(f"cannot encode {name}: {err}") from err
    raise WireFormatError(f"{type(message).__name__} is not a peer message")


def message_kind(data: bytes) -> int | None:
    """The kind byte of a well-formed envelope, else None (peeked, not decoded)."""
    try:
        kind, _ = _open(data, (OFFER, ANNOUNCE, JOIN, LEAVE, FORWARD, ROUTES))
    except WireFormatError:
        return None
    return kind


def decode_message(data: bytes) -> PeerMessage:
    """Inverse of `encode_message`; any malformed input raises `WireFormatError`."""
    kind, body = _open(data, (OFFER, ANNOUNCE, JOIN, LEAVE))
    if kind == ANNOUNCE:
        (round,) = _fixed(body, _ANNOUNCE, "block announcement")
        return BlockAnnouncement(round=round, block=bytes(body[_ANNOUNCE.size :]))
    if kind == JOIN:
        return _decode_join(body)
    if kind == LEAVE:
        if len(body) != _LEAVE.size:
            raise WireFormatError(f"leave request of {len(body)} bytes")
        site, signature = _LEAVE.unpack(body)
        return LeaveRequest(checksum(site), signature)
    round, commitment_round, site_index = _fixed(body, _OFFER, "update offer")
    start = _OFFER.size
    record = body[start : start + RECORD_BYTES]
    commitment = unpack_commitment(bytes(record), commitment_round)
    arrays = decode_arrays(bytes(body[start + RECORD_BYTES :]))
    return UpdateOffer(
        round=round, commitment=commitment, arrays=arrays, site_index=site_index
    )


@dataclass(frozen=True)
class Forwarded:
    """A message carried for `origin` by a relay; `destination` "" is everyone.
    `inner` stays encoded: relays pass it on as they got it."""

    origin: str
    destination: str
    inner: bytes


def encode_forward(origin: str, destination: str, inner: bytes) -> bytes:
    to = _address_bytes(destination) if destination else _EVERYONE
    return _envelope(FORWARD) + _FORWARD.pack(_address_bytes(origin), to) + inner


def decode_forward(data: bytes) -> Forwarded:
    """Inverse of `encode_forward`; the inner message must be a peer message."""
    _, body = _open(data, (FORWARD,))
    origin, to = _fixed(body, _FORWARD, "forwarded message")
    inner = bytes(body[_FORWARD.size :])
    if message_kind(inner) not in (OFFER, ANNOUNCE, JOIN, LEAVE):
        raise WireFormatError("a forwarded message must carry a peer message")
    destination = "" if to == _EVERYONE else checksum(to)
    return Forwarded(checksum(origin), destination, inner)


def encode_routes(relay: str, sites: Sequence[str]) -> bytes:
    """`relay` tells the others which sites reach the swarm through it."""
    return (
        _envelope(ROUTES)
        + _ROUTES.pack(_address_bytes(relay), len(sites))
        + b"".join(_address_bytes(s) for s in sites)
    )


def decode_routes(data: bytes) -> tuple[str, tuple[str, ...]]:
    _, body = _open(data, (ROUTES,))
    relay, count = _fixed(body, _ROUTES, "routes")
    rest = body[_ROUTES.size :]
    if len(rest) != 20 * count:
        raise WireFormatError(f"routes name {count} sites in {len(rest)} bytes")
    sites = tuple(checksum(bytes(rest[i : i + 20])) for i in range(0, len(rest), 20))
    return checksum(relay), sites


def _address_bytes(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"{address} is not a 20-byte address")
    return raw


def _decode_join(body: memoryview) -> JoinRequest:
    address, fingerprint, length = _fixed(body, _JOIN, "join request")
    start = _JOIN.size
    if len(body) < start + length:
        raise WireFormatError("join request: listen address is truncated")
    try:
        listen = bytes(body[start : start + length]).decode()
    except UnicodeDecodeError as err:
        raise WireFormatError(f"join request: listen address: {err}") from err
    return JoinRequest(
        checksum(address), fingerprint, listen, bytes(body[start + length :])
    )


# --- fetch requests -----------------------------------------------------------


def encode_fetch(kind: int, digest: bytes, max_chunk: int) -> bytes:
    """A FETCH_ARRAYS or FETCH_BLOB request for the content hashing to `digest`.

    `max_chunk` is the largest chunk the asker accepts: its own message limit,
    not the server's, decides how the answer is cut.
    """
    if kind not in (FETCH_ARRAYS, FETCH_BLOB) or len(digest) != DIGEST_BYTES:
        raise WireFormatError("a fetch asks for arrays or a blob by a 32-byte hash")
    try:
        return _envelope(kind) + _FETCH.pack(digest, max_chunk)
    except struct.error as err:
        raise WireFormatError(f"bad chunk size {max_chunk}: {err}") from err


def decode_fetch(data: bytes, kind: int) -> tuple[bytes, int]:
    """The digest asked for and the largest chunk the asker accepts (>= 1)."""
    _, body = _open(data, (kind,))
    if len(body) != _FETCH.size:
        raise WireFormatError(f"fetch request body of {len(body)} bytes")
    digest, max_chunk = _FETCH.unpack(body)
    if max_chunk < 1:
        raise WireFormatError("fetch request accepts no chunk size")
    return digest, max_chunk


def encode_block_range(start: int, end: int) -> bytes:
    try:
        return _envelope(FETCH_BLOCKS) + _RANGE.pack(start, end)
    except struct.error as err:
        raise WireFormatError(f"bad block range {start}..{end}: {err}") from err


def decode_block_range(data: bytes) -> tuple[int, int]:
    _, body = _open(data, (FETCH_BLOCKS,))
    if len(body) != _RANGE.size:
        raise WireFormatError("block range is not two u64")
    return _RANGE.unpack(body)


def encode_block_request(block_hash: bytes) -> bytes:
    if len(block_hash) != DIGEST_BYTES:
        raise WireFormatError("a block is asked for by its 32-byte hash")
    return _envelope(FETCH_BLOCK) + block_hash


def decode_block_request(data: bytes) -> bytes:
    _, body = _open(data, (FETCH_BLOCK,))
    if len(body) != DIGEST_BYTES:
        raise WireFormatError(f"block request body of {len(body)} bytes")
    return bytes(body)


def encode_head_request() -> bytes:
    return _envelope(HEAD)


def decode_head_request(data: bytes) -> None:
    _, body = _open(data, (HEAD,))
    if len(body):
        raise WireFormatError("a head request carries no body")


def encode_head(head: BlockRef) -> bytes:
    try:
        return _envelope(HEAD_REPLY) + _HEAD.pack(head.height, head.view, head.hash)
    except struct.error as err:
        raise WireFormatError(f"cannot encode head {head}: {err}") from err


def decode_head(data: bytes) -> BlockRef:
    _, body = _open(data, (HEAD_REPLY,))
    if len(body) != _HEAD.size:
        raise WireFormatError(f"head reply body of {len(body)} bytes")
    height, view, block_hash = _HEAD.unpack(body)
    return BlockRef(height, block_hash, view)


# --- streamed responses -------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One piece of a fetched payload; every chunk repeats the totals."""

    index: int
    count: int
    total: int
    digest: bytes
    data: bytes


def split_chunks(payload: bytes, digest: bytes, size: int) -> Iterator[Chunk]:
    """`payload` cut lazily in pieces of at most `size` bytes (one, if empty)."""
    starts = range(0, max(len(payload), 1), size)
    view = memoryview(payload)
    for index, at in enumerate(starts):
        data = bytes(view[at : at + size])
        yield Chunk(index, len(starts), len(payload), digest, data)


def encode_chunk(chunk: Chunk) -> bytes:
    header = _CHUNK.pack(chunk.index, chunk.count, chunk.total, chunk.digest)
    return _envelope(CHUNK) + header + chunk.data


def decode_chunk(data: bytes) -> Chunk:
    _, body = _open(data, (CHUNK,))
    index, count, total, digest = _fixed(body, _CHUNK, "chunk")
    return Chunk(index, count, total, digest, bytes(body[_CHUNK.size :]))


def join_chunks(chunks: Iterator[Chunk], digest: bytes, limit: int) -> bytes:
    """Reassemble a stream, refusing gaps, inconsistent totals or oversize.

    Checks only the framing; the caller checks the content against `digest`.
    """
    parts: list[bytes] = []
    received = 0
    first: Chunk | None = None
    for chunk in chunks:
        first = first or chunk
        if chunk.digest != digest:
            raise WireFormatError("stream is for another hash")
        if chunk.total > limit:
            raise WireFormatError(f"payload of {chunk.total} bytes exceeds {limit}")
        if (chunk.index, chunk.count, chunk.total) != (
            len(parts),
            first.count,
            first.total,
        ):
            raise WireFormatError(f"chunk {chunk.index} is out of sequence")
        received += len(chunk.data)
        if received > chunk.total:
            raise WireFormatError("stream is longer than announced")
        parts.append(chunk.data)
    if first is None or len(parts) != first.count or received != first.total:
        raise WireFormatError("stream ended early")
    return b"".join(parts)


def encode_block(height: int, block: bytes) -> bytes:
    return _envelope(BLOCK) + _HEIGHT.pack(height) + block


def decode_block(data: bytes) -> tuple[int, bytes]:
    _, body = _open(data, (BLOCK,))
    (height,) = _fixed(body, _HEIGHT, "block")
    return height, bytes(body[_HEIGHT.size :])
