"""The Swarm contract: its compiled artifact and the ABI calls the ledger makes.

The artifact (`contracts/Swarm.json`) is what runs; `compile_source` rebuilds
it from `contracts/Swarm.vy` so a test can prove the two agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

SOURCE_NAME = "Swarm.vy"
ARTIFACT_NAME = "Swarm.json"


@dataclass(frozen=True, eq=False)
class Artifact:
    """Compiled contract: ABI, init code and runtime code."""

    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    runtime: bytes
    compiler: str

    def function(self, name: str) -> AbiFunction:
        return _function(self, name)

    def constructor_args(self, *args: Any) -> bytes:
        for item in self.abi:
            if item.get("type") == "constructor":
                return encode([_abi_type(i) for i in item["inputs"]], list(args))
        raise KeyError("the Swarm contract has no constructor")


@dataclass(frozen=True)
class AbiFunction:
    """One contract function: encodes calls and decodes inputs and results."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def from_abi(cls, item: dict[str, Any]) -> AbiFunction:
        return cls(
            name=item["name"],
            inputs=tuple(_abi_type(i) for i in item["inputs"]),
            outputs=tuple(_abi_type(o) for o in item.get("outputs", [])),
        )

    @property
    def selector(self) -> bytes:
        return function_signature_to_4byte_selector(
            f"{self.name}({','.join(self.inputs)})"
        )

    def encode_call(self, *args: Any) -> bytes:
        return self.selector + encode(list(self.inputs), list(args))

    def decode_call(self, data: bytes) -> tuple[Any, ...]:
        if data[:4] != self.selector:
            raise ValueError(f"calldata is not a call to {self.name}")
        return tuple(decode(list(self.inputs), data[4:]))

    def decode_result(self, output: bytes) -> tuple[Any, ...]:
        return tuple(decode(list(self.outputs), output))


@cache
def _function(artifact: Artifact, name: str) -> AbiFunction:
    for item in artifact.abi:
        if item.get("type") == "function" and item["name"] == name:
            return AbiFunction.from_abi(item)
    raise KeyError(f"the Swarm contract has no function {name!r}")


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]


def source_text() -> str:
    return resources.files(__package__).joinpath("contracts", SOURCE_NAME).read_text()


@cache
def load_artifact() -> Artifact:
    """The shipped, compiled contract (no compiler needed at run time)."""
    text = resources.files(__package__).joinpath("contracts", ARTIFACT_NAME).read_text()
    data = json.loads(text)
    return Artifact(
        abi=tuple(data["abi"]),
        bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
        runtime=bytes.fromhex(data["bytecode_runtime"].removeprefix("0x")),
        compiler=data["compiler"],
    )


def compile_source(source: str | None = None) -> dict[str, Any]:
    """Compile the Vyper source into the artifact's JSON shape."""
    import vyper  # compile-time only: replicas load the artifact

    out = vyper.compile_code(
        source if source is not None else source_text(),
        output_formats=["abi", "bytecode", "bytecode_runtime"],
    )
    return {
        "compiler": f"vyper {vyper.__version__}",
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def write_artifact(path: str) -> None:
    """Regenerate the artifact: `python -m swarmflower.ledger.contract PATH`."""
    with open(path, "w") as fh:
        json.dump(compile_source(), fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    import sys

    write_artifact(sys.argv[1])
