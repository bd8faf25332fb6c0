"""The swarm's own PKI: a CA, and per site a key pair for the ledger and one for TLS.

DESIGN asks for one secp256k1 key per site serving both the ledger (its
Ethereum address signs commitments and blocks) and mutual TLS (an X.509
certificate over the same public key). We tried that first, with grpcio 1.85
(BoringSSL) on 127.0.0.1 and a generic unary method, and it does not work:

- a secp256k1 leaf key: the server refuses its own credentials before any
  handshake ("Invalid cert chain file", the port fails to bind);
- a secp256k1 CA over a P-256 leaf: the handshake fails with
  ``PUBLIC_KEY_DECODE_ERROR: unable to decode issuer public key``;
- a P-256 CA and P-256 leaves: the handshake succeeds.

TLS stacks only speak the NIST curves, so each site holds two keys:

- ``site.key``: secp256k1, the site's Ethereum identity (ledger seals and
  commitments), stored as a PKCS#8 PEM so standard tools can read it;
- ``tls.key``: P-256, the key its certificate certifies for mutual TLS.

The certificate, issued by the swarm CA (P-256, self-signed, long-lived),
binds the two: its subject CN is the site name, a SubjectAlternativeName URI
``swarmflower:site:<checksum address>`` names the Ethereum address, and a
non-critical extension (:data:`BINDING_OID`) carries the secp256k1 key's
signature over the TLS key's SubjectPublicKeyInfo. Anyone holding the
certificate can therefore check that the address's key holder authorised
that TLS key (:func:`site_address_of`), not just that the CA said so. The
ledger stores the certificate's SHA-256 fingerprint next to the address
(:func:`fingerprint`), so a peer can also check a TLS peer against the ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from eth_keys import keys
from eth_keys.datatypes import PrivateKey
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import keccak

from swarmflower.errors import (
    BadSiteBinding,
    CertificateError,
    CertificateExpired,
    UntrustedCertificate,
)

# A UUID-derived OID (ITU-T X.667, arc 2.25): unique without registration.
BINDING_OID = ObjectIdentifier("2.25.227356763805004042238831164057257016432")
SITE_URI_PREFIX = "swarmflower:site:"
BINDING_DOMAIN = b"swarmflower/tls-binding/v1"

CA_VALIDITY = dt.timedelta(days=3650)
SITE_VALIDITY = dt.timedelta(days=825)
_CLOCK_SKEW = dt.timedelta(minutes=5)
_SIGNATURE_LEN = 65  # r, s, v


@dataclass(frozen=True)
class SiteCredentials:
    """What one site holds: its Ethereum key, its TLS key and its certificate."""

    name: str
    eth_key: PrivateKey
    tls_key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def address(self) -> str:
        return self.eth_key.public_key.to_checksum_address()

    @property
    def fingerprint(self) -> bytes:
        return fingerprint(self.cert)


def new_eth_key() -> PrivateKey:
    """A fresh secp256k1 site key from the operating system's randomness."""
    while True:
        try:
            return PrivateKey(os.urandom(32))
        except ValidationError:  # zero or above the curve order: draw again
            continue


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(*allowed: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{usage: usage in allowed for usage in _KEY_USAGES})


def create_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The swarm's own root: a self-signed P-256 CA that issues site certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage("key_cert_sign", "crl_sign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _spki(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _binding_digest(tls_public_key: ec.EllipticCurvePublicKey) -> bytes:
    return keccak(BINDING_DOMAIN + _spki(tls_public_key))


def _der_octet_string(payload: bytes) -> bytes:
    assert len(payload) < 128  # short-form length is enough for a signature
    return bytes([0x04, len(payload)]) + payload


def _parse_octet_string(der: bytes) -> bytes:
    if len(der) < 2 or der[0] != 0x04 or der[1] != len(der) - 2:
        raise BadSiteBinding("the certificate's binding extension is malformed")
    return der[2:]


