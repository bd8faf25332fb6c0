"""A bad file in a site folder is one line on stderr naming it, exit code 1.

One swarm is made per module; each case copies a site folder, damages one
file and runs the real command line's `main()` in this process (bounded in
time, so a case that reached the peer's network loop fails instead of
hanging). A damaged replica at `peer` start is moved aside and rebuilt; a
replica of another swarm is refused and left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import run_cli
from ledger_helpers import make_genesis, produce, site_keys

from swarmflower.errors import ConfigError
from swarmflower.ledger import Ledger
from swarmflower.ledger.store import FILENAME
from swarmflower.pki import load_eth_key
from swarmflower.site_config import load_site_config
from swarmflower.site_files import load_genesis, open_model_store, open_replica

SITE = "site-1"
CASE_SECONDS = 60  # generous: a case either fails fast or has hung


@contextlib.contextmanager
def time_bound(seconds: int) -> Iterator[None]:
    """Raise in the main thread if the body runs longer than `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (hung?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`swarmflower ARGS` through the console script's `main()`: (code, stderr)."""
    from swarmflower.cli import main

    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["swarmflower", *args])
    code = 0
    with time_bound(CASE_SECONDS):
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(code: int, stderr: str, names: Path | str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines[0]
    assert str(names) in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def swarm(tmp_path_factory) -> Path:
    from real_sites import init_swarm

    out = tmp_path_factory.mktemp("swarm") / "heart"
    init_swarm(out, sites=3, rounds=2)
    return out


@pytest.fixture
def site(swarm, tmp_path) -> Path:
    """A fresh copy of site-1's folder (kept next to a copy of site-2's)."""
    shutil.copytree(swarm / "site-2", tmp_path / "site-2")
    return Path(shutil.copytree(swarm / SITE, tmp_path / SITE))


# -- damage --------------------------------------------------------------------


def write(name: str, data: str | bytes) -> Callable[[Path], None]:
    def damage(site: Path) -> None:
        path = site / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)

    return damage


def delete(name: str) -> Callable[[Path], None]:
    return lambda site: (site / name).unlink()


def from_site_2(name: str) -> Callable[[Path], None]:
    return lambda site: shutil.copy(site.parent / "site-2" / name, site / name)


def edit_toml(pattern: str, new: str) -> Callable[[Path], None]:
    """Replace the first line of site.toml that matches `pattern` (a regex)."""

    def damage(site: Path) -> None:
        path = site / "site.toml"
        text, count = re.subn(pattern, new, path.read_text(), count=1, flags=re.M)
        assert count == 1, pattern
        path.write_text(text)

    return damage


def edit_genesis(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(site: Path) -> None:
        path = site / "genesis.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return damage


def truncate(name: str, keep: int) -> Callable[[Path], None]:
    def damage(site: Path) -> None:
        path = site / name
        path.write_bytes(path.read_bytes()[:keep])

    return damage


def flip_last_byte(name: str) -> Callable[[Path], None]:
    def damage(site: Path) -> None:
        path = site / name
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        path.write_bytes(bytes(data))

    return damage


def stranger(data: dict) -> None:
    """The first founding site replaced by an address of no site here."""
    data["sites"][0][0] = site_keys(1, "stranger")[0].public_key.to_checksum_address()


PEER_CASES = {
    "site.toml missing": ("site.toml", delete("site.toml")),
    "site.toml not TOML": ("site.toml", write("site.toml", "[site\nname = ")),
    "site.toml field missing": ("site.toml", edit_toml(r"^index = 1\n", "")),
    "site.toml port not a number": (
        "site.toml",
        edit_toml(r"^port = \d+$", 'port = "http"'),
    ),
    "site.toml port out of range": (
        "site.toml",
        edit_toml(r"^port = \d+$", "port = 70000"),
    ),
    "site.toml peer address": (
        "site.toml",
        edit_toml(r'^eth_address = "0x', 'eth_address = "0xnot'),
    ),
    "site.toml empty file name": (
        "site.toml",
        edit_toml(r'^genesis = "genesis.json"$', 'genesis = ""'),
    ),
    "partition out of range": (
        "site.toml",
        edit_toml(r"^partition_id = 0$", "partition_id = 7"),
    ),
    "partition negative": (
        "site.toml",
        edit_toml(r"^partition_id = 0$", "partition_id = -1"),
    ),
    "genesis missing": ("genesis.json", delete("genesis.json")),
    "genesis garbage": ("genesis.json", write("genesis.json", os.urandom(300))),
    "genesis not JSON": ("genesis.json", write("genesis.json", "{sites: 3")),
    "genesis a list": ("genesis.json", write("genesis.json", "[1, 2, 3]")),
    "genesis key missing": ("genesis.json", edit_genesis(lambda d: d.pop("params"))),
    "genesis sites not a list": (
        "genesis.json",
        edit_genesis(lambda d: d.update(sites=3)),
    ),
    "genesis bad hash": (
        "genesis.json",
        edit_genesis(lambda d: d.update(initial_model_hash="zz")),
    ),
    "genesis bad params": (
        "genesis.json",
        edit_genesis(lambda d: d["params"].update(rounds="two")),
    ),
    "genesis of another swarm": ("genesis.json", edit_genesis(stranger)),
    "site key missing": ("site.key", delete("site.key")),
    "site key garbage": ("site.key", write("site.key", "not a key\n")),
    "site key of another site": ("site.key", from_site_2("site.key")),
    "site key not secp256k1": (
        "site.key",
        lambda s: shutil.copy(s / "tls.key", s / "site.key"),
    ),
    "certificate missing": ("site.pem", delete("site.pem")),
    "certificate garbage": ("site.pem", write("site.pem", os.urandom(200))),
    "certificate of another site": ("site.pem", from_site_2("site.pem")),
    "TLS key missing": ("tls.key", delete("tls.key")),
    "TLS key garbage": ("tls.key", truncate("tls.key", 60)),
    "TLS key of another site": ("tls.key", from_site_2("tls.key")),
    "CA missing": ("ca.pem", delete("ca.pem")),
    "CA garbage": ("ca.pem", write("ca.pem", "-----BEGIN CERTIFICATE-----\n")),
    "CA not the swarm's": (
        "ca.pem",
        lambda s: shutil.copy(s / "site.pem", s / "ca.pem"),
    ),
    "model missing": ("initial_model.bin", delete("initial_model.bin")),
    "model garbage": ("initial_model.bin", write("initial_model.bin", b"\x00garbage")),
    "model truncated": ("initial_model.bin", truncate("initial_model.bin", 40)),
    "model altered": ("initial_model.bin", flip_last_byte("initial_model.bin")),
    "ledger not a folder": ("ledger", write("ledger", "not a replica")),
}


@pytest.mark.parametrize("case", PEER_CASES)
def test_peer_refuses_a_bad_site_file_in_one_line(case, site, monkeypatch, capsys):
    blamed, damage = PEER_CASES[case]
    damage(site)
    code, stderr = run_main(
        monkeypatch, capsys, "peer", "--config", str(site / "site.toml")
    )
    assert_one_line(code, stderr, site / blamed)


def test_peer_names_the_missing_config_file(tmp_path, monkeypatch, capsys):
    code, stderr = run_main(
        monkeypatch, capsys, "peer", "--config", str(tmp_path / "nowhere.toml")
    )
    assert_one_line(code, stderr, tmp_path / "nowhere.toml")


def test_a_real_peer_process_refuses_a_garbage_genesis(site):
    (site / "genesis.json").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    done = run_cli("peer", "--config", str(site / "site.toml"), timeout=60)
    assert_one_line(done.returncode, done.stderr, site / "genesis.json")


# -- init ------------------------------------------------------------------------


@pytest.mark.parametrize("base_port", ["0", "-5", "1023", "65533", "70000"])
def test_init_refuses_a_base_port_without_room(
    base_port, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "swarm"
    code, stderr = run_main(
        monkeypatch,
        capsys,
        *("init", "--task", "heart", "--sites", "3", "--rounds", "2"),
        *("--base-port", base_port, "--out", str(out)),
    )
    line = assert_one_line(code, stderr, "--base-port")
    assert base_port in line
    assert not out.exists()  # checked before anything is written


# -- ledger verify ---------------------------------------------------------------

GENESIS = make_genesis(site_keys(4, "files"))


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    """A replica of a few rounds, closed (its sqlite file checkpointed)."""
    folder = tmp_path_factory.mktemp("replica") / "ledger"
    ledger = Ledger.create(GENESIS, folder)
    for _ in range(4):
        produce(ledger, site_keys(4, "files"))
    ledger.close()
    return folder


def overwrite_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 512] = os.urandom(512)
    path.write_bytes(bytes(data))


def overwrite_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:4096] = os.urandom(4096)
    path.write_bytes(bytes(data))


DB_DAMAGE = {
    "middle overwritten": overwrite_middle,
    "page one overwritten": overwrite_header,
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]),
    "garbage": lambda p: p.write_bytes(os.urandom(8192)),
    "emptied": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("case", DB_DAMAGE)
def test_verify_names_a_damaged_sqlite_file(
    case, replica, tmp_path, monkeypatch, capsys
):
    folder = Path(shutil.copytree(replica, tmp_path / "ledger"))
    DB_DAMAGE[case](folder / FILENAME)
    code, stderr = run_main(monkeypatch, capsys, "ledger", "verify", str(folder))
    assert_one_line(code, stderr, folder)


def test_a_real_verify_process_names_a_garbage_sqlite_file(replica, tmp_path):
    folder = Path(shutil.copytree(replica, tmp_path / "ledger"))
    (folder / FILENAME).write_bytes(os.urandom(4096 * 3))
    done = run_cli("ledger", "verify", str(folder), timeout=60)
    assert_one_line(done.returncode, done.stderr, folder / FILENAME)


# -- a damaged replica at peer start ------------------------------------------


def _site_replica(site: Path, swarm: Path, rounds: int) -> None:
    """`rounds` sealed rounds in the site's own replica, by the swarm's keys."""
    config = load_site_config(site)
    keys = [load_eth_key(p) for p in sorted(swarm.glob("site-*/site.key"))]
    ledger = Ledger.create(load_genesis(config), config.path("ledger"))
    for _ in range(rounds):
        produce(ledger, keys)
    ledger.close()


def schema_text_not_utf8(path: Path) -> None:
    """A table name in sqlite's own schema no longer UTF-8: the sqlite module
    raises UnicodeDecodeError, not a DatabaseError."""
    data = bytearray(path.read_bytes())
    data[data.index(b"sqlite_sequence")] = 0x8C
    path.write_bytes(bytes(data))


def stored_genesis_edited(path: Path) -> None:
    """The stored genesis still parses, but is no longer the one the replica
    recorded the swarm id of: damage, not another swarm's replica."""
    db = sqlite3.connect(path)
    (text,) = db.execute("SELECT value FROM meta WHERE key='genesis'").fetchone()
    genesis = json.loads(text)
    genesis["timestamp"] += 1
    db.execute(
        "UPDATE meta SET value=? WHERE key='genesis'", (json.dumps(genesis).encode(),)
    )
    db.commit()
    db.close()


REPLICA_DAMAGE = {
    "middle overwritten": overwrite_middle,
    "schema text not utf-8": schema_text_not_utf8,
    "stored genesis edited": stored_genesis_edited,
}


@pytest.mark.parametrize("case", REPLICA_DAMAGE)
def test_open_replica_moves_a_damaged_replica_aside_and_starts_afresh(
    case, site, swarm, caplog
):
    _site_replica(site, swarm, 2)
    config = load_site_config(site)
    genesis = load_genesis(config)
    ledger = open_replica(config, genesis)  # intact: reopened as it was
    assert ledger.head().height == 2
    ledger.close()

    REPLICA_DAMAGE[case](site / "ledger" / FILENAME)
    damaged = (site / "ledger" / FILENAME).read_bytes()
    with caplog.at_level(logging.WARNING, logger="swarmflower.site"):
        ledger = open_replica(config, genesis, repair=True)
    try:
        assert ledger.head().height == 0
        assert ledger.genesis.digest() == genesis.digest()
    finally:
        ledger.close()
    (moved,) = site.glob("ledger.damaged-*")
    assert re.fullmatch(r"ledger\.damaged-\d{8}T\d{6}", moved.name), moved.name
    assert (moved / FILENAME).read_bytes() == damaged  # kept as it was
    notices = [r.getMessage() for r in caplog.records if r.name == "swarmflower.site"]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "damaged replica" in notices[0] and str(moved) in notices[0]
    assert "rebuilding from genesis and peers" in notices[0]
    again = Ledger.open(site / "ledger")  # a real replica on disk
    assert again.head().height == 0
    again.close()


@pytest.mark.parametrize("case", REPLICA_DAMAGE)
def test_peer_stops_on_a_damaged_replica_in_one_line_and_leaves_it(
    case, site, swarm, monkeypatch, capsys
):
    _site_replica(site, swarm, 2)
    REPLICA_DAMAGE[case](site / "ledger" / FILENAME)
    before = {p: p.read_bytes() for p in (site / "ledger").iterdir()}
    code, stderr = run_main(
        monkeypatch, capsys, "peer", "--config", str(site / "site.toml")
    )
    line = assert_one_line(code, stderr, site / "ledger")
    assert "damaged replica" in line and "--repair" in line
    assert {p: p.read_bytes() for p in (site / "ledger").iterdir()} == before
    assert not list(site.glob("ledger.damaged-*"))


def test_peer_stops_on_a_damaged_model_file_in_one_line_and_leaves_it(
    site, monkeypatch, capsys
):
    from swarmflower.model_store import DiskModelStore

    store = DiskModelStore(site / "models")
    digest = store.put_blob(b"a strategy state " * 50)
    path = site / "models" / f"{digest.hex()}.state"
    path.write_bytes(b"not what the name says")
    code, stderr = run_main(
        monkeypatch, capsys, "peer", "--config", str(site / "site.toml")
    )
    line = assert_one_line(code, stderr, path)
    assert "damaged model file" in line and "--repair" in line
    assert path.read_bytes() == b"not what the name says"  # left as it was
    config = load_site_config(site)
    repaired = open_model_store(config, repair=True)
    assert not path.exists() and repaired.get_blob(digest) is None
    assert (site / "models" / "damaged" / path.name).exists()


def test_open_replica_refuses_a_replica_of_another_swarm(site, monkeypatch, capsys):
    Ledger.create(GENESIS, site / "ledger").close()
    before = (site / "ledger" / FILENAME).read_bytes()
    config = load_site_config(site)
    with pytest.raises(ConfigError, match="another swarm"):
        open_replica(config, load_genesis(config))
    code, stderr = run_main(
        monkeypatch, capsys, "peer", "--config", str(site / "site.toml")
    )
    line = assert_one_line(code, stderr, site / "ledger")
    assert "another swarm" in line
    assert not list(site.glob("ledger.damaged-*"))  # left where it was
    assert (site / "ledger" / FILENAME).read_bytes() == before
