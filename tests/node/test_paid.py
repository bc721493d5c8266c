"""Paid per-request inference against real processes: the node and the facilitator as
``ogkit ... serve`` subprocesses on anvil. A payer holding only OPG gets 402, pays with an
EIP-3009 authorization and gets outputs with receipts bound to the payment transaction;
every attack an x402 client or a hostile payee could try is refused with a 4xx and
charges nothing; malformed requests never stop the node."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ogkit.client import Node
from ogkit.errors import NodeError, NodeUnavailable
from ogkit.node.receipts import verify_paid_call
from ogkit.samples import make_tabular
from ogkit.x402 import (
    PAYMENT_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PaymentRequirements,
    decode_payment_header,
    decode_response_header,
    encode_payment_header,
    sign_exact_payment,
)
from ogkit.x402.exact import request_nonce

from .conftest import PRICE

pytestmark = pytest.mark.anvil


def _rows(n: int, seed: int = 1) -> list[dict]:
    return make_tabular(n, seed=seed).drop("label").to_dicts()


def _quote(net, rows: list[dict]) -> PaymentRequirements:
    r = httpx.post(f"{net.node.url}/v1/infer", json={"rows": rows}, timeout=30)
    assert r.status_code == 402, r.text
    doc = r.json()
    assert doc["x402Version"] == 1 and doc["reason"] == "payment-required"
    return PaymentRequirements.from_dict(doc["accepts"][0])


def _body(rows: list[dict]) -> bytes:
    """The exact bytes a paid call sends (the payment's nonce commits to them)."""
    return json.dumps({"rows": rows}, separators=(",", ":")).encode()


def _sign(req: PaymentRequirements, rows: list[dict], payer, **kw):
    """A payment for exactly ``_body(rows)`` at this node (docs/spec.md 11.3)."""
    return sign_exact_payment(req, payer, nonce=request_nonce(req, _body(rows)), **kw)


def _pay(net, rows, header: str) -> httpx.Response:
    return httpx.post(
        f"{net.node.url}/v1/infer", content=_body(rows),
        headers={PAYMENT_HEADER: header, "content-type": "application/json"}, timeout=60,
    )  # fmt: skip


def test_paid_call_gets_402_then_200_with_receipts_bound_to_the_payment(net, chain_now):
    rows = _rows(3)
    req = _quote(net, rows)
    node_address = net.keys["node"].address
    assert req.max_amount_required == 3 * PRICE  # rows x the ModelRegistry price
    assert req.pay_to == node_address and req.network == f"eip155:{net.chain.chain_id}"
    assert req.asset == net.chain.contract("OPGToken").address
    payer_before, node_before = net.balance("payer"), net.balance("node")
    eth_before = net.chain.w3.eth.get_balance(net.keys["payer"].address)

    with Node(net.node.url, timeout=30) as node:
        answer = node.infer(rows, payer=net.keys["payer"], now=chain_now)
    assert answer["rows"] == 3 and len(answer["outputs"]) == 3 and len(answer["receipts"]) == 3
    check = verify_paid_call(answer, net.allowlist, chain=net.chain, price_per_row=PRICE)
    assert check.ok, check.problems
    assert check.payer == net.keys["payer"].address
    # Exactly the price moved, payer to node, and the payer spent no ETH (the facilitator
    # submitted the authorization).
    assert net.balance("payer") == payer_before - 3 * PRICE
    assert net.balance("node") == node_before + 3 * PRICE
    assert net.chain.w3.eth.get_balance(net.keys["payer"].address) == eth_before == 0
    # The outputs are the model's: the same rows run locally give the same labels.
    from ogkit.load import load_model

    model = load_model("tab", hub=net.hub)
    import numpy as np

    features = np.array([[r[f"f{i}"] for i in range(8)] for r in rows], dtype=np.float32)
    local = model.run({"features": features})
    assert [o["label"] for o in answer["outputs"]] == [int(x) for x in local["label"]]

    # A receipt moved to another payment no longer verifies: the job binds the transaction.
    forged = json.loads(json.dumps(answer))
    forged["payment"]["transaction"] = "0x" + "ab" * 32
    forged["binding"]["job"] = "x402:" + "0x" + "ab" * 32
    bad = verify_paid_call(forged, net.allowlist)
    assert not bad.ok and any("not bound to this payment" in p for p in bad.problems)
    # A claimed payer other than the signed requester is caught.
    other = json.loads(json.dumps(answer))
    other["payment"]["payer"] = net.keys["payer-2"].address
    assert not verify_paid_call(other, net.allowlist).ok
    # A receipt whose output was changed fails its leaf.
    changed = json.loads(json.dumps(answer))
    changed["receipts"][0]["leaf_values"]["outputHash"] = "0x" + "00" * 32
    assert not verify_paid_call(changed, net.allowlist).ok


def test_refused_payments_charge_nothing(net, chain_now):
    rows = _rows(2, seed=2)
    req = _quote(net, rows)
    payer = net.keys["payer"]
    before = {n: net.balance(n) for n in ("payer", "payer-2", "node")}

    def refused(header: str, reason: str, rows: list[dict] = rows) -> None:
        r = _pay(net, rows, header)
        assert r.status_code == 402, r.text
        doc = r.json()
        assert doc["reason"] == reason, doc
        assert doc["error"] and doc["accepts"]  # a clear message and how to pay

    # Replay: a payment that was settled once is never run or charged again; the same
    # payment with the same request gets the answer it was served with, byte for byte.
    good = encode_payment_header(_sign(req, rows, payer, now=chain_now))
    first = _pay(net, rows, good)
    assert first.status_code == 200
    paid_once = {n: net.balance(n) for n in before}
    assert paid_once["payer"] == before["payer"] - 2 * PRICE
    again = _pay(net, rows, good)
    assert again.status_code == 200 and again.content == first.content
    assert again.headers[PAYMENT_RESPONSE_HEADER]
    assert (
        decode_response_header(again.headers[PAYMENT_RESPONSE_HEADER]).transaction
        == (first.json()["payment"]["transaction"])
    )
    assert {n: net.balance(n) for n in before} == paid_once
    # ... and with other rows, the payment pays for nothing (its nonce binds the body).
    other_rows = _rows(2, seed=22)
    r = httpx.post(
        f"{net.node.url}/v1/infer", content=_body(other_rows),
        headers={PAYMENT_HEADER: good, "content-type": "application/json"}, timeout=60,
    )  # fmt: skip
    assert r.status_code == 402 and r.json()["reason"] != "replayed", r.text
    # Under-paid by one base unit; over-paid too (exact means exact).
    refused(
        encode_payment_header(_sign(req, rows, payer, now=chain_now, value=2 * PRICE - 1)),
        "underpaid",
    )
    refused(
        encode_payment_header(_sign(req, rows, payer, now=chain_now, value=2 * PRICE + 1)),
        "overpaid",
    )
    # A payment to another payee (the payer signed it for someone else's resource).
    elsewhere = PaymentRequirements(**{**req.__dict__, "pay_to": net.keys["payer-2"].address})
    refused(
        encode_payment_header(sign_exact_payment(elsewhere, payer, now=chain_now)), "wrong-payee"
    )
    # Another chain, another token.
    refused(
        encode_payment_header(
            sign_exact_payment(PaymentRequirements(**{**req.__dict__, "network": "eip155:1"}),
                               payer, now=chain_now)
        ),
        "wrong-network",
    )  # fmt: skip
    # An expired authorization (valid for 10 s, an hour ago), for rows not paid yet (the
    # nonce binds the request: for the rows served above, the payer's own signature on
    # the same nonce asks for that answer again, whatever its validity window).
    fresh = _rows(2, seed=23)
    refused(
        encode_payment_header(_sign(req, fresh, payer, now=chain_now - 3600, valid_for=10)),
        "expired",
        fresh,
    )
    # An authorization that is not valid yet.
    future = _sign(req, fresh, payer, now=chain_now + 3600)
    refused(encode_payment_header(future), "not-yet-valid", fresh)
    # Signed by someone else in the payer's name.
    forged = _sign(req, rows, net.keys["payer-2"], now=chain_now)
    forged = type(forged)(
        network=forged.network,
        signature=forged.signature,
        authorization=type(forged.authorization)(
            **{**forged.authorization.__dict__, "from_": payer.address}
        ),
    )
    refused(encode_payment_header(forged), "bad-signature")
    # A payer without the funds: verifier-1 gives all its (unstaked) OPG away first.
    token = net.chain.contract("OPGToken")
    poor = net.keys["verifier-1"]
    held = int(net.chain.call(token.functions.balanceOf(poor.address)))
    net.chain.transact(token.functions.transfer(net.keys["owner"].address, held), poor)
    refused(encode_payment_header(_sign(req, rows, poor, now=chain_now)), "insufficient-funds")
    # Malformed headers: not base64, base64 of junk, the wrong JSON, far too long.
    for header in (
        "not base64!",
        base64.b64encode(b"\xff\xfe").decode(),
        base64.b64encode(b'{"x402Version": 1}').decode(),
        base64.b64encode(json.dumps({"x402Version": "1", "payload": []}).encode()).decode(),
        "A" * 10_000,
    ):
        refused(header, "malformed")
    after = {n: net.balance(n) for n in before}
    # Nothing but the one good payment moved (verifier-1's own transfer aside).
    assert after["payer"] == paid_once["payer"] and after["node"] == paid_once["node"]
    assert after["payer-2"] == before["payer-2"]


def test_the_same_payment_sent_concurrently_is_charged_once(net, chain_now):
    rows = _rows(1, seed=3)
    req = _quote(net, rows)
    header = encode_payment_header(_sign(req, rows, net.keys["payer-2"], now=chain_now))
    before = net.balance("payer-2")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _pay(net, rows, header), range(8)))
    # One is run; the others lose the race (in flight) or, once it was served, get its
    # answer again: every 200 is the same bytes, and the payment is charged once.
    ok = [r for r in answers if r.status_code == 200]
    assert ok and {r.content for r in ok} == {ok[0].content}, [r.text[:200] for r in answers]
    assert all(r.status_code in (200, 402) for r in answers)
    reasons = {r.json()["reason"] for r in answers if r.status_code == 402}
    assert reasons <= {"in-flight"}, reasons
    assert net.balance("payer-2") == before - PRICE
    paid = ok[0]
    settled = decode_response_header(paid.headers[PAYMENT_RESPONSE_HEADER])
    assert settled.success and settled.transaction == paid.json()["payment"]["transaction"]


