"""Attacks on paid inference (x402) with real processes: the anvil devnet, the facilitator
and inference nodes as ``ogkit ... serve`` subprocesses on 127.0.0.1. The attacker is a
paying client (its own key, its own bytes on the wire), a node (its own answers), or a
resource server talking to the facilitator. Every attack ends with the token balances
checked: nothing is charged without being served once, nothing is served twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import node.conftest as node_fixtures
from node.conftest import ANVIL, PRICE, Service

from ogkit.client import Node
from ogkit.node.receipts import verify_paid_call
from ogkit.samples import make_tabular
from ogkit.x402 import (
    PAYMENT_HEADER,
    PaymentRequirements,
    encode_payment_header,
    sign_exact_payment,
)
from ogkit.x402.exact import request_nonce

net = node_fixtures.net  # the devnet, facilitator and node of tests/node, for this module
chain_now = node_fixtures.chain_now

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(not ANVIL.exists(), reason="anvil is not installed: run `make setup`"),
]


def _rows(n: int, seed: int) -> list[dict]:
    return make_tabular(n, seed=seed).drop("label").to_dicts()


def _body(rows: list[dict], salt: str = "") -> bytes:
    doc: dict = {"rows": rows}
    if salt:
        doc["salt"] = salt
    return json.dumps(doc, separators=(",", ":")).encode()


def _post(url: str, body: bytes, headers: dict | list | None = None) -> httpx.Response:
    base = [("content-type", "application/json")]
    extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    return httpx.post(f"{url}/v1/infer", content=body, headers=base + extra, timeout=60)


def _quote(url: str, body: bytes) -> PaymentRequirements:
    r = _post(url, body)
    assert r.status_code == 402, r.text
    return PaymentRequirements.from_dict(r.json()["accepts"][0])


def _header(req: PaymentRequirements, body: bytes, payer, now: int, **kw) -> str:
    nonce = request_nonce(req, body)
    return encode_payment_header(sign_exact_payment(req, payer, now=now, nonce=nonce, **kw))


@pytest.fixture(scope="module")
def node_b(net):
    """A second node of the same operator: the same key (so the same payee), the same
    model and facilitator, its own state folder (its own payment ledger)."""
    args = [*net.node_args(), "--state", str(net.home / "node-b")]
    service = Service(args, net.env, net.home / "node-b.log", "listening on").start()
    yield service
    assert service.stop() == 0


def test_a_payment_pays_for_its_own_request_at_its_own_node_only(net, node_b, chain_now):
    """Replays of one payment against other rows, more rows, another node sharing the
    payee (before and after it was served), and a race of one payment across two nodes
    behind one facilitator: at most one call is served, and it is charged once."""
    payer = net.keys["payer"]
    before = net.balance("payer")
    rows = _rows(1, seed=101)
    body = _body(rows, salt="0x01")
    req = _quote(net.node.url, body)
    header = _header(req, body, payer, chain_now)

    # Other rows (same count, same price) with the payment signed for these.
    other = _post(net.node.url, _body(_rows(1, seed=102), salt="0x01"), {PAYMENT_HEADER: header})
    assert other.status_code == 402 and other.json()["reason"] == "unbound", other.text
    # More rows than the payment was signed for: the price follows the rows that would run.
    bigger = _post(net.node.url, _body(_rows(3, seed=101), salt="0x01"), {PAYMENT_HEADER: header})
    assert bigger.status_code == 402 and bigger.json()["reason"] == "underpaid", bigger.text
    # A payment signed with a plain random nonce (any x402 client) proves no request.
    loose = encode_payment_header(sign_exact_payment(req, payer, now=chain_now))
    r = _post(net.node.url, body, {PAYMENT_HEADER: loose})
    assert r.status_code == 402 and r.json()["reason"] == "unbound"
    # Another node of the same payee: the payment names the first node's instance.
    r = _post(node_b.url, body, {PAYMENT_HEADER: header})
    assert r.status_code == 402 and r.json()["reason"] == "unbound"
    assert net.balance("payer") == before

    served = _post(net.node.url, body, {PAYMENT_HEADER: header})
    assert served.status_code == 200, served.text
    assert net.balance("payer") == before - PRICE
    # Served at node A, then replayed at node B (its own ledger has never seen it; the
    # facilitator reports the transaction that consumed it, which paid this payee exactly
    # this price): still refused, the nonce names node A.
    r = _post(node_b.url, body, {PAYMENT_HEADER: header})
    assert r.status_code == 402 and r.json()["reason"] == "unbound", r.text
    # At node A again: the answer it was served with, byte for byte, nothing charged.
    r = _post(net.node.url, body, {PAYMENT_HEADER: header})
    assert r.status_code == 200 and r.content == served.content
    assert net.balance("payer") == before - PRICE

    # The same payment raced across both nodes (one facilitator): one answer, one charge.
    rows = _rows(2, seed=103)
    body = _body(rows, salt="0x02")
    header = _header(_quote(node_b.url, body), body, payer, chain_now)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: _post((net.node.url, node_b.url)[i % 2], body, {PAYMENT_HEADER: header}),
                range(8),
            )
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [402] * 7, [a.text[:120] for a in answers]
    assert net.balance("payer") == before - 3 * PRICE


def test_payment_header_smuggling_is_refused_and_charges_nothing(net, chain_now):
    payer = net.keys["payer-2"]
    before = net.balance("payer-2")
    body = _body(_rows(1, seed=110), salt="0x10")
    req = _quote(net.node.url, body)
    good = _header(req, body, payer, chain_now)
    # Two X-PAYMENT headers (a proxy in front may pick the other one): refused.
    twice = _post(net.node.url, body, [(PAYMENT_HEADER, good), (PAYMENT_HEADER, good)])
    assert twice.status_code == 402 and twice.json()["reason"] == "malformed", twice.text
    other = _header(req, _body(_rows(1, seed=110), salt="0x11"), payer, chain_now)
    mixed = _post(net.node.url, body, [(PAYMENT_HEADER, other), (PAYMENT_HEADER, good)])
    assert mixed.status_code == 402 and mixed.json()["reason"] == "malformed"
    # Non-ASCII in the header value (sent as raw latin-1 bytes).
    odd = _post(net.node.url, body, [(PAYMENT_HEADER.encode(), good[:-4].encode() + b"\xe9\xff==")])
    assert odd.status_code == 402 and odd.json()["reason"] == "malformed"
    # A header far over any limit: the server refuses the request, and keeps serving.
    try:
        huge = _post(net.node.url, body, {PAYMENT_HEADER: "A" * 200_000})
        assert huge.status_code in (400, 402, 413, 431), huge.text[:200]
    except (httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server closed the connection on the oversized header: refused as well
    assert httpx.get(f"{net.node.url}/health", timeout=10).status_code == 200
    assert net.balance("payer-2") == before
    # None of that consumed the payment: sent properly, once, it is served.
    r = _post(net.node.url, body, {PAYMENT_HEADER: good})
    assert r.status_code == 200, r.text
    assert net.balance("payer-2") == before - PRICE


def test_verify_paid_call_catches_a_node_that_lies(net, chain_now):
    """What a cheating node could return instead of the honest answer: outputs that are
    not the attested ones, receipts of an earlier call with a new payment, a claim signed
    by an approved attester that is not this node's, a claim for another contract."""
    from ogkit.attest import execution_hash, make_attester
    from ogkit.infer import run_verified_inference
    from ogkit.load import load_model
    from ogkit.settle import claim_domain

    def fails(answer, allowlist=net.allowlist, phrase=""):
        check = verify_paid_call(answer, allowlist, chain=net.chain, price_per_row=PRICE)
        assert not check.ok and any(phrase in p for p in check.problems), check.problems
        return check

    with Node(net.node.url, timeout=30) as node:
        first = node.infer(_rows(2, seed=120), payer=net.keys["payer"], now=chain_now)
        answer = node.infer(_rows(2, seed=121), payer=net.keys["payer"], now=chain_now)
    assert verify_paid_call(answer, net.allowlist, chain=net.chain, price_per_row=PRICE).ok

    def copy():
        return json.loads(json.dumps(answer))

    lied = copy()  # another label than the model gave, receipts untouched
    lied["outputs"][0]["label"] = 1 - lied["outputs"][0]["label"]
    fails(lied, phrase="not the output its receipt attests")
    lied = copy()
    lied["outputs"][1]["probabilities"][0] += 1e-6
    fails(lied, phrase="output 1 is not the output")
    swapped = copy()  # both outputs, the wrong way round
    swapped["outputs"].reverse()
    fails(swapped, phrase="not the output its receipt attests")
    retyped = copy()  # claims the outputs were float64 to make other numbers fit
    retyped["output_dtypes"]["probabilities"] = "float64"
    fails(retyped, phrase="not the output its receipt attests")
    dropped = copy()
    del dropped["output_dtypes"]
    fails(dropped, phrase="cannot be checked")

    # The receipts (and outputs) of the earlier call, with the new call's payment.
    replay = {**json.loads(json.dumps(first)), "payment": answer["payment"]}
    fails(replay, phrase="x402:")
    replay["binding"] = {**first["binding"], "job": answer["binding"]["job"]}
    fails(replay, phrase="not bound to this payment")

    # A batch attested for the real payment by an approved attester of no node: rows
    # run with the payer as requester, the call's job and the chain's domain.
    model = load_model("tab", hub=net.hub)
    rogue = make_attester("software", signer=net.keys["verifier-2"])
    batch = run_verified_inference(
        model, make_tabular(2, seed=122).drop("label"), attester=rogue,
        requester=net.keys["payer"].address, hub=net.hub, store=net.hub.store,
        job=answer["binding"]["job"], domain=claim_domain(net.chain), progress=False,
    )  # fmt: skip
    forged = {
        **copy(),
        "outputs": batch.outputs_frame().drop("output_hash", "row_index").to_dicts(),
        "receipts": batch.receipts([0, 1]),
        "batch_id": batch.batch_id,
        "binding": {
            "job": answer["binding"]["job"],
            "dataset_id": batch.manifest.dataset_id,
            "execution_hash": execution_hash(batch.manifest.execution()),
        },
    }
    both = net.allowlist.approve(net.keys["verifier-2"].address, [net.runtime_id])
    offline = verify_paid_call(forged, both)
    assert offline.ok, offline.problems  # all it signed is consistent...
    fails(forged, both, phrase="cannot sign for this node")  # ...but it is not this node's

    # The honest node's receipts for a claim domain of another contract.
    from ogkit.attest import ClaimDomain

    other = ClaimDomain(net.chain.chain_id, net.keys["owner"].address)
    batch = run_verified_inference(
        model, make_tabular(2, seed=121).drop("label"),
        attester=make_attester("software", signer=net.keys["enclave"]),
        requester=net.keys["payer"].address, hub=net.hub, store=net.hub.store,
        job=answer["binding"]["job"], domain=other, progress=False,
    )  # fmt: skip
    elsewhere = {
        **forged,
        "outputs": batch.outputs_frame().drop("output_hash", "row_index").to_dicts(),
        "receipts": batch.receipts([0, 1]),
        "binding": {**forged["binding"], "dataset_id": batch.manifest.dataset_id,
                    "execution_hash": execution_hash(batch.manifest.execution())},
    }  # fmt: skip
    assert verify_paid_call(elsewhere, net.allowlist).ok
    fails(elsewhere, phrase="not this chain's settlement")


