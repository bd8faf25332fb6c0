"""The update limits from the command line and `run_swarm`, and `enroll`'s
swarm files: `init --max-examples/--max-update-ratio` fix them in the genesis,
an in-process swarm's peers hold every offer to them, and a damaged CA key,
CA certificate or genesis is one line naming the file.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from swarm_helpers import heart_swarm

from swarmflower import cli
from swarmflower.codec import record_items
from swarmflower.errors import ConfigError
from swarmflower.ledger import Genesis
from swarmflower.ledger.records import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_UPDATE_RATIO
from swarmflower.provision import init_swarm
from swarmflower.round_protocol import (
    DEFAULT_LIMITS,
    UpdateLimits,
    offer_problem,
    sign_offer,
)
from swarmflower.site_config import TaskConfig, load_site_config
from swarmflower.tasks import TaskSpec


def run_main(monkeypatch, *args: str) -> int:
    """The command line's `main()` in this process (fast: imports are warm)."""
    monkeypatch.setattr("sys.argv", ["swarmflower", *args])
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def init_args(out: Path, *extra: str) -> tuple[str, ...]:
    return ("init", "--sites", "2", "--rounds", "3", "--out", str(out), *extra)


def test_the_clis_defaults_are_the_genesis_defaults():
    assert cli.DEFAULT_MAX_EXAMPLES == DEFAULT_MAX_EXAMPLES
    assert cli.DEFAULT_MAX_UPDATE_RATIO == DEFAULT_MAX_UPDATE_RATIO


def test_init_puts_the_limit_options_in_the_genesis(tmp_path, monkeypatch, capsys):
    out = tmp_path / "tight"
    limits = ("--max-examples", "5000", "--max-update-ratio", "12.5")
    assert run_main(monkeypatch, *init_args(out, *limits)) == 0
    printed = capsys.readouterr().out
    assert "update limits: num_examples 1..5000" in printed
    assert "<= 12.5 x max(||model||, 1)" in printed

    genesis = Genesis.from_json((out / "genesis.json").read_text())
    assert UpdateLimits.from_params(genesis.params) == UpdateLimits(5000, 12.5)
    for site in ("site-1", "site-2"):
        assert (out / site / "genesis.json").read_text() == genesis.to_json()
        # site.toml's [swarm] table reads back as the genesis holds it
        assert load_site_config(out / site).swarm == genesis.params
    defaults = replace(
        genesis.params,
        max_examples=DEFAULT_MAX_EXAMPLES,
        max_update_ratio=DEFAULT_MAX_UPDATE_RATIO,
    )
    assert replace(genesis, params=defaults).digest() != genesis.digest()


def test_init_with_the_default_limits_says_nothing_of_them(
    tmp_path, monkeypatch, capsys
):
    assert run_main(monkeypatch, *init_args(tmp_path / "plain")) == 0
    assert "update limits" not in capsys.readouterr().out
    genesis = Genesis.from_json((tmp_path / "plain" / "genesis.json").read_text())
    assert UpdateLimits.from_params(genesis.params) == DEFAULT_LIMITS


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-examples", "0", "--max-examples must be at least 1, got 0"),
        ("--max-examples", "-3", "--max-examples must be at least 1, got -3"),
        ("--max-examples", "nan", "--max-examples must be a whole number"),
        ("--max-examples", "inf", "--max-examples must be a whole number"),
        ("--max-update-ratio", "0", "--max-update-ratio must be finite and > 0"),
        ("--max-update-ratio", "-1", "--max-update-ratio must be finite and > 0"),
        ("--max-update-ratio", "nan", "got nan"),
        ("--max-update-ratio", "inf", "got inf"),
    ],
)
def test_bad_limits_are_one_line_and_exit_1(
    tmp_path, monkeypatch, capsys, option, value, message
):
    out = tmp_path / "refused"
    assert run_main(monkeypatch, *init_args(out, option, value)) == 1
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: ") and "\n" not in stderr
    assert message in stderr
    assert not out.exists()


# --- run_swarm -----------------------------------------------------------------


