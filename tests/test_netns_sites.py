"""Real sites on separate hosts: one network namespace, one address per site.

`init --hosts` puts each site's own address in its certificate and in the
others' peer lists; each `peer` runs inside its namespace and binds that
address only. One site's link is cut both ways for longer than the round
timeout: the others go on without it, and once back it syncs and
contributes again. Addresses used: NETNS_RANGE (see `netns.py`) only.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli
from cryptography import x509
from netns import Lan
from real_sites import Watched, outcome

from swarmflower.ledger import Ledger
from swarmflower.pki import load_eth_key

SITES, ROUNDS, CUT_S = 3, 12, 5.0  # the cut outlasts the 3 s round timeout

_why_not = Lan.skip_reason()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=_why_not or "")


def address_of(site: Path) -> str:
    return load_eth_key(site / "site.key").public_key.to_checksum_address()


@pytest.fixture(scope="module")
def cut_swarm(tmp_path_factory):
    """Three sites on three hosts, site 3 cut off for CUT_S seconds once
    round 2 is adopted; returns (sites, outputs, wall time the link came back)."""
    out = tmp_path_factory.mktemp("netns") / "swarm"
    hosts = ",".join(Lan.address(k) for k in range(1, SITES + 1))
    made = run_cli(
        "init", "--task", "heart", "--sites", str(SITES), "--rounds", str(ROUNDS),
        "--round-timeout", "3", "--hosts", hosts, "--out", str(out),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    sites = [out / f"site-{k}" for k in range(1, SITES + 1)]
    with Lan(SITES) as lan:
        outputs = [Watched(lan.start_peer(k, site)) for k, site in enumerate(sites, 1)]
        try:
            outputs[0].wait_for(f"round 2/{ROUNDS} adopted", timeout=90)
            lan.cut(3, CUT_S)
            back = time.time() + CUT_S
            codes = [output.finish(timeout=180)[0] for output in outputs]
        finally:
            for output in outputs:
                if output.process.poll() is None:
                    output.process.kill()
    assert codes == [0] * SITES, ["".join(o.lines) for o in outputs]
    return sites, outputs, back


def test_each_certificate_names_its_own_hosts_address_only(cut_swarm):
    sites, *_ = cut_swarm
    for k, site in enumerate(sites, start=1):
        cert = x509.load_pem_x509_certificate((site / "site.pem").read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        ips = [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)]
        assert ips == [Lan.address(k)]
        assert names.value.get_values_for_type(x509.DNSName) == []


def test_the_sites_finish_on_one_head_and_model_across_hosts(cut_swarm):
    _, outputs, _ = cut_swarm
    ends = [outcome("".join(output.lines)) for output in outputs]
    assert {(state, rounds) for state, rounds, *_ in ends} == {("finished", ROUNDS)}
    assert len({head for *_, head, _ in ends}) == 1
    assert len({model for *_, model in ends}) == 1


def test_a_site_cut_off_past_the_round_timeout_comes_back_and_contributes(
    cut_swarm,
):
    sites, outputs, back = cut_swarm
    ledger = Ledger.open(sites[0])
    try:
        records = list(ledger.rounds())
    finally:
        ledger.close()
    assert [r.round for r in records] == list(range(1, ROUNDS + 1))
    cut = address_of(sites[2])
    # Blocks carry the wall clock (whole seconds): once its link was back,
    # the cut site synced and its updates were merged again.
    after = [r for r in records if r.timestamp > back + 1]
    assert after, "every round was sealed before the link came back"
    assert any(cut in r.contributors for r in after)
    cut_output = "".join(outputs[2].lines)
    rounds_seen = re.findall(rf"round (\d+)/{ROUNDS} adopted", cut_output)
    assert int(rounds_seen[-1]) == ROUNDS
