"""On-chain verification through EZKL's reusable verifier, for profiles whose generated
verifier exceeds EIP-170.

The Halo2 verifier ezkl generates for one verifying key holds the whole circuit in its
code: for the sample tabular model it is 21.6 KB at N = 1 and 33.9 KB from N = 8, over
EIP-170's 24,576 bytes. ezkl 23 also renders a *reusable* verifier
(``create_evm_verifier(..., reusable=True)``, 10.9 KB): one contract for every circuit,
told the circuit by a verifying-key artefact (VKA, ``create_evm_vka``) passed as
``bytes32[]`` with each proof, which must have been registered with it
(``registerVka``, keyed by its keccak256). ogkit puts the two together:

* :func:`ensure_reusable_verifier` generates the reusable verifier from a profile's keys and
  compiles it with the pinned solc-js (the source does not depend on the circuit);
  :func:`ensure_vka` makes the profile's VKA. Both are cached in the store beside the
  generated verifier (``zk/verifiers/<keys id>-reusable.json``, ``<keys id>.vka``).
* :func:`deploy_reusable_verifier` deploys the reusable verifier once per chain (a record
  ``zk/reusable/<chain id>/<code hash>.json`` in the store; reused while the code at the
  recorded address is the compiled one).
* :func:`deploy_adapter` deploys ``ZkVkVerifier`` (``ogkit/zk/contracts``, artefact
  committed in ``ogkit/zk/artifacts``) for one profile: it keeps the VKA as the code of a
  data contract, registers it, and offers ``verifyProof(bytes, uint256[]) returns (bool)``,
  the call ``ZkJudge`` makes, so the judge is unchanged.
* :func:`deploy_profile_verifier` picks the path: the generated verifier when it fits
  EIP-170, else (or when asked) the reusable verifier and an adapter.
* :func:`adapter_problems` is the governor's review of an adapter: its code must be the
  committed artefact's, the contract it sends proofs to must carry exactly the reusable
  verifier compiled here, and the VKA it holds must be the one re-derived from the keys.
"""

from __future__ import annotations

import json
import logging
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ArtifactError, ChainError, ZkError
from ogkit.store import ContentStore
from ogkit.zk.keys import ZK_KEYS, ZK_SRS, ZkKeys, materialise
from ogkit.zk.profile import ZK_SETTINGS, ZkProfile

log = logging.getLogger(__name__)

__all__ = [
    "ADAPTER",
    "REUSABLE",
    "adapter_artifact",
    "adapter_problems",
    "deploy_adapter",
    "deploy_profile_verifier",
    "deploy_reusable_verifier",
    "ensure_reusable_verifier",
    "ensure_vka",
    "measure_reusable_gas",
    "vka_words",
]

REUSABLE = "Halo2VerifierReusable"
ADAPTER = "ZkVkVerifier"
_ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _code(art: dict[str, Any]) -> bytes:
    return bytes.fromhex(str(art["deployedBytecode"]).removeprefix("0x"))


@cache
def adapter_artifact() -> dict[str, Any]:
    """The committed build artefact of ``ZkVkVerifier`` (``node ogkit/zk/compile_verifier.mjs
    --write`` rebuilds it; ``--check`` compares)."""
    path = _ARTIFACTS / f"{ADAPTER}.json"
    try:
        art = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZkError(
            f"cannot read {path}: {exc}; run `node ogkit/zk/compile_verifier.mjs --write`"
        ) from exc
    art["code_size"] = len(_code(art))
    return art


def _ezkl_paths(
    store: ContentStore, profile: ZkProfile, keys: ZkKeys, check: bool = False
) -> tuple[Path, Path, Path]:
    return (
        materialise(store, ZK_KEYS, keys.vk_id, check=check),
        materialise(store, ZK_SETTINGS, profile.settings_hash, check=check),
        materialise(store, ZK_SRS, keys.srs_id, check=check),
    )


def reusable_source(
    store: ContentStore, profile: ZkProfile, keys: ZkKeys, *, check: bool = False
) -> str:
    """ezkl's reusable verifier, rendered from ``keys``."""
    from ogkit.zk.evm import render_verifier

    source = render_verifier(store, profile, keys, reusable=True, check=check)
    if f"contract {REUSABLE}" not in source:
        raise ZkError(f"ezkl's reusable verifier source has no contract {REUSABLE}")
    return source


def ensure_reusable_verifier(
    store: ContentStore, profile: ZkProfile, keys: ZkKeys, *, fresh: bool = False
) -> dict:
    """The compiled reusable verifier (generated from ``keys`` and compiled once, then
    cached under ``zk/verifiers/<keys id>-reusable.json``; the source is the same for every
    circuit and compiles once per process). ``fresh``: generated again from the checked
    key, settings and SRS, not read from the store's cache (what a review compares with)."""
    from ogkit.zk.evm import compiled

    if fresh:
        art = compiled(reusable_source(store, profile, keys, check=True), REUSABLE)
        art["code_size"] = len(_code(art))
        return art
    path = f"zk/verifiers/{keys.keys_id}-reusable.json"
    try:
        art = json.loads(store.read_bytes(path))
    except ArtifactError:
        source = reusable_source(store, profile, keys)
        art = compiled(source, REUSABLE)
        art["source_id"] = store.put("zk-sources", source.encode())
        store.write_bytes(path, json.dumps(art, sort_keys=True).encode())
    art["code_size"] = len(_code(art))
    return art


