"""A Python client for an ogkit inference node (``ogkit node serve``), over httpx.

::

    from ogkit.client import Node
    with Node("http://127.0.0.1:8400", timeout=30) as node:
        node.health()
        node.quote(rows=3)
        answer = node.infer([{"f0": 0.1, ...}, ...], payer=signer)   # 402 → sign → retry
        reply = node.chat("Hello", payer=signer, max_tokens=32)       # a chat model's node
        job = node.submit_job(signed_order, "datasets/mine.parquet")
        node.wait_job(job["job_id"], until="finalized", timeout=600)

Every call has a timeout (``timeout`` seconds for each request, ``wait_job``'s own for
the whole wait). A refusal raises :class:`~ogkit.errors.NodeError` with the HTTP status
and the node's JSON (``error``, ``reason``); a node that cannot be reached raises
:class:`~ogkit.errors.NodeUnavailable`. Only a payment for exactly the quoted price, to
the payee, in the token and on the network the node's 402 names, is ever signed — and
only when the price is at most ``max_amount`` if one is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ogkit.errors import NodeError, NodeUnavailable, PaymentError

if TYPE_CHECKING:
    from ogkit.keys import Signer
    from ogkit.order import SignedOrder

__all__ = ["Node"]

log = logging.getLogger(__name__)

_FINAL = {"finalized", "failed"}
_ORDER = {"queued": 0, "running": 1, "committed": 2, "finalized": 3}


class Node:
    """An inference node at ``url``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(self.timeout))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Node({self.url!r})"

    # -- plumbing ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise NodeUnavailable(
                f"the node at {self.url} did not answer {method} {path} within "
                f"{self.timeout:g} s; raise timeout= or check the node's log"
            ) from None
        except httpx.HTTPError as exc:
            raise NodeUnavailable(
                f"cannot reach the node at {self.url} ({type(exc).__name__}: {exc}); is it "
                "running (`ogkit node serve`)?"
            ) from None

    @staticmethod
    def _json(response: Any, ok: tuple[int, ...] = (200,)) -> Any:
        from ogkit.x402.types import loads_bounded

        try:
            doc = loads_bounded(response.content)
        except (ValueError, UnicodeDecodeError):  # not JSON, or nested to crash a parser
            doc = None
        if response.status_code not in ok:
            error = doc.get("error") if isinstance(doc, Mapping) else response.text[:200]
            raise NodeError(
                f"the node answered HTTP {response.status_code}: {error}",
                status=response.status_code,
                detail=doc,
            )
        if doc is None:
            raise NodeError(f"the node's answer is not JSON (HTTP {response.status_code})")
        return doc

    # -- reads ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._json(self._request("GET", "/health"))

    def metrics(self) -> str:
        response = self._request("GET", "/metrics")
        if response.status_code != 200:
            raise NodeError(f"GET /metrics answered HTTP {response.status_code}")
        return response.text

    def quote(self, rows: int = 1) -> dict[str, Any]:
        """The price of ``rows`` rows and the x402 payment requirements for them."""
        return self._json(self._request("GET", "/v1/price", params={"rows": int(rows)}))

    # -- paid inference -----------------------------------------------------------------------
    def infer(
        self,
        rows: Sequence[Mapping[str, Any]] | None = None,
        *,
        payer: Signer,
        inputs: Mapping[str, Any] | None = None,
        max_amount: int | None = None,
        now: int | None = None,
        retries: int = 3,
    ) -> dict[str, Any]:
        """Run ``rows`` (one ``{column: number}`` per row) or ``inputs`` (tensors keyed by
        model input) and pay for them: the node's 402 names the price, ``payer`` signs an
        x402 ``exact`` payment of it, and the request is sent again with ``X-PAYMENT``.
        Returns the node's answer (outputs, ``receipts``, ``payment``). An answer lost on
        the way is asked for again with the same payment (``retries`` times): the node
        sends the answer it kept and charges nothing more."""
        import json
        import secrets

        if (rows is None) == (inputs is None):
            raise NodeError("give rows= or inputs=, not both")
        doc_in: dict[str, Any] = (
            {"rows": list(rows)} if rows is not None else {"inputs": _plain(inputs)}
        )
        # A random salt: the payment's nonce commits to these exact bytes (two identical
        # calls are two payments), and they are sent byte for byte both times.
        doc_in["salt"] = "0x" + secrets.token_bytes(16).hex()
        body = json.dumps(doc_in, separators=(",", ":"), allow_nan=False).encode()
        send = {"content": body, "headers": {"content-type": "application/json"}}
        first = self._request("POST", "/v1/infer", **send)
        if first.status_code != 402:
            return self._json(first)
        header = {**send["headers"], **self._payment_header(first, body, payer, max_amount, now)}
        return self._json(self._send_paid("/v1/infer", body, header, retries))

    # -- paid chat (a node serving a language model) ------------------------------------------
    def models(self) -> dict[str, Any]:
        """OpenAI's model list of a chat node (``GET /v1/models``)."""
        return self._json(self._request("GET", "/v1/models"))

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]] | str,
        *,
        payer: Signer,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        model: str | None = None,
        stream: bool = False,
        max_amount: int | None = None,
        now: int | None = None,
        retries: int = 3,
    ) -> Any:
        """One paid chat completion from a node serving a language model (OpenAI's
        ``POST /v1/chat/completions``): ``messages`` is OpenAI's list of ``{"role",
        "content"}`` (or one user string), ``model`` the served model (default: the one
        ``/v1/models`` lists). The 402 names one call's price, ``payer`` signs it, the
        request goes again with ``X-PAYMENT``. Returns OpenAI's ``chat.completion`` plus
        ``receipt`` and ``payment``; with ``stream=True`` an iterator of the
        ``chat.completion.chunk`` documents (the last one carries the receipt and the
        payment; :func:`ogkit.node.chat.stream_answer` adds them up)."""
        import json
        import secrets

        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if model is None:
            if getattr(self, "_served_model", None) is None:
                listed = self.models().get("data") or [{}]
                self._served_model = str(listed[0].get("id"))
            model = self._served_model
        doc_in: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
            "stream": bool(stream),
            "salt": "0x" + secrets.token_bytes(16).hex(),  # two equal calls, two payments
        }
        body = json.dumps(doc_in, separators=(",", ":"), allow_nan=False).encode()
        headers = {"content-type": "application/json"}
        path = "/v1/chat/completions"
        first = self._request("POST", path, content=body, headers=headers)
        if first.status_code != 402:
            return self._json(first)
        paid = {**headers, **self._payment_header(first, body, payer, max_amount, now)}
        if not stream:
            return self._json(self._send_paid(path, body, paid, retries))
        return self._stream(path, body, paid)

    def _send_paid(self, path: str, body: bytes, headers: dict[str, str], retries: int) -> Any:
        """POST a paid request; a lost answer (the connection broke, or timed out) or one
        still in flight is asked for again with the same payment, which the node answers
        with the answer it kept, never charging twice. ``retries`` more tries at most."""
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = self._request("POST", path, content=body, headers=headers)
            except NodeUnavailable:
                if last:
                    raise
                log.warning("paid call to %s%s: no answer; asking again", self.url, path)
            else:
                if last or not _in_flight(response):
                    return response
            time.sleep(min(0.5 * 2**attempt, 8.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _payment_header(
        self, first: Any, body: bytes, payer: Signer, max_amount: int | None, now: int | None
    ) -> dict[str, str]:
        """The ``X-PAYMENT`` header paying the 402 ``first`` for the request ``body``."""
        from ogkit.x402.exact import REQUEST_BINDING, request_nonce, sign_exact_payment
        from ogkit.x402.types import (
            PAYMENT_HEADER,
            SCHEME_EXACT,
            PaymentRequirements,
            encode_payment_header,
        )

        doc = self._json(first, ok=(402,))
        accepts = [a for a in doc.get("accepts") or [] if isinstance(a, Mapping)]
        exact = [a for a in accepts if a.get("scheme") == SCHEME_EXACT]
        if not exact:
            raise PaymentError(
                f"the node accepts no payment scheme this client signs ({SCHEME_EXACT})",
                reason="unsupported-scheme",
            )
        requirements = PaymentRequirements.from_dict(exact[0])
        if max_amount is not None and requirements.max_amount_required > max_amount:
            raise PaymentError(
                f"the node asks {requirements.max_amount_required} base units, more than "
                f"max_amount {max_amount}",
                reason="over-budget",
            )
        bound = requirements.extra.get("binding") == REQUEST_BINDING
        nonce = request_nonce(requirements, body) if bound else None
        payment = sign_exact_payment(requirements, payer, now=now, nonce=nonce)
        return {PAYMENT_HEADER: encode_payment_header(payment)}

    def _stream(self, path: str, body: bytes, headers: dict[str, str]) -> Any:
        """The server-sent events of a paid streamed call, as documents."""
        import httpx

        from ogkit.x402.types import loads_bounded

        try:
            with self._http.stream("POST", path, content=body, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    self._json(response)  # raises NodeError with the node's refusal
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: ") :]
                    if data == "[DONE]":
                        return
                    doc = loads_bounded(data.encode())
                    if isinstance(doc, Mapping) and "error" in doc:
                        error = doc["error"]
                        message = error.get("message") if isinstance(error, Mapping) else error
                        raise NodeError(f"the node's stream failed: {message}", detail=doc)
                    yield doc
        except httpx.TimeoutException:
            raise NodeUnavailable(
                f"the node at {self.url} stopped streaming {path} for {self.timeout:g} s; "
                "raise timeout= or check the node's log"
            ) from None
        except httpx.HTTPError as exc:
            raise NodeUnavailable(
                f"the stream from {self.url}{path} broke ({type(exc).__name__}: {exc})"
            ) from None
        raise NodeError(f"the node's stream of {path} ended without data: [DONE]")

    # -- batch jobs -------------------------------------------------------------------------
    def submit_job(self, order: SignedOrder | Mapping[str, Any], dataset: str) -> dict[str, Any]:
        """Submit a signed JobOrder (the object or the document ``ogkit order`` writes) and
        the dataset's path in the node's store; returns ``{"job_id", "state", "new"}``."""
        doc = order.to_dict() if hasattr(order, "to_dict") else dict(order)
        body = {"order": doc, "dataset": dataset}
        return self._json(self._request("POST", "/v1/jobs", json=body), ok=(200, 202))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/v1/jobs/{job_id}"))

    def wait_job(
        self, job_id: str, *, until: str = "finalized", timeout: float = 600.0, poll: float = 1.0
    ) -> dict[str, Any]:
        """Poll the job until it reaches ``until`` (``committed`` or ``finalized``) or
        fails; NodeError if it fails, NodeUnavailable if ``timeout`` passes first."""
        if until not in ("running", "committed", "finalized"):
            raise NodeError(f"until must be running, committed or finalized, not {until!r}")
        deadline = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            state = record.get("state")
            if state == "failed":
                raise NodeError(f"job {job_id} failed: {record.get('error')}", detail=record)
            if _ORDER.get(state, -1) >= _ORDER[until]:
                return record
            if time.monotonic() > deadline:
                raise NodeUnavailable(
                    f"job {job_id} is still {state} after {timeout:g} s (waiting for {until}"
                    + (f"; {record['waiting_for']}" if record.get("waiting_for") else "")
                    + ")"
                )
            time.sleep(poll)


def _in_flight(response: Any) -> bool:
    """A 402 saying the same payment is being settled and run right now."""
    if response.status_code != 402:
        return False
    from ogkit.x402.types import loads_bounded

    try:
        doc = loads_bounded(response.content)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(doc, Mapping) and doc.get("reason") == "in-flight"


def _plain(value: Any) -> Any:
    """NumPy arrays as nested lists, for JSON."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value