def test_run_swarm_fixes_its_limits_in_the_genesis_every_peer_holds():
    # cleveland trains on 199 examples, the other hospitals on 30..172: with
    # max_examples 180 every site refuses cleveland's updates, and the other
    # three (a majority) still seal every round.
    result = heart_swarm(3, max_examples=180, max_update_ratio=50.0, update_wait=0.3)
    chosen = UpdateLimits(180, 50.0)
    assert len(result.rounds) == 3
    for peer in result.sites:
        assert UpdateLimits.from_params(peer.ledger.genesis.params) == chosen
        assert peer.limits == chosen
    cleveland = next(p for p in result.sites if p.identity.name == "cleveland")
    for record in result.rounds:
        assert cleveland.address not in {c.site for c in record.commitments}
        assert len(record.commitments) == 3
    refused = {(r, s, why) for p in result.sites for r, s, why in p.log.refused_updates}
    assert {s for _, s, _ in refused} == {cleveland.identity.index}
    assert all("outside 1..max_examples (180)" in why for _, _, why in refused)

    # An update that moves the model further than 50 x max(||model||, 1) is
    # refused under these limits, though the default limits would take it.
    site = result.sites[1]
    model = result.final_arrays
    moved = ArrayRecord(
        {k: Array(a + np.float32(60.0)) for k, a in record_items(model)}
    )
    offer = sign_offer(
        site.identity,
        site.ledger.swarm_id,
        4,
        10,
        moved,
        parent=site.ledger.block_hash(3),
    )
    index = site.identity.index
    _, why = offer_problem(offer, index, model, site.ledger.swarm_id, site._limits)
    assert why is not None and "max_update_ratio 50 x" in why
    assert offer_problem(offer, index, model, site.ledger.swarm_id)[1] is None


@pytest.mark.parametrize(
    "limits", [{"max_examples": 0}, {"max_update_ratio": float("nan")}]
)
def test_run_swarm_refuses_bad_limits_before_it_starts(limits):
    with pytest.raises(ConfigError, match=next(iter(limits))):
        heart_swarm(1, **limits)


# --- enroll: the swarm folder's own files ----------------------------------------


@pytest.fixture(scope="module")
def swarm(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("limits") / "heart"
    init_swarm(out, TaskConfig(TaskSpec(num_sites=2), 0), num_sites=2, rounds=3)
    return out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ca/ca.key", b"garbage\n", "ca.key: not a PEM private key"),
        ("ca/ca.key", None, "ca.key: no such file"),
        ("ca/ca.pem", b"garbage\n", "ca.pem: not a PEM certificate"),
        ("ca/ca.pem", None, "ca.pem: no such file"),
        ("genesis.json", b"garbage\n", "genesis.json: not valid JSON"),
        ("genesis.json", b'{"sites": []}', "genesis.json: not a swarm genesis"),
        ("genesis.json", None, "genesis.json: no such file"),
    ],
)
def test_enroll_with_a_bad_swarm_file_is_one_line_naming_it(
    swarm, tmp_path, monkeypatch, capsys, name, content, message
):
    copy = tmp_path / "swarm"
    shutil.copytree(swarm, copy)
    if content is None:
        (copy / name).unlink()
    else:
        (copy / name).write_bytes(content)
    enroll = ("enroll", "--swarm", str(copy), "--name", "va")
    assert run_main(monkeypatch, *enroll) == 1
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: ") and "\n" not in stderr
    assert str(copy / name) in stderr and message in stderr
    assert not (copy / "va").exists()


def test_enroll_refuses_a_ca_certificate_of_another_key(
    swarm, tmp_path, monkeypatch, capsys
):
    from swarmflower import pki

    copy = tmp_path / "swarm"
    shutil.copytree(swarm, copy)
    _, other = pki.create_ca("another CA")
    pki.save_cert(other, copy / "ca" / "ca.pem")
    assert run_main(monkeypatch, "enroll", "--swarm", str(copy), "--name", "va") == 1
    assert "not the certificate of" in capsys.readouterr().err
    assert not (copy / "va").exists()