def vka_words(data: bytes) -> list[bytes]:
    """The 32-byte words of ezkl's VKA file (a little-endian u64 count, then the words)."""
    if len(data) < 8:
        raise ZkError("not an ezkl VKA file: shorter than its 8-byte count")
    n = int.from_bytes(data[:8], "little")
    if n == 0 or len(data) != 8 + 32 * n:
        raise ZkError(f"not an ezkl VKA file: {len(data)} bytes for {n} words")
    return [data[8 + 32 * i : 40 + 32 * i] for i in range(n)]


def ensure_vka(
    store: ContentStore, profile: ZkProfile, keys: ZkKeys, *, fresh: bool = False
) -> bytes:
    """The profile's VKA file (``ezkl.create_evm_vka``), cached as
    ``zk/verifiers/<keys id>.vka``. ``fresh``: made again from the checked key, settings
    and SRS, not read from (nor written to) the store's cache (what a review compares with)."""
    import ezkl

    from ogkit.zk.evm import run_async

    path = f"zk/verifiers/{keys.keys_id}.vka"
    try:
        if fresh:
            raise ArtifactError("made again")
        data = store.read_bytes(path)
    except ArtifactError:
        vk, settings, srs = _ezkl_paths(store, profile, keys, fresh)
        with tempfile.TemporaryDirectory(prefix="ogkit-zk-vka-") as tmp:
            out = Path(tmp) / "vka"

            async def make() -> Any:
                return await ezkl.create_evm_vka(str(vk), str(settings), str(out), str(srs))

            try:
                run_async(make)
            except Exception as exc:
                if not out.is_file():
                    raise ZkError(f"ezkl could not make the VKA: {exc}") from exc
            data = out.read_bytes()
        vka_words(data)  # refuse anything that is not a VKA before caching it
        if not fresh:
            store.write_bytes(path, data)
    vka_words(data)
    return data


def _contract(chain: Any, address: str, art: dict[str, Any]) -> Any:
    return chain.w3.eth.contract(address=address, abi=art["abi"])


def deploy_reusable_verifier(
    chain: Any, signer: Any, art: dict[str, Any], *, store: ContentStore | None = None
) -> tuple[str, int]:
    """The reusable verifier on ``chain``: the one recorded in ``store`` when the code at its
    address is ``art``'s (gas 0), else a new deployment, recorded."""
    from ogkit.zk.evm import deploy_verifier

    code = _code(art)
    record = f"zk/reusable/{chain.chain_id}/0x{keccak256(code).hex()}.json"
    if store is not None and store.exists(record):
        try:
            address = str(json.loads(store.read_bytes(record))["address"])
            if bytes(chain.w3.eth.get_code(address)) == code:
                log.info("reusing the reusable Halo2 verifier at %s", address)
                return address, 0
        except (ValueError, KeyError, TypeError):
            pass
    address, gas = deploy_verifier(chain, signer, art)
    if store is not None:
        store.write_bytes(record, json.dumps({"address": address, "gas": gas}).encode())
    return address, gas


def deploy_adapter(chain: Any, signer: Any, reusable: str, words: list[bytes]) -> tuple[str, int]:
    """Deploy ``ZkVkVerifier(reusable, words)``; its address and the deployment gas (the
    data contract holding the VKA and its registration included)."""
    from ogkit.chain.transactions import transact

    art = adapter_artifact()
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = transact(
        chain.w3, factory.constructor(reusable, list(words)), signer, chain_id=chain.chain_id
    )
    address = receipt.get("contractAddress")
    if not address:
        raise ChainError("deploying the ZkVkVerifier adapter failed")
    log.info("deployed the ZkVkVerifier adapter at %s (gas %s)", address, receipt["gasUsed"])
    return str(address), int(receipt["gasUsed"])


def deploy_profile_verifier(
    chain: Any,
    signer: Any,
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    *,
    reusable: bool | None = None,
) -> dict[str, Any]:
    """Deploy what verifies ``profile``'s proofs on ``chain`` and return what ZkJudge
    registers (``verifier``) with the details. ``reusable=None`` picks: the generated
    verifier when it fits EIP-170, else the reusable verifier and an adapter."""
    from ogkit.zk.evm import EIP170_LIMIT, deploy_verifier, ensure_verifier

    if reusable is None:
        single = ensure_verifier(store, profile, keys, allow_oversize=True)
        reusable = single["code_size"] > EIP170_LIMIT
    if not reusable:
        art = ensure_verifier(store, profile, keys)
        address, gas = deploy_verifier(chain, signer, art)
        return {"kind": "single", "verifier": address, "deploy_gas": gas,
                "code_size": art["code_size"]}  # fmt: skip
    rart = ensure_reusable_verifier(store, profile, keys)
    words = vka_words(ensure_vka(store, profile, keys))
    raddr, rgas = deploy_reusable_verifier(chain, signer, rart, store=store)
    address, gas = deploy_adapter(chain, signer, raddr, words)
    return {
        "kind": "reusable",
        "verifier": address,
        "deploy_gas": gas,
        "code_size": adapter_artifact()["code_size"],
        "reusable_verifier": raddr,
        "reusable_deploy_gas": rgas,
        "reusable_code_size": rart["code_size"],
        "vka_bytes": 32 * len(words),
    }


