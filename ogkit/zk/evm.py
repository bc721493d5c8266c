"""The EVM side of ZK proofs: the EZKL Solidity verifier, the ZkJudge, disputes.

* :func:`ensure_verifier` asks ezkl for the Halo2 verifier of a profile's verifying key
  (``create_evm_verifier``; ezkl then tries to download a compiler, which is not needed:
  the ``.sol`` file is written first), compiles it with the repository's pinned solc-js
  (``compile_verifier.mjs``, optimizer runs 1) and caches the build artefact in the store
  under ``zk/verifiers/<keys id>.json``. A verifier above EIP-170's 24,576 bytes is
  refused unless ``allow_oversize`` (a devnet started with a larger code-size limit).
* :func:`deploy_verifier`, :func:`register_profile` (the model owner) and
  :func:`approve_profile` (the ZkJudge's governor) put a profile on chain.
* :func:`judge_row_onchain` / :func:`check_row_onchain` run ``ZkJudge.checkRow`` as a
  call; :func:`resolve_with_proof` sends ``ZkJudge.resolve``, which closes an open dispute
  at once where the proof decides it and leaves it to the vote where it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ogkit.errors import ArtifactError, ChainError, ZkError, ZkUnsupportedError
from ogkit.store import ContentStore
from ogkit.zk.keys import ZK_KEYS, ZK_SRS, ZkKeys, materialise
from ogkit.zk.profile import ZK_SETTINGS, ZkProfile
from ogkit.zk.prove import ZkProof
from ogkit.zk.verify import RowEvidence

log = logging.getLogger(__name__)

__all__ = [
    "EIP170_LIMIT",
    "answer_with_proof",
    "approve_profile",
    "challenge_with_proof",
    "check_row_onchain",
    "compile_verifier",
    "deploy_verifier",
    "ensure_verifier",
    "judge_contract",
    "judge_row_onchain",
    "layout_args",
    "measure_verify_gas",
    "register_profile",
    "resolve_with_proof",
    "review_profile",
    "row_proof_args",
    "run_async",
    "throwaway_anvil",
    "verifier_matches",
]

EIP170_LIMIT = 24_576
_COMPILER = Path(__file__).resolve().parent / "compile_verifier.mjs"
#: The largest output tolerance (in the output's own units) a governor's review accepts:
#: a tolerance is what a dishonest output may be off by and still pass.
MAX_TOLERANCE = 0.05


def run_async(coro_factory: Any) -> Any:
    """Run an ezkl coroutine whether or not this thread already has an event loop."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro_factory())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, name="ezkl-async")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def verifier_source(
    store: ContentStore, profile: ZkProfile, keys: ZkKeys, *, check: bool = False
) -> str:
    """ezkl's Solidity verifier for ``keys`` (ezkl then tries to download a compiler; the
    file is already written and is compiled here instead)."""
    return render_verifier(store, profile, keys, reusable=False, check=check)


def render_verifier(
    store: ContentStore, profile: ZkProfile, keys: ZkKeys, *, reusable: bool, check: bool = False
) -> str:
    """The Solidity source ezkl renders from ``keys``: the verifier of this one circuit, or
    (``reusable``) its reusable verifier. ezkl tries to download a compiler after writing
    the file; that failure is logged, and the written file is what counts."""
    import ezkl

    vk = materialise(store, ZK_KEYS, keys.vk_id, check=check)
    settings = materialise(store, ZK_SETTINGS, profile.settings_hash, check=check)
    srs = materialise(store, ZK_SRS, keys.srs_id, check=check)
    what = "reusable verifier" if reusable else "Solidity verifier"
    with tempfile.TemporaryDirectory(prefix="ogkit-zk-evm-") as tmp:
        sol, abi = Path(tmp) / "Verifier.sol", Path(tmp) / "abi.json"

        async def make() -> Any:
            return await ezkl.create_evm_verifier(
                str(vk), str(settings), str(sol), str(abi), str(srs), reusable
            )

        try:
            run_async(make)
        except Exception as exc:
            if not sol.is_file():
                raise ZkError(f"ezkl could not write the {what}: {exc}") from exc
            log.debug("ezkl stopped after writing the %s (%s); compiling it here", what, exc)
        return sol.read_text()


