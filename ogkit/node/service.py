"""The inference node as one object: the model, its price, x402 payments, the job runner.

:func:`open_node` wires a :class:`NodeService` from what the edge read (home, store,
chain, keys, Dask client); :func:`create_app` (``ogkit.node.app``) serves it. The node's
payee is its own address; its attester signs every claim (the key bound to the node in
the NodeRegistry for batch commits). The facilitator is any x402 facilitator URL or,
without one, an in-process :class:`~ogkit.x402.facilitator.Facilitator` that pays gas
from the node's key.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ogkit.attest import Attester
    from ogkit.chain.client import ChainClient
    from ogkit.hub import Hub
    from ogkit.keys import Signer
    from ogkit.load import LoadedModel
    from ogkit.node.jobs import JobRunner
    from ogkit.node.paid import PaidInference
    from ogkit.store import ContentStore

__all__ = ["NodeService", "open_node"]

log = logging.getLogger(__name__)


@dataclass
class NodeService:
    model: LoadedModel
    node: Signer
    attester: Attester
    chain: ChainClient
    paid: PaidInference
    runner: JobRunner
    facilitator_url: str | None = None
    counters: Counter[str] = field(default_factory=Counter)
    lock: Any = None  # the state folder's lock file, held while the node runs

    def health(self) -> dict[str, Any]:
        try:
            price: int | None = self.paid.price.per_row()
        except Exception:  # the chain is down: health says so rather than failing
            price = None
        return {
            "status": "ok" if price is not None else "degraded",
            "node": self.node.address,
            "attester": self.attester.address,
            "pay_to": self.paid.pay_to,
            "model_id": self.model.model_id,
            "model": self.model.manifest.ref if self.model.manifest else None,
            "runtime_id": self.model.runtime_id,
            "chain_id": self.chain.chain_id,
            "network": self.paid.network,
            "asset": self.paid.asset,
            "price_per_row": str(price) if price is not None else None,
            "max_rows": self.paid.max_rows,
            "instance": self.paid.instance,
            "facilitator": self.facilitator_url or "in-process",
        }

    def close(self) -> None:
        self.runner.stop()
        self.paid.ledger.close()
        if self.lock is not None:
            self.lock.close()
        close = getattr(self.paid.facilitator, "close", None)
        if close is not None:
            close()


def open_node(
    *,
    home: Path,
    hub: Hub,
    store: ContentStore,
    model_ref: str,
    node: Signer,
    attester_signer: Signer,
    chain: ChainClient,
    dask: Any = None,
    facilitator_url: str | None = None,
    max_rows: int = 256,
    data_roots: list[Path] | None = None,
    poll: float = 2.0,
    start: bool = True,
    state_dir: Path | None = None,
    max_tokens: int = 256,
) -> NodeService:
    """A node serving ``model_ref`` from ``hub`` with ``node``'s key on ``chain``. Its
    jobs and its payment ledger are kept in ``state_dir`` (default ``<home>/node``), which
    one node at a time may use (a lock file; ConfigError otherwise). The model must be
    registered in the chain's ModelRegistry (its price is read from there); ConfigError
    says how otherwise. A language model (a hub bundle tagged ``llm``) is served as paid
    chat (:func:`ogkit.node.chat.open_chat_node`; ``max_tokens`` caps one call)."""
    from ogkit.attest import make_attester
    from ogkit.load import load_model
    from ogkit.node.jobs import JobBook, JobRunner
    from ogkit.node.ledger import PaymentLedger
    from ogkit.node.paid import PaidInference
    from ogkit.node.pricing import RegistryPrice, registry_price
    from ogkit.x402.facilitator import Facilitator, FacilitatorClient, poll_fast_on_dev_chains

    state = Path(state_dir) if state_dir is not None else Path(home) / "node"
    lock = _lock_state(state)
    poll_fast_on_dev_chains(chain)
    from ogkit.node.chat import is_chat_model, open_chat_node

    if is_chat_model(hub, model_ref):
        return open_chat_node(
            home=home, hub=hub, store=store, model_ref=model_ref, node=node,
            attester_signer=attester_signer, chain=chain, dask=dask,
            facilitator_url=facilitator_url, data_roots=data_roots, poll=poll, start=start,
            state=state, lock=lock, instance=_instance_id(state), max_tokens=max_tokens,
        )  # fmt: skip
    model = load_model(model_ref, hub=hub)
    if model.manifest is None:
        from ogkit.errors import ConfigError

        raise ConfigError(f"{model_ref}: serve a model from the hub (name@version or id)")
    registry_price(chain, model.manifest)  # refuse to start for an unregistered model
    attester = make_attester("software", signer=attester_signer)
    facilitator = (
        FacilitatorClient(facilitator_url)
        if facilitator_url
        else Facilitator(chain, node, in_process=True)
    )
    paid = PaidInference(
        model=model,
        hub=hub,
        store=store,
        attester=attester,
        chain=chain,
        facilitator=facilitator,
        price=RegistryPrice(chain, model.manifest),
        pay_to=node.address,
        ledger=PaymentLedger(state / "payments.sqlite"),
        instance=_instance_id(state),
        max_rows=max_rows,
    )
    runner = JobRunner(
        book=JobBook(state / "jobs"),
        model=model,
        hub=hub,
        store=store,
        attester=attester,
        node=node,
        chain=chain,
        home=Path(home),
        dask=dask,
        data_roots=data_roots,
        poll=poll,
    )
    if start:
        runner.start()
    log.info(
        "node %s serves %s (%s) on chain %d",
        node.address,
        model.manifest.ref,
        model.model_id,
        chain.chain_id,
    )
    service = NodeService(model, node, attester, chain, paid, runner, facilitator_url)
    service.lock = lock
    return service


def _instance_id(state: Path) -> str:
    """This node's instance id: 32 random bytes made once per state folder (written
    atomically). Paid calls' nonces commit to it, so a payment one node served cannot be
    served again by another node sharing the payee (each has its own ledger)."""
    import os
    import re
    import secrets

    path = state / "instance"
    if path.exists():
        text = path.read_text().strip()
        if re.fullmatch(r"0x[0-9a-f]{64}", text):
            return text
        from ogkit.errors import ConfigError

        raise ConfigError(f"{path} is not a node instance id; remove it to make a new one")
    text = "0x" + secrets.token_bytes(32).hex()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return text


def _lock_state(state: Path) -> Any:
    """An exclusive lock on ``state``'s lock file, held while the node runs."""
    import fcntl

    from ogkit.errors import ConfigError

    state.mkdir(parents=True, exist_ok=True)
    handle = open(state / "node.lock", "a+")  # noqa: SIM115 - held for the node's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            f"another node runs with the state folder {state}; stop it, or give this one "
            "its own with --state DIR"
        ) from None
    return handle
