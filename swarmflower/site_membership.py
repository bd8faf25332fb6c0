"""Who may talk to a real site, and who may join it, as the ledger says.

The swarm CA decides who may ever join (`swarmflower enroll` issues the
certificate); the ledger decides who belongs now. A site's TLS gate admits
a CA-issued certificate, pinning each founding site to the certificate its
genesis enrolled; the transport then hears messages from members only
(anyone else may only ask to join), and serves models and updates to
anyone but sites that left. A site not yet on the ledger can so fetch the
chain and ask to join, and a site that left can still read the chain that
says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cryptography import x509

from swarmflower.errors import CertificateError, ConfigError
from swarmflower.ledger import Enrollment
from swarmflower.pki import fingerprint, verify_site_cert
from swarmflower.site_hosts import check_host
from swarmflower.transport.base import JoinRequest


def join_vetter(ca_cert: x509.Certificate) -> Callable[[JoinRequest], Enrollment]:
    """Check a join request's certificate against the swarm CA and its claims;
    the enrollment to seal, or ValueError naming what is wrong."""

    def vet(request: JoinRequest) -> Enrollment:
        try:
            cert = x509.load_pem_x509_certificate(request.cert_pem)
            address = verify_site_cert(cert, ca_cert)
        except (ValueError, CertificateError) as exc:
            raise ValueError(f"its certificate is not the swarm CA's ({exc})") from None
        if address != request.address:
            raise ValueError(f"its certificate is bound to {address}")
        if fingerprint(cert) != request.cert_fingerprint:
            raise ValueError("its certificate fingerprint does not match")
        if request.listen:
            check_listen(request.listen)
        return Enrollment(address, request.cert_fingerprint, request.listen)

    return vet


def check_listen(listen: str) -> str:
    """A `host:port` a newcomer is dialled at, or ValueError naming the fault."""
    host, _, port = listen.rpartition(":")
    try:
        check_host(host.strip("[]"), "listen address")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {listen!r} has no port 1-65535")
    return listen


def founders_pinned(founders: Mapping[str, bytes]) -> Callable[[str, bytes], bool]:
    """`is_member` for `pki.authorizer`: a founding site only with the
    certificate its genesis enrolled; any other CA-issued site (a newcomer,
    or one that left: the transport limits what each may do)."""

    def is_member(address: str, cert_fingerprint: bytes) -> bool:
        pinned = founders.get(address)
        return pinned is None or pinned == cert_fingerprint

    return is_member