def compile_verifier(
    source: str, *, contract: str = "Halo2Verifier", runs: int = 1, node: str = "node"
) -> dict[str, Any]:
    """Compile a verifier source with the pinned solc-js; the build artefact."""
    try:
        proc = subprocess.run(
            [node, str(_COMPILER)],
            input=json.dumps({"source": source, "contract": contract, "runs": runs}),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ZkError(f"cannot run {node} to compile the verifier: {exc}; install Node 20") from exc
    if proc.returncode != 0:
        raise ZkError(f"solc-js failed on the verifier: {proc.stderr.strip()[:2000]}")
    return json.loads(proc.stdout)


def verifier_path(keys: ZkKeys) -> str:
    return f"zk/verifiers/{keys.keys_id}.json"


@functools.cache
def _compile_once(source: str, contract: str) -> str:
    # the same source text compiles to the same artefact: once per process
    return json.dumps(compile_verifier(source, contract=contract))


def compiled(source: str, contract: str = "Halo2Verifier") -> dict[str, Any]:
    """:func:`compile_verifier` of ``source`` (optimizer runs 1), memoised in this process."""
    return json.loads(_compile_once(source, contract))


def ensure_verifier(
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    *,
    allow_oversize: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """The compiled verifier of ``keys`` (generated and compiled once, then cached).
    ``fresh``: generated again from the verifying key, settings and SRS (each checked
    against its id) and compiled, without the store's cache: what a review compares with,
    since whoever shares the store could have cached another artefact under the keys."""
    path = verifier_path(keys)
    if fresh:
        art = compiled(verifier_source(store, profile, keys, check=True))
        art["code_size"] = (len(art["deployedBytecode"]) - 2) // 2
        return art
    try:
        art = json.loads(store.read_bytes(path))
    except ArtifactError:
        source = verifier_source(store, profile, keys)
        art = compiled(source)
        art["source_id"] = store.put("zk-sources", source.encode())
        art["keys_id"] = keys.keys_id
        store.write_bytes(path, json.dumps(art, sort_keys=True).encode())
    size = (len(art["deployedBytecode"]) - 2) // 2
    art["code_size"] = size
    if size > EIP170_LIMIT and not allow_oversize:
        raise ZkUnsupportedError(
            f"the verifier is {size:,} bytes, over EIP-170's {EIP170_LIMIT:,}: use ezkl's "
            "reusable verifier (`ogkit zk deploy --reusable`, deploy_profile_verifier), a "
            "smaller chunk N, or, on a devnet only, a chain started with a larger code-size "
            "limit (allow_oversize)",
            problems=[f"verifier code {size} bytes"],
        )
    return art


def verifier_matches(chain: Any, address: str, art: dict[str, Any]) -> bool:
    """Whether the code at ``address`` is exactly the verifier compiled from the keys."""
    code = bytes(chain.w3.eth.get_code(address))
    return code == bytes.fromhex(str(art["deployedBytecode"]).removeprefix("0x"))


def judge_contract(chain: Any) -> Any:
    from ogkit.chain.bindings import load_compiled

    settlement = chain.contract("InferenceSettlement")
    address = chain.call(settlement.functions.zkJudge())
    if int(address, 16) == 0:
        raise ChainError(f"the settlement on {chain.name} has no ZkJudge; redeploy it")
    return chain.w3.eth.contract(address=address, abi=load_compiled("ZkJudge")["abi"])


def deploy_verifier(chain: Any, signer: Any, art: dict[str, Any]) -> tuple[str, int]:
    """Deploy a compiled verifier; its address and the deployment gas."""
    from ogkit.chain.transactions import transact

    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = transact(chain.w3, factory.constructor(), signer, chain_id=chain.chain_id)
    address = receipt.get("contractAddress")
    if not address:
        raise ChainError("deploying the ZK verifier failed")
    log.info("deployed the Halo2 verifier at %s (gas %s)", address, receipt["gasUsed"])
    return str(address), int(receipt["gasUsed"])


def _canonical(layouts: tuple) -> list:
    return [t.abi_tuple() for t in sorted(layouts, key=lambda t: t.name.encode("utf-8"))]


def layout_args(profile: ZkProfile) -> tuple[list, list]:
    """``(inputs, outputs)`` as ``ZkJudge.Tensor[]``, in canonical (name-sorted) order."""
    return _canonical(profile.inputs), _canonical(profile.outputs)


def _b32(h: str | bytes) -> bytes:
    return bytes(h) if isinstance(h, bytes | bytearray) else bytes.fromhex(h.removeprefix("0x"))


def _send(chain: Any, fn: Any, signer: Any, what: str) -> Any:
    from ogkit.errors import SettlementError

    try:
        return chain.transact(fn, signer)
    except SettlementError as exc:
        raise SettlementError(f"{what} reverted: {_judge_revert(exc)}") from exc


def register_profile(
    chain: Any, owner: Any, profile: ZkProfile, keys: ZkKeys, verifier: str
) -> None:
    judge = judge_contract(chain)
    inputs, outputs = layout_args(profile)
    fn = judge.functions.registerProfile(
        _b32(profile.model_id), verifier, profile.chunk, _b32(keys.keys_id), inputs, outputs
    )
    _send(chain, fn, owner, "ZkJudge.registerProfile")


def layout_hash(profile: ZkProfile) -> bytes:
    """The ``layoutHash`` ``ZkJudge.registerProfile`` stores for this profile's layout
    (scales, instance positions, tolerances)."""
    from eth_abi import encode
    from eth_utils import keccak

    inputs, outputs = layout_args(profile)
    tensor = "(bytes,uint8,uint32,uint8,uint32,uint64)[]"
    return bytes(keccak(encode([tensor, tensor], [inputs, outputs])))


def approve_profile(
    chain: Any,
    governor: Any,
    model_id: str,
    owner: str,
    keys_id: str,
    *,
    layout: bytes | None = None,
    verifier: str | None = None,
) -> None:
    """Approve the registration with these keys, this layout hash and this verifier (the
    ones :func:`review_profile` checked: pass them, so that an owner that re-registers
    after the review makes the approval revert). Without them, the registration's own
    layout hash and verifier as read now are approved."""
    judge = judge_contract(chain)
    if layout is None or verifier is None:
        reg = chain.call(judge.functions.profileOf(_b32(model_id), owner))
        layout = bytes(reg[5]) if layout is None else layout
        verifier = reg[0] if verifier is None else verifier
    fn = judge.functions.approveProfile(_b32(model_id), owner, _b32(keys_id), layout, verifier)
    _send(chain, fn, governor, "ZkJudge.approveProfile")


def review_and_approve(
    chain: Any,
    governor: Any,
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    model: bytes,
    owner: str,
    *,
    max_tolerance: float = MAX_TOLERANCE,
) -> list[str]:
    """:func:`review_profile`, then, when nothing is wrong, the approval of exactly the
    layout hash and verifier reviewed (a re-registration in between makes it revert)."""
    problems, verifier = _review(chain, store, profile, keys, model, owner, max_tolerance)
    if not problems:
        approve_profile(
            chain, governor, profile.model_id, owner, keys.keys_id,
            layout=layout_hash(profile), verifier=verifier,
        )  # fmt: skip
    return problems


def review_profile(
    chain: Any,
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    model: bytes,
    owner: str,
    *,
    max_tolerance: float = MAX_TOLERANCE,
) -> list[str]:
    """What a governor checks before ``approve_profile``; every difference (empty: approve).
    The keys are re-derived from the model, settings and SRS (:func:`check_keys`), and the
    owner's registration on chain must name exactly these keys, this N, this layout and a
    verifier whose code is the one compiled from the verifying key."""
    return _review(chain, store, profile, keys, model, owner, max_tolerance)[0]


def _review(
    chain: Any,
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    model: bytes,
    owner: str,
    max_tolerance: float,
) -> tuple[list[str], str]:
    from ogkit.zk.keys import check_keys

    problems = check_keys(store, profile, keys, model)
    judge = judge_contract(chain)
    reg = chain.call(judge.functions.profileOf(_b32(profile.model_id), owner))
    verifier, chunk, _count, _approved, keys_id, registered_layout = reg
    if int(verifier, 16) == 0:
        return [*problems, f"{owner} registered no ZK profile for {profile.model_id}"], verifier
    if bytes(keys_id) != _b32(keys.keys_id):
        problems.append("the registration names other keys")
    if int(chunk) != profile.chunk:
        problems.append(f"the registration says N={chunk}, the profile {profile.chunk}")
    if bytes(registered_layout) != layout_hash(profile):
        problems.append("the registered layout is not the profile's")
    for t in profile.outputs:
        if t.tolerance > max_tolerance * (1 << t.scale):
            problems.append(
                f"output {t.name!r} has tolerance {t.tolerance / (1 << t.scale):g}, above "
                f"{max_tolerance:g}: outputs that far off would pass as honest"
            )
    from ogkit.zk.reusable import adapter_problems

    # A ZkVkVerifier adapter: its code, the reusable verifier it calls and the VKA it holds;
    # anything else must be exactly the verifier generated from the verifying key.
    found = adapter_problems(chain, verifier, store, profile, keys)
    if found is not None:
        problems.extend(found)
    else:
        art = ensure_verifier(store, profile, keys, allow_oversize=True, fresh=True)
        if not verifier_matches(chain, verifier, art):
            problems.append(f"the code at {verifier} is not the verifier of these keys")
    return problems, verifier


def row_proof_args(
    proof: ZkProof, ev: RowEvidence, merkle_proof: list[bytes] | None = None
) -> tuple:
    """``ZkJudge.RowProof`` for row ``ev.row`` of ``proof``."""
    return (
        int(ev.row),
        proof.position(ev.row),
        bytes(ev.input_message),
        bytes(ev.output_message),
        [_b32(p) for p in (merkle_proof or [])],
        bytes(proof.proof),
        [int(i) for i in proof.instances],
    )


def _judge_revert(exc: BaseException) -> str:
    """A ZkJudge custom error by name (with its arguments), else the generic decoding."""
    import re

    from eth_abi import decode
    from eth_utils import keccak

    from ogkit.chain.bindings import load_compiled
    from ogkit.chain.rpc import decode_revert

    # The revert data: a ``data`` attribute anywhere down the exception chain (a
    # SettlementError raised over web3's error keeps it as its context), else an explicit
    # ``data 0x…`` in the message; never any other hex in it (an address argument).
    raw, seen, stack = "", set(), [exc]
    while stack and not raw:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        data = getattr(e, "data", None)
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            raw = data
        stack.extend([e.__cause__, e.__context__])
    if not raw:
        text = " ".join(str(a) for a in exc.args) + " " + str(exc)
        found = re.search(r"data (0x[0-9a-fA-F]{8,})", text)
        raw = found.group(1) if found else ""
    if raw.startswith("0x") and len(raw) >= 10:
        for item in load_compiled("ZkJudge")["abi"]:
            if item.get("type") != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4].hex()
            if raw[2:10].lower() == selector:
                try:
                    args = decode(types, bytes.fromhex(raw[10:])) if types else ()
                except Exception:
                    args = ()
                return f"{item['name']}({', '.join(str(a) for a in args)})"
    return decode_revert(exc) or str(exc)


def judge_row_onchain(
    chain: Any, profile: ZkProfile, proof: ZkProof, ev: RowEvidence, owner: str
) -> tuple[str, int]:
    """``ZkJudge.checkRow`` as a call: what the proof says of the receipted outputs
    (``"within"``, ``"beyond"`` or ``"undecidable"``, spec §13.5, as
    :func:`ogkit.zk.verify.judge_outputs`) and the canonical index of the output tensor that
    decided it; a revert (proof rejected, input not bound, profile not approved) raises
    SettlementError."""
    from ogkit.errors import SettlementError
    from ogkit.zk.verify import JUDGEMENTS

    judge = judge_contract(chain)
    inputs, outputs = layout_args(profile)
    fn = judge.functions.checkRow(
        _b32(profile.model_id), owner, row_proof_args(proof, ev), inputs, outputs
    )
    try:
        judgement, tensor = fn.call({"gas": 30_000_000})
    except Exception as exc:
        raise SettlementError(f"ZkJudge.checkRow reverted: {_judge_revert(exc)}") from exc
    return JUDGEMENTS[int(judgement)], int(tensor)


def check_row_onchain(
    chain: Any, profile: ZkProfile, proof: ZkProof, ev: RowEvidence, owner: str
) -> bool:
    """True when the proof confirms the receipt (every output within tolerance), False
    when it refutes it (a float output beyond ``SLASH_FACTOR`` times its tolerance); when
    it can do neither (``resolve`` reverts ``Undecidable``) raises SettlementError, as for
    any revert (proof rejected, input not bound, profile not approved)."""
    from ogkit.errors import SettlementError

    outcome, tensor = judge_row_onchain(chain, profile, proof, ev, owner)
    if outcome == "undecidable":
        raise SettlementError(
            f"ZkJudge.checkRow: Undecidable({tensor}): the proof neither confirms nor refutes "
            "the row (a label at a near tie, or a float beyond its tolerance but within twice "
            "it); the vote decides it"
        )
    return outcome == "within"


def check_row_gas(
    chain: Any, profile: ZkProfile, proof: ZkProof, ev: RowEvidence, owner: str
) -> int:
    judge = judge_contract(chain)
    inputs, outputs = layout_args(profile)
    return int(
        judge.functions.checkRow(
            _b32(profile.model_id), owner, row_proof_args(proof, ev), inputs, outputs
        ).estimate_gas({"gas": 30_000_000})
    )


def resolve_with_proof(
    chain: Any,
    signer: Any,
    batch_id: str,
    profile: ZkProfile,
    proof: ZkProof,
    ev: RowEvidence,
    merkle_proof: list[bytes],
) -> dict[str, Any]:
    """Close the open dispute on ``batch_id`` with ``proof`` (anyone: the challenger or
    the node); returns ``{"dispute", "outcome", "upheld", "gas"}``, ``outcome`` "upheld" or
    "rejected". Where the proof cannot decide the row (``ZkJudge`` reverts ``Undecidable``:
    a label at a near tie, or a float beyond its tolerance but within twice it, spec §13.5)
    nothing is sent and the dispute stays open for the vote: ``outcome`` "undecidable",
    ``upheld`` None, ``tensor`` the output's canonical index, ``gas`` 0."""
    from ogkit.chain.records import onchain_batch
    from ogkit.errors import SettlementError

    settlement = chain.contract("InferenceSettlement")
    found = onchain_batch(chain, batch_id)
    if found is None:
        raise ChainError(f"batch {batch_id} is not committed on {chain.name}")
    _, dispute_id, _ = chain.call(settlement.functions.stateOf(_b32(batch_id)))
    judge = judge_contract(chain)
    inputs, outputs = layout_args(profile)
    fn = judge.functions.resolve(
        int(dispute_id),
        _b32(batch_id),
        found.as_tuple,
        row_proof_args(proof, ev, merkle_proof),
        inputs,
        outputs,
    )
    try:
        fn.call({"from": signer.address, "gas": 8_000_000})
    except Exception as exc:
        why = _judge_revert(exc)
        if why.startswith("Undecidable("):
            log.info("dispute %s on %s: the proof cannot decide (%s)", dispute_id, batch_id, why)
            digits = "".join(c for c in why[len("Undecidable(") :] if c.isdigit())
            tensor = int(digits or 0)  # "Undecidable(2)" or "Undecidable(tensor=2)"
            return {
                "dispute": int(dispute_id),
                "outcome": "undecidable",
                "upheld": None,
                "tensor": tensor,
                "gas": 0,
            }
        raise SettlementError(f"ZkJudge.resolve reverts: {why}") from exc
    receipt = chain.transact(
        judge.functions.resolve(
            int(dispute_id),
            _b32(batch_id),
            found.as_tuple,
            row_proof_args(proof, ev, merkle_proof),
            inputs,
            outputs,
        ),
        signer,
        gas=8_000_000,
    )
    from web3.logs import DISCARD

    events = judge.events.ResolvedByProof().process_receipt(receipt, errors=DISCARD)
    upheld = bool(events[0]["args"]["upheld"]) if events else False
    return {
        "dispute": int(dispute_id),
        "outcome": "upheld" if upheld else "rejected",
        "upheld": upheld,
        "gas": int(receipt["gasUsed"]),
    }


def measure_verify_gas(
    verifiers: dict[Any, tuple[dict[str, Any], dict[str, Any]]], *, anvil: str | None = None
) -> dict[Any, int]:
    """Gas of ``verifyProof`` for each ``(verifier artefact, proof document)``, each
    verifier deployed on a throwaway anvil on 127.0.0.1 (a free port) whose code-size limit
    is raised, so verifiers above EIP-170 can be measured too. For measurement only."""
    with throwaway_anvil(anvil=anvil, code_size_limit=200_000) as w3:
        sender = w3.eth.accounts[0]
        out: dict[Any, int] = {}
        for key, (art, doc) in verifiers.items():
            factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
            tx = factory.constructor().transact({"from": sender, "gas": 29_000_000})
            address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
            verifier = w3.eth.contract(address=address, abi=art["abi"])
            fn = verifier.functions.verifyProof(
                bytes.fromhex(str(doc["proof"]).removeprefix("0x")),
                [int(str(i), 16) for i in doc["instances"]],
            )
            if not fn.call({"from": sender, "gas": 29_000_000}):
                raise ZkError(f"the verifier rejects the proof of {key}")
            out[key] = int(fn.estimate_gas({"from": sender}))
        return out


@contextlib.contextmanager
def throwaway_anvil(
    *, anvil: str | None = None, code_size_limit: int | None = None
) -> Iterator[Any]:
    """A Web3 on a fresh anvil on 127.0.0.1 (a free port), stopped on exit; with
    ``code_size_limit`` its EIP-170 limit is raised (measurement only, never a chain that
    settles anything)."""
    import socket
    import time

    from web3 import Web3

    from ogkit.chain.devnet import anvil_command

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    extra = [] if code_size_limit is None else ["--code-size-limit", str(int(code_size_limit))]
    proc = subprocess.Popen(
        [*anvil_command(anvil), "--port", str(port), *extra, "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 60}))
        for _ in range(200):
            if w3.is_connected():
                break
            time.sleep(0.05)
        else:
            raise ChainError("the throwaway anvil for gas measurement did not start")
        yield w3
    finally:
        proc.terminate()
        proc.wait(10)


def challenge_with_proof(
    chain: Any,
    batch: Any,
    row: int,
    *,
    challenger: Any,
    store: ContentStore,
    chunk: int = 1,
    inputs: Any = None,
) -> dict[str, Any]:
    """Challenge row ``row`` of a committed batch and settle it with a ZK proof of the
    row's correct output: the challenge (commit, then reveal, with the bond), the proof,
    then ``ZkJudge.resolve`` — upheld at once when a float output is beyond twice its
    tolerance, no vote; left open for the vote when the proof cannot decide. Returns
    :func:`resolve_with_proof`'s document."""
    from ogkit.settle import challenge_row
    from ogkit.zk.batch import batch_evidence
    from ogkit.zk.keys import load_keys
    from ogkit.zk.profile import load_profile
    from ogkit.zk.prove import prove_rows, store_proof

    profile = load_profile(store, batch.model_id, chunk)
    keys = load_keys(store, profile)
    evidence, merkle = batch_evidence(batch, profile, [row], inputs)
    proof = _prove_one(store, profile, keys, batch, row, inputs, prove_rows)
    store_proof(store, batch.batch_id, proof)
    challenge_row(chain, batch, row, challenger=challenger)
    return resolve_with_proof(
        chain, challenger, batch.batch_id, profile, proof, evidence[row], merkle[row]
    )


def answer_with_proof(
    chain: Any,
    batch: Any,
    *,
    node: Any,
    store: ContentStore,
    chunk: int = 1,
    inputs: Any = None,
) -> dict[str, Any]:
    """The node's answer to the open dispute on ``batch``: a ZK proof of the challenged
    row's receipted output, which rejects the challenge when it is within tolerance (and
    leaves it to the vote when the proof cannot decide: :func:`resolve_with_proof`)."""
    from ogkit.zk.batch import batch_evidence
    from ogkit.zk.keys import load_keys
    from ogkit.zk.profile import load_profile
    from ogkit.zk.prove import prove_rows, store_proof

    settlement = chain.contract("InferenceSettlement")
    _, dispute_id, _ = chain.call(settlement.functions.stateOf(_b32(batch.batch_id)))
    if int(dispute_id) == 0:
        raise ChainError(f"batch {batch.batch_id} has no dispute on {chain.name}")
    row = int(chain.call(settlement.functions.getDispute(int(dispute_id)))[9])
    profile = load_profile(store, batch.model_id, chunk)
    keys = load_keys(store, profile)
    evidence, merkle = batch_evidence(batch, profile, [row], inputs)
    proof = _prove_one(store, profile, keys, batch, row, inputs, prove_rows)
    store_proof(store, batch.batch_id, proof)
    return resolve_with_proof(
        chain, node, batch.batch_id, profile, proof, evidence[row], merkle[row]
    )


def _prove_one(
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    batch: Any,
    row: int,
    inputs: Any,
    prove_rows: Any,
) -> ZkProof:
    from ogkit.zk.batch import batch_inputs

    values = batch_inputs(batch, profile, [row], inputs)[row]
    arrays = {name: v[None, ...] for name, v in values.items()}
    (proof,) = prove_rows(store, profile, keys, arrays, [0], progress=False)
    return ZkProof(
        profile_id=proof.profile_id,
        keys_id=proof.keys_id,
        rows=tuple(row if r == 0 else r for r in proof.rows),
        instances=proof.instances,
        proof=proof.proof,
        document=proof.document,
        seconds=proof.seconds,
    )
