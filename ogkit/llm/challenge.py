"""Disputes over chat calls: decode a call again, and challenge it on chain when the node's
completion is not what the model gives (the same contract path as a tabular row).

``redecode_call`` re-renders the call's prompt and decodes it with the model its batch
names; ``challenge_call`` submits the call's leaf values, its proof and the re-decoded
output hash, commit-then-reveal; the verifiers' votes decide (:func:`ogkit.settle.
vote_dispute`), and ``settle`` then slashes the node. The audit confirms a slashed chat
batch with ``redecode_confirms``.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from ogkit.errors import OgkitError, SettlementError
from ogkit.llm.batch import ChatBatch
from ogkit.llm.calls import ChatCall

__all__ = ["challenge_call", "redecode_call", "redecode_confirms"]

log = logging.getLogger(__name__)


def _b32(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def redecode_call(
    batch: ChatBatch, index: int, *, model: Any = None, cache: str | Path | None = None
) -> ChatCall:
    """Call ``index`` of ``batch`` as the model decodes it: the prompt rendered from the
    request, the completion decoded with the request's options (the model from the
    batch's store, checked against its id, unless ``model`` is given)."""
    if model is None:
        from ogkit.llm.model import ChatModel

        data = batch.store.get("models", batch.model_id)
        if cache is None:
            import tempfile

            cache = Path(tempfile.gettempdir()) / "ogkit-llm"
        model = ChatModel(data, cache=cache, model_id=batch.model_id)
    return model.run(batch.calls[index].request)


def redecode_confirms(batch: ChatBatch, index: int, *, model: Any = None) -> bool:
    """True if decoding call ``index`` again gives another output hash than the node's."""
    try:
        fresh = redecode_call(batch, index, model=model)
    except (OgkitError, IndexError):
        return False
    return fresh.output_hash() != batch.calls[index].output_hash()


def challenge_call(
    chain: Any, batch: ChatBatch, index: int, *, challenger: Any, model: Any = None
) -> int:
    """Challenge call ``index`` of a committed chat batch with the re-decoded output hash
    as evidence (commit, then reveal); returns the dispute id. The challenger posts the
    contract's bond (its allowance is raised for it)."""
    from ogkit.chain.records import onchain_batch
    from ogkit.settle import CHALLENGE_GAS, ensure_allowance

    found = onchain_batch(chain, batch.batch_id)
    if found is None:
        raise SettlementError(f"batch {batch.batch_id} is not committed on {chain.name}")
    receipt = batch.receipt(index)
    fresh_hash = redecode_call(batch, index, model=model).output_hash()
    settlement = chain.contract("InferenceSettlement")
    bond = chain.call(settlement.functions.challengeBond())
    ensure_allowance(chain, challenger, settlement.address, bond)
    salt = secrets.token_bytes(32)
    key = _b32(batch.batch_id)
    commitment = chain.call(
        settlement.functions.challengeCommitment(challenger.address, key, index, fresh_hash, salt)
    )
    chain.transact(settlement.functions.commitChallenge(commitment), challenger)
    values = receipt["leaf_values"]
    tx = chain.transact(
        settlement.functions.challenge(
            key,
            found.as_tuple,
            (index, _b32(values["inputHash"]), _b32(values["outputHash"]), fresh_hash, salt),
            [_b32(p) for p in receipt["proof"]],
        ),
        challenger,
        gas=CHALLENGE_GAS,  # the reveal is mined after the commit: no estimate against it
    )
    log.info("challenged call %d of %s in tx %s", index, batch.batch_id,
             bytes(tx["transactionHash"]).hex())  # fmt: skip
    return int(chain.call(settlement.functions.stateOf(key))[1])