def test_malformed_requests_get_clear_4xx_and_the_node_keeps_serving(net):
    url = f"{net.node.url}/v1/infer"
    cases = [
        (dict(content=b"{not json"), 400, "bad-json"),
        (dict(json=[1, 2, 3]), 400, "bad-request"),
        (dict(json={"rows": "many"}), 400, "bad-request"),
        (dict(json={"rows": []}), 400, "bad-request"),
        (dict(json={"rows": [{"f0": 1}], "extra": 1}), 400, "bad-request"),
        (dict(json={"rows": [{"a": 1.0, "b": 2.0}]}), 422, "schema"),
        (dict(json={"rows": [{"f0": 1.0}, {"f1": 2.0}]}), 400, "bad-request"),
        (dict(json={"rows": [dict.fromkeys([f"f{i}" for i in range(8)], "x")]}), 422, "bad-value"),
        (dict(content=b'{"rows": [{"f0": NaN}]}'), 422, "bad-value"),
        (dict(json={"inputs": {"pixels": [[1.0]]}}), 422, "schema"),
        (dict(json={"inputs": {"features": [[1.0, 2.0], [3.0]]}}), 422, "schema"),
        (dict(json={"rows": _rows(65)}), 413, "too-many-rows"),
        (dict(content=b"[" + b"0," * 600_000 + b"0]"), 413, "too-large"),
    ]
    for kwargs, status, reason in cases:
        r = httpx.post(url, timeout=30, **kwargs)
        assert r.status_code == status, (kwargs.keys(), r.text[:300])
        assert r.json()["reason"] == reason and r.json()["error"]
    # A tensor request of the right shape is quoted like rows.
    r = httpx.post(url, json={"inputs": {"features": [[0.5] * 8, [0.1] * 8]}}, timeout=30)
    assert r.status_code == 402 and r.json()["accepts"][0]["maxAmountRequired"] == str(2 * PRICE)
    # Unknown jobs and routes are 404s; the node still answers everything else.
    assert httpx.get(f"{net.node.url}/v1/jobs/0x{'00' * 32}", timeout=10).status_code == 404
    assert httpx.get(f"{net.node.url}/v1/jobs/nonsense", timeout=10).status_code == 404
    assert httpx.get(f"{net.node.url}/v1/price?rows=0", timeout=10).status_code == 400
    bad = httpx.get(f"{net.node.url}/v1/price?rows=many", timeout=10)
    assert bad.status_code == 422 and bad.json()["reason"] == "bad-request"
    assert "rows" in bad.json()["error"]
    with Node(net.node.url, timeout=10) as node:
        health = node.health()
        assert health["status"] == "ok" and health["model_id"] == net.manifest.model_id
        assert health["chain_id"] == net.chain.chain_id
        assert health["node"] == net.keys["node"].address
        assert node.quote(4)["amount"] == str(4 * PRICE)
        metrics = node.metrics()
        assert 'ogkit_node_events_total{event="http_413"}' in metrics
        with pytest.raises(NodeError) as refused:
            node.infer([{"f0": 1.0}], payer=net.keys["payer"])
        assert refused.value.status == 422
    assert httpx.get(f"{net.node.url}/docs", timeout=10).status_code == 200
    assert "/v1/infer" in httpx.get(f"{net.node.url}/openapi.json", timeout=10).text