def test_the_facilitator_refuses_long_lived_and_self_paying_authorizations(net, chain_now):
    fac = net.facilitator.url
    payer = net.keys["payer"]
    before = net.balance("payer")
    body = _body(_rows(1, seed=130), salt="0x30")
    req = _quote(net.node.url, body)

    def settle(payment, requirements) -> dict:
        doc = {"x402Version": 1, "paymentPayload": payment.to_dict(),
               "paymentRequirements": requirements.to_dict()}  # fmt: skip
        return httpx.post(f"{fac}/settle", json=doc, timeout=30).json()

    # Valid until the end of time, with requirements that allow the longest timeout.
    lenient = PaymentRequirements(**{**req.__dict__, "max_timeout_seconds": 86_400})
    forever = sign_exact_payment(lenient, payer, now=chain_now, valid_for=2**255)
    assert settle(forever, lenient)["errorReason"] == "too-long"
    year = sign_exact_payment(lenient, payer, now=chain_now, valid_for=365 * 86_400)
    assert settle(year, lenient)["errorReason"] == "too-long"
    # A payment to the facilitator itself (a resource server naming it as the payee).
    facilitator = httpx.get(f"{fac}/health", timeout=10).json()["address"]
    to_fac = PaymentRequirements(**{**req.__dict__, "pay_to": facilitator})
    doc = settle(sign_exact_payment(to_fac, payer, now=chain_now), to_fac)
    assert doc["success"] is False and doc["errorReason"] == "wrong-payee", doc
    # A payer paying itself, and a payment into the token contract.
    to_self = PaymentRequirements(**{**req.__dict__, "pay_to": payer.address})
    assert settle(sign_exact_payment(to_self, payer, now=chain_now), to_self)["errorReason"] == (
        "wrong-payee"
    )
    to_token = PaymentRequirements(**{**req.__dict__, "pay_to": req.asset})
    assert (
        settle(sign_exact_payment(to_token, payer, now=chain_now), to_token)["errorReason"]
        == "wrong-payee"
    )

    # A body streamed without a Content-Length, far over the 16 KiB a request may hold:
    # refused once 16 KiB are in, never held whole (the facilitator's peak memory).
    def peak_kib() -> int:
        status = Path(f"/proc/{net.facilitator.proc.pid}/status").read_text()
        return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM")))

    peak = peak_kib()

    def flood():
        for _ in range(2048):  # 128 MiB
            yield b"x" * 65_536

    try:
        r = httpx.post(f"{fac}/settle", content=flood(), timeout=60)
        assert r.status_code == 400 and r.json()["reason"] == "malformed"
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server closed the connection: refused as well
    assert peak_kib() - peak < 48 * 1024, (peak, peak_kib())
    assert httpx.get(f"{fac}/health", timeout=10).status_code == 200
    assert net.balance("payer") == before


