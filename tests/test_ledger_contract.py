"""The shipped Swarm contract artifact is exactly what its Vyper source compiles to."""

from __future__ import annotations

import json
from importlib import resources

from swarmflower.ledger.contract import ARTIFACT_NAME, compile_source, load_artifact


def test_artifact_matches_recompiled_source():
    shipped = json.loads(
        resources.files("swarmflower.ledger")
        .joinpath("contracts", ARTIFACT_NAME)
        .read_text()
    )
    fresh = compile_source()
    assert fresh["compiler"] == shipped["compiler"], (
        f"artifact built by {shipped['compiler']}, installed {fresh['compiler']}: "
        "pin that vyper, or regenerate with "
        "`python -m swarmflower.ledger.contract ledger/contracts/Swarm.json`"
    )
    assert fresh["abi"] == shipped["abi"]
    assert fresh["bytecode"] == shipped["bytecode"]
    assert fresh["bytecode_runtime"] == shipped["bytecode_runtime"]


def test_changed_source_changes_bytecode():
    source = resources.files("swarmflower.ledger").joinpath("contracts", "Swarm.vy")
    tweaked = source.read_text().replace('"round out of order"', '"round order"')
    assert compile_source(tweaked)["bytecode"] != compile_source()["bytecode"]


def test_artifact_exposes_the_round_call():
    fn = load_artifact().function("sealRound")
    assert fn.inputs[:3] == ("uint256", "uint256", "uint8")
