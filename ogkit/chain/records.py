"""What the chain holds about a committed batch: its ``Record`` and commit details.

``InferenceSettlement`` stores one hash per batch, ``keccak256(abi.encode(Record))``;
every later call (finalize, challenge, votes, receipts) passes the record back, and the
record itself is in the batch's ``BatchCommitted`` event. :func:`onchain_batch` reads it
back as an :class:`OnChainBatch` and checks it against the stored hash, so a caller never
acts on a record the contract would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from ogkit.errors import SettlementError

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient

__all__ = [
    "DETAIL_FIELDS",
    "RECORD_FIELDS",
    "OnChainBatch",
    "onchain_batch",
    "record_hash",
    "record_tuple",
]

RECORD_FIELDS = (
    "requester",
    "node",
    "modelOwner",
    "rowCount",
    "committedAt",
    "snapshotBlock",
    "modelId",
    "runtimeId",
    "batchRoot",
    "claimDigest",
    "price",
)
"""``InferenceSettlement.Record``'s fields, in ABI order."""
DETAIL_FIELDS = (
    "datasetId",
    "jobHash",
    "executionHash",
    "attester",
    "claimTimestamp",
    "artifactId",
    "escrow",
    "orderDigest",
)
"""``InferenceSettlement.CommitDetails``'s fields, in ABI order."""
_ADDRESSES = {"requester", "node", "modelOwner", "attester"}
_HASHES = {
    "modelId",
    "runtimeId",
    "batchRoot",
    "claimDigest",
    "datasetId",
    "jobHash",
    "executionHash",
    "artifactId",
    "orderDigest",
}


def _named(value: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """A decoded ABI tuple (a tuple, or a mapping by component name) as a plain dict with
    0x-hex hashes and checksum addresses."""
    if isinstance(value, Mapping):
        raw = {k: value[k] for k in names}
    else:
        raw = dict(zip(names, value, strict=True))
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k in _ADDRESSES:
            out[k] = to_checksum_address(v)
        elif k in _HASHES:
            out[k] = "0x" + bytes(v).hex()
        else:
            out[k] = int(v)
    return out


_RECORD_TYPES = [
    "address", "address", "address", "uint64", "uint48", "uint48",
    "bytes32", "bytes32", "bytes32", "bytes32", "uint256",
]  # fmt: skip


def record_hash(record: Mapping[str, Any]) -> bytes:
    """What ``InferenceSettlement.commitmentOf`` returns for the batch committed with
    ``record``: keccak256(abi.encode(record)) with its low byte cleared (the contract keeps
    the batch's status there)."""
    from eth_abi import encode

    from ogkit.crypto.keccak import keccak256

    digest = keccak256(encode(_RECORD_TYPES, list(record_tuple(record))))
    return digest[:31] + b"\x00"


def record_tuple(record: Mapping[str, Any]) -> tuple:
    """A record dict as the ABI tuple contract calls take."""
    values = []
    for k in RECORD_FIELDS:
        v = record[k]
        if k in _ADDRESSES:
            values.append(to_checksum_address(v))
        elif k in _HASHES:
            values.append(bytes.fromhex(str(v).removeprefix("0x")))
        else:
            values.append(int(v))
    return tuple(values)


@dataclass(frozen=True)
class OnChainBatch:
    """One committed batch as its ``BatchCommitted`` event tells it."""

    batch_id: str
    record: dict[str, Any]
    details: dict[str, Any]
    block: int
    tx: str

    @property
    def as_tuple(self) -> tuple:
        return record_tuple(self.record)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "record": dict(self.record),
            "details": dict(self.details),
            "block": self.block,
            "tx": self.tx,
        }


def from_event(event: Mapping[str, Any]) -> OnChainBatch:
    """An :class:`OnChainBatch` from one decoded ``BatchCommitted`` log."""
    args = event["args"]
    return OnChainBatch(
        batch_id="0x" + bytes(args["batchId"]).hex(),
        record=_named(args["record"], RECORD_FIELDS),
        details=_named(args["details"], DETAIL_FIELDS),
        block=int(event["blockNumber"]),
        tx=str(event["transactionHash"]),
    )


def onchain_batch(chain: ChainClient, batch_id: str) -> OnChainBatch | None:
    """The batch's record from its ``BatchCommitted`` event, checked against the hash the
    contract stores; None if the chain does not know the batch."""
    settlement = chain.contract("InferenceSettlement")
    key = bytes.fromhex(batch_id.removeprefix("0x"))
    stored = bytes(chain.call(settlement.functions.commitmentOf(key)))
    if stored == b"\x00" * 32:
        return None
    events = chain.events(
        "InferenceSettlement", "BatchCommitted", argument_filters={"batchId": key}
    )
    for event in events:
        found = from_event(event)
        if record_hash(found.record) == stored:
            return found
    raise SettlementError(
        f"batch {batch_id} is committed on {chain.name} but no BatchCommitted event with its "
        "record was found (a node that prunes logs?); connect to an archive node"
    )
