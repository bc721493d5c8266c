"""A local x402 facilitator for ``exact`` payments in OPG (EIP-3009), and its HTTP client.

:class:`Facilitator` verifies a payment against its requirements (offline checks of
:func:`~ogkit.x402.exact.check_exact_payment`, then the chain: the asset is the OPG token
of this deployment, the nonce is unused, the payer holds the amount) and settles it by
submitting ``transferWithAuthorization`` from its own key: the payer spends no ETH.

What a facilitator must never do, and how this one avoids it:

- **settle what it did not check**: :meth:`Facilitator.settle` verifies everything again
  itself; an earlier ``/verify`` is never trusted (nor required).
- **settle one authorization twice**: a (payer, nonce) being settled is held in memory
  while its transaction is in flight, so a concurrent identical request is refused at
  once (``in-flight``); afterwards the token itself refuses the used nonce (``replayed``).
- **pay itself**: a payment to the facilitator's own address (or the payer's, or the
  token's) is refused (``wrong-payee``), as is one valid for longer than the requirement's
  ``maxTimeoutSeconds`` allows (``too-long``: at most a day, whatever it is told).
- **be told the domain**: the token's EIP-712 name and version are read from the token
  (ERC-5267 ``eip712Domain``), never from the request.

:func:`ogkit.x402.server.create_app` serves it over HTTP (FastAPI), as the x402
facilitator API does: ``POST /verify`` and ``POST /settle`` with ``{"x402Version", "paymentPayload",
"paymentRequirements"}``, ``GET /supported``; :class:`FacilitatorClient` calls any
facilitator URL with timeouts. A well-formed request with a bad payment gets 200 and
``isValid: false`` / ``success: false`` with the reason; a malformed request gets 400.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address
from web3.logs import DISCARD

from ogkit.errors import ChainError, NodeUnavailable, PaymentError, SettlementError
from ogkit.keys import Signer
from ogkit.x402.exact import check_exact_payment
from ogkit.x402.types import (
    SCHEME_EXACT,
    X402_VERSION,
    PaymentPayload,
    PaymentRequirements,
    SettleResponse,
    VerifyResponse,
    loads_bounded,
    network_id,
)

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient

__all__ = [
    "ChainClock",
    "Facilitator",
    "FacilitatorClient",
    "parse_request",
    "poll_fast_on_dev_chains",
]

log = logging.getLogger(__name__)

MAX_BODY = 16_384
SETTLE_GAS = 150_000
"""Gas limit of a ``transferWithAuthorization`` (about 66k are used); it is sent only after
an ``eth_call`` of the same transaction succeeded, so no estimate is needed."""
_REVERT_REASONS = {
    "ERC3009UsedAuthorization": "replayed",
    "ERC3009InvalidAuthorizationTime": "expired",
    "ERC3009InvalidSignature": "bad-signature",
    "ERC20InsufficientBalance": "insufficient-funds",
}


class ChainClock:
    """The chain's latest block time, read at most once per ``ttl`` seconds (checks that
    use it are repeated by the contract at execution)."""

    def __init__(self, chain: ChainClient, ttl: float = 1.0) -> None:
        self.chain, self.ttl = chain, ttl
        self._lock = threading.Lock()
        self._value, self._read_at = 0, -1e9

    def now(self) -> int:
        with self._lock:
            if time.monotonic() - self._read_at > self.ttl:
                self._value = self.chain.block_timestamp()
                self._read_at = time.monotonic()
            return self._value


def poll_fast_on_dev_chains(chain: ChainClient) -> None:
    """On an anvil or hardhat node (instant mining) poll for receipts as the devnet client
    does, every 20 ms, not every second: a paid call waits for its settlement."""
    from ogkit.chain.transactions import RetryPolicy

    if chain.kind != "rpc":
        return
    try:
        version = str(chain.w3.client_version).lower()
    except Exception:  # an endpoint without web3_clientVersion keeps the defaults
        return
    if version.startswith(("anvil", "hardhat")):
        chain.retry = RetryPolicy.local()


class Facilitator:
    """Verify and settle x402 ``exact`` payments in the OPG token of ``chain``, paying the
    gas from ``signer``."""

    def __init__(self, chain: ChainClient, signer: Signer, *, in_process: bool = False) -> None:
        """``in_process``: this facilitator is the resource server's own (a node settling
        its payments itself), whose key is the payee: payments to it are then allowed."""
        self.chain = chain
        self.signer = signer
        self.in_process = in_process
        poll_fast_on_dev_chains(chain)
        self.clock = ChainClock(chain)
        self.network = network_id(chain.chain_id)
        self.token = chain.contract("OPGToken")
        domain = chain.call(self.token.functions.eip712Domain())
        self.token_name, self.token_version = str(domain[1]), str(domain[2])
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str]] = set()
        self.counters: Counter[str] = Counter()

    def supported(self) -> dict[str, Any]:
        return {
            "kinds": [
                {"x402Version": X402_VERSION, "scheme": SCHEME_EXACT, "network": self.network}
            ]
        }

    def _check(
        self, payment: PaymentPayload, requirements: PaymentRequirements, *, reads: bool = True
    ) -> str:
        """Every check, offline and (with ``reads``) the chain's nonce and balance state;
        the payer, or PaymentError."""
        if requirements.network != self.network:
            raise PaymentError(
                f"this facilitator settles on {self.network}, not {requirements.network}",
                reason="wrong-network",
            )
        if requirements.asset.lower() != self.token.address.lower():
            raise PaymentError(
                f"asset {requirements.asset} is not the OPG token {self.token.address} of "
                f"this chain",
                reason="wrong-asset",
            )
        to = payment.authorization.to.lower()
        refused = {payment.payer.lower(), self.token.address.lower()}
        if not self.in_process:
            refused.add(self.signer.address.lower())
        if to in refused:
            # A facilitator never settles money to itself (it would be paid by what it is
            # trusted to check), a payer to itself, or tokens into the token contract.
            raise PaymentError(
                f"the payment goes to {payment.authorization.to}, which is this facilitator, "
                "the payer or the token itself: this facilitator settles payments to a payee",
                reason="wrong-payee",
            )
        payer = check_exact_payment(
            payment,
            requirements,
            now=self.clock.now(),
            token_name=self.token_name,
            token_version=self.token_version,
        )
        if not reads:
            return payer
        auth = payment.authorization
        nonce = bytes.fromhex(auth.nonce[2:])
        if self.chain.call(self.token.functions.authorizationState(payer, nonce)):
            raise PaymentError(
                f"authorization {auth.nonce} of {payer} was already used: sign a new payment",
                reason="replayed",
            )
        balance = int(self.chain.call(self.token.functions.balanceOf(payer)))
        if balance < auth.value:
            raise PaymentError(
                f"{payer} holds {balance} OPG base units, less than the {auth.value} it authorised",
                reason="insufficient-funds",
            )
        return payer

    def verify(self, payment: PaymentPayload, requirements: PaymentRequirements) -> VerifyResponse:
        try:
            payer = self._check(payment, requirements)
        except PaymentError as exc:
            self.counters[f"verify_refused_{exc.reason}"] += 1
            return VerifyResponse(False, payment.payer, exc.reason, str(exc))
        self.counters["verify_valid"] += 1
        return VerifyResponse(True, payer)

    def settle(self, payment: PaymentPayload, requirements: PaymentRequirements) -> SettleResponse:
        """Check the payment again and submit it; never raises on a bad payment."""
        key = (payment.payer.lower(), payment.authorization.nonce.lower())
        with self._lock:
            if key in self._in_flight:
                self.counters["settle_refused_in-flight"] += 1
                return SettleResponse(
                    False,
                    self.network,
                    payer=payment.payer,
                    error_reason="in-flight",
                    message=f"authorization {key[1]} of {key[0]} is being settled already",
                )
            self._in_flight.add(key)
        try:
            return self._settle(payment, requirements)
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def _settle(self, payment: PaymentPayload, requirements: PaymentRequirements) -> SettleResponse:
        auth = payment.authorization
        sig = bytes.fromhex(payment.signature[2:])
        fn = self.token.functions.transferWithAuthorization(
            to_checksum_address(auth.from_),
            to_checksum_address(auth.to),
            auth.value,
            auth.valid_after,
            auth.valid_before,
            bytes.fromhex(auth.nonce[2:]),
            sig[64],
            sig[:32],
            sig[32:64],
        )
        try:
            # Offline checks, then the very transaction as an eth_call: the token's own
            # checks (nonce unused, time window, signature, balance) on the latest state.
            payer = self._check(payment, requirements, reads=False)
            self._simulate(fn, auth.nonce, payment.payer)
        except PaymentError as exc:
            self.counters[f"settle_refused_{exc.reason}"] += 1
            earlier = self.settled_by(payment, requirements) if exc.reason == "replayed" else None
            return SettleResponse(
                False,
                self.network,
                transaction=earlier,
                payer=payment.payer,
                error_reason=exc.reason,
                message=str(exc)
                + (f" (it was settled in {earlier}, which paid exactly this)" if earlier else ""),
            )
        started = time.perf_counter()
        try:
            receipt = self.chain.transact(fn, self.signer, gas=SETTLE_GAS)
        except SettlementError as exc:
            reason = _reason_of(exc.reason) or "settle-failed"
            self.counters[f"settle_refused_{reason}"] += 1
            log.warning("settling a payment of %s failed: %s", payer, exc.reason or exc)
            return SettleResponse(
                False,
                self.network,
                payer=payer,
                error_reason=reason,
                message=f"the payment was not settled: {exc.reason or exc}",
            )
        except ChainError as exc:
            self.counters["settle_failed_chain"] += 1
            return SettleResponse(
                False, self.network, payer=payer, error_reason="chain-unavailable", message=str(exc)
            )
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
        self.counters["settle_success"] += 1
        log.info(
            "settled %s base units %s -> %s in %s (%.3f s)",
            auth.value,
            payer,
            auth.to,
            tx,
            time.perf_counter() - started,
        )
        return SettleResponse(
            True,
            self.network,
            transaction=tx,
            payer=payer,
            block_number=int(receipt["blockNumber"]),
        )

    def settled_by(self, payment: PaymentPayload, requirements: PaymentRequirements) -> str | None:
        """The transaction that consumed ``payment``'s authorization, if it moved exactly
        the authorised value from the payer to the requirements' payee in this token (it
        was front-run: anyone may submit a signed authorization); None otherwise."""
        auth = payment.authorization
        try:
            used = self.chain.events(
                "OPGToken",
                "AuthorizationUsed",
                argument_filters={
                    "authorizer": to_checksum_address(auth.from_),
                    "nonce": bytes.fromhex(auth.nonce[2:]),
                },
            )
            for event in used:
                receipt = self.chain.w3.eth.get_transaction_receipt(event["transactionHash"])
                transfers = self.token.events.Transfer().process_receipt(receipt, errors=DISCARD)
                for t in transfers:
                    if (
                        t["address"].lower() == self.token.address.lower()
                        and t["args"]["from"].lower() == auth.from_.lower()
                        and t["args"]["to"].lower() == requirements.pay_to.lower()
                        and int(t["args"]["value"]) == auth.value
                        and auth.value == requirements.max_amount_required
                    ):
                        return str(event["transactionHash"])
        except (ChainError, ValueError, KeyError) as exc:
            log.warning("looking up authorization %s of %s: %s", auth.nonce, auth.from_, exc)
        return None

    def _simulate(self, fn: Any, nonce: str, payer: str) -> None:
        try:
            self.chain.call(fn)
        except SettlementError as exc:
            reason = _reason_of(exc.reason) or "rejected"
            raise PaymentError(
                f"the token refuses authorization {nonce} of {payer}: {exc.reason}"
                + ("; sign a new payment" if reason == "replayed" else ""),
                reason=reason,
            ) from None


def _reason_of(revert: str | None) -> str | None:
    for name, reason in _REVERT_REASONS.items():
        if revert and revert.startswith(name):
            return reason
    return None


def parse_request(body: bytes) -> tuple[PaymentPayload, PaymentRequirements]:
    """A ``/verify`` or ``/settle`` body; PaymentError (``malformed``) otherwise."""
    if len(body) > MAX_BODY:
        raise PaymentError(f"request body over {MAX_BODY} bytes", reason="malformed")
    try:
        doc = loads_bounded(body)
    except (ValueError, UnicodeDecodeError):
        raise PaymentError("request body is not JSON", reason="malformed") from None
    if not isinstance(doc, Mapping):
        raise PaymentError("request body must be a JSON object", reason="malformed")
    return (
        PaymentPayload.from_dict(doc.get("paymentPayload")),
        PaymentRequirements.from_dict(doc.get("paymentRequirements")),
    )


class FacilitatorClient:
    """Any x402 facilitator over HTTP (``url`` is its base, e.g. ``http://127.0.0.1:8402``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, payment: PaymentPayload, req: PaymentRequirements) -> Any:
        import httpx

        body = {
            "x402Version": X402_VERSION,
            "paymentPayload": payment.to_dict(),
            "paymentRequirements": req.to_dict(),
        }
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise NodeUnavailable(
                f"the x402 facilitator at {self.url} did not answer {path} ({exc}); is it "
                "running (`ogkit facilitator serve`)?"
            ) from None
        try:
            doc = loads_bounded(response.content)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if response.status_code == 400 and isinstance(doc, Mapping):
            raise PaymentError(str(doc.get("error")), reason=str(doc.get("reason", "malformed")))
        if response.status_code != 200 or not isinstance(doc, Mapping):
            raise NodeUnavailable(
                f"the x402 facilitator at {self.url} answered {path} with HTTP "
                f"{response.status_code}"
            )
        return doc

    def verify(self, payment: PaymentPayload, requirements: PaymentRequirements) -> VerifyResponse:
        try:
            return VerifyResponse.from_dict(self._post("/verify", payment, requirements))
        except PaymentError as exc:
            return VerifyResponse(False, payment.payer, exc.reason, str(exc))

    def settle(self, payment: PaymentPayload, requirements: PaymentRequirements) -> SettleResponse:
        try:
            return SettleResponse.from_dict(self._post("/settle", payment, requirements))
        except PaymentError as exc:
            return SettleResponse(
                False,
                requirements.network,
                payer=payment.payer,
                error_reason=exc.reason,
                message=str(exc),
            )

    def supported(self) -> dict[str, Any]:
        import httpx

        try:
            return loads_bounded(self._http.get("/supported").content)
        except (httpx.HTTPError, ValueError) as exc:
            raise NodeUnavailable(
                f"the x402 facilitator at {self.url} is unreachable: {exc}"
            ) from None
