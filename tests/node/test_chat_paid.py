"""Paid chat against real processes: ``ogkit node serve --model tiny-chat`` (the tiny
language model from the hub) and ``ogkit facilitator serve`` on anvil. A payer holding
only OPG gets 402 for OpenAI's ``POST /v1/chat/completions``, pays one call's registry
price with an EIP-3009 authorization and gets OpenAI's answer with a receipt bound to the
payment transaction (job ``x402:<tx>``, requester the payer), which a verifier re-decodes;
a replayed payment and malformed chat requests are refused with 4xx and charge nothing;
a streamed call is paid before its first token and receipted like the others."""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ogkit.chain.devnet import Devnet
from ogkit.client import Node
from ogkit.errors import NodeError
from ogkit.hub import Hub
from ogkit.keys import KeyStore, Signer
from ogkit.llm.calls import ChatRequest
from ogkit.llm.model import load_chat_model
from ogkit.llm.publish import publish_llm
from ogkit.llm.tiny import build_tiny_llm
from ogkit.llm.verify import verify_chat_batch
from ogkit.node.chat import stream_answer, verify_paid_chat
from ogkit.settle import prepare_dev_settlement
from ogkit.verify import Allowlist, VerifyPolicy
from ogkit.x402 import (
    PAYMENT_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PaymentRequirements,
    decode_response_header,
    encode_payment_header,
)
from ogkit.x402.exact import request_nonce, sign_exact_payment

from .conftest import OPG, PARAMS, Service, free_port, wait_for

pytestmark = pytest.mark.anvil

PRICE = 7 * 10**15  # 0.007 OPG per call (one leaf, one row)
CAP = 24  # the node's --max-tokens
CHAT = "/v1/chat/completions"


@dataclass
class ChatNet:
    devnet: Devnet
    chain: Any
    hub: Hub
    keys: dict[str, Signer]
    manifest: Any
    model: Any
    allowlist: Allowlist
    node: Service

    def balance(self, who: str) -> int:
        token = self.chain.contract("OPGToken")
        return int(self.chain.call(token.functions.balanceOf(self.keys[who].address)))


@pytest.fixture(scope="module")
def chat_net(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("chat-node-home")
    devnet = Devnet(home, port=free_port())
    devnet.up(PARAMS)
    services: list[Service] = []
    try:
        chain = devnet.client()
        store = KeyStore(home)
        names = ("owner", "enclave", "requester", "node", "facilitator", "payer")
        names += ("verifier-1", "verifier-2", "verifier-3")
        keys = {n: store.ensure_dev_key(n) for n in names}
        devnet.fund_dev_accounts(
            [k.address for n, k in keys.items() if n != "payer"], eth=10**19, opg=100_000 * OPG
        )
        chain.transact(  # the payer holds OPG and no ETH
            chain.contract("OPGToken").functions.transfer(keys["payer"].address, 10 * OPG),
            devnet.deployer(),
        )
        hub = Hub(home=home)
        folder = build_tiny_llm(home / "tiny-chat")
        manifest = publish_llm(
            hub, folder, name="tiny-chat", version="1.0.0", price=PRICE, signer=keys["owner"]
        )
        model = load_chat_model("tiny-chat@1.0.0", hub=hub)  # the node decodes with 1 thread
        prepare_dev_settlement(
            chain,
            deployer=devnet.deployer(),
            manifest=manifest,
            runtime_id=model.runtime_id,
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
             devnet.url, "--port", "0"],
            env, home / "facilitator.log", "listening on",
        )  # fmt: skip
        services.append(fac.start())
        node = Service(
            ["--home", str(home), "node", "serve", "--key", "node", "--attester-key",
             "enclave", "--model", "tiny-chat@1.0.0", "--port", "0", "--workers", "0",
             "--rpc", devnet.url, "--facilitator", fac.url, "--max-tokens", str(CAP),
             "--read-timeout", "2"],
            env, home / "node.log", "listening on",
        )  # fmt: skip
        services.append(node.start())
        allow = Allowlist().approve(keys["enclave"].address, [model.runtime_id])
        yield ChatNet(devnet, chain, hub, keys, manifest, model, allow, node)
        codes = [s.stop() for s in reversed(services)]
        services.clear()
        assert codes == [0, 0], (codes, (home / "node.log").read_text()[-3000:])
    finally:
        for s in services:
            s.stop()
        devnet.down()


