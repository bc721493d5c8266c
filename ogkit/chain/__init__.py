"""ogkit's on-chain settlement: Solidity contracts, their compiled build artefacts and the
Python side that deploys, transacts with and reads them.

==========================  ================================================================
module                      job
==========================  ================================================================
``bindings``                compiled build artefacts (``artifacts/*.json``), ``BatchStatus``
``rpc``                     JSON-RPC providers, error classification, revert decoding
``transactions``            ``transact``: nonce manager, retries, fee bumps
``deployments``             ``deploy_contracts``, ``DeployParams``, ``<home>/deployments``
``client``                  ``ChainClient``: reads, events, dev-chain time, funding
``devnet``                  ``Devnet``: the managed local anvil
``connection``              ``connect("devnet" | "embedded" | URL)``
==========================  ================================================================

The names below are loaded on first use, so importing one submodule (``bindings`` for
``BatchStatus``, say) does not import web3.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ogkit.chain.bindings import BatchStatus, load_compiled
    from ogkit.chain.client import ChainClient
    from ogkit.chain.connection import connect
    from ogkit.chain.deployments import Deployment, DeployParams, deploy_contracts, deploy_to
    from ogkit.chain.devnet import Devnet
    from ogkit.chain.rpc import decode_revert
    from ogkit.chain.transactions import RetryPolicy, transact

_EXPORTS = {
    "BatchStatus": "ogkit.chain.bindings",
    "ChainClient": "ogkit.chain.client",
    "DeployParams": "ogkit.chain.deployments",
    "Deployment": "ogkit.chain.deployments",
    "Devnet": "ogkit.chain.devnet",
    "RetryPolicy": "ogkit.chain.transactions",
    "connect": "ogkit.chain.connection",
    "decode_revert": "ogkit.chain.rpc",
    "deploy_contracts": "ogkit.chain.deployments",
    "deploy_to": "ogkit.chain.deployments",
    "load_compiled": "ogkit.chain.bindings",
    "transact": "ogkit.chain.transactions",
}

__all__ = [
    "BatchStatus",
    "ChainClient",
    "DeployParams",
    "Deployment",
    "Devnet",
    "RetryPolicy",
    "connect",
    "decode_revert",
    "deploy_contracts",
    "deploy_to",
    "load_compiled",
    "transact",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ogkit.chain' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
