"""Frames read from the settlement contract's events: payouts and slashes.

They read the chain through a client (``client.events``) and nothing else, so a report
can show what was paid without the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

from ogkit.report.common import OPG, short_id

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient

__all__ = ["payments_frame", "slashes_frame"]

_PAYMENT_SCHEMA = {
    "batch_id": pl.String,
    "block": pl.Int64,
    "role": pl.String,
    "recipient": pl.String,
    "name": pl.String,
    "amount_opg": pl.Float64,
}


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def _wanted(batch_ids: Iterable[str] | None) -> set[str] | None:
    return {b.lower() for b in batch_ids} if batch_ids is not None else None


def payments_frame(
    chain: ChainClient,
    batch_ids: Iterable[str] | None = None,
    *,
    names: Mapping[str, str] | None = None,
    from_block: int = 0,
) -> pl.DataFrame:
    """Every OPG payout of the settlement contract, read from its events.

    ``BatchFinalized`` pays the model owner and the node, ``VerifiersPaid`` each pass verifier,
    ``BatchFinalized``/``BatchRefunded`` refund the requester, ``ChallengeUpheld`` rewards
    a challenger. ``names`` maps addresses to key names for labels. Columns:
    ``batch_id``, ``block``, ``role`` ("model owner", "node", "verifier",
    "requester refund", "challenger"), ``recipient`` (address), ``name`` (its key name or
    a short address) and ``amount_opg``.
    """
    wanted = _wanted(batch_ids)
    label = {k.lower(): v for k, v in (names or {}).items()}
    rows: list[dict[str, Any]] = []

    def add(e: dict[str, Any], role: str, who: str, amount: int) -> None:
        if amount <= 0:
            return
        rows.append(
            {
                "batch_id": _hex(e["args"]["batchId"]),
                "block": int(e["blockNumber"]),
                "role": role,
                "recipient": who,
                "name": label.get(who.lower(), short_id(who)),
                "amount_opg": amount / OPG,
            }
        )

    def events(name: str) -> list[dict[str, Any]]:
        found = chain.events("InferenceSettlement", name, from_block)
        return [e for e in found if wanted is None or _hex(e["args"]["batchId"]) in wanted]

    for e in events("BatchFinalized"):
        a = e["args"]
        add(e, "model owner", a["modelOwner"], int(a["modelPayment"]))
        add(e, "node", a["node"], int(a["nodeFee"]))
    for e in events("VerifiersPaid"):
        for verifier, amount in zip(e["args"]["verifiers"], e["args"]["amounts"], strict=True):
            if int(amount):
                add(e, "verifier", verifier, int(amount))
    for e in events("BatchRefunded"):
        add(e, "requester refund", e["args"]["requester"], int(e["args"]["amount"]))
    for e in events("ChallengeUpheld"):
        add(e, "challenger", e["args"]["challenger"], int(e["args"]["challengerReward"]))
    return pl.DataFrame(rows, schema=_PAYMENT_SCHEMA).sort("block", "role")


def slashes_frame(
    chain: ChainClient,
    batch_ids: Iterable[str] | None = None,
    *,
    names: Mapping[str, str] | None = None,
    from_block: int = 0,
) -> pl.DataFrame:
    """Slashing events: every upheld challenge (``ChallengeUpheld``).

    Columns: ``batch_id``, ``block``, ``node``, ``name`` (key name or short address),
    ``challenger``, ``slashed_opg``, ``challenger_reward_opg``. Empty when nobody was
    slashed, which is the normal case.
    """
    wanted = _wanted(batch_ids)
    label = {k.lower(): v for k, v in (names or {}).items()}
    rows = []
    for e in chain.events("InferenceSettlement", "ChallengeUpheld", from_block):
        a = e["args"]
        if wanted is not None and _hex(a["batchId"]) not in wanted:
            continue
        rows.append(
            {
                "batch_id": _hex(a["batchId"]),
                "block": int(e["blockNumber"]),
                "node": a["node"],
                "name": label.get(a["node"].lower(), short_id(a["node"])),
                "challenger": a["challenger"],
                "slashed_opg": int(a["slashed"]) / OPG,
                "challenger_reward_opg": int(a["challengerReward"]) / OPG,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "batch_id": pl.String,
            "block": pl.Int64,
            "node": pl.String,
            "name": pl.String,
            "challenger": pl.String,
            "slashed_opg": pl.Float64,
            "challenger_reward_opg": pl.Float64,
        },
    )