def _body(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _quote(net: ChatNet, body: bytes) -> PaymentRequirements:
    r = httpx.post(
        net.node.url + CHAT, content=body, headers={"content-type": "application/json"},
        timeout=30,
    )  # fmt: skip
    assert r.status_code == 402, r.text
    assert r.json()["reason"] == "payment-required"
    return PaymentRequirements.from_dict(r.json()["accepts"][0])


def _paid_post(net: ChatNet, body: bytes, header: str) -> httpx.Response:
    return httpx.post(
        net.node.url + CHAT, content=body, timeout=60,
        headers={PAYMENT_HEADER: header, "content-type": "application/json"},
    )  # fmt: skip


def _header_for(net: ChatNet, req: PaymentRequirements, body: bytes) -> str:
    payment = sign_exact_payment(
        req, net.keys["payer"], nonce=request_nonce(req, body), now=net.chain.block_timestamp()
    )
    return encode_payment_header(payment)


ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
LONG = [{"role": "user", "content": "ab " * 400}]  # more tokens than the model's context


def test_a_paid_chat_call_gets_402_then_an_openai_answer_whose_receipt_is_bound_to_the_payment(
    chat_net,
):
    net = chat_net
    with Node(net.node.url, timeout=30) as node:
        assert node.models()["data"][0]["id"] == "tiny-chat@1.0.0"
        assert node.health()["model_id"] == net.manifest.model_id
        body = _body({"model": "tiny-chat", "messages": ASK, "max_tokens": 12, "salt": "q"})
        req = _quote(net, body)
        # One call is one leaf: the ModelRegistry price of one row, to this node.
        assert req.max_amount_required == PRICE and req.extra["calls"] == 1
        assert req.pay_to == net.keys["node"].address
        payer_before, node_before = net.balance("payer"), net.balance("node")

        answer = node.chat(
            ASK, payer=net.keys["payer"], max_tokens=12, now=net.chain.block_timestamp()
        )
        # The same question again is another call and another payment (the client salts
        # the body the nonce commits to); each is charged once.
        seconds = []
        for _ in range(4):
            started = time.perf_counter()
            again = node.chat(ASK, payer=net.keys["payer"], max_tokens=12)
            seconds.append(time.perf_counter() - started)
            assert again["completion_ids"] == answer["completion_ids"]
            assert again["payment"]["transaction"] != answer["payment"]["transaction"]
        phases = [line for line in node.metrics().splitlines() if "phase_seconds" in line]
    print(
        f"paid chat call, 12 tokens (402, sign, settle, decode, attest): median "
        f"{statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms; "
        + "; ".join(phases)
    )
    assert answer["object"] == "chat.completion" and answer["model"] == "tiny-chat@1.0.0"
    message = answer["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    usage = answer["usage"]
    assert usage["completion_tokens"] == len(answer["completion_ids"]) <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    check = verify_paid_chat(
        answer, net.allowlist, chain=net.chain, price=PRICE, model=net.model,
        request=ChatRequest.make(ASK, max_tokens=12),
    )  # fmt: skip
    assert check.ok, check.problems
    tx = answer["payment"]["transaction"]
    assert check.payer == net.keys["payer"].address and check.transaction == tx
    assert answer["binding"]["job"] == f"x402:{tx}"
    assert answer["receipt"]["claim"]["requester"].lower() == check.payer.lower()
    assert net.balance("payer") == payer_before - 5 * PRICE
    assert net.balance("node") == node_before + 5 * PRICE

    # A verifier re-decodes the paid call from the stored batch (the ogkit.llm path).
    policy = VerifyPolicy(sample_rate=1.0, allowlist=net.allowlist, verifier_secret=b"s" * 32)
    verdict = verify_chat_batch(
        answer["artifact_id"], policy, hub=net.hub, requester=check.payer,
        job=f"x402:{tx}", requests=[{"messages": ASK, "max_tokens": 12}], progress=False,
    )  # fmt: skip
    assert verdict.passed, verdict.findings

    # What a node holding its own key could still change in the answer is caught.
    forged = json.loads(json.dumps(answer))
    forged["completion_ids"][0] = (forged["completion_ids"][0] + 1) % 200
    assert not verify_paid_chat(forged, net.allowlist).ok
    forged = json.loads(json.dumps(answer))
    forged["choices"][0]["message"]["content"] += " and a promise"
    assert not verify_paid_chat(forged, net.allowlist, model=net.model).ok
    forged = json.loads(json.dumps(answer))
    forged["request"]["messages"][0]["content"] = "Be verbose."
    assert not verify_paid_chat(forged, net.allowlist).ok
    forged = json.loads(json.dumps(answer))
    forged["payment"]["transaction"] = "0x" + "ab" * 32
    assert not verify_paid_chat(forged, net.allowlist).ok
    # The receipt of one paid call offered for another payment (same question, same
    # completion): the batch is bound to the first transaction only.
    forged = {**again, "receipt": answer["receipt"], "binding": answer["binding"]}
    assert verify_paid_chat(again, net.allowlist, chain=net.chain, price=PRICE).ok
    assert not verify_paid_chat(forged, net.allowlist, chain=net.chain, price=PRICE).ok


def test_a_replayed_or_rebound_chat_payment_is_refused_and_charged_once(chat_net):
    net = chat_net
    body = _body({"model": "tiny-chat@1.0.0", "messages": ASK, "max_tokens": 4, "salt": "r1"})
    req = _quote(net, body)
    header = _header_for(net, req, body)
    before = net.balance("payer")
    first = _paid_post(net, body, header)
    assert first.status_code == 200, first.text
    again = _paid_post(net, body, header)  # the answer it was served with, nothing run
    assert again.status_code == 200 and again.content == first.content, again.text
    # The payment's nonce commits to the body: sent with other messages it pays nothing.
    other = _body({"model": "tiny-chat@1.0.0", "messages": [{"role": "user", "content": "x"}],
                   "max_tokens": 4, "salt": "r1"})  # fmt: skip
    rebound = _paid_post(net, other, header)
    assert rebound.status_code == 402, rebound.text
    assert net.balance("payer") == before - PRICE


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"model": "tiny-chat", "messages": [', 400),  # not JSON
        (_body({"model": "tiny-chat", "max_tokens": 4}), 422),  # no messages
        (_body({"model": "tiny-chat", "messages": []}), 422),
        (_body({"model": "tiny-chat", "messages": [{"role": "wizard", "content": "hi"}]}), 422),
        (_body({"model": "tiny-chat", "messages": [{"role": "user", "content": 5}]}), 422),
        (_body({"model": "tiny-chat", "messages": ASK, "max_tokens": CAP + 1}), 422),
        (_body({"model": "tiny-chat", "messages": ASK, "max_tokens": 0}), 422),
        (_body({"model": "tiny-chat", "messages": ASK, "temperature": 0.7}), 422),  # no seed
        (_body({"model": "tiny-chat", "messages": ASK, "n": 3}), 400),  # unsupported field
        (_body({"model": "gpt-4o", "messages": ASK}), 404),
        (_body({"model": "tiny-chat", "messages": "Hello"}), 422),  # not OpenAI's list
        (_body([{"role": "user", "content": "hi"}]), 400),  # not an object
        (b'{"model":"tiny-chat","messages":[],"messages":[{"role":"user","content":"a"}]}', 400),
        (_body({"model": "tiny-chat", "messages": [{**ASK[1], "name": "x"}]}), 422),
        (_body({"model": "tiny-chat", "messages": ASK, "stream": "yes"}), 400),
        (_body({"model": "tiny-chat", "messages": LONG, "max_tokens": CAP}), 422),  # context
        (b'{"model":"tiny-chat","messages":[{"role":"user","content":"\\ud800"}]}', 422),
        (b'{"model":"tiny-chat","messages":[{"role":"user","content":"a"}],"seed":NaN}', 422),
        (_body({"model": "tiny-chat", "messages": ASK, "max_tokens": True}), 422),
    ],
)
def test_malformed_chat_requests_are_refused_before_any_charge(chat_net, body, status):
    net = chat_net
    # A payment signed for exactly these bytes is attached: still nothing is charged.
    good = _body({"model": "tiny-chat", "messages": ASK, "max_tokens": 4})
    req = _quote(net, good)
    header = _header_for(net, req, body)
    before = net.balance("payer")
    r = _paid_post(net, body, header)
    assert r.status_code == status, r.text
    assert r.json()["reason"] and r.json()["error"]
    assert net.balance("payer") == before
    assert httpx.get(net.node.url + "/health", timeout=10).status_code == 200


def test_a_streamed_chat_call_is_paid_before_its_first_token_and_receipted(chat_net):
    net = chat_net
    before = net.balance("payer")
    with Node(net.node.url, timeout=30) as node:
        now = net.chain.block_timestamp()
        plain = node.chat(ASK, payer=net.keys["payer"], max_tokens=10, now=now)
        chunks = list(node.chat(ASK, payer=net.keys["payer"], max_tokens=10, stream=True, now=now))
        # A chat node takes no tabular calls or batch jobs, and says where to go.
        with pytest.raises(NodeError) as refused:
            node.infer([{"f0": 1.0}], payer=net.keys["payer"])
        assert refused.value.status == 404
        with pytest.raises(NodeError) as refused:
            node.submit_job({"order": {}}, "datasets/x.parquet")
        assert 400 <= refused.value.status < 500
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len(chunks) == len(plain["completion_ids"]) + 1  # one per token, then the receipt
    streamed = stream_answer(chunks)
    check = verify_paid_chat(streamed, net.allowlist, chain=net.chain, price=PRICE, model=net.model)
    assert check.ok, check.problems
    # Greedy decoding: the stream is the same completion, under its own payment.
    assert streamed["completion_ids"] == plain["completion_ids"]
    assert streamed["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert streamed["payment"]["transaction"] != plain["payment"]["transaction"]
    assert net.balance("payer") == before - 2 * PRICE

    # On the wire: the 200's headers carry the settlement, and the payer has paid on chain
    # before the first event is read.
    body = _body({"model": "tiny-chat", "messages": ASK, "max_tokens": 6, "stream": True})
    header = _header_for(net, _quote(net, body), body)
    paid_before = net.balance("payer")
    with httpx.stream(
        "POST", net.node.url + CHAT, content=body, timeout=60,
        headers={PAYMENT_HEADER: header, "content-type": "application/json"},
    ) as r:  # fmt: skip
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        settled = decode_response_header(r.headers[PAYMENT_RESPONSE_HEADER])
        assert settled.success and net.balance("payer") == paid_before - PRICE
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][len("data: ") :])
    assert last["payment"]["transaction"] == settled.transaction
    assert last["binding"]["job"] == f"x402:{settled.transaction}"