def _site_hosts(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_site(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    eth_key: PrivateKey,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    tls_key: ec.EllipticCurvePrivateKey | None = None,
) -> SiteCredentials:
    """A CA-issued certificate for site `name`, binding its TLS key to `eth_key`.

    The certificate serves both ends of mutual TLS (server and client auth),
    names `hosts` for hostname checks, and carries `eth_key`'s signature over
    the TLS public key so the binding can be checked without trusting the CA.
    """
    tls_key = tls_key or ec.generate_private_key(ec.SECP256R1())
    public = tls_key.public_key()
    address = eth_key.public_key.to_checksum_address()
    signature = eth_key.sign_msg_hash(_binding_digest(public)).to_bytes()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + SITE_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage("digital_signature", "key_agreement"), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(SITE_URI_PREFIX + address),
                    *_site_hosts(hosts),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(BINDING_OID, _der_octet_string(signature)),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return SiteCredentials(name=name, eth_key=eth_key, tls_key=tls_key, cert=cert)


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER: what the ledger stores for a site."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def _claimed_address(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise BadSiteBinding("the certificate names no site address") from None
    uris = [
        uri
        for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(SITE_URI_PREFIX)
    ]
    if len(uris) != 1:
        raise BadSiteBinding("the certificate must name exactly one site address")
    return uris[0][len(SITE_URI_PREFIX) :]


def site_address_of(cert: x509.Certificate) -> str:
    """The Ethereum address `cert` is bound to, after checking the binding.

    The binding holds if the signature in the binding extension, over the
    certificate's own TLS public key, recovers to the address the SAN names.
    """
    claimed = _claimed_address(cert)
    try:
        ext = cert.extensions.get_extension_for_oid(BINDING_OID)
    except x509.ExtensionNotFound:
        raise BadSiteBinding("the certificate carries no address binding") from None
    raw = _parse_octet_string(ext.value.value)
    if len(raw) != _SIGNATURE_LEN:
        raise BadSiteBinding("the certificate's binding signature is malformed")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise BadSiteBinding("the certificate's key is not an elliptic-curve key")
    try:
        signer = keys.Signature(raw).recover_public_key_from_msg_hash(
            _binding_digest(public)
        )
    except (BadSignature, ValidationError):
        raise BadSiteBinding("the certificate's binding signature is invalid") from None
    address = signer.to_checksum_address()
    if address.lower() != claimed.lower():
        raise BadSiteBinding(
            f"the certificate claims {claimed} but its TLS key was "
            f"authorised by {address}"
        )
    return address


def verify_site_cert(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    at: dt.datetime | None = None,
) -> str:
    """Check `cert` was issued by the swarm CA, is valid now and is bound; its address.

    Raises `UntrustedCertificate`, `CertificateExpired` or `BadSiteBinding`.
    """
    name = cert.subject.rfc4514_string()
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise UntrustedCertificate(
            f"certificate '{name}' was not issued by the swarm CA "
            f"'{ca_cert.subject.rfc4514_string()}'"
        ) from None
    at = at or _now()
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise CertificateExpired(
            f"certificate '{name}' is valid from {cert.not_valid_before_utc} "
            f"to {cert.not_valid_after_utc}, not at {at}"
        )
    return site_address_of(cert)


def authorizer(
    ca_cert: x509.Certificate,
    is_member: Callable[[str, bytes], bool] | None = None,
) -> Callable[[bytes], str | None]:
    """A TLS `authorize` hook: a caller's certificate PEM -> its address, or None.

    Accepts a certificate only if `verify_site_cert` does and, given
    `is_member`, only if `is_member(address, fingerprint)` holds (e.g. the
    ledger lists that address with that certificate fingerprint).
    """

    def authorize(pem: bytes) -> str | None:
        try:
            cert = x509.load_pem_x509_certificate(pem)
            address = verify_site_cert(cert, ca_cert)
        except (ValueError, CertificateError):
            return None
        if is_member is not None and not is_member(address, fingerprint(cert)):
            return None
        return address

    return authorize


# --- files --------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the start (never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # in case the umask or file system widened it


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def save_private_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    """A TLS or CA key as unencrypted PKCS#8 PEM, mode 0600; refuses to overwrite."""
    _write_private(Path(path), _key_pem(key))


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An unencrypted elliptic-curve private key from a PEM file.

    Raises `OSError` if the file cannot be read and `ValueError`, naming the
    file, if it holds anything else (garbage, a certificate, an RSA key).
    """
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # it asks for a password
        raise ValueError(f"{path}: the private key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an elliptic-curve private key")
    return key


def save_eth_key(key: PrivateKey, path: Path) -> None:
    """The secp256k1 site key as PKCS#8 PEM (readable by openssl), mode 0600."""
    as_ec = ec.derive_private_key(int.from_bytes(key.to_bytes(), "big"), ec.SECP256K1())
    _write_private(Path(path), _key_pem(as_ec))


def load_eth_key(path: Path) -> PrivateKey:
    """The secp256k1 site key; `ValueError` naming the file if it is another key."""
    key = load_private_key(path)
    if not isinstance(key.curve, ec.SECP256K1):
        raise ValueError(
            f"{path}: not a secp256k1 site key (a {key.curve.name} key instead)"
        )
    return PrivateKey(key.private_numbers().private_value.to_bytes(32, "big"))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def save_cert(cert: x509.Certificate, path: Path) -> None:
    Path(path).write_bytes(cert_pem(cert))


def load_cert(path: Path) -> x509.Certificate:
    """A PEM certificate; `OSError` if unreadable, `ValueError` naming the file
    if it holds something else."""
    data = Path(path).read_bytes()
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{path}: not a PEM certificate") from None
