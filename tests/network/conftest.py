"""Fixtures for the network tests: one anvil devnet per module with the settlement game set
up (model registered, node, three verifiers and a challenger staked or funded), batches
committed through signed orders, and daemons started as real ``ogkit`` processes in their
own process groups, killed (the whole group) at teardown whatever the test did."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ogkit.attest import make_attester
from ogkit.chain.client import ChainClient
from ogkit.chain.devnet import Devnet
from ogkit.dataset import commit_dataset
from ogkit.hub import Hub
from ogkit.keys import KeyStore, Signer
from ogkit.samples import sample_data_path, sample_model_path
from ogkit.settle import claim_domain, prepare_dev_settlement, settle

pytestmark = pytest.mark.anvil

OPG = 10**18
NAMES = ("owner", "enclave", "requester", "node", "verifier-1", "verifier-2", "verifier-3",
         "challenger")  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class World:
    home: Path
    devnet: Devnet
    keys: dict[str, Signer]
    hub: Hub
    env: dict[str, str]
    nonce: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)

    def client(self) -> ChainClient:
        return self.devnet.client()

    def batch(self, job: str, *, forge: Callable[[Any], Any] | None = None, commit: bool = True):
        """A batch of the sample tabular data for ``job``, committed through a fresh order
        (``forge`` turns the honest batch into a cheating one before the commit)."""
        from ogkit.infer import run_verified_inference
        from ogkit.load import load_model
        from ogkit.order import new_order

        chain = self.client()
        k = self.keys
        manifest = self.hub.manifest("tab")
        data = sample_data_path("tabular")
        model = load_model("tab", hub=self.hub)
        commitment = commit_dataset(data, model)
        self.nonce += 1
        order = new_order(
            requester=k["requester"].address,
            model_id=manifest.model_id,
            model_owner=manifest.owner,
            commitment=commitment,
            job=job,
            node=k["node"].address,
            max_price_per_row=manifest.price_per_inference,
            chain_id=chain.chain_id,
            verifying_contract=chain.contract("InferenceSettlement").address,
            now=chain.block_timestamp(),
            nonce=self.nonce,
        ).sign(k["requester"])
        batch = run_verified_inference(
            model,
            data,
            attester=make_attester("software", signer=k["enclave"]),
            requester=k["requester"].address,
            hub=self.hub,
            commitment=commitment,
            domain=claim_domain(chain),
            job=job,
            partition_rows=1000,
            progress=False,
        )
        if forge is not None:
            batch = forge(batch)
        if commit:
            settle(batch, chain, node=k["node"], order=order, finalize=False)
        return batch, order

    def spawn(self, *args: str, log: str) -> subprocess.Popen:
        """``ogkit ARGS`` as a process in its own group, output into ``<home>/<log>.log``."""
        out = open(self.home / f"{log}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "ogkit.cli", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def reap(self) -> None:
        for proc in self.procs:
            kill_group(proc)
        self.procs.clear()


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("network") / "home"
    port = free_port()
    devnet = Devnet(home, port=port)
    devnet.up()
    keys = KeyStore(home)
    signers = {n: keys.ensure_dev_key(n) for n in NAMES}
    devnet.fund_dev_accounts([s.address for s in signers.values()], eth=10**19, opg=100_000 * OPG)
    hub = Hub(home=home)
    hub.publish(
        sample_model_path("tabular"), name="tab", version="1.0.0", price=1000,
        signer=signers["owner"],
    )  # fmt: skip
    manifest = hub.manifest("tab")
    from ogkit.load import load_model

    runtime_id = load_model("tab", hub=hub).runtime_id
    prepare_dev_settlement(
        devnet.client(),
        deployer=devnet.deployer(),
        manifest=manifest,
        runtime_id=runtime_id,
        owner=signers["owner"],
        node=signers["node"],
        attester=signers["enclave"],
        requester=signers["requester"],
        verifiers=[signers[f"verifier-{i}"] for i in (1, 2, 3)],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGKIT_")}
    env.update(OGKIT_HOME=str(home), OGKIT_DEVNET_PORT=str(port), PYTHONUNBUFFERED="1")
    w = World(home, devnet, signers, hub, env)
    try:
        yield w
    finally:
        w.reap()
        devnet.down()


@pytest.fixture
def net(world: World) -> Iterator[World]:
    """The module's world; every process a test started is killed when it ends."""
    yield world
    world.reap()