def test_a_client_that_leaves_a_paid_stream_is_charged_once_and_the_node_serves_on(chat_net):
    net = chat_net
    body = _body({"model": "tiny-chat", "messages": ASK, "max_tokens": CAP, "stream": True})
    header = _header_for(net, _quote(net, body), body)
    before = net.balance("payer")
    with httpx.stream(
        "POST", net.node.url + CHAT, content=body, timeout=60,
        headers={PAYMENT_HEADER: header, "content-type": "application/json"},
    ) as r:  # fmt: skip
        assert r.status_code == 200
        # Gone after the headers: the call is paid, decoded and attested all the same.
    # Sent again: in flight while it decodes, then the same events it was served with.
    again = wait_for(
        lambda: (a := _paid_post(net, body, header)).status_code == 200 and a, timeout=60
    )
    events = again.text.split("\n\n")
    assert events[-2] == "data: [DONE]" and '"receipt"' in again.text, again.text[-400:]
    assert _paid_post(net, body, header).content == again.content
    assert net.balance("payer") == before - PRICE
    # Concurrent paid calls are each decoded, answered and charged once.
    with Node(net.node.url, timeout=60) as node, ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda i: node.chat(f"question {i}", payer=net.keys["payer"], max_tokens=6),
                range(4),
            )
        )
    assert len({a["payment"]["transaction"] for a in answers}) == 4
    assert all(verify_paid_chat(a, net.allowlist, price=PRICE).ok for a in answers)
    assert net.balance("payer") == before - 5 * PRICE
