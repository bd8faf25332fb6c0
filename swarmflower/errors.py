"""Typed exceptions in one place, so the CLI can turn them into one-line errors."""

from __future__ import annotations


class SwarmflowerError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class DataError(SwarmflowerError):
    """A dataset or table cannot be used as asked (missing file, column, bad target)."""


class ConfigError(SwarmflowerError):
    """A task name, option or configuration value is not valid."""


class CodecError(SwarmflowerError):
    """Bytes are not a valid encoding of arrays (`swarmflower.codec`)."""


class MergeError(SwarmflowerError):
    """A leader cannot merge the round as asked (bad updates, state or strategy)."""


class EmptyMergeError(MergeError):
    """A merge was asked for with no updates to merge."""


class InvalidUpdateError(MergeError):
    """A site's update cannot be merged (duplicate site, bad weight or metrics)."""


class UpdateMismatchError(InvalidUpdateError):
    """A site's arrays differ from the current model in keys, shapes or dtypes."""


class NonFiniteUpdateError(InvalidUpdateError):
    """A site's arrays or metrics contain NaN or infinity."""


class StrategyStateError(MergeError):
    """A strategy state blob is corrupt or belongs to another strategy or model."""


class TransportError(SwarmflowerError):
    """Peers cannot talk as asked (bad TLS material, address or message)."""


class WireFormatError(TransportError):
    """Bytes from a peer are not a valid swarmflower message of this version."""


class CertificateError(SwarmflowerError):
    """A site certificate cannot be trusted for the swarm."""


class UntrustedCertificate(CertificateError):
    """A certificate was not issued by the swarm's CA (or is self-signed)."""


class CertificateExpired(CertificateError):
    """A certificate is outside its validity period."""


class BadSiteBinding(CertificateError):
    """A certificate's Ethereum-address binding is missing, malformed or forged."""


class SwarmExistsError(SwarmflowerError):
    """A swarm folder or site folder would be overwritten."""


class AppFailedError(SwarmflowerError):
    """Sites' ClientApps failed so that a round can never be sealed."""
