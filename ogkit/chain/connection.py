"""``connect()``: open one of three kinds of chain and return a client bound to its deployment.

``"devnet"``
    the managed local anvil (:class:`ogkit.chain.devnet.Devnet`), started and deployed to on
    demand; it keeps its state under ``<home>/devnet``.
``"embedded"``
    an in-process eth-tester chain (py-evm) with freshly deployed contracts. Ephemeral: it
    lives as long as the client, needs no node and no Node.js - for pure-pip use and tests.
``"http://..."`` / ``"https://..."``
    any JSON-RPC node; the deployment is read from ``<home>/deployments/<chain id>.json``,
    written by :func:`ogkit.chain.deployments.deploy_to` (``ogkit chain deploy``).

Nothing here reads the environment: the CLI, the demo and the notebooks pass ``target``,
``home``, ``port`` and ``anvil`` from :meth:`ogkit.settings.Settings.from_env`
(:func:`connect_from_settings` takes the settings object itself).

This module sits above :mod:`ogkit.chain.devnet`, which imports :mod:`ogkit.chain.client`;
the client imports neither, so there is no import cycle between them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from web3 import Web3

from ogkit.chain.client import ChainClient
from ogkit.chain.deployments import (
    DeployParams,
    deploy_contracts,
    deployment_is_live,
    deployment_path,
    load_deployment,
    read_deployment_record,
    require_home,
)
from ogkit.chain.devnet import Devnet
from ogkit.chain.rpc import open_web3, redact_url
from ogkit.errors import ChainError, ConfigError
from ogkit.keys import Signer

if TYPE_CHECKING:
    from ogkit.settings import Settings

__all__ = ["EMBEDDED_ACCOUNTS", "connect", "connect_from_settings"]

logger = logging.getLogger(__name__)

EMBEDDED_ACCOUNTS = 20
"""Funded accounts of the embedded chain (eth-tester's keys 1..20); the first deploys."""


def connect(
    target: str | None = None,
    *,
    home: Path | None = None,
    params: DeployParams | None = None,
    port: int | None = None,
    anvil: str | None = None,
) -> ChainClient:
    """A client for ``target``: ``"devnet"``, ``"embedded"`` or an ``http(s)://`` URL.

    - ``"devnet"`` starts the ogkit devnet of ``home`` if needed (and deploys to it on first
      start), on ``port`` (default: the port it used before, else 8545) with the ``anvil``
      binary (default: the repository's npm install).
    - ``"embedded"`` creates an in-process eth-tester chain and deploys the contracts to it:
      ephemeral (gone with the client), no node needed - for pure-pip use and unit tests.
    - a URL connects to that node and reads the deployment from
      ``<home>/deployments/<chain id>.json`` (ChainError if there is none).

    ``params`` are used when contracts get deployed (devnet first start, embedded).
    An unreachable endpoint raises ChainError within a few seconds.
    """
    if target is None:
        raise ConfigError(
            "no chain given: pass 'devnet', 'embedded' or an http(s):// JSON-RPC URL (on the "
            "command line --chain, else $OGKIT_CHAIN; in code Settings.from_env().chain)"
        )
    target = target.strip()
    if target == "devnet":
        devnet = Devnet(require_home(home, "connect('devnet')"), port=port, anvil=anvil)
        return devnet.client(params=params)
    if target == "embedded":
        return _connect_embedded(params)
    if target.startswith(("http://", "https://")):
        return _connect_rpc(target, require_home(home, "connecting to an RPC URL"), params)
    raise ConfigError(
        f"unknown chain {redact_url(target) if '://' in target else target!r}: use 'devnet', "
        "'embedded' or an http(s):// JSON-RPC URL (argument or OGKIT_CHAIN)"
    )


def connect_from_settings(
    settings: Settings, target: str | None = None, *, params: DeployParams | None = None
) -> ChainClient:
    """:func:`connect` with what the edge read into ``settings``: ``target`` (default
    ``settings.chain``), ``settings.home``, ``settings.devnet_port`` and ``settings.anvil``."""
    return connect(
        target or settings.chain,
        home=settings.home,
        params=params,
        port=settings.devnet_port,
        anvil=settings.anvil,
    )


# --------------------------------------------------------------------------- embedded


def _embedded_web3() -> tuple[Web3, Any, threading.RLock]:
    try:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider
    except ImportError as exc:  # pragma: no cover - eth-tester is a dependency
        raise ChainError(
            "the embedded chain needs eth-tester with py-evm: pip install 'eth-tester[py-evm]'"
        ) from exc

    lock = threading.RLock()

    class _LockedTesterProvider(EthereumTesterProvider):
        """eth-tester is not thread-safe: one request at a time."""

        def make_request(self, method: Any, params: Any) -> Any:
            with lock:
                return super().make_request(method, params)

    state = PyEVMBackend.generate_genesis_state(num_accounts=EMBEDDED_ACCOUNTS)
    tester = EthereumTester(PyEVMBackend(genesis_state=state))
    return Web3(_LockedTesterProvider(tester)), tester, lock


def _embedded_signer(index: int = 0) -> Signer:
    """Funded account ``index`` of the embedded chain (eth-tester's key ``index + 1``)."""
    from eth_account import Account

    name = "embedded-deployer" if index == 0 else f"embedded-{index}"
    return Signer(name, Account.from_key((index + 1).to_bytes(32, "big")), dev=True)


def _connect_embedded(params: DeployParams | None) -> ChainClient:
    w3, tester, lock = _embedded_web3()
    deployer = _embedded_signer(0)
    deployment = deploy_contracts(w3, deployer.address, params or DeployParams())
    return ChainClient(
        w3,
        deployment,
        name="embedded",
        kind="embedded",
        deployer=deployer,
        tester=tester,
        request_lock=lock,
    )


# --------------------------------------------------------------------------- any RPC node


def _connect_rpc(url: str, home: Path, params: DeployParams | None) -> ChainClient:
    w3 = open_web3(url)
    shown = redact_url(url)
    chain_id = int(w3.eth.chain_id)
    record = read_deployment_record(home, chain_id)
    path = deployment_path(home, chain_id)
    if record is None:
        raise ChainError(
            f"no ogkit deployment for chain {chain_id} ({shown}): {path} is missing. Deploy "
            "the contracts with `ogkit chain deploy` or "
            "`ogkit.chain.deployments.deploy_to(open_web3(url), signer, home=home)`"
        )
    if not deployment_is_live(w3, record):
        raise ChainError(
            f"the deployment in {path} is not on chain {chain_id} ({shown}): no contract code "
            "at its addresses (was the chain reset?). Deploy again with `ogkit chain deploy`"
        )
    deployment = load_deployment(home, chain_id, w3)
    assert deployment is not None
    if params is not None and params != deployment.params:
        logger.warning("chain %s was deployed with other parameters; ignoring these", shown)
    first_block = int(record.get("first_block", 0))
    return ChainClient(w3, deployment, name=shown, kind="rpc", first_block=first_block)
