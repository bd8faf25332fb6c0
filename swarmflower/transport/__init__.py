"""Transports: how peers exchange updates, blocks and models."""

from swarmflower.transport.base import (
    BlockAnnouncement,
    PeerMessage,
    PeerServiceAPI,
    TransportAPI,
    UpdateOffer,
)
from swarmflower.transport.grpc_transport import (
    GrpcSettings,
    GrpcTransport,
    TlsMaterial,
)
from swarmflower.transport.inproc import InProcNetwork, InProcTransport

__all__ = [
    "BlockAnnouncement",
    "GrpcSettings",
    "GrpcTransport",
    "InProcNetwork",
    "InProcTransport",
    "PeerMessage",
    "PeerServiceAPI",
    "TlsMaterial",
    "TransportAPI",
    "UpdateOffer",
]
