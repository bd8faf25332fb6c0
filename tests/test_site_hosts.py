"""`init --hosts`: where each site binds, is dialled, is named in its certificate."""

from __future__ import annotations

import pytest
from cryptography import x509

from swarmflower.errors import ConfigError
from swarmflower.provision import init_swarm
from swarmflower.site_config import TaskConfig, load_site_config
from swarmflower.site_hosts import SiteAddress, parse_hosts
from swarmflower.tasks import TaskSpec


def test_a_host_list_gives_site_k_host_k_on_port_base_plus_k():
    sites = parse_hosts("10.0.0.5, hosp-b.example.org,10.0.0.9", 47100)
    assert sites == [
        SiteAddress("10.0.0.5", 47101),
        SiteAddress("hosp-b.example.org", 47102),
        SiteAddress("10.0.0.9", 47103),
    ]
    assert sites[1].cert_hosts() == ("hosp-b.example.org",)
    assert SiteAddress("127.0.0.1", 1).cert_hosts() == ("127.0.0.1", "localhost")


def test_a_hosts_file_sets_ports_and_advertised_names(tmp_path):
    path = tmp_path / "hosts.toml"
    path.write_text(
        '[[site]]\nhost = "10.0.0.5"\n'
        '[[site]]\nhost = "0.0.0.0"\nport = 8443\nadvertise = "swarm.b.example.org"\n'
    )
    first, second = parse_hosts(str(path), 47100)
    assert first == SiteAddress("10.0.0.5", 47101)
    assert second.listen == "0.0.0.0:8443"
    assert second.dialled == "swarm.b.example.org:8443"
    assert second.cert_hosts() == ("swarm.b.example.org",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[site]]\nhost = "0.0.0.0"\n', "give its 'advertise'"),
        ('[[site]]\nhost = "10.0.0.5"\nport = 70000\n', "'port' must be 1..65535"),
        ('[[site]]\nhost = "10.0.0.5"\nname = "a"\n', "unknown key(s) name"),
        ('[[site]]\nhost = "bad host!"\n', "neither an IP address nor a DNS name"),
        (
            '[[site]]\nhost = "10.0.0.5"\nport = 1\n'
            '[[site]]\nhost = "10.0.0.5"\nport = 1\n',
            "sites 1 and 2 are both at 10.0.0.5:1",
        ),
        ("site = 3\n", "one [[site]] table per site"),
    ],
)
def test_a_bad_hosts_file_is_one_error_naming_it(tmp_path, text, problem):
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="hosts.toml") as refused:
        parse_hosts(str(path), 47100)
    assert problem in str(refused.value)


def test_init_puts_each_sites_host_in_its_certificate_and_the_peer_lists(tmp_path):
    addresses = parse_hosts("10.0.0.5,10.0.0.6", 47100)
    layout = init_swarm(
        tmp_path / "swarm",
        TaskConfig(TaskSpec(), 0),
        num_sites=2,
        rounds=2,
        addresses=addresses,
    )
    first, second = (load_site_config(site.folder) for site in layout.sites)
    assert first.listen_address == "10.0.0.5:47101"
    assert [p.address for p in first.peers] == ["10.0.0.6:47102"]
    assert [p.address for p in second.peers] == ["10.0.0.5:47101"]
    cert = x509.load_pem_x509_certificate(first.path("cert").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == [
        "10.0.0.5"
    ]


def test_init_refuses_more_sites_than_hosts_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="--hosts names 2 sites, but the swarm has 3"):
        init_swarm(
            tmp_path / "swarm",
            TaskConfig(TaskSpec(), 0),
            num_sites=3,
            rounds=2,
            addresses=parse_hosts("10.0.0.5,10.0.0.6", 47100),
        )
    assert not (tmp_path / "swarm").exists()