def _registered_slot(digest: bytes) -> int:
    # registeredVkas is the reusable verifier's only state variable: slot 0
    return int.from_bytes(keccak256(digest + bytes(32)), "big")


def adapter_problems(
    chain: Any, address: str, store: ContentStore, profile: ZkProfile, keys: ZkKeys
) -> list[str] | None:
    """The review of an adapter at ``address``: ``None`` when the code there is not
    ``ZkVkVerifier``'s (not an adapter), else every way it differs from what ``keys`` need
    (empty: it verifies exactly this profile's proofs). Its runtime code writes nothing, so
    the three slots read here cannot change after the review."""
    w3 = chain.w3
    art = adapter_artifact()
    if bytes(w3.eth.get_code(address)) != _code(art):
        return None
    adapter = _contract(chain, address, art)
    target = adapter.functions.verifier().call()
    holder = adapter.functions.vkaStore().call()
    count = int(adapter.functions.vkaWords().call())
    digest = bytes(adapter.functions.vkaDigest().call())
    problems = []
    # re-derived from the (checked) keys, never the store's cache: whoever shares the
    # store could have cached an accept-anything verifier or another VKA under these keys
    rart = ensure_reusable_verifier(store, profile, keys, fresh=True)
    reusable_ok = bytes(w3.eth.get_code(target)) == _code(rart)
    if not reusable_ok:
        problems.append(
            f"the adapter at {address} sends proofs to {target}, whose code is not ezkl's "
            "reusable verifier compiled from these keys"
        )
    vka = b"".join(vka_words(ensure_vka(store, profile, keys, fresh=True)))
    if (
        bytes(w3.eth.get_code(holder)) != b"\x00" + vka
        or count * 32 != len(vka)
        or digest != keccak256(vka)
    ):
        problems.append(f"the adapter at {address} holds another VKA than the one of these keys")
    elif reusable_ok and not any(w3.eth.get_storage_at(target, _registered_slot(digest))):
        problems.append(f"the adapter's VKA is not registered at {target}: every proof reverts")
    return problems


def measure_reusable_gas(
    items: dict[Any, tuple[ContentStore, ZkProfile, ZkKeys, dict[str, Any]]],
    *,
    anvil: str | None = None,
) -> dict[Any, dict[str, int]]:
    """For each ``(store, profile, keys, proof document)``: the gas of the adapter's
    ``verifyProof`` (through the reusable verifier), the adapter's deployment gas and the
    VKA size, on a throwaway anvil with the standard code-size limit (so everything
    deployed fits EIP-170). The reusable verifier is deployed once. For measurement only."""
    from ogkit.zk.evm import throwaway_anvil

    out: dict[Any, dict[str, int]] = {}
    with throwaway_anvil(anvil=anvil) as w3:
        sender = w3.eth.accounts[0]
        adapter = adapter_artifact()
        reusable: str | None = None
        reusable_gas = 0
        for key, (store, profile, keys, doc) in items.items():
            rart = ensure_reusable_verifier(store, profile, keys)
            if reusable is None:
                factory = w3.eth.contract(abi=rart["abi"], bytecode=rart["bytecode"])
                tx = factory.constructor().transact({"from": sender, "gas": 29_000_000})
                receipt = w3.eth.wait_for_transaction_receipt(tx)
                reusable, reusable_gas = receipt["contractAddress"], int(receipt["gasUsed"])
            words = vka_words(ensure_vka(store, profile, keys))
            factory = w3.eth.contract(abi=adapter["abi"], bytecode=adapter["bytecode"])
            tx = factory.constructor(reusable, words).transact({"from": sender, "gas": 29_000_000})
            receipt = w3.eth.wait_for_transaction_receipt(tx)
            if receipt["status"] != 1:
                raise ZkError(f"the adapter of {key} did not deploy")
            fn = w3.eth.contract(address=receipt["contractAddress"], abi=adapter["abi"])
            call = fn.functions.verifyProof(
                bytes.fromhex(str(doc["proof"]).removeprefix("0x")),
                [int(str(i), 16) for i in doc["instances"]],
            )
            if not call.call({"from": sender, "gas": 29_000_000}):
                raise ZkError(f"the adapter rejects the proof of {key}")
            out[key] = {
                "verify_gas": int(call.estimate_gas({"from": sender})),
                "adapter_deploy_gas": int(receipt["gasUsed"]),
                "reusable_deploy_gas": reusable_gas,
                "reusable_code_size": rart["code_size"],
                "adapter_code_size": adapter["code_size"],
                "vka_bytes": 32 * len(words),
            }
    return out
