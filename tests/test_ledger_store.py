"""A replica on disk reopens intact, survives SIGKILL; `verify` catches tampering."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_utils import keccak
from ledger_helpers import make_genesis, produce, site_keys
from typer.testing import CliRunner

from swarmflower.errors import SwarmflowerError
from swarmflower.ledger import Ledger, LedgerError, StoreError
from swarmflower.ledger import errors as ledger_errors
from swarmflower.ledger.cli import app
from swarmflower.ledger.store import FILENAME

KEYS = site_keys(4, "store")
GENESIS = make_genesis(KEYS)
TESTS = Path(__file__).parent


def _replica(folder: Path, rounds: int) -> Ledger:
    ledger = Ledger.create(GENESIS, folder)
    for _ in range(rounds):
        produce(ledger, KEYS)
    return ledger


def test_reopened_replica_has_the_same_chain(tmp_path):
    ledger = _replica(tmp_path / "ledger", 6)
    head, history = ledger.head(), [r.block_hash for r in ledger.rounds()]
    ledger.close()
    again = Ledger.open(tmp_path)  # a site folder holding ledger/
    assert again.head() == head
    assert [r.block_hash for r in again.rounds()] == history
    produce(again, KEYS)  # and it keeps going
    again.close()
    assert Ledger.open(tmp_path / "ledger").head().height == 7


def test_creating_over_an_existing_replica_is_refused(tmp_path):
    _replica(tmp_path, 1).close()
    with pytest.raises(StoreError, match="already holds"):
        Ledger.create(GENESIS, tmp_path)
    with pytest.raises(StoreError, match="no ledger replica"):
        Ledger.open(tmp_path / "nowhere")


def test_side_blocks_persist_and_the_fork_choice_is_replayed(tmp_path):
    ledger = _replica(tmp_path, 2)
    late = produce(ledger, KEYS, adopt=False)
    takeover = produce(ledger, KEYS, view=1, adopt=False)
    ledger.import_block(takeover)
    ledger.import_block(late)
    head = ledger.head()
    ledger.close()
    assert Ledger.open(tmp_path).head() == head


# -- verify and show ---------------------------------------------------------


def test_cli_verify_prints_the_head_hash_last(tmp_path):
    ledger = _replica(tmp_path / "ledger", 4)
    head = ledger.head()
    ledger.close()
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "0x" + head.hash.hex()
    shown = CliRunner().invoke(app, ["show", str(tmp_path / "ledger")])
    assert shown.exit_code == 0, shown.output
    assert "normal" in shown.output and "0x" + head.hash.hex()[:12] in shown.output


def _tamper(folder: Path, height: int, edit) -> None:
    db = sqlite3.connect(folder / FILENAME)
    (stored,) = db.execute(
        "SELECT data FROM blocks WHERE height=?", (height,)
    ).fetchone()
    data = edit(bytes(stored[:-32]))
    db.execute("UPDATE blocks SET data=? WHERE height=?", (data + keccak(data), height))
    db.commit()
    db.close()


def _verify_fails(folder: Path, match: str) -> None:
    result = CliRunner().invoke(app, ["verify", str(folder)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert match in lines[0]


def test_verify_fails_on_a_tampered_model_hash(tmp_path):
    ledger = _replica(tmp_path, 5)
    model = ledger.round(3).model_hash
    ledger.close()
    _tamper(tmp_path, 3, lambda data: data.replace(model, keccak(b"evil model")))
    _verify_fails(tmp_path, "stored block 3")


def test_verify_fails_on_a_flipped_byte_at_rest(tmp_path):
    ledger = _replica(tmp_path, 3)
    ledger.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    (stored,) = db.execute("SELECT data FROM blocks WHERE height=2").fetchone()
    flipped = bytearray(stored)
    flipped[100] ^= 0xFF
    db.execute("UPDATE blocks SET data=? WHERE height=2", (bytes(flipped),))
    db.commit()
    db.close()
    _verify_fails(tmp_path, "checksum")


def test_verify_fails_when_the_stored_head_is_not_the_recomputed_one(tmp_path):
    ledger = _replica(tmp_path, 3)
    ledger.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("UPDATE meta SET value=? WHERE key='head'", (b"\x01" * 32,))
    db.commit()
    db.close()
    _verify_fails(tmp_path, "stored head")


def test_swarmflower_command_verifies_through_the_main_cli(tmp_path):
    ledger = _replica(tmp_path, 2)
    head = ledger.head()
    ledger.close()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from swarmflower.cli import main; main()",
            "ledger",
            "verify",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0x" + head.hash.hex()


def _sql(*statement) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        db = sqlite3.connect(folder / FILENAME)
        db.execute(*statement)
        db.commit()
        db.close()

    return damage


def _schema_text_not_utf8(folder: Path) -> None:
    """A table name in sqlite's own schema no longer UTF-8 (the sqlite module
    raises UnicodeDecodeError there, not a DatabaseError)."""
    path = folder / FILENAME
    data = bytearray(path.read_bytes())
    data[data.index(b"sqlite_sequence")] = 0x8C
    path.write_bytes(bytes(data))


_GENESIS_SQL = "UPDATE meta SET value=CAST(replace(CAST(value AS TEXT), ?, ?) AS BLOB)"
STORE_DAMAGE = {
    "genesis key renamed": _sql(
        _GENESIS_SQL + " WHERE key='genesis'", ('"timestamp"', '"timestamq"')
    ),
    "genesis hash not hex": _sql(
        _GENESIS_SQL + " WHERE key='genesis'",
        ('"initial_model_hash":"', '"initial_model_hash":"zz'),
    ),
    "genesis not a blob": _sql("UPDATE meta SET value='{}' WHERE key='genesis'"),
    "block not a blob": _sql("UPDATE blocks SET data=12345 WHERE height=1"),
    "schema text not utf-8": _schema_text_not_utf8,
}


@pytest.mark.parametrize("case", STORE_DAMAGE)
def test_open_reports_damage_as_a_store_error(case, tmp_path):
    """Never a bare KeyError, TypeError or UnicodeDecodeError: a caller that
    handles StoreError (a peer moving the replica aside) sees all damage."""
    _replica(tmp_path, 2).close()
    STORE_DAMAGE[case](tmp_path)
    with pytest.raises(StoreError, match=str(tmp_path)):
        Ledger.open(tmp_path)


def test_every_ledger_error_is_a_swarmflower_error():
    """One error root: the CLI turns any of them into one line."""
    found = [
        value
        for value in vars(ledger_errors).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert LedgerError in found and StoreError in found
    assert all(issubclass(error, SwarmflowerError) for error in found)


# -- SIGKILL -----------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from ledger_helpers import make_genesis, produce, site_keys
    from swarmflower.ledger import Ledger

    keys = site_keys(4, "store")
    folder = sys.argv[1]
    try:
        ledger = Ledger.open(folder)
    except Exception:
        ledger = Ledger.create(make_genesis(keys, rounds=10_000), folder)
    while True:
        produce(ledger, keys)
        print(ledger.head().height, flush=True)
    """
)