def test_the_facilitator_checks_everything_itself(net, chain_now):
    """A facilitator asked to settle a payment it never verified (or one another party
    altered) checks it again; malformed requests are 400s."""
    fac = net.facilitator.url
    supported = httpx.get(f"{fac}/supported", timeout=10).json()
    assert supported["kinds"] == [
        {"x402Version": 1, "scheme": "exact", "network": f"eip155:{net.chain.chain_id}"}
    ]
    req = _quote(net, _rows(1, seed=4))
    payment = sign_exact_payment(req, net.keys["payer"], now=chain_now)
    # A hostile resource server swaps the payee in the requirements it forwards.
    swapped = PaymentRequirements(**{**req.__dict__, "pay_to": net.keys["payer-2"].address})
    before = net.balance("payer")
    for path in ("/verify", "/settle"):
        body = {"x402Version": 1, "paymentPayload": payment.to_dict(),
                "paymentRequirements": swapped.to_dict()}  # fmt: skip
        doc = httpx.post(f"{fac}{path}", json=body, timeout=30).json()
        assert doc.get("isValid", doc.get("success")) is False
        assert doc.get("invalidReason", doc.get("errorReason")) == "wrong-payee"
    # Asked to settle with a different asset (a token the payer never signed for).
    other_asset = PaymentRequirements(**{**req.__dict__, "asset": net.keys["node"].address})
    body = {"x402Version": 1, "paymentPayload": payment.to_dict(),
            "paymentRequirements": other_asset.to_dict()}  # fmt: skip
    assert httpx.post(f"{fac}/settle", json=body, timeout=30).json()["errorReason"] == "wrong-asset"
    for junk in (b"", b"[]", b"{}", b'{"paymentPayload": 1}', b"x" * 20_000):
        r = httpx.post(f"{fac}/settle", content=junk, timeout=10)
        assert r.status_code == 400 and r.json()["reason"] == "malformed"
    assert net.balance("payer") == before
    # Settling directly, without any verify first, works for a good payment, once.
    body = {"x402Version": 1, "paymentPayload": payment.to_dict(),
            "paymentRequirements": req.to_dict()}  # fmt: skip
    first = httpx.post(f"{fac}/settle", json=body, timeout=30).json()
    second = httpx.post(f"{fac}/settle", json=body, timeout=30).json()
    assert first["success"] is True and second == {**second, "success": False}
    assert second["errorReason"] == "replayed"
    assert second["transaction"] == first["transaction"]  # who consumed it, for the payee
    assert net.balance("payer") == before - PRICE


