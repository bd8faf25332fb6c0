"""Real sites on separate hosts: one network namespace, one address per site.

`init --hosts` puts each site's own address in its certificate and in the
others' peer lists; each `peer` runs inside its namespace and binds that
address only. One site's link is cut both ways for longer than the round
timeout: the others go on without it, and once back it syncs and
contributes again. A fourth site, enrolled after the genesis on a host of
its own, joins the running swarm, and site 2 leaves it with `leave`. A fifth
listens nowhere and dials site 1 only, which relays its traffic; it trains
and leads like any other. Addresses used: NETNS_RANGE (see `netns.py`) only.
"""

from __future__ import annotations

import json
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
from swarmflower.site_config import load_site_config, write_site_config

SITES, ROUNDS, CUT_S = 3, 18, 5.0  # the cut outlasts the 3 s round timeout
NEWCOMER, LEAVER, CUT = 4, 2, 3  # hosts: the site that joins, leaves, is cut
HIDDEN, RELAY = 5, 1  # the site that only dials out, and the one it dials

_why_not = Lan.skip_reason()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=_why_not or "")


def address_of(site: Path) -> str:
    return load_eth_key(site / "site.key").public_key.to_checksum_address()


@pytest.fixture(scope="module")
def cut_swarm(tmp_path_factory):
    """Three founding sites on three hosts, a newcomer on a fourth and one
    that only dials out on a fifth, all started at once; once round 2 is
    adopted, site 3 is cut off for CUT_S seconds and site 2 asks to leave.
    Returns (sites, outputs, wall time the link came back, the leave
    command's output, what listened on the fifth host)."""
    out = tmp_path_factory.mktemp("netns") / "swarm"
    hosts = ",".join(Lan.address(k) for k in range(1, SITES + 1))
    made = run_cli(
        "init", "--task", "heart", "--sites", str(SITES), "--rounds", str(ROUNDS),
        "--round-timeout", "3", "--hosts", hosts, "--out", str(out),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    enrolled = run_cli(
        "enroll", "--swarm", str(out), "--name", "newcomer",
        "--host", Lan.address(NEWCOMER),
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    hidden = run_cli(
        "enroll", "--swarm", str(out), "--name", "hidden", "--outbound-only",
        "--partition-id", str(LEAVER - 1),  # heart has 4 hospitals: the leaver's
    )  # fmt: skip
    assert hidden.returncode == 0, hidden.stderr
    config = load_site_config(out / "hidden")
    relay = load_site_config(out / f"site-{RELAY}").dialled_address
    write_site_config(
        config.with_peers(tuple(p for p in config.peers if p.address == relay))
    )
    sites = [out / f"site-{k}" for k in range(1, SITES + 1)]
    sites += [out / "newcomer", out / "hidden"]
    with Lan(len(sites)) as lan:
        outputs = [Watched(lan.start_peer(k, site)) for k, site in enumerate(sites, 1)]
        try:
            outputs[0].wait_for(f"round 2/{ROUNDS} adopted", timeout=90)
            listening = lan.run(HIDDEN, ["ss", "-Hltn"])
            lan.cut(CUT, CUT_S)
            back = time.time() + CUT_S
            config = str(sites[LEAVER - 1] / "site.toml")
            leave = Watched(lan.start_cli(LEAVER, "leave", "--config", config))
            codes = [output.finish(timeout=180)[0] for output in outputs]
            left = leave.finish(timeout=60)
        finally:
            for output in outputs:
                if output.process.poll() is None:
                    output.process.kill()
    assert codes == [0] * len(sites), ["".join(o.lines) for o in outputs]
    return sites, outputs, back, left, listening


def records_of(site: Path) -> list:
    ledger = Ledger.open(site)
    try:
        return list(ledger.rounds())
    finally:
        ledger.close()


def test_each_certificate_names_its_own_hosts_address_only(cut_swarm):
    sites, *_ = cut_swarm
    for k, site in enumerate(sites, start=1):
        cert = x509.load_pem_x509_certificate((site / "site.pem").read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        ips = [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)]
        assert ips == ([] if k == HIDDEN else [Lan.address(k)])
        assert names.value.get_values_for_type(x509.DNSName) == []


def test_the_sites_finish_on_one_head_and_model_across_hosts(cut_swarm):
    _, outputs, *_ = cut_swarm
    ends = [outcome("".join(output.lines)) for output in outputs]
    staying = [end for k, end in enumerate(ends, 1) if k != LEAVER]
    assert {(state, rounds) for state, rounds, *_ in staying} == {("finished", ROUNDS)}
    assert len({head for *_, head, _ in staying}) == 1
    assert len({model for *_, model in staying}) == 1
    assert ends[LEAVER - 1][0] == "left"


def test_a_site_cut_off_past_the_round_timeout_comes_back_and_contributes(
    cut_swarm,
):
    sites, outputs, back, *_ = cut_swarm
    records = records_of(sites[0])
    assert [r.round for r in records] == list(range(1, ROUNDS + 1))
    cut = address_of(sites[CUT - 1])
    # Blocks carry the wall clock (whole seconds): once its link was back,
    # the cut site synced and its updates were merged again.
    after = [r for r in records if r.timestamp > back + 1]
    assert after, "every round was sealed before the link came back"
    assert any(cut in r.contributors for r in after)
    # the story says which link went and came back: at the cut site, or at
    # a site that asked it for its head (gossip) while the link was down
    cut_name = load_site_config(sites[CUT - 1]).name
    links = [
        (e["site"], e["peer"], e["event"])
        for site in sites
        for e in map(json.loads, (site / "events.jsonl").read_text().splitlines())
        if e["event"] in ("disconnected", "reconnected")
        and (e["site"] == cut_name or e["peer"] == cut)
    ]
    lost = [(site, peer) for site, peer, event in links if event == "disconnected"]
    assert lost, "no site logged the cut link"
    site, peer = lost[0]
    after = links[links.index((site, peer, "disconnected")) :]
    assert (site, peer, "reconnected") in after
    cut_output = "".join(outputs[CUT - 1].lines)
    rounds_seen = re.findall(rf"round (\d+)/{ROUNDS} adopted", cut_output)
    assert int(rounds_seen[-1]) == ROUNDS


def test_a_site_enrolled_at_run_time_joins_on_its_own_host_and_contributes(
    cut_swarm,
):
    sites, outputs, *_ = cut_swarm
    newcomer = address_of(sites[NEWCOMER - 1])
    records = records_of(sites[0])
    (joined,) = [r for r in records if newcomer in (e.address for e in r.enrolled)]
    (enrollment,) = [e for e in joined.enrolled if e.address == newcomer]
    # the chain, not a file, told the members where to dial it
    dialled = load_site_config(sites[NEWCOMER - 1]).dialled_address
    assert enrollment.listen == dialled
    assert dialled.startswith(f"{Lan.address(NEWCOMER)}:")
    assert not any(newcomer in r.contributors for r in records[: joined.round])
    contributed = [r.round for r in records if newcomer in r.contributors]
    assert contributed and contributed[0] > joined.round
    # electable from its first contribution on (never before)
    assert newcomer in records[contributed[0] - 1].revived
    assert newcomer not in [r.leader for r in records[: contributed[0]]]
    said = "".join(outputs[NEWCOMER - 1].lines)
    assert f"joined the swarm with round {joined.round}" in said
    for site in sites[:SITES]:  # no member's files name the newcomer
        assert "newcomer" not in (site / "site.toml").read_text()


def test_a_site_leaves_with_a_signed_request_and_ledger_show_lists_both(
    cut_swarm,
):
    sites, outputs, _, (code, said), _ = cut_swarm
    assert code == 0, said
    leaver = address_of(sites[LEAVER - 1])
    records = records_of(sites[0])
    (gone,) = [r for r in records if leaver in r.left]
    assert f"left the swarm with round {gone.round}" in said
    assert not any(leaver in r.contributors for r in records[gone.round :])
    assert not any(leaver == r.leader for r in records[gone.round :])
    assert outcome("".join(outputs[LEAVER - 1].lines))[:2] == ("left", gone.round)
    shown = run_cli("ledger", "show", str(sites[0]))
    assert shown.returncode == 0, shown.stderr
    newcomer = address_of(sites[NEWCOMER - 1])
    assert f"+{newcomer[:10]}" in shown.stdout
    assert f"-{leaver[:10]}" in shown.stdout
    assert f"left with round {gone.round}" in shown.stdout


def test_a_site_that_only_dials_out_trains_and_leads_through_its_relay(cut_swarm):
    sites, outputs, *_, listening = cut_swarm
    assert listening == ""  # nothing on its host accepts a connection
    (peer,) = load_site_config(sites[HIDDEN - 1]).peers  # it dials its relay only
    assert peer.address.startswith(f"{Lan.address(RELAY)}:")
    hidden = address_of(sites[HIDDEN - 1])
    records = records_of(sites[0])
    (joined,) = [r for r in records if hidden in (e.address for e in r.enrolled)]
    (enrollment,) = [e for e in joined.enrolled if e.address == hidden]
    assert enrollment.listen == ""  # nobody dials it
    assert [r.round for r in records if hidden in r.contributors]
    led = [r.round for r in records if r.leader == hidden]
    assert led, "the relayed site never sealed a round"
    # its blocks are on every staying site's chain, which all end on one head
    for k, site in enumerate(sites, 1):
        if k != LEAVER:
            assert [r.leader for r in records_of(site)] == [r.leader for r in records]
    said = "".join(outputs[HIDDEN - 1].lines)
    assert outcome(said)[:2] == ("finished", ROUNDS)
