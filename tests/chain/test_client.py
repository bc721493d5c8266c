"""ChainClient on the embedded eth-tester chain: transactions, reverts, concurrent senders,
retries, time, events, historical calls, deployment files, unreachable endpoints."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_utils import keccak

from ogkit.chain.bindings import COMPILED_NAMES, OPG
from ogkit.chain.client import ChainClient
from ogkit.chain.connection import connect
from ogkit.chain.deployments import (
    DeployParams,
    deploy_to,
    deployment_is_live,
    deployment_path,
    load_deployment,
    read_deployment_record,
)
from ogkit.chain.rpc import redact_url
from ogkit.chain.transactions import RetryPolicy
from ogkit.errors import ChainError, ConfigError, SettlementError
from ogkit.keys import KeyStore, Signer
from ogkit.settings import Settings
from ogkit.settle import registration_typed_data

NO_HASH = b"\0" * 32


@pytest.fixture(scope="module")
def client() -> ChainClient:
    return connect("embedded")


@pytest.fixture
def funded(client: ChainClient, home: Path) -> Any:
    """Dev keys funded with ETH (and OPG) by the deployer."""

    def make(name: str, opg: int = 0) -> Signer:
        signer = KeyStore(home).ensure_dev_key(name)
        client.fund(signer.address, eth=10**19, opg=opg)
        return signer

    return make


def model_id(tag: str) -> bytes:
    return keccak(f"test_client {tag} {time.time_ns()}".encode())


def register(client: ChainClient, signer: Signer, mid: bytes, price: int = 10) -> Any:
    """Register ``mid`` for ``signer`` with its own EIP-712 signature, sent by itself."""
    deadline = 2**40
    typed = registration_typed_data(
        client, "0x" + mid.hex(), signer.address, price, "0x" + NO_HASH.hex(), deadline
    )
    signature = bytes.fromhex(signer.sign_typed_data(typed)[2:])
    fn = client.contract("ModelRegistry").functions.registerModel(
        (mid, signer.address, price, NO_HASH, deadline, "tiny", "1.0.0", "ogkit://tiny"),
        signature,
    )
    return client.transact(fn, signer)


def test_embedded_client_basics(client: ChainClient) -> None:
    assert client.name == "embedded"
    assert client.chain_id == client.deployment.chain_id
    assert client.deployer is not None
    for name in ("OPGToken", "ModelRegistry", "NodeRegistry", "InferenceSettlement"):
        assert client.contract(name).address == client.deployment.addresses[name]
    with pytest.raises(ConfigError, match="unknown contract"):
        client.contract("Nope")
    assert client.block_number() >= 5
    assert client.block_timestamp() > 0
    shown = repr(client) + repr(client.deployer)
    assert client.deployer.local_account.key.hex() not in shown


def test_transact_and_revert_decoding(client: ChainClient, funded: Any) -> None:
    owner, stranger = funded("owner"), funded("stranger")
    registry = client.contract("ModelRegistry")
    mid = model_id("revert")
    receipt = register(client, owner, mid)
    assert receipt["status"] == 1

    # Reverts at gas estimation: readable custom error, no transaction hash. A stranger has
    # no registration of this model to reprice.
    with pytest.raises(SettlementError) as info:
        client.transact(registry.functions.setPrice(mid, 5), stranger)
    assert info.value.reason == f"ModelNotFound(modelId=0x{mid.hex()}, owner={stranger.address})"
    assert "setPrice reverted: ModelNotFound(" in str(info.value)
    assert info.value.tx_hash is None

    # With a fixed gas limit it is mined and reverts: same reason, plus the hash.
    with pytest.raises(SettlementError) as info:
        client.transact(registry.functions.setPrice(mid, 5), stranger, gas=200_000)
    assert info.value.reason is not None and info.value.reason.startswith("ModelNotFound(")
    assert info.value.tx_hash is not None
    mined = client.w3.eth.get_transaction_receipt(info.value.tx_hash)
    assert mined["status"] == 0
    assert client.call(registry.functions.pricing(mid, owner.address)) == [True, 10, False]

    # A registration signed by another key than its owner's is refused.
    forged = registry.functions.registerModel(
        (model_id("forged"), owner.address, 1, NO_HASH, 2**40, "x", "1", "u"), b"\x01" * 65
    )
    with pytest.raises(SettlementError, match=r"BadOwnerSignature\(\)"):
        client.transact(forged, stranger)

    # eth_call reverts are decoded too.
    unknown = model_id("unknown")
    with pytest.raises(SettlementError, match=r"ModelNotFound\(modelId=0x"):
        client.call(registry.functions.manifestURIOf(unknown, owner.address))


def test_concurrent_senders_share_one_nonce_sequence(client: ChainClient, funded: Any) -> None:
    signer = funded("busy")
    start_nonce = client.w3.eth.get_transaction_count(signer.address)
    ids = [model_id(f"concurrent {i}") for i in range(20)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        receipts = list(pool.map(lambda mid: register(client, signer, mid), ids))
    assert all(r["status"] == 1 for r in receipts)
    nonces = sorted(client.w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(start_nonce, start_nonce + 20))
    registry = client.contract("ModelRegistry")
    assert all(client.call(registry.functions.exists(mid, signer.address)) for mid in ids)


def test_nonce_resync_after_a_transaction_sent_elsewhere(client: ChainClient, funded: Any) -> None:
    signer = funded("shared")
    register(client, signer, model_id("before"))  # the nonce manager now caches the nonce
    # The same key sends a transaction behind the client's back.
    account = signer.local_account
    tx = {
        "to": account.address,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "nonce": client.w3.eth.get_transaction_count(account.address),
        "chainId": client.chain_id,
    }
    client.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = register(client, signer, model_id("after"))  # nonce error, resync, resend
    assert receipt["status"] == 1


def test_lost_connection_on_send_is_retried_without_double_spend(
    client: ChainClient, funded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = funded("flaky")
    eth = client.w3.eth
    real_send = eth.send_raw_transaction
    calls: list[str] = []

    def flaky(raw: Any) -> Any:
        calls.append("send")
        if len(calls) == 1:
            raise requests.ConnectionError("connection refused")  # never reached the node
        if len(calls) == 2:
            real_send(raw)  # reached the node, but the answer got lost
            raise requests.ConnectionError("connection reset by peer")
        return real_send(raw)

    monkeypatch.setattr(eth, "send_raw_transaction", flaky)
    before = eth.get_transaction_count(signer.address)
    receipt = register(client, signer, model_id("flaky"))
    assert receipt["status"] == 1
    assert eth.get_transaction_count(signer.address) == before + 1
    assert len(calls) == 2


def test_gives_up_after_bounded_attempts(
    client: ChainClient, funded: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    signer = funded("unlucky")
    register(client, signer, model_id("warm up"))  # the nonce manager caches the nonce
    before = client.w3.eth.get_transaction_count(signer.address)
    client.retry = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.02)
    eth = client.w3.eth

    def down(raw: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(eth, "send_raw_transaction", down)
    try:
        started = time.monotonic()
        with pytest.raises(ChainError, match="after 3 attempts"):
            register(client, signer, model_id("unlucky"))
        assert time.monotonic() - started < 5
    finally:
        client.retry = RetryPolicy.local()
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level("INFO", logger="ogkit.chain.transactions"):
        receipt = register(client, signer, model_id("lucky"))
    # The abandoned nonce was handed back: no gap, no nonce error on the next transaction.
    assert client.w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == before
    assert "fetching the nonce again" not in caplog.text


def test_increase_time_moves_block_timestamps(client: ChainClient) -> None:
    before = client.block_timestamp()
    block = client.block_number()
    client.increase_time(3600)
    assert client.block_number() > block
    assert client.block_timestamp() >= before + 3600
    assert client.block_timestamp(block) == before
    with pytest.raises(ConfigError):
        client.increase_time(-1)


def test_snapshot_and_revert(client: ChainClient, funded: Any, caplog: Any) -> None:
    signer = funded("snapshot")
    registry = client.contract("ModelRegistry")
    block, ts = client.block_number(), client.block_timestamp()
    snapshot = client.snapshot()
    mid = model_id("reverted")
    register(client, signer, mid)  # the nonce manager now caches the next nonce
    client.increase_time(3600)
    assert client.call(registry.functions.exists(mid, signer.address))
    client.revert(snapshot)
    assert client.block_number() == block and client.block_timestamp() == ts
    assert not client.call(registry.functions.exists(mid, signer.address))
    with caplog.at_level("INFO", logger="ogkit.chain.transactions"):
        receipt = register(client, signer, model_id("after revert"))
    assert receipt["status"] == 1
    assert "fetching the nonce again" not in caplog.text  # the cached nonce was forgotten


def test_increase_time_refused_on_real_networks(client: ChainClient) -> None:
    real = ChainClient(client.w3, client.deployment, name="https://rpc.example", kind="rpc")
    real._client_version = "Geth/v1.14.0-stable/linux-amd64/go1.22"
    with pytest.raises(ChainError, match="not a dev chain"):
        real.increase_time(60)
    with pytest.raises(ChainError, match="devnet and the embedded chain only"):
        real.fund("0x000000000000000000000000000000000000dEaD")


def test_events_decode_model_registered(client: ChainClient, funded: Any) -> None:
    owner = funded("events")
    mid = model_id("events")
    start = client.block_number() + 1
    receipt = register(client, owner, mid, price=7)
    logs = client.events(
        "ModelRegistry", "ModelRegistered", from_block=start, argument_filters={"modelId": mid}
    )
    assert len(logs) == 1
    log = logs[0]
    assert log["event"] == "ModelRegistered"
    assert type(log["args"]) is dict
    assert log["args"]["modelId"] == mid
    assert log["args"]["owner"] == owner.address
    assert log["args"]["price"] == 7
    assert log["args"]["manifestURI"] == "ogkit://tiny"
    assert log["blockNumber"] == receipt["blockNumber"]
    assert log["transactionHash"] == receipt["transactionHash"].to_0x_hex()
    every = client.events("ModelRegistry", "ModelRegistered", chunk=3)
    assert mid in [e["args"]["modelId"] for e in every]
    with pytest.raises(ConfigError, match="has no event"):
        client.events("ModelRegistry", "Nope")


def test_calls_as_of_a_block(client: ChainClient, funded: Any) -> None:
    owner = funded("history")
    registry = client.contract("ModelRegistry")
    mid = model_id("history")
    block = register(client, owner, mid)["blockNumber"]
    exists = registry.functions.exists(mid, owner.address)
    assert client.is_contract_call_at(exists, block - 1) is False
    assert client.is_contract_call_at(exists, block) is True
    with pytest.raises(ChainError, match="no block"):
        client.is_contract_call_at(exists, block + 10_000)
    with pytest.raises(ChainError, match="no contract"):
        client.is_contract_call_at(exists, 0)


def test_fund_sends_eth_and_opg(client: ChainClient) -> None:
    address = "0x000000000000000000000000000000000000bEEF"
    token = client.contract("OPGToken")
    eth_before = client.w3.eth.get_balance(address)
    client.fund(address, eth=10**18, opg=5 * OPG)
    assert client.w3.eth.get_balance(address) == eth_before + 10**18
    assert client.call(token.functions.balanceOf(address)) >= 5 * OPG


def test_unreachable_endpoint_fails_fast_with_the_fix(home: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ChainError) as info:
        connect("http://127.0.0.1:9", home=home)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "http://127.0.0.1:9" in message
    assert "ogkit chain up" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_credentials_never_appear_in_errors(home: Path) -> None:
    url = "http://alice:s3cret@127.0.0.1:9/v3/0123456789abcdef0123456789abcdef?apikey=k3y"
    with pytest.raises(ChainError) as info:
        connect(url, home=home)
    message = str(info.value)
    for secret in ("alice", "s3cret", "0123456789abcdef0123456789abcdef", "k3y"):
        assert secret not in message
    assert redact_url(url) == "http://127.0.0.1:9/v3/***?***"


def test_unknown_target_and_env_default(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    with pytest.raises(ConfigError, match="'devnet', 'embedded'"):
        connect("ropsten", home=home)
    # connect() reads no environment: the edge passes $OGKIT_CHAIN from Settings.
    with pytest.raises(ConfigError, match=r"--chain.*OGKIT_CHAIN"):
        connect(home=home)
    with pytest.raises(ConfigError, match=r"--home.*OGKIT_HOME"):
        connect("devnet")
    monkeypatch.setenv("OGKIT_CHAIN", "http://127.0.0.1:9")
    settings = Settings.from_env()
    assert settings.home == home
    with pytest.raises(ChainError, match=r"127\.0\.0\.1:9"):
        connect(settings.chain, home=settings.home)


def test_deployment_round_trips_through_the_file(home: Path, caplog: Any) -> None:
    client = connect("embedded")
    runtime = keccak(b"runtime")
    params = DeployParams(
        challenge_window=120,
        min_slash=5 * OPG,
        collateral_bps=20_000,
        initial_measurements=(runtime,),
        initial_kinds=(2,),  # TDX
    )
    deployer = client.deployer
    assert deployer is not None
    register(client, deployer, model_id("before redeploy"))  # caches the deployer's nonce
    with caplog.at_level("INFO", logger="ogkit.chain.transactions"):
        deployment = deploy_to(client, deployer, params, home=home)
        assert client.deployment is deployment
        register(client, deployer, model_id("after redeploy"))
    assert "fetching the nonce again" not in caplog.text
    path = deployment_path(home, client.chain_id)
    assert path.exists()
    text = path.read_text()
    assert deployer.local_account.key.hex().removeprefix("0x") not in text
    record = json.loads(text)
    assert record["addresses"] == deployment.addresses
    assert set(record["artifacts"]) == set(COMPILED_NAMES)  # OPGVesting too
    # the ZkJudge is found through the settlement (zkJudge()), not recorded apart
    assert set(deployment.addresses) == set(COMPILED_NAMES) - {"OPGVesting", "ZkJudge"}
    assert record["params"]["min_slash"] == 5 * OPG
    assert record["params"]["initial_kinds"] == [2]
    assert "slash_bps" not in record["params"]
    assert record["block_number"] == deployment.block_number
    assert deployment_is_live(client.w3, record)

    loaded = load_deployment(home, client.chain_id, client.w3)
    assert loaded is not None
    assert loaded.addresses == deployment.addresses
    assert loaded.params == params
    assert loaded.block_number == deployment.block_number
    assert loaded.deployer == deployer.address
    assert loaded.chain_id == client.chain_id
    assert client.call(loaded.settlement.functions.challengeWindow()) == 120
    assert client.call(loaded.settlement.functions.minSlash()) == 5 * OPG
    assert client.call(loaded.settlement.functions.collateralBps()) == 20_000
    assert client.call(loaded.node_registry.functions.measurementKind(runtime)) == 2
    assert client.call(loaded.node_registry.functions.production()) is False
    # the deployer holds the liquid OPG allocations of the new token (189.5M)
    token = loaded.token.functions
    assert client.call(token.balanceOf(deployer.address)) == 189_500_000 * OPG

    assert load_deployment(home, 12345, client.w3) is None
    stale = dict(record, addresses={k: "0x" + "11" * 20 for k in record["addresses"]})
    assert not deployment_is_live(client.w3, stale)
    path.write_text("{not json")
    with pytest.raises(ChainError, match="delete it and deploy again"):
        read_deployment_record(home, client.chain_id)
