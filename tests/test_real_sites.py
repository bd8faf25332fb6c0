"""Real sites: `swarmflower peer` processes over gRPC with mutual TLS on 127.0.0.1."""

import json
import re
import signal
import time
from pathlib import Path

import grpc
import pytest
from real_sites import finish, init_swarm, outcome, start_peer, verify_head

from swarmflower.ledger import Ledger, Reason
from swarmflower.pki import load_eth_key

BAD_ROUNDS = {
    1: ("zero-examples", "num_examples 0 is outside 1..max_examples"),
    2: ("huge-examples", f"num_examples {2**63} is outside 1..max_examples"),
    3: ("complex", "has dtype complex64, the model has float32"),
    4: ("integer", "has dtype int32, the model has float32"),
    5: ("huge-weights", "update too far from the model"),
}


@pytest.fixture(scope="module")
def three_sites(tmp_path_factory) -> tuple[list[Path], list[tuple[int, str]]]:
    """The module's one fault-free-leader swarm: 3 real sites, 5 rounds, in
    which site 3 offers a poisoned update every round (`bad-update` drill).
    Its updates are all refused: no start-up grace to wait out in round 1."""
    out = tmp_path_factory.mktemp("three-sites")
    init_swarm(out, 3, 5, 3, "--start-grace", "0")
    sites = [out / f"site-{k}" for k in (1, 2, 3)]
    drill = ",".join(f"bad-update:3@{r}:{kind}" for r, (kind, _) in BAD_ROUNDS.items())
    processes = [start_peer(site, "--faults", drill) for site in sites]
    try:
        return sites, [finish(p) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_three_sites_finish_with_the_same_head_and_model(three_sites):
    sites, results = three_sites
    assert [code for code, _ in results] == [0, 0, 0], results
    outcomes = [outcome(output) for _, output in results]
    assert {o[:2] for o in outcomes} == {("finished", 5)}
    assert len({o[2] for o in outcomes}) == 1  # same head block
    assert len({o[3] for o in outcomes}) == 1  # same final model
    assert verify_head(sites[0], cli=True) == outcomes[0][2]
    assert {verify_head(site) for site in sites[1:]} == {outcomes[0][2]}

    # Each site's story: started, trained and adopted every round, finished
    # on the head it printed; each round's leader wrote down its seal.
    ledger = Ledger.open(sites[0])
    try:
        leaders = {r.round: (r.leader, r.view) for r in ledger.rounds()}
    finally:
        ledger.close()
    sealed = set()
    for site, (_, _, head, _) in zip(sites, outcomes, strict=True):
        lines = (site / "events.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines]
        kinds = [e["event"] for e in events]
        assert kinds[0] == "started" and kinds[-1] == "finished"
        assert events[-1]["block"] == head
        adopted = [e["round"] for e in events if e["event"] == "adopted"]
        assert set(adopted) == {1, 2, 3, 4, 5} and adopted[-1] == 5
        assert {e["round"] for e in events if e["event"] == "trained"} == set(adopted)
        times = [e["t"] for e in events]
        assert times == sorted(times)
        address = load_eth_key(site / "site.key").public_key.to_checksum_address()
        sealed |= {
            (e["round"], (address, e["view"])) for e in events if e["event"] == "sealed"
        }
    assert all((r, leader) in sealed for r, leader in leaders.items())


def test_a_site_offering_poisoned_updates_is_refused_by_name(three_sites):
    sites, results = three_sites
    assert [code for code, _ in results] == [0, 0, 0], results
    poisoner = load_eth_key(sites[2] / "site.key").public_key.to_checksum_address()
    ledger = Ledger.open(sites[0])
    try:
        records = list(ledger.rounds())
    finally:
        ledger.close()
    assert [r.round for r in records] == [1, 2, 3, 4, 5]
    for record in records:
        assert poisoner not in record.contributors
        assert len(record.contributors) == 2
    # The honest sites name the poisoner and the problem, round by round. In
    # round 1 its offer may reach a site that started earlier only after that
    # site adopted the round: dropped as late, unread (the poisoner's own
    # check at the door still names it).
    for round, (_, problem) in BAD_ROUNDS.items():
        refusal = re.compile(
            rf"refused the round-{round} update of site 3 \({poisoner}\): .*"
            + re.escape(problem)
        )
        honest = [output for _, output in results[:2]]
        if round == 1:
            named = [bool(refusal.search(o)) for _, o in results]
            assert any(named), (round, results)
        else:
            assert all(refusal.search(o) for o in honest), (round, honest)
    assert "Traceback" not in "".join(output for _, output in results)


def test_leader_killed_mid_round_then_back_and_contributing(tmp_path):
    init_swarm(tmp_path, sites=3, rounds=8)
    sites = [tmp_path / f"site-{k}" for k in (1, 2, 3)]
    processes = [start_peer(site, "--faults", "leader-crash:3") for site in sites]
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in processes):
        assert time.monotonic() < deadline, "no leader died in round 3"
        time.sleep(0.2)
    (killed,) = [k for k, p in enumerate(processes) if p.poll() is not None]
    assert processes[killed].returncode == -signal.SIGKILL
    processes[killed] = start_peer(sites[killed])  # restarted, no fault plan
    results = [finish(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0], results
    heads = {outcome(output)[2] for _, output in results}
    assert len(heads) == 1

    ledger = Ledger.open(sites[0])
    try:
        records = list(ledger.rounds())
    finally:
        ledger.close()
    killed_address = load_eth_key(
        sites[killed] / "site.key"
    ).public_key.to_checksum_address()
    assert [r.round for r in records] == list(range(1, 9))
    third = records[2]
    assert third.view == 1 and third.reason is Reason.LEADER_TIMEOUT
    assert third.leader != killed_address
    # It synced, and contributed again before the last round.
    assert any(killed_address in r.contributors for r in records[3:7])


@pytest.fixture()
def lone_site(tmp_path):
    """Site 1 running alone (it cannot seal without a second site)."""
    init_swarm(tmp_path, sites=3, rounds=3)
    process = start_peer(tmp_path / "site-1")
    # It listens once its events say "started" (imports take seconds on a
    # loaded machine); then it trains round 1 and waits for peers.
    events = tmp_path / "site-1" / "events.jsonl"
    deadline = time.monotonic() + 90
    while not (events.exists() and '"started"' in events.read_text()):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "site 1 never started"
        time.sleep(0.2)
    yield tmp_path, process
    if process.poll() is None:
        process.kill()
        process.communicate()


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _deliver(target: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    from swarmflower.transport.grpc_transport import DELIVER

    with grpc.secure_channel(target, credentials) as channel:
        try:
            channel.unary_unary(DELIVER)(b"SWFL", timeout=5)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_strangers_are_refused_and_the_ledger_does_not_change(lone_site):
    from cli_helpers import run_cli

    from swarmflower.pki import cert_pem, create_ca, issue_site, new_eth_key
    from swarmflower.site_config import load_site_config
    from swarmflower.transport import TlsMaterial
    from swarmflower.transport.grpc_transport import channel_credentials

    swarm, process = lone_site
    target = load_site_config(swarm / "site-1").listen_address
    ca_pem = (swarm / "site-1" / "ca.pem").read_bytes()

    # A member (site 2) gets through TLS and authorisation: its malformed
    # payload is judged on its content.
    member = load_site_config(swarm / "site-2").tls_material()
    assert (
        _deliver(target, channel_credentials(member))
        is grpc.StatusCode.INVALID_ARGUMENT
    )

    # A certificate from another CA fails the TLS handshake.
    stranger_key, stranger_ca = create_ca("another swarm")
    stranger = issue_site(stranger_key, stranger_ca, "stranger", new_eth_key())
    stranger_tls = TlsMaterial(
        ca_cert=ca_pem,
        cert=cert_pem(stranger.cert),
        key=_key_pem(stranger.tls_key),
    )
    assert (
        _deliver(target, channel_credentials(stranger_tls))
        is grpc.StatusCode.UNAVAILABLE
    )
    # So does a self-signed certificate (that CA's own root, used as a client).
    self_signed = TlsMaterial(
        ca_cert=ca_pem,
        cert=cert_pem(stranger_ca),
        key=_key_pem(stranger_key),
    )
    assert (
        _deliver(target, channel_credentials(self_signed))
        is grpc.StatusCode.UNAVAILABLE
    )

    # A certificate from the swarm's CA that is not enrolled on the ledger is
    # refused by the protocol.
    enrolled = run_cli("enroll", "--swarm", str(swarm), "--name", "newcomer")
    assert enrolled.returncode == 0, enrolled.stderr
    newcomer = load_site_config(swarm / "newcomer").tls_material()
    assert (
        _deliver(target, channel_credentials(newcomer))
        is grpc.StatusCode.PERMISSION_DENIED
    )

    process.send_signal(signal.SIGTERM)
    code, output = finish(process, timeout=30)
    assert code == 0, output
    assert outcome(output)[:2] == ("stopped", 0)
    ledger = Ledger.open(swarm / "site-1")
    try:
        assert ledger.head().height == 0
    finally:
        ledger.close()