def test_a_payer_that_drains_its_balance_after_verify_is_not_served(net, chain_now):
    """/verify says valid; the payer then moves its OPG away before the node settles."""
    fac = net.facilitator.url
    payer = net.keys["requester"]  # holds ETH, so it can move its own OPG
    token = net.chain.contract("OPGToken")
    body = _body(_rows(1, seed=140), salt="0x40")
    req = _quote(net.node.url, body)
    header = _header(req, body, payer, chain_now)
    from ogkit.x402 import decode_payment_header

    payment = decode_payment_header(header)
    doc = {"x402Version": 1, "paymentPayload": payment.to_dict(),
           "paymentRequirements": req.to_dict()}  # fmt: skip
    assert httpx.post(f"{fac}/verify", json=doc, timeout=30).json()["isValid"] is True
    held = net.balance("requester")
    net.chain.transact(token.functions.transfer(net.keys["owner"].address, held), payer)
    node_before = net.balance("node")
    r = _post(net.node.url, body, {PAYMENT_HEADER: header})
    assert r.status_code == 402 and r.json()["reason"] == "insufficient-funds", r.text
    assert "outputs" not in r.json() and net.balance("node") == node_before
    # Funded again, the same payment (released, never consumed) is served once.
    net.chain.transact(token.functions.transfer(payer.address, held), net.keys["owner"])
    assert _post(net.node.url, body, {PAYMENT_HEADER: header}).status_code == 200
    assert net.balance("node") == node_before + PRICE
    assert net.balance("requester") == held - PRICE


