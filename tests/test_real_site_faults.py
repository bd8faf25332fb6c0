"""Real `peer` processes against a bad participant, damaged files and chaos.

Each test runs its own small swarm of real processes over gRPC with mutual
TLS on 127.0.0.1: a site whose replica and model files are damaged while it
is down, and seeded chaos runs with random SIGKILLs and restarts. (A site
offering poisoned updates plays in `test_real_sites.py`'s shared swarm.)
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from eth_utils import keccak
from real_sites import Watched, finish, init_swarm, outcome, start_peer, verify_head

from swarmflower.ledger import Ledger
from swarmflower.ledger.store import FILENAME
from swarmflower.simulations.experiments.chaos import run_chaos


@pytest.fixture()
def reaped():
    """Processes a test starts, killed at its end whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_damaged_replica_and_model_files_are_repaired_from_peers(tmp_path, reaped):
    # Site 2 dies (SIGKILL) after adopting round 2, before training round 3;
    # with min_peers 3 nobody seals round 3 without it, so when it comes
    # back it must repair its replica and its round-2 model from its peers.
    init_swarm(tmp_path, 3, 4, 3, "--min-peers", "3")
    sites = [tmp_path / f"site-{k}" for k in (1, 2, 3)]
    peers = [
        Watched(start_peer(site, *(["--faults", "site-crash:2@3"] if k == 1 else [])))
        for k, site in enumerate(sites)
    ]
    reaped.extend(p.process for p in peers)
    code, output = peers[1].finish()
    assert code == -signal.SIGKILL and "before training round 3" in output, output

    # The database's first page overwritten and its write-ahead log lost
    # (whose newer copy of that page would otherwise mask the damage).
    database = sites[1] / "ledger" / FILENAME
    data = bytearray(database.read_bytes())
    data[:4096] = b"\xa5" * 4096
    database.write_bytes(bytes(data))
    for journal in database.parent.glob(f"{FILENAME}-*"):
        journal.unlink()
    models = sorted((sites[1] / "models").glob("*.model"))
    assert models
    for model in models:
        damaged = bytearray(model.read_bytes())
        damaged[-8:] = bytes(b ^ 0xFF for b in damaged[-8:])
        model.write_bytes(bytes(damaged))

    # Without --repair the damage stops it at once, naming the replica, and
    # leaves every file as it was...
    before = {p: p.read_bytes() for p in [database, *models]}
    code, refused = finish(start_peer(sites[1]), timeout=60)
    assert code == 1, refused
    assert f"{database.parent}: damaged replica" in refused and "--repair" in refused
    assert len(refused.strip().splitlines()) == 1, refused
    assert {p: p.read_bytes() for p in before} == before
    # ...and with it, the site moves what is damaged aside and rebuilds.
    peers[1] = Watched(start_peer(sites[1], "--repair"))
    reaped.append(peers[1].process)
    results = [p.finish() for p in peers]
    assert [code for code, _ in results] == [0, 0, 0], results
    _, repaired = results[1]
    assert "damaged replica" in repaired and "rebuilding from genesis" in repaired
    assert "Moved damaged file" in repaired
    assert list((sites[1] / "models" / "damaged").iterdir()), "kept for a look"
    assert list(sites[1].glob("ledger.damaged-*")), "the damaged replica is kept"
    outcomes = [outcome(output) for _, output in results]
    assert {o[:2] for o in outcomes} == {("finished", 4)}
    assert len({o[2] for o in outcomes}) == 1 and len({o[3] for o in outcomes}) == 1
    assert verify_head(sites[1]) == verify_head(sites[0])
    # The models it needed (the round-2 model it had damaged, the final one)
    # are whole again; damaged files it never read are repaired when read.
    ledger = Ledger.open(sites[0])
    try:
        needed = [ledger.round(2).model_hash, ledger.round(4).model_hash]
    finally:
        ledger.close()
    for digest in needed:
        model = sites[1] / "models" / f"{digest.hex()}.model"
        assert keccak(model.read_bytes()) == digest


def test_chaos_every_peer_exits_on_one_head(tmp_path):
    # One of the benchmark's runs (benchmarks/chaos.py plays 20), shortened:
    # 4 rounds, kills in the first 3-12 s.
    result = run_chaos(3, tmp_path / "swarm", rounds=4, kill_window_s=(3, 12))
    assert result.converged, (result.problem, result.kills, result.outputs)
    assert len(result.kills) == 3 and result.restarts >= 3
