"""A real paid-inference set-up per module: the anvil devnet (a 2-minute challenge window),
the sample tabular model published and registered, the node staked with its enclave
bound, payers holding OPG and no ETH, and the facilitator and the inference node as
separate processes (``ogkit facilitator serve`` / ``ogkit node serve``) on free ports of
127.0.0.1. Everything is stopped at the end, and each process must exit 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ogkit.chain.deployments import DeployParams
from ogkit.chain.devnet import Devnet
from ogkit.hub import Hub
from ogkit.keys import KeyStore, Signer
from ogkit.load import load_model
from ogkit.samples import sample_model_path
from ogkit.settle import prepare_dev_settlement
from ogkit.verify import Allowlist

ANVIL = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"
OPG = 10**18
PRICE = 10**15  # 0.001 OPG per row
WINDOW = 120
PARAMS = DeployParams(challenge_window=WINDOW, unbonding_period=3 * WINDOW)
NAMES = (
    "owner",
    "enclave",
    "requester",
    "node",
    "facilitator",
    "payer",
    "payer-2",
    "verifier-1",
    "verifier-2",
    "verifier-3",
)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if ANVIL.exists():
        return
    skip = pytest.mark.skip(reason="anvil is not installed: run `make setup`")
    for item in items:
        if "net" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A CLI server process: started, its URL read from stdout, stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, marker: str) -> None:
        self.args, self.env, self.log_path, self.marker = args, env, log, marker
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 90.0) -> Service:
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ogkit.cli", *self.args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=self.env,
        )
        found: list[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if self.marker in line:
                    found.append(line.strip().rsplit(" ", 1)[-1])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            self.proc.kill()
            raise AssertionError(
                f"{self.args[:3]} did not start: {self.log_path.read_text()[-3000:]}"
            )
        self.url = found[0]
        return self

    def stop(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


@dataclass
class Net:
    home: Path
    devnet: Devnet
    chain: Any
    hub: Hub
    keys: dict[str, Signer]
    manifest: Any
    runtime_id: str
    allowlist: Allowlist
    facilitator: Service
    node: Service
    env: dict[str, str]

    def balance(self, who: str) -> int:
        token = self.chain.contract("OPGToken")
        return int(self.chain.call(token.functions.balanceOf(self.keys[who].address)))

    def node_args(self) -> list[str]:
        return [
            "--home",
            str(self.home),
            "node",
            "serve",
            "--key",
            "node",
            "--attester-key",
            "enclave",
            "--model",
            self.manifest.ref,
            "--port",
            "0",
            "--workers",
            "1",
            "--rpc",
            self.devnet.url,
            "--facilitator",
            self.facilitator.url,
            "--max-rows",
            "64",
            "--poll",
            "0.5",
            "--read-timeout",
            "2",
        ]

    def restart_facilitator(self) -> None:
        """Start the facilitator again on its port (after a test stopped it)."""
        self.facilitator = Service(
            self.facilitator.args, self.env, self.home / "facilitator.log", "listening on"
        ).start()

    def restart_node(self) -> int:
        code = self.node.stop() if self.node.proc and self.node.proc.poll() is None else 0
        self.node = Service(self.node_args(), self.env, self.home / "node.log", "listening on")
        self.node.start()
        return code


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("node-home")
    devnet = Devnet(home, port=free_port())
    devnet.up(PARAMS)
    try:
        chain = devnet.client()
        store = KeyStore(home)
        keys = {n: store.ensure_dev_key(n) for n in NAMES}
        paying = ("payer", "payer-2")
        devnet.fund_dev_accounts(
            [k.address for n, k in keys.items() if n not in paying], eth=10**19, opg=100_000 * OPG
        )
        for name in paying:  # OPG only: an x402 payer needs no ETH
            chain.transact(
                chain.contract("OPGToken").functions.transfer(keys[name].address, 1_000 * OPG),
                devnet.deployer(),
            )
        hub = Hub(home=home)
        manifest = hub.publish(
            sample_model_path("tabular"),
            name="tab",
            version="1.0.0",
            price=PRICE,
            signer=keys["owner"],
        )
        runtime_id = load_model("tab", hub=hub).runtime_id
        prepare_dev_settlement(
            chain,
            deployer=devnet.deployer(),
            manifest=manifest,
            runtime_id=runtime_id,
            owner=keys["owner"],
            node=keys["node"],
            attester=keys["enclave"],
            requester=keys["requester"],
            verifiers=[keys[f"verifier-{i}"] for i in (1, 2, 3)],
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OGKIT_")}
        env["OGKIT_HOME"] = str(home)
        fac = Service(
            ["--home", str(home), "facilitator", "serve", "--key", "facilitator", "--rpc",
             devnet.url, "--port", str(free_port())],
            env,
            home / "facilitator.log",
            "listening on",
        ).start()  # fmt: skip
        net = Net(
            home,
            devnet,
            chain,
            hub,
            keys,
            manifest,
            runtime_id,
            Allowlist().approve(keys["enclave"].address, [runtime_id]),
            fac,
            None,  # type: ignore[arg-type]
            env,
        )
        net.node = Service(net.node_args(), env, home / "node.log", "listening on").start()
        yield net
        codes = {"node": net.node.stop(), "facilitator": net.facilitator.stop()}
        assert codes == {"node": 0, "facilitator": 0}, (
            codes,
            (home / "node.log").read_text()[-3000:],
        )
    finally:
        devnet.down()


@pytest.fixture
def chain_now(net: Net) -> int:
    return net.chain.block_timestamp()


def wait_for(predicate: Any, timeout: float = 30.0, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out waiting")