def test_values_that_would_break_the_run_are_refused_before_payment(net, chain_now):
    """JSON numbers that are finite in JSON but not in the model's float32 input, or
    without an integer dtype, or not JSON at all; repeated keys; deep nesting (which
    overflowed the parser's C stack and killed the node)."""
    base = _rows(1, seed=150)[0]
    cases = [("[" * 200_000, (400,), "bad-json")]  # this one killed the node (SIGSEGV)
    for value in ("1e39", "-3.5e38", "1e309", str(10**30), str(2**63)):
        cases.append(("{" + json.dumps({"rows": [base]})[1:].replace(
            json.dumps(base["f0"]), value, 1), (422,), "bad-value"))  # fmt: skip
    dup = json.dumps({"rows": [base]}).replace('"f1":', '"f0": 1.0, "f1":', 1)
    cases += [
        (dup, (400,), "bad-json"),
        ('{"rows": [], "rows": [' + json.dumps(base) + "]}", (400,), "bad-json"),
        ('{"rows": [{"f0": Infinity}]}', (422,), "bad-value"),
        ('{"a":' * 150_000 + "1" + "}" * 150_000, (400, 413), None),
    ]
    before = net.balance("payer")
    header = _header(
        _quote(net.node.url, _body([base])), _body([base]), net.keys["payer"], chain_now
    )
    for text, statuses, reason in cases:
        r = _post(net.node.url, text.encode(), {PAYMENT_HEADER: header})
        assert r.status_code in statuses, (text[:80], r.status_code, r.text[:200])
        assert reason is None or r.json()["reason"] == reason, (text[:80], r.text[:200])
    # In float32's range, but the model answers NaN for it: refused once the payment is
    # checked and before it is settled (the answer could not be written afterwards).
    for value in (3e38, -3e38):
        text = json.dumps({"rows": [dict.fromkeys(base, value)]}).encode()
        signed = _header(_quote(net.node.url, text), text, net.keys["payer"], chain_now)
        r = _post(net.node.url, text, {PAYMENT_HEADER: signed})
        assert r.status_code == 422 and r.json()["reason"] == "non-finite-output", r.text
    deep = httpx.post(f"{net.node.url}/v1/jobs", content=b"[" * 200_000, timeout=30)
    assert deep.status_code == 400 and deep.json()["reason"] == "bad-json"
    assert httpx.get(f"{net.node.url}/health", timeout=10).status_code == 200
    assert net.node.proc.poll() is None
    assert net.balance("payer") == before  # every refusal came before the payment


