"""Python bindings of ogkit's settlement contracts: their compiled build artefacts and enums.

The four contracts (``OPGToken``, ``ModelRegistry``, ``NodeRegistry``,
``InferenceSettlement``) are compiled by ``ogkit/chain/compile.mjs`` from the Solidity
sources in ``ogkit/chain/contracts/`` into one JSON build artefact per contract in
``ogkit/chain/artifacts/`` (:data:`COMPILED_DIR`). :func:`load_compiled` reads one (abi,
bytecode, deployedBytecode, source hash, ...); :func:`compiled_hashes` fingerprints them
all, so a deployment record can tell whether the contracts changed since it was made.
:class:`BatchStatus` mirrors ``InferenceSettlement.Status``.

See ``docs/contracts.md`` for the contracts themselves.
"""

from __future__ import annotations

import hashlib
import json
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any

from ogkit.errors import ChainError, ConfigError

__all__ = [
    "COMPILED_DIR",
    "COMPILED_NAMES",
    "CONTRACT_NAMES",
    "OPG",
    "BatchStatus",
    "compiled_hashes",
    "load_compiled",
]

COMPILED_DIR = Path(__file__).resolve().parent / "artifacts"
"""The compiled build artefacts, ``<Contract>.json`` (written by ``compile.mjs``)."""
CONTRACT_NAMES: tuple[str, ...] = (
    "OPGToken",
    "ModelRegistry",
    "NodeRegistry",
    "InferenceSettlement",
)
COMPILED_NAMES: tuple[str, ...] = (*CONTRACT_NAMES, "OPGVesting", "ZkJudge")
"""Every compiled contract: the four deployed ones and the vesting wallet of the OPG
allocations (one per vested allocation, ``ogkit.chain.tokenomics``), and the ZkJudge
(deployed with the settlement, which holds its address: ``zkJudge()``)."""
OPG = 10**18
"""One OPG in base units (18 decimals)."""


class BatchStatus(IntEnum):
    """``InferenceSettlement.Status`` values."""

    NONE = 0
    PENDING = 1
    DISPUTED = 2
    FINALIZED = 3
    SLASHED = 4
    REFUNDED = 5


@cache
def _compiled_text(name: str) -> str:
    path = COMPILED_DIR / f"{name}.json"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChainError(
            f"no compiled build artefact for contract {name!r} at {path}; "
            "build them with `node ogkit/chain/compile.mjs`"
        ) from None


def load_compiled(name: str) -> dict[str, Any]:
    """The compiled build artefact of contract ``name`` (abi, bytecode, deployedBytecode,
    ...)."""
    if name not in COMPILED_NAMES:
        raise ConfigError(f"unknown contract {name!r}; expected one of {', '.join(COMPILED_NAMES)}")
    try:
        compiled = json.loads(_compiled_text(name))
    except json.JSONDecodeError as exc:
        raise ChainError(f"build artefact of {name} is not valid JSON: {exc}") from exc
    for key in ("abi", "bytecode", "deployedBytecode"):
        if key not in compiled:
            raise ChainError(f"build artefact of {name} has no {key!r}; rebuild it")
    return compiled


def compiled_hashes() -> dict[str, dict[str, str]]:
    """Per contract: sha256 of its creation bytecode and the source hash it was built from."""
    out = {}
    for name in COMPILED_NAMES:
        compiled = load_compiled(name)
        code = bytes.fromhex(str(compiled["bytecode"]).removeprefix("0x"))
        out[name] = {
            "bytecodeSha256": hashlib.sha256(code).hexdigest(),
            "sourceHash": str(compiled.get("sourceHash", "")),
        }
    return out
