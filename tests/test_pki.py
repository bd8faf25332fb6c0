"""The swarm PKI: chains to the swarm CA, the eth-address binding, key files."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from swarmflower import pki
from swarmflower.errors import (
    BadSiteBinding,
    CertificateError,
    CertificateExpired,
    UntrustedCertificate,
)


@pytest.fixture(scope="module")
def ca():
    return pki.create_ca("test swarm CA")


@pytest.fixture(scope="module")
def site(ca):
    return pki.issue_site(*ca, "cleveland", pki.new_eth_key())


def _reissue(cert: x509.Certificate, ca, replace: dict) -> x509.Certificate:
    """`cert` re-signed by the CA with some extensions swapped (by OID)."""
    ca_key, ca_cert = ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca_cert.subject)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        value = replace.get(ext.oid, ext.value)
        if value is not None:
            builder = builder.add_extension(value, ext.critical)
    return builder.sign(ca_key, hashes.SHA256())


def test_site_certificate_chains_to_the_swarm_ca_and_names_the_address(ca, site):
    assert pki.verify_site_cert(site.cert, ca[1]) == site.address
    assert pki.site_address_of(site.cert) == site.address
    cn = site.cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert cn[0].value == "cleveland"
    san = site.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"swarmflower:site:{site.address}"]
    assert isinstance(site.cert.public_key().curve, ec.SECP256R1)


def test_another_ca_or_a_self_signed_certificate_is_refused(ca, site):
    other = pki.create_ca("test swarm CA")  # same name, other key
    stranger = pki.issue_site(*other, "mallory", pki.new_eth_key())
    with pytest.raises(UntrustedCertificate):
        pki.verify_site_cert(stranger.cert, ca[1])
    # self-signed: subject = issuer, signed by its own TLS key, bound correctly
    own_key, own_cert = pki.create_ca("mallory")
    self_signed = pki.issue_site(
        own_key, own_cert, "mallory", pki.new_eth_key(), tls_key=own_key
    )
    assert self_signed.cert.issuer == self_signed.cert.subject
    assert pki.site_address_of(self_signed.cert)  # bound, yet untrusted:
    with pytest.raises(UntrustedCertificate):
        pki.verify_site_cert(self_signed.cert, ca[1])


def test_expired_or_not_yet_valid_certificate_is_refused(ca, site):
    later = site.cert.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(CertificateExpired):
        pki.verify_site_cert(site.cert, ca[1], at=later)
    earlier = site.cert.not_valid_before_utc - dt.timedelta(days=1)
    with pytest.raises(CertificateExpired):
        pki.verify_site_cert(site.cert, ca[1], at=earlier)


def test_a_tampered_binding_is_refused_even_when_the_ca_signed_it(ca, site):
    other = pki.new_eth_key().public_key.to_checksum_address()
    claims_other = _reissue(
        site.cert,
        ca,
        {
            x509.SubjectAlternativeName.oid: x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"swarmflower:site:{other}")]
            )
        },
    )
    with pytest.raises(BadSiteBinding, match="authorised by"):
        pki.verify_site_cert(claims_other, ca[1])

    # the binding signature of another site's TLS key does not carry over
    neighbour = pki.issue_site(*ca, "hungary", pki.new_eth_key())
    foreign = neighbour.cert.extensions.get_extension_for_oid(pki.BINDING_OID)
    borrowed = _reissue(site.cert, ca, {pki.BINDING_OID: foreign.value})
    with pytest.raises(BadSiteBinding):
        pki.site_address_of(borrowed)

    missing = _reissue(site.cert, ca, {pki.BINDING_OID: None})
    with pytest.raises(BadSiteBinding, match="no address binding"):
        pki.verify_site_cert(missing, ca[1])

    garbage = x509.UnrecognizedExtension(pki.BINDING_OID, b"\x04\x03abc")
    with pytest.raises(CertificateError):
        pki.site_address_of(_reissue(site.cert, ca, {pki.BINDING_OID: garbage}))


def test_fingerprint_is_the_sha256_of_the_der_and_stable(ca, site, tmp_path):
    fp = pki.fingerprint(site.cert)
    assert len(fp) == 32 and fp == site.fingerprint
    pki.save_cert(site.cert, tmp_path / "site.pem")
    assert pki.fingerprint(pki.load_cert(tmp_path / "site.pem")) == fp
    assert pki.fingerprint(ca[1]) != fp


def test_keys_round_trip_through_files_with_mode_0600(site, tmp_path):
    pki.save_eth_key(site.eth_key, tmp_path / "site.key")
    pki.save_private_key(site.tls_key, tmp_path / "tls.key")
    for name in ("site.key", "tls.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert pki.load_eth_key(tmp_path / "site.key") == site.eth_key
    loaded = pki.load_private_key(tmp_path / "tls.key")
    assert loaded.private_numbers() == site.tls_key.private_numbers()
    with pytest.raises(FileExistsError):  # never overwrites a key
        pki.save_eth_key(site.eth_key, tmp_path / "site.key")
    with pytest.raises(ValueError, match="secp256k1"):
        pki.load_eth_key(tmp_path / "tls.key")


def test_the_authorizer_maps_a_pem_to_its_address_or_refuses_it(ca, site):
    authorize = pki.authorizer(ca[1])
    assert authorize(pki.cert_pem(site.cert)) == site.address
    stranger = pki.issue_site(*pki.create_ca("other"), "x", pki.new_eth_key())
    assert authorize(pki.cert_pem(stranger.cert)) is None
    assert authorize(b"not a certificate") is None
    members_only = pki.authorizer(ca[1], lambda address, fp: fp != site.fingerprint)
    assert members_only(pki.cert_pem(site.cert)) is None