def test_slow_and_oversized_bodies_are_cut_off_and_the_node_keeps_serving(net):
    host, port = net.node.url.removeprefix("http://").split(":")
    slow = []
    for _ in range(3):  # slow-loris: headers promise 1000 bytes, 10 arrive
        s = socket.create_connection((host, int(port)), timeout=20)
        s.sendall(
            b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"rows": ['
        )
        slow.append(s)
    started = time.monotonic()
    assert httpx.get(f"{net.node.url}/health", timeout=10).status_code == 200
    for s in slow:
        answer = b""
        while b"too-slow" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert b" 408 " in answer.split(b"\r\n", 1)[0], answer[:200]
        assert b"too-slow" in answer
        s.close()
    assert time.monotonic() - started < 15  # --read-timeout 2 in the fixture

    # Slow-loris on the headers: a byte of a header line every 0.3 s, never the blank
    # line. The connection is closed after --read-timeout (2 s), not held.
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\n")
    started, closed = time.monotonic(), False
    while time.monotonic() - started < 8 and not closed:
        try:
            s.sendall(b"X")
            s.settimeout(0.3)
            closed = s.recv(1024) == b""
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            closed = True
    s.close()
    assert closed and time.monotonic() - started < 6, time.monotonic() - started

    # Over 1 MiB without a Content-Length (chunked): refused while it streams.
    def chunks():
        yield b'{"rows": ['
        for _ in range(2048):
            yield b"[" + b"0," * 512 + b"0],"

    r = httpx.post(f"{net.node.url}/v1/infer", content=chunks(), timeout=30)
    assert r.status_code == 413 and r.json()["reason"] == "too-large"
    lying = (
        httpx.post(
            f"{net.node.url}/v1/infer",
            content=b"{}",
            headers={"content-length": "junk"},
            timeout=10,
        )
        if False
        else None
    )  # httpx refuses to send a malformed Content-Length itself
    assert lying is None
    assert httpx.get(f"{net.node.url}/health", timeout=10).status_code == 200


def test_a_fault_after_payment_keeps_the_call_paid_and_serves_it_once(net, chain_now):
    """The node's store breaks after the payment settled: a clear 500 with the payment
    transaction; once it is fixed, the same X-PAYMENT is served once, not charged again,
    even after the authorization expired meanwhile."""
    payer = net.keys["payer-2"]
    before = net.balance("payer-2")
    body = _body(_rows(2, seed=160), salt="0x60")
    header = _header(_quote(net.node.url, body), body, payer, chain_now)
    batches = net.home / "store" / "batches"
    batches.mkdir(parents=True, exist_ok=True)
    aside = batches.with_name("batches.aside")
    os.rename(batches, aside)
    batches.write_text("not a folder")  # every write under it fails, even for root
    try:
        r = _post(net.node.url, body, {PAYMENT_HEADER: header})
    finally:
        batches.unlink()
        os.rename(aside, batches)
    assert r.status_code == 500, r.text
    doc = r.json()
    assert doc["reason"] == "node-fault" and doc["payment"]["transaction"] in doc["error"]
    assert net.balance("payer-2") == before - 2 * PRICE
    net.chain.increase_time(300)  # the 120 s authorization is now expired
    time.sleep(1.2)  # the node reads the chain's clock at most once a second
    other = _body(_rows(2, seed=160), salt="0x61")  # an unpaid call, signed as long ago
    stale = _header(_quote(net.node.url, other), other, payer, chain_now)
    expired = _post(net.node.url, other, {PAYMENT_HEADER: stale})
    assert expired.status_code == 402 and expired.json()["reason"] == "expired"
    again = _post(net.node.url, body, {PAYMENT_HEADER: header})
    assert again.status_code == 200, again.text
    assert again.json()["payment"]["transaction"] == doc["payment"]["transaction"]
    assert verify_paid_call(again.json(), net.allowlist, chain=net.chain, price_per_row=PRICE).ok
    # Served now: sent once more (long expired), the same answer again, nothing charged.
    third = _post(net.node.url, body, {PAYMENT_HEADER: header})
    assert third.status_code == 200 and third.content == again.content, third.text
    assert net.balance("payer-2") == before - 2 * PRICE


def test_kill_9_during_paid_calls_serves_each_payment_at_most_once(net, chain_now):
    """``kill -9`` the node while paid calls are between settlement and answer; after a
    restart every payment that was charged is answered when sent again (run once: a
    payment served before the kill gets its stored answer again, byte for byte), and none
    is charged twice."""
    payer = net.keys["payer"]
    token = net.chain.contract("OPGToken")
    before = net.balance("payer")
    bodies = [_body(_rows(1, seed=170 + i), salt=f"0x7{i:02x}") for i in range(12)]
    req = _quote(net.node.url, bodies[0])
    headers = [_header(req, b, payer, chain_now) for b in bodies]
    served: dict[int, set[bytes]] = {}
    lock = threading.Lock()

    def call(i: int) -> None:
        try:
            r = _post(net.node.url, bodies[i], {PAYMENT_HEADER: headers[i]})
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            with lock:
                served.setdefault(i, set()).add(r.content)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
        time.sleep(0.03)
    time.sleep(0.25)
    os.kill(net.node.proc.pid, signal.SIGKILL)
    for t in threads:
        t.join(60)
    net.node.proc.wait(10)
    net.restart_node()
    ledger = sqlite3.connect(net.home / "node" / "payments.sqlite")
    states = dict(ledger.execute("SELECT nonce, state FROM payments").fetchall())
    ledger.close()
    assert "claimed" not in states.values() and "settled" not in states.values(), states
    # Send every payment again, twice: each charged one is served exactly once overall.
    for _ in range(2):
        for i in range(len(bodies)):
            call(i)
    from ogkit.x402 import decode_payment_header

    ledger = sqlite3.connect(net.home / "node" / "payments.sqlite")
    states = dict(ledger.execute("SELECT nonce, state FROM payments").fetchall())
    ledger.close()
    charged = 0
    for i, header in enumerate(headers):
        nonce_hex = decode_payment_header(header).authorization.nonce
        used = net.chain.call(
            token.functions.authorizationState(payer.address, bytes.fromhex(nonce_hex[2:]))
        )
        charged += bool(used)
        # Every charged payment was answered (a resend of one served before the kill
        # gets its stored answer), always with the same bytes, and nothing unpaid was.
        assert len(served.get(i, ())) == (1 if used else 0), (i, used, states)
        assert states.get(nonce_hex.lower()) == ("served" if used else None), (i, states)
    assert charged == len(bodies)  # every one was paid in the end (retries settle them)
    assert net.balance("payer") == before - charged * PRICE


def test_a_facilitator_that_reports_a_settlement_it_did_not_make_gets_nothing_served(
    net, chain_now
):
    """A lying facilitator: it answers /settle with success and the hash of a real
    transaction that did not pay this call (here, the payer's own OPG moving elsewhere).
    The node reads that transaction's logs itself, serves nothing, and says why."""
    import uvicorn
    from fastapi import FastAPI

    from ogkit.node.server import bind

    token = net.chain.contract("OPGToken")
    decoy = net.chain.transact(
        token.functions.transfer(net.keys["requester"].address, PRICE), net.keys["owner"]
    )
    decoy_tx = "0x" + bytes(decoy["transactionHash"]).hex()
    liar = FastAPI()

    @liar.post("/settle")
    def settle(doc: dict) -> dict:
        payer = doc["paymentPayload"]["payload"]["authorization"]["from"]
        return {"success": True, "transaction": decoy_tx, "network": doc["paymentPayload"][
            "network"], "payer": payer}  # fmt: skip

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(liar, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    args = net.node_args()
    at = args.index("--facilitator")
    args[at + 1] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    args += ["--state", str(net.home / "node-liar")]
    node = Service(args, net.env, net.home / "node-liar.log", "listening on").start()
    try:
        body = _body(_rows(1, seed=180), salt="0x80")
        header = _header(_quote(node.url, body), body, net.keys["payer"], chain_now)
        before = net.balance("payer")
        r = _post(node.url, body, {PAYMENT_HEADER: header})
        assert r.status_code == 502 and r.json()["reason"] == "settle-unconfirmed", r.text
        assert "outputs" not in r.json() and net.balance("payer") == before
    finally:
        assert node.stop() == 0
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_hostile_node_cannot_crash_the_client_with_deep_json(net, tmp_path):
    """The client parses whatever the node sends. JSON nested 200 000 deep overflowed
    the C parser's stack in any ogkit process (py_ecc raises the recursion limit) and
    killed the client; now it is a NodeError. The client runs in its own process here."""
    import subprocess

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    from ogkit.node.server import bind

    hostile = FastAPI()

    @hostile.post("/v1/infer")
    def infer() -> Response:
        return Response(b"[" * 200_000, status_code=402, media_type="application/json")

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(hostile, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    script = (
        "import sys\n"
        "from ogkit.client import Node\n"
        "from ogkit.errors import NodeError\n"
        "from ogkit.keys import KeyStore\n"
        f"payer = KeyStore({str(net.home)!r}).load('payer')\n"
        "try:\n"
        f"    Node('http://127.0.0.1:{sock.getsockname()[1]}', timeout=20).infer("
        "[{'f0': 1.0}], payer=payer)\n"
        "except NodeError as exc:\n"
        "    print('refused:', str(exc)[:200])\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
            env=net.env,
        )  # fmt: skip
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "refused: the node's answer is not JSON" in done.stdout, done.stdout
