"""The managed devnet on a real anvil: start and deploy, idempotent ``up``, state that survives
``down``/``up`` and a SIGKILL, redeploy after a lost state, status, funding."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from ogkit.chain import devnet as devnet_module
from ogkit.chain.bindings import OPG
from ogkit.chain.client import ChainClient
from ogkit.chain.connection import connect
from ogkit.chain.deployments import deployment_path
from ogkit.chain.devnet import Devnet
from ogkit.chain.transactions import RetryPolicy
from ogkit.errors import ChainError
from ogkit.settings import Settings
from ogkit.settle import registration_typed_data

from .conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    devnet_module._reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Tracked(Devnet):
    """A Devnet that remembers every anvil it started, so the fixture can stop them all."""

    pids: list[int]

    def _start(self) -> int:
        pid = super()._start()
        self.pids.append(pid)
        return pid


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Tracked]:
    net = Tracked(tmp_path / "home", port=free_port())
    net.pids = []
    try:
        yield net
    finally:
        try:
            net.down()
        finally:
            for pid in net.pids:  # anything down() missed, e.g. after a failed test
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
                    devnet_module._reap(pid)


def registration(client: ChainClient, tag: str, price: int = 10) -> tuple[bytes, Any]:
    """A model id for ``tag`` and the ``registerModel`` call that registers it under the
    deployer, signed by it as its owner (the EIP-712 ``ModelRegistration``)."""
    mid = keccak(f"test_devnet {tag}".encode())
    registry = client.contract("ModelRegistry")
    owner = client.deployer
    assert owner is not None
    deadline = 2**40
    manifest_hash = "0x" + keccak(f"manifest {tag}".encode()).hex()
    typed = registration_typed_data(
        client, "0x" + mid.hex(), owner.address, price, manifest_hash, deadline
    )
    signature = bytes.fromhex(owner.sign_typed_data(typed).removeprefix("0x"))
    reg = (
        mid,
        owner.address,
        price,
        bytes.fromhex(manifest_hash[2:]),
        deadline,
        tag,
        "1",
        "ogkit://" + tag,
    )
    return mid, registry.functions.registerModel(reg, signature)


def register(client: ChainClient, tag: str) -> bytes:
    mid, fn = registration(client, tag)
    assert client.deployer is not None
    assert client.transact(fn, client.deployer)["status"] == 1
    return mid


def exists(client: ChainClient, mid: bytes) -> bool:
    assert client.deployer is not None
    registry = client.contract("ModelRegistry")
    return bool(client.call(registry.functions.exists(mid, client.deployer.address)))


@pytest.mark.anvil
def test_up_starts_deploys_and_is_idempotent(devnet: Tracked) -> None:
    before = devnet.status()
    assert not before.running and before.pid is None and not before.deployed

    status = devnet.up()
    assert status.running and status.deployed
    assert status.chain_id == 31337
    assert status.url == devnet.url == f"http://127.0.0.1:{devnet.port}"
    assert status.pid == int(devnet.pid_file.read_text())
    assert status.block is not None and status.block >= 5
    record = json.loads(deployment_path(devnet.home, 31337).read_text())
    assert record["deployer"] == devnet.deployer().address

    again = devnet.up()
    assert again.pid == status.pid
    assert devnet.pids == [status.pid]
    assert json.loads(deployment_path(devnet.home, 31337).read_text()) == record

    client = devnet.client()
    assert client.name == "devnet" and client.chain_id == 31337
    assert client.deployment.addresses == record["addresses"]
    key = devnet.deployer().local_account.key.hex().removeprefix("0x")
    assert key not in repr(devnet.deployer())
    for path in (devnet.log_file, devnet.state_file, deployment_path(devnet.home, 31337)):
        if path.exists():
            assert key not in path.read_text().lower()

    # Top-ups are idempotent: a second call sends nothing.
    addresses = [
        "0x000000000000000000000000000000000000bEEF",
        "0x000000000000000000000000000000000000cafE",
    ]
    devnet.fund_dev_accounts(addresses, eth=10**18, opg=5 * OPG)
    block = client.block_number()
    devnet.fund_dev_accounts(addresses, eth=10**18, opg=5 * OPG)
    assert client.block_number() == block
    token = client.contract("OPGToken")
    for address in addresses:
        assert client.w3.eth.get_balance(address) == 10**18
        assert client.call(token.functions.balanceOf(address)) == 5 * OPG

    ts = client.block_timestamp()
    client.increase_time(600)
    assert client.block_timestamp() >= ts + 600


@pytest.mark.anvil
def test_snapshot_and_revert_on_anvil(devnet: Tracked) -> None:
    client = devnet.client()
    snapshot = client.snapshot()
    mid = register(client, "snapshot")
    assert exists(client, mid)
    client.revert(snapshot)
    assert not exists(client, mid)
    assert exists(client, register(client, "after revert"))  # the nonce comes from anvil again


@pytest.mark.anvil
def test_state_survives_down_and_up(devnet: Tracked, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGKIT_DEVNET_PORT", str(devnet.port))
    port = Settings.from_env().devnet_port  # what the CLI passes
    devnet.up()
    client = connect("devnet", home=devnet.home, port=port)  # the running devnet
    mid = register(client, "down-up")
    record = deployment_path(devnet.home, 31337).read_text()

    devnet.down()
    stopped = devnet.status()
    assert not stopped.running and stopped.pid is None
    assert not devnet.pid_file.exists()

    devnet.up()
    assert len(devnet.pids) == 2
    client = connect("devnet", home=devnet.home, port=port)
    assert exists(client, mid)
    assert deployment_path(devnet.home, 31337).read_text() == record  # no redeploy
    logs = client.events("ModelRegistry", "ModelRegistered", argument_filters={"modelId": mid})
    assert [log["args"]["name"] for log in logs] == ["down-up"]


@pytest.mark.anvil
def test_state_survives_sigkill_after_the_interval_dump(devnet: Tracked) -> None:
    client = devnet.client()
    addresses = client.deployment.addresses
    mid = register(client, "sigkill")
    time.sleep(2.0)  # > --state-interval 1
    pid = devnet.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not devnet.status().running

    status = devnet.up()
    assert status.running and status.pid != pid
    client = devnet.client()
    assert client.deployment.addresses == addresses
    assert exists(client, mid)


@pytest.mark.anvil
def test_lost_state_means_a_fresh_chain_and_deployment(devnet: Tracked) -> None:
    client = devnet.client()
    mid = register(client, "lost")
    old_mtime = deployment_path(devnet.home, 31337).stat().st_mtime_ns
    devnet.down()
    devnet.state_file.write_text('{"block": {"number": ')  # as if killed mid-dump

    devnet.up()
    assert len(list(devnet.dir.glob("state.corrupt-*.json"))) == 1
    # Redeployed: the record was rewritten. (Its block hash may equal the old one: the
    # chain is deterministic, so a fresh deployment in the same second repeats it.)
    assert deployment_path(devnet.home, 31337).stat().st_mtime_ns != old_mtime
    client = devnet.client()
    assert not exists(client, mid)


@pytest.mark.anvil
def test_concurrent_transactions_on_anvil(devnet: Tracked) -> None:
    client = devnet.client()
    assert client.deployer is not None
    start = client.w3.eth.get_transaction_count(client.deployer.address)
    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = list(pool.map(lambda i: register(client, f"concurrent {i}"), range(20)))
    assert all(exists(client, mid) for mid in ids)
    assert client.w3.eth.get_transaction_count(client.deployer.address) == start + 20


def rpc(client: ChainClient, method: str, *params: object) -> object:
    response = client.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response.get("result")


def wait_for(ready: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "the client never (re)sent its transaction"
        time.sleep(0.05)


@pytest.mark.anvil
def test_dropped_and_stuck_transactions_are_resent(devnet: Tracked) -> None:
    client = devnet.client()
    deployer = client.deployer
    assert deployer is not None
    client.retry = RetryPolicy(
        max_seconds=30,
        backoff=0.05,
        receipt_timeout=1.0,
        poll_interval=0.05,
        drop_check_interval=0.3,
    )
    eth = client.w3.eth

    def pending() -> list[dict]:
        content = rpc(client, "txpool_content")
        assert isinstance(content, dict)
        return [tx for by_nonce in content["pending"].values() for tx in by_nonce.values()]

    def fee_above(fee: int) -> Callable[[], bool]:
        return lambda: any(int(tx["maxFeePerGas"], 16) > fee for tx in pending())

    for case in ("dropped", "stuck"):
        mid, fn = registration(client, case, price=1)
        nonce = eth.get_transaction_count(deployer.address)
        rpc(client, "evm_setAutomine", False)
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(client.transact, fn, deployer)
            wait_for(lambda: len(pending()) == 1)
            if case == "dropped":
                rpc(client, "anvil_dropAllTransactions")
                wait_for(lambda: len(pending()) == 1)  # noticed the drop and sent it again
            else:
                # Still pending after receipt_timeout: replaced with higher fees.
                wait_for(fee_above(int(pending()[0]["maxFeePerGas"], 16)))
            rpc(client, "evm_setAutomine", True)
            rpc(client, "evm_mine")
            receipt = future.result(timeout=30)
        assert receipt["status"] == 1
        assert eth.get_transaction(receipt["transactionHash"])["nonce"] == nonce
        assert eth.get_transaction_count(deployer.address) == nonce + 1
        assert exists(client, mid)


def test_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        net = Devnet(tmp_path / "home", port=sock.getsockname()[1])
        with pytest.raises(ChainError, match="OGKIT_DEVNET_PORT"):
            net.up()
    assert not net.pid_file.exists()


def test_missing_anvil_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OGKIT_ANVIL", raising=False)
    monkeypatch.setattr(devnet_module, "_REPO_ROOT", tmp_path)
    with pytest.raises(ChainError, match="make setup"):
        Devnet(tmp_path / "home", port=free_port()).up()
    monkeypatch.setenv("OGKIT_ANVIL", str(tmp_path / "nope"))
    with pytest.raises(ChainError, match="OGKIT_ANVIL"):
        devnet_module.anvil_command(Settings.from_env().anvil)


@pytest.mark.anvil
def test_port_taken_by_another_program_moves_the_devnet(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OGKIT_DEVNET_PORT", raising=False)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (tmp_path / "devnet").mkdir(parents=True)
        (tmp_path / "devnet" / "port").write_text(str(taken))  # the port it used before
        net = Devnet(tmp_path)
        try:
            status = net.up()
            assert status.running and net.port != taken
            assert (tmp_path / "devnet" / "port").read_text() == str(net.port)
            assert Devnet(tmp_path).url == net.url  # later commands find it
        finally:
            net.down()
    # An explicitly chosen port never moves.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        with pytest.raises(ChainError, match="in use by another program"):
            Devnet(tmp_path / "other", port=squatter.getsockname()[1]).up()
