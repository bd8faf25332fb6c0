"""`swarmflower init` and `enroll`: the files a real swarm starts from.

Runs the real command line, then checks what a peer will rely on: the site
configs load, every site holds the same genesis, the ledger starts from it,
the initial model matches its hash, keys are private, and the certificates
authenticate a real mutual-TLS gRPC handshake.
"""

from __future__ import annotations

import json
import shutil
import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cli_helpers import run_cli
from eth_utils import keccak

from swarmflower import pki
from swarmflower.codec import decode_ndarrays, encode_ndarrays
from swarmflower.errors import ConfigError
from swarmflower.ledger import Genesis, Ledger
from swarmflower.provision import load_enrollment
from swarmflower.site_config import load_site_config

SITES = ("site-1", "site-2", "site-3")


def run_main(monkeypatch, *args: str) -> int:
    """The command line's `main()` in this process (fast: imports are warm)."""
    from swarmflower.cli import main

    monkeypatch.setattr("sys.argv", ["swarmflower", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def swarm(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("swarm") / "heart"
    done = run_cli(
        *("init", "--task", "heart", "--sites", "3", "--rounds", "5"),
        *("--out", str(out), "--base-port", "47200"),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "swarmflower peer" in done.stdout
    return out


def test_init_writes_the_layout_with_private_keys(swarm):
    assert (swarm / "ca" / "ca.pem").is_file()
    assert (swarm / "genesis.json").is_file()
    private = [swarm / "ca" / "ca.key"]
    for name in SITES:
        folder = swarm / name
        for file in ("site.pem", "ca.pem", "site.toml", "genesis.json"):
            assert (folder / file).is_file(), folder / file
        private += [folder / "site.key", folder / "tls.key"]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_site_configs_load_and_name_each_other(swarm):
    configs = [load_site_config(swarm / name) for name in SITES]
    assert [c.name for c in configs] == ["cleveland", "hungary", "switzerland"]
    assert [c.port for c in configs] == [47201, 47202, 47203]
    assert [c.task.partition_id for c in configs] == [0, 1, 2]
    addresses = {c.name: pki.load_eth_key(c.path("eth_key")) for c in configs}
    for config in configs:
        assert config.swarm.rounds == 5 and config.swarm.min_peers == 2
        assert config.swarm.strategy == "FedAvg"
        assert {p.name for p in config.peers} == set(addresses) - {config.name}
        for peer in config.peers:
            key = addresses[peer.name]
            assert peer.eth_address == key.public_key.to_checksum_address()


def test_every_site_holds_the_genesis_the_ledger_starts_from(swarm, tmp_path):
    text = (swarm / "genesis.json").read_text()
    assert all((swarm / n / "genesis.json").read_text() == text for n in SITES)
    genesis = Genesis.from_json(text)
    ca_cert = pki.load_cert(swarm / "ca" / "ca.pem")
    expected = []
    for name in SITES:
        cert = pki.load_cert(swarm / name / "site.pem")
        address = pki.verify_site_cert(cert, ca_cert)
        key = pki.load_eth_key(swarm / name / "site.key")
        assert address == key.public_key.to_checksum_address()
        expected.append((address, pki.fingerprint(cert)))
    assert [(s.address, s.cert_fingerprint) for s in genesis.sites] == expected
    assert genesis.params.rounds == 5 and genesis.params.min_peers == 2
    ledger = Ledger.create(genesis, tmp_path / "ledger")
    try:
        assert all(ledger.is_enrolled(address) for address, _ in expected)
        assert ledger.head().height == 0
    finally:
        ledger.close()


def test_initial_model_file_hashes_to_the_genesis_model_hash(swarm):
    genesis = Genesis.from_json((swarm / "genesis.json").read_text())
    for name in SITES:
        blob = (swarm / name / "initial_model.bin").read_bytes()
        assert keccak(blob) == genesis.initial_model_hash
        arrays = decode_ndarrays(blob)
        assert encode_ndarrays(arrays.items()) == blob  # decodes losslessly


def test_init_refuses_a_non_empty_folder(swarm, monkeypatch, capsys):
    before = (swarm / "genesis.json").read_text()
    assert run_main(monkeypatch, "init", "--rounds", "5", "--out", str(swarm)) == 1
    stderr = capsys.readouterr().err
    assert stderr.strip().count("\n") == 0
    assert "not empty" in stderr
    assert (swarm / "genesis.json").read_text() == before


def _write_toml_without(source: Path, target: Path, line: str, instead: str) -> Path:
    text = source.read_text()
    assert line in text
    target.write_text(text.replace(line, instead, 1))
    return target


@pytest.mark.parametrize(
    ("line", "instead", "key"),
    [
        ("port = 47201\n", "", "site.port"),
        ("port = 47201\n", 'port = "47201"\n', "site.port"),
        ("rounds = 5\n", "rounds = 5.5\n", "swarm.rounds"),
        ("partition_id = 0\n", "partition_id = -1\n", "task.partition_id"),
        ('optimizer = "sgd"\n', "optimizer = true\n", "task.optimizer"),
        ("[files]\n", "files = 3\n[other]\n", "files"),
    ],
)
def test_a_malformed_site_toml_names_the_key(swarm, tmp_path, line, instead, key):
    path = _write_toml_without(
        swarm / "site-1" / "site.toml", tmp_path / "site.toml", line, instead
    )
    with pytest.raises(ConfigError, match=f"'{key}'") as caught:
        load_site_config(path)
    assert str(path) in str(caught.value)


def test_a_missing_or_broken_site_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such site configuration"):
        load_site_config(tmp_path / "site.toml")
    (tmp_path / "site.toml").write_text("[site\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_site_config(tmp_path / "site.toml")


# --- mutual TLS with the certificates init wrote ------------------------------


def _tls(folder: Path) -> tuple[bytes, bytes, bytes]:
    tls = load_site_config(folder).tls_material()
    return tls.ca_cert, tls.key, tls.cert


@pytest.fixture
def tls_server(swarm):
    """Site 1 serving one method that names the caller's bound address."""
    ca, key, cert = _tls(swarm / "site-1")
    authorize = pki.authorizer(pki.load_cert(swarm / "ca" / "ca.pem"))

    def who_is_calling(request: bytes, context: grpc.ServicerContext) -> bytes:
        pem = context.auth_context()["x509_pem_cert"][0]
        return (authorize(pem) or "refused").encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(who_is_calling)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Who", {"Am": handler}),)
    )
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def _call(target: str, ca: bytes, key: bytes, cert: bytes) -> bytes:
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(target, credentials) as channel:
        return channel.unary_unary("/test.Who/Am")(b"", timeout=10)


def test_sites_from_init_complete_a_mutual_tls_handshake(swarm, tls_server):
    answer = _call(tls_server, *_tls(swarm / "site-2"))
    expected = pki.load_eth_key(swarm / "site-2" / "site.key")
    assert answer.decode() == expected.public_key.to_checksum_address()


def test_a_client_from_another_ca_is_refused_at_the_handshake(
    swarm, tls_server, tmp_path
):
    ca_key, ca_cert = pki.create_ca("swarmflower swarm CA")
    stranger = pki.issue_site(ca_key, ca_cert, "mallory", pki.new_eth_key())
    pki.save_private_key(stranger.tls_key, tmp_path / "tls.key")
    swarm_ca = (swarm / "site-1" / "ca.pem").read_bytes()
    with pytest.raises(grpc.RpcError) as caught:
        _call(
            tls_server,
            swarm_ca,  # trusts the real server, presents a foreign client cert
            (tmp_path / "tls.key").read_bytes(),
            pki.cert_pem(stranger.cert),
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


# --- enroll ---------------------------------------------------------------


def test_enroll_admits_a_site_that_the_next_round_puts_on_the_ledger(
    swarm, tmp_path, monkeypatch, capsys
):
    copy = tmp_path / "swarm"
    shutil.copytree(swarm, copy)
    enroll = ("enroll", "--swarm", str(copy), "--name", "va")
    assert run_main(monkeypatch, *enroll) == 0, capsys.readouterr().err

    folder = copy / "va"
    config = load_site_config(folder)
    assert (config.index, config.port, config.task.partition_id) == (4, 47204, 3)
    assert {p.name for p in config.peers} == {"cleveland", "hungary", "switzerland"}
    cert = pki.load_cert(folder / "site.pem")
    ca_cert = copy / "ca" / "ca.pem"
    enrollment = load_enrollment(folder / "enrollment.json", ca_cert)
    assert enrollment.address == pki.verify_site_cert(cert, pki.load_cert(ca_cert))
    assert enrollment.cert_fingerprint == pki.fingerprint(cert)
    assert stat.S_IMODE((folder / "site.key").stat().st_mode) == 0o600
    assert enrollment.listen == "127.0.0.1:47204"
    for name in SITES:  # the members learn of it from the ledger, not files
        assert "va" not in {p.name for p in load_site_config(copy / name).peers}

    # the members submit it and the next sealed round enrolls the site
    genesis = Genesis.from_json((copy / "genesis.json").read_text())
    keys = [pki.load_eth_key(copy / name / "site.key") for name in SITES]
    by_address = {k.public_key.to_checksum_address(): k for k in keys}
    ledger = Ledger.create(genesis)
    try:
        ledger.enroll(enrollment)
        for key in keys:
            ledger.commit(key, 1, keccak(key.to_bytes()), 10)
        leader = by_address[ledger.proposer(1, 0)]
        ledger.seal_round(leader, 1, keccak(b"model"), keccak(b"state"))
        assert ledger.round(1).enrolled == (enrollment,)
        assert ledger.is_enrolled(enrollment.address)
    finally:
        ledger.close()

    capsys.readouterr()
    assert run_main(monkeypatch, *enroll) == 1
    assert "already exists" in capsys.readouterr().err


def test_load_enrollment_refuses_a_mismatched_fingerprint(swarm, tmp_path):
    from swarmflower.provision import write_enrollment

    ca_key = pki.load_private_key(swarm / "ca" / "ca.key")
    ca_cert = pki.load_cert(swarm / "ca" / "ca.pem")
    site = pki.issue_site(ca_key, ca_cert, "va", pki.new_eth_key())
    path = tmp_path / "enrollment.json"
    write_enrollment(
        path,
        name="va",
        address=site.address,
        cert_fingerprint=bytes(32).hex(),
        cert=pki.cert_pem(site.cert).decode(),
    )
    with pytest.raises(ConfigError, match="cert_fingerprint"):
        load_enrollment(path)


def test_task_options_round_trip_through_site_toml(swarm, tmp_path):
    from dataclasses import replace

    from swarmflower.site_config import write_site_config
    from swarmflower.tasks import TaskSpec

    config = load_site_config(swarm / "site-1")
    spec = TaskSpec(
        task="transcriptome",
        num_sites=3,
        options={"genes": 40, "studies": 6, "samples": 300},
    )
    moved = replace(config, task=replace(config.task, spec=spec), folder=tmp_path)
    back = load_site_config(write_site_config(moved))
    assert back.task.spec == spec
    assert dict(back.task.spec.options) == {"genes": 40, "studies": 6, "samples": 300}


def test_bucketing_is_fixed_in_the_genesis_and_every_site_merges_with_it(
    monkeypatch, tmp_path, capsys
):
    from swarmflower.site_runtime import build_site

    out = tmp_path / "bucketed"
    assert (
        run_main(
            monkeypatch,
            *("init", "--task", "heart", "--sites", "3", "--rounds", "2"),
            *("--strategy", "AlignedAvg", "--bucketing", "2"),
            *("--out", str(out), "--base-port", "47300"),
        )
        == 0
    )
    assert "AlignedAvg over buckets of 2" in capsys.readouterr().out
    genesis = json.loads((out / "genesis.json").read_text())
    assert genesis["params"]["bucketing"] == 2
    config = load_site_config(out / "site-2")
    assert config.swarm.bucketing == 2
    peer, ledger, workload = build_site(config, report=lambda line: None)
    try:
        assert (workload.strategy.name, workload.strategy.bucketing) == (
            "AlignedAvg",
            2,
        )
    finally:
        ledger.close()
    refused = run_main(
        monkeypatch,
        *("init", "--task", "heart", "--sites", "3", "--rounds", "2"),
        *("--bucketing", "1"),
        *("--out", str(tmp_path / "one"), "--base-port", "47310"),
    )
    assert refused == 1
    assert "bucketing must be 0 (off) or at least 2" in capsys.readouterr().err