def test_a_front_run_payment_is_served_once_and_charged_once(net, chain_now):
    """Whoever sees an X-PAYMENT header can submit its authorization first. The money
    still goes only to the node; the node then serves that call once, bound to the
    front-runner's transaction, and refuses the header ever after."""
    rows = _rows(1, seed=5)
    req = _quote(net, rows)
    payment = _sign(req, rows, net.keys["payer"], now=chain_now)
    auth, sig = payment.authorization, bytes.fromhex(payment.signature[2:])
    token = net.chain.contract("OPGToken")
    before, node_before = net.balance("payer"), net.balance("node")
    front = net.chain.transact(
        token.functions.transferWithAuthorization(
            auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before,
            bytes.fromhex(auth.nonce[2:]), sig[64], sig[:32], sig[32:64],
        ),
        net.keys["owner"],
    )  # fmt: skip
    header = encode_payment_header(payment)
    r = _pay(net, rows, header)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["payment"]["transaction"] == "0x" + bytes(front["transactionHash"]).hex()
    assert verify_paid_call(answer, net.allowlist, chain=net.chain, price_per_row=PRICE).ok
    again = _pay(net, rows, header)
    assert again.status_code == 200 and again.content == r.content  # its answer again
    assert net.balance("payer") == before - PRICE and net.balance("node") == node_before + PRICE


