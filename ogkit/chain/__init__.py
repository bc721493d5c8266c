"""ogkit's on-chain settlement: Solidity contracts, their artefacts and Python helpers."""

from ogkit.chain.contracts import (
    BatchStatus,
    Deployment,
    DeployParams,
    batch_claim_typed_data,
    decode_revert,
    deploy_contracts,
    load_artifact,
    transact,
)

__all__ = [
    "BatchStatus",
    "DeployParams",
    "Deployment",
    "batch_claim_typed_data",
    "decode_revert",
    "deploy_contracts",
    "load_artifact",
    "transact",
]
