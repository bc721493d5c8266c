"""The committed contract artefacts are exactly what the pinned solc-js builds today: the
four deployed contracts and the OPGVesting wallet of the OPG allocations."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ogkit.chain.bindings import COMPILED_DIR, COMPILED_NAMES, CONTRACT_NAMES

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "node_modules"
SOLC_VERSION = "0.8.37"


def _need_node_toolchain() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("`node` is not on PATH: cannot run ogkit/chain/compile.mjs")
    if not (NODE_MODULES / "solc" / "package.json").is_file():
        pytest.skip("node_modules/solc is missing (run `npm ci`): cannot compile the contracts")
    if not (NODE_MODULES / "@openzeppelin" / "contracts").is_dir():
        pytest.skip("node_modules/@openzeppelin/contracts is missing (run `npm ci`)")
    return node


def test_committed_artifacts_match_fresh_compile() -> None:
    node = _need_node_toolchain()
    proc = subprocess.run(
        [node, "ogkit/chain/compile.mjs", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        "committed artefacts differ from a fresh compile "
        "(run `node ogkit/chain/compile.mjs` and commit the result):\n" + proc.stderr + proc.stdout
    )
    assert f"{len(COMPILED_NAMES)} artefacts up to date" in proc.stdout + proc.stderr


def test_every_compiled_contract_has_one_artefact() -> None:
    assert set(COMPILED_NAMES) - set(CONTRACT_NAMES) == {"OPGVesting", "ZkJudge"}
    assert CONTRACT_NAMES == ("OPGToken", "ModelRegistry", "NodeRegistry", "InferenceSettlement")
    files = sorted(p.name for p in COMPILED_DIR.glob("*.json"))
    assert files == sorted(f"{n}.json" for n in COMPILED_NAMES)


@pytest.mark.parametrize("name", COMPILED_NAMES)
def test_artifact_shape_and_source_hash(name: str) -> None:
    text = (COMPILED_DIR / f"{name}.json").read_text(encoding="utf-8")
    art = json.loads(text)
    assert text == json.dumps(art, indent=2, sort_keys=True) + "\n", "not stably formatted"
    assert art["contractName"] == name
    assert art["sourceName"] == f"ogkit/chain/contracts/{name}.sol"
    assert art["compiler"].startswith(SOLC_VERSION + "+")
    assert art["settings"] == {
        "evmVersion": "cancun",
        "optimizer": {"enabled": True, "runs": 100},
    }
    assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 2
    assert len(art["deployedBytecode"]) // 2 - 1 <= 24_576, "over the EIP-170 code size limit"
    assert len(art["bytecode"]) // 2 - 1 <= 49_152, "over the EIP-3860 initcode size limit"
    assert art["sourceName"] in art["sources"]
    # sourceHash = sha256 over "<unit name>\n<sha256 of its text>\n" for every source used
    digest = hashlib.sha256()
    for unit in art["sources"]:
        path = (NODE_MODULES / unit) if unit.startswith("@openzeppelin/") else (REPO / unit)
        if not path.is_file():
            pytest.skip(f"{unit} is not available here (run `npm ci`)")
        text_hash = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(f"{unit}\n{text_hash}\n".encode())
    assert art["sourceHash"] == digest.hexdigest(), f"{name}: sources changed, recompile"