def test_a_facilitator_outage_charges_nothing_and_the_payment_can_be_sent_again(net, chain_now):
    rows = _rows(1, seed=6)
    req = _quote(net, rows)
    header = encode_payment_header(_sign(req, rows, net.keys["payer"], now=chain_now))
    before = net.balance("payer")
    assert net.facilitator.stop() == 0
    try:
        r = _pay(net, rows, header)
        assert r.status_code == 503 and r.json()["reason"] == "facilitator-unavailable"
        assert net.balance("payer") == before
        assert httpx.get(f"{net.node.url}/health", timeout=10).status_code == 200
    finally:
        net.restart_facilitator()
    r = _pay(net, rows, header)
    assert r.status_code == 200, r.text
    assert verify_paid_call(r.json(), net.allowlist, chain=net.chain, price_per_row=PRICE).ok
    assert net.balance("payer") == before - PRICE


def test_the_payee_cannot_charge_a_payment_twice(net, chain_now):
    """The node (payee) holds the signed authorization after serving; sending it to the
    chain again, or to the facilitator, moves nothing."""
    from ogkit.errors import SettlementError

    rows = _rows(1, seed=7)
    req = _quote(net, rows)
    payment = _sign(req, rows, net.keys["payer-2"], now=chain_now)
    assert _pay(net, rows, encode_payment_header(payment)).status_code == 200
    after_call = net.balance("payer-2")
    auth, sig = payment.authorization, bytes.fromhex(payment.signature[2:])
    token = net.chain.contract("OPGToken")
    with pytest.raises(SettlementError, match="ERC3009UsedAuthorization"):
        net.chain.transact(
            token.functions.transferWithAuthorization(
                auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before,
                bytes.fromhex(auth.nonce[2:]), sig[64], sig[:32], sig[32:64],
            ),
            net.keys["node"],
        )  # fmt: skip
    body = {"x402Version": 1, "paymentPayload": payment.to_dict(),
            "paymentRequirements": req.to_dict()}  # fmt: skip
    doc = httpx.post(f"{net.facilitator.url}/settle", json=body, timeout=30).json()
    assert doc["success"] is False and doc["errorReason"] == "replayed"
    assert net.balance("payer-2") == after_call


def test_a_node_without_a_facilitator_settles_in_process(net, chain_now):
    from .conftest import Service

    args = net.node_args()
    cut = args.index("--facilitator")
    del args[cut : cut + 2]
    # The shared home's node state is locked by the running node: a second one is refused.
    refused = Service(args, net.env, net.home / "node-refused.log", "listening on")
    with pytest.raises(AssertionError, match="another node runs"):
        refused.start(timeout=60)
    refused.proc.wait(10)
    args += ["--state", str(net.home / "node-solo")]
    solo = Service(args, net.env, net.home / "node-solo.log", "listening on").start()
    try:
        with Node(solo.url, timeout=30) as node:
            assert node.health()["facilitator"] == "in-process"
            before = net.balance("payer")
            answer = node.infer(_rows(2, seed=8), payer=net.keys["payer"], now=chain_now)
        assert verify_paid_call(answer, net.allowlist, chain=net.chain, price_per_row=PRICE).ok
        assert net.balance("payer") == before - 2 * PRICE
    finally:
        assert solo.stop() == 0


