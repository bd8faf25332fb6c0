"""Transports: how peers exchange updates, blocks and models."""

from swarmflower.transport.base import (
    BlockAnnouncement,
    PeerMessage,
    PeerServiceAPI,
    TransportAPI,
    UpdateOffer,
)
from swarmflower.transport.inproc import InProcNetwork, InProcTransport

__all__ = [
    "BlockAnnouncement",
    "InProcNetwork",
    "InProcTransport",
    "PeerMessage",
    "PeerServiceAPI",
    "TransportAPI",
    "UpdateOffer",
]
