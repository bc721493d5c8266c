"""The batch claim: what an attester signs (EIP-712), and how a batch id is derived.

The typed data is the one ``InferenceSettlement`` checks on-chain::

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
    BatchClaim(bytes32 batchId,bytes32 modelId,bytes32 runtimeId,bytes32 batchRoot,
               uint64 rowCount,address requester,uint64 timestamp,address attester)

with ``name = "ogkit"``, ``version = "1"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ConfigError
from ogkit.keys import recover_typed_data

__all__ = ["BatchClaim", "ClaimDomain", "derive_batch_id"]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEVNET_CHAIN_ID = 31337

CLAIM_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "BatchClaim": [
        {"name": "batchId", "type": "bytes32"},
        {"name": "modelId", "type": "bytes32"},
        {"name": "runtimeId", "type": "bytes32"},
        {"name": "batchRoot", "type": "bytes32"},
        {"name": "rowCount", "type": "uint64"},
        {"name": "requester", "type": "address"},
        {"name": "timestamp", "type": "uint64"},
        {"name": "attester", "type": "address"},
    ],
}


def _b32(value: str, what: str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x"))
    if len(raw) != 32:
        raise ConfigError(f"{what} must be 32 bytes (0x + 64 hex digits), got {value!r}")
    return raw


@dataclass(frozen=True)
class ClaimDomain:
    """Which chain and settlement contract a claim is for (EIP-712 domain)."""

    chain_id: int = DEVNET_CHAIN_ID
    verifying_contract: str = ZERO_ADDRESS  # the InferenceSettlement address once deployed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "ogkit",
            "version": "1",
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


def derive_batch_id(
    *, model_id: str, dataset_id: str, requester: str, chain_id: int, job: str
) -> str:
    """``keccak256(abi.encode(bytes32 modelId, bytes32 datasetId, address requester,
    uint256 chainId, bytes32 keccak256(job)))``.

    Deterministic, so a re-run of the same job resumes and gives the same root; bound
    into every leaf and the claim, so a claim cannot be replayed for another job.
    """
    encoded = abi_encode(
        ["bytes32", "bytes32", "address", "uint256", "bytes32"],
        [
            _b32(model_id, "model id"),
            _b32(dataset_id, "dataset id"),
            to_checksum_address(requester),
            chain_id,
            keccak256(job.encode()),
        ],
    )
    return "0x" + keccak256(encoded).hex()


@dataclass(frozen=True)
class BatchClaim:
    batch_id: str
    model_id: str
    runtime_id: str
    batch_root: str
    row_count: int
    requester: str
    timestamp: int
    attester: str

    def typed_data(self, domain: ClaimDomain) -> dict[str, Any]:
        return {
            "types": CLAIM_TYPES,
            "primaryType": "BatchClaim",
            "domain": domain.to_dict(),
            "message": {
                "batchId": _b32(self.batch_id, "batch id"),
                "modelId": _b32(self.model_id, "model id"),
                "runtimeId": _b32(self.runtime_id, "runtime id"),
                "batchRoot": _b32(self.batch_root, "batch root"),
                "rowCount": self.row_count,
                "requester": to_checksum_address(self.requester),
                "timestamp": self.timestamp,
                "attester": to_checksum_address(self.attester),
            },
        }

    def recover_signer(self, domain: ClaimDomain, signature: str) -> str:
        return recover_typed_data(self.typed_data(domain), signature)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchClaim:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})