def _run_and_kill(folder: Path, wait_lines: int, extra_delay: float) -> int:
    """Start a writer, SIGKILL it mid-stream; return the last height it reported."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER.format(tests=str(TESTS)), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    last = 0
    try:
        for _ in range(wait_lines):
            line = proc.stdout.readline()
            assert line, "writer died early"
            last = int(line)
        time.sleep(extra_delay)  # land the kill anywhere inside the next write
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    for line in proc.stdout.read().split():
        last = int(line)  # heights reported before the kill landed
    return last


def test_replica_killed_mid_write_restarts_intact(tmp_path):
    reported = 0
    for attempt, delay in enumerate((0.0, 0.013, 0.031)):
        reported = _run_and_kill(tmp_path, wait_lines=3, extra_delay=delay)
        ledger = Ledger.open(tmp_path)  # re-validates every stored block
        height = ledger.head().height
        # every reported (committed) block survived; at most one more landed
        assert reported <= height <= reported + 1, (attempt, reported, height)
        produce(ledger, KEYS)
        ledger.close()
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_torn_wal_tail_is_discarded(tmp_path):
    reported = _run_and_kill(tmp_path, wait_lines=4, extra_delay=0.0)
    wal = tmp_path / (FILENAME + "-wal")
    assert wal.exists()  # a killed writer leaves its write-ahead log behind
    with open(wal, "ab") as fh:  # a torn, half-written frame at its end
        fh.write(os.urandom(3000))
    ledger = Ledger.open(tmp_path)
    assert reported <= ledger.head().height <= reported + 1
    ledger.close()