def test_serve_json_prints_its_ready_line_as_a_document(net):
    """`ogkit facilitator serve --json` (as `node serve --json`): the one ready line on
    stdout is a document with the URL, which then answers."""
    import signal
    import subprocess
    import sys

    from .conftest import free_port

    argv = ["--home", str(net.home), "facilitator", "serve", "--key", "facilitator"]
    argv += ["--rpc", net.devnet.url, "--port", str(free_port()), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ogkit.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=net.env,
    )
    try:
        assert proc.stdout is not None
        doc = json.loads(proc.stdout.readline())
        assert doc["schema"] == "ogkit.facilitator.listening.v1"
        assert doc["url"].startswith("http://127.0.0.1:")
        supported = httpx.get(doc["url"] + "/supported", timeout=10).json()
        assert supported["kinds"][0]["scheme"] == "exact"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_a_served_answer_is_kept_and_a_corrupt_copy_is_never_sent(net, chain_now):
    """The answer's bytes are in the node's store before the ledger says ``served``; sent
    again the payment gets them, also after a restart. A stored answer whose bytes no
    longer hash to its id is never sent: the payer is told, and charged nothing more."""
    import sqlite3

    from ogkit.store import ContentStore

    rows = _rows(1, seed=24)
    header = encode_payment_header(_sign(_quote(net, rows), rows, net.keys["payer"], now=chain_now))
    before = net.balance("payer")
    first = _pay(net, rows, header)
    assert first.status_code == 200, first.text
    net.restart_node()
    again = _pay(net, rows, header)
    assert again.status_code == 200 and again.content == first.content
    nonce = decode_payment_header(header).authorization.nonce.lower()
    db = sqlite3.connect(net.home / "node" / "payments.sqlite")
    (answer,) = db.execute("SELECT answer FROM payments WHERE nonce = ?", (nonce,)).fetchone()
    db.close()
    kind, _, answer_id = answer.partition(":")
    assert kind == "json"
    store = ContentStore(net.home / "store")
    assert store.get("answers", answer_id) == first.content
    path = store.local_path(store.object_path("answers", answer_id)[len(store.root) + 1 :])
    path.write_bytes(first.content.replace(b'"label": ', b'"label": 1', 1))
    lost = _pay(net, rows, header)
    assert lost.status_code == 500 and lost.json()["reason"] == "answer-lost", lost.text
    assert answer_id in lost.json()["error"] and "corrupt" in lost.json()["error"]
    assert net.balance("payer") == before - PRICE


class _DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of the node, one request per connection: for the
    first ``drops`` requests that carry a payment it reads the node's whole answer and
    closes the client's connection without sending it (an answer lost on the way)."""

    def __init__(self, upstream: str, drops: int) -> None:
        import socket
        import threading
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        self.upstream = (up.hostname, up.port)
        self.drops, self.dropped = drops, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _read_message(conn) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def _serve(self) -> None:
        import socket

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = self._read_message(conn)
                if not request:
                    continue
                with socket.create_connection(self.upstream) as up:
                    up.sendall(request)
                    response = self._read_message(up)
                if b"\r\nx-payment:" in request.lower() and self.dropped < self.drops:
                    self.dropped += 1
                    continue  # the node answered; the client never sees it
                conn.sendall(response)

    def close(self) -> None:
        self.sock.close()


def test_the_client_asks_again_for_an_answer_lost_on_the_way_and_pays_once(net, chain_now):
    proxy = _DroppingProxy(net.node.url, drops=1)
    before = net.balance("payer")
    redelivered = _metric(net, "paid_redelivered")
    try:
        with Node(proxy.url, timeout=30) as node:
            answer = node.infer(_rows(2, seed=25), payer=net.keys["payer"], now=chain_now)
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert verify_paid_call(answer, net.allowlist, chain=net.chain, price_per_row=PRICE).ok
    assert net.balance("payer") == before - 2 * PRICE
    assert _metric(net, "paid_redelivered") == redelivered + 1
    # Without retries the lost answer is an error naming the node, and still paid once.
    proxy = _DroppingProxy(net.node.url, drops=1)
    try:
        with Node(proxy.url, timeout=30) as node, pytest.raises(NodeUnavailable):
            node.infer(_rows(1, seed=26), payer=net.keys["payer"], now=chain_now, retries=0)
    finally:
        proxy.close()
    assert net.balance("payer") == before - 3 * PRICE


def _metric(net, event: str) -> int:
    text = httpx.get(f"{net.node.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'ogkit_node_events_total{{event="{event}"}}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0
