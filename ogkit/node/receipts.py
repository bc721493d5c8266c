"""Checking a paid call's answer: its receipts, and that the payment is bound into them.

A paid call's rows form a batch whose job is ``x402:<payment transaction hash>`` and whose
requester is the payer (:mod:`ogkit.node.paid`). :func:`verify_paid_call` checks, with
nothing but the answer, the verifier's allowlist and (optionally) the chain:

1. every receipt with :func:`ogkit.verify.verify_receipt` (leaf, proof, root, claim
   signature by an approved attester and measurement);
2. all receipts are of one claim, one per row, for the rows the answer lists, and each
   returned output hashes (docs/spec.md section 2, in the dtype ``output_dtypes`` names)
   to its receipt's ``outputHash``: an answer whose outputs are not what was attested
   fails, whatever the node says the dtypes are (the dtype is in the hash);
3. the claim's requester is the payer, and the batch id recomputes
   (:func:`ogkit.attest.derive_batch_id`) from the model, the answer's ``binding``
   (dataset id, execution hash), the payer, the claim domain and the job
   ``x402:<transaction>`` — so the signed claim commits to that transaction;
4. with ``chain``: the transaction is mined, succeeded, and moved exactly the payment's
   value of the OPG token from the payer to the payee, consuming the payment's EIP-3009
   nonce; with ``price_per_row``, the value is rows × that price; the claim's domain is
   this chain's settlement contract; and the claim's attester is the one the
   NodeRegistry binds to the payee node (``nodeOfAttester``), so an approved attester of
   some other node cannot sign for this one;
5. with ``model`` (the :class:`~ogkit.load.LoadedModel` the caller paid for): the claim,
   the receipts and the answer are of that model's id (a node cannot answer with a
   cheaper model under its own approved key); with ``request`` too (the body the caller
   sent, bytes or parsed): every receipt's ``inputHash`` is that row's canonical input
   hash and the binding's dataset id the input root of those rows (docs/spec.md 4.1), so
   the outputs are of the caller's rows, not of rows the node chose;
6. with ``payer`` and ``nonce`` (the caller's address and the EIP-3009 nonce it signed):
   the answer is bound to the caller's own payment, not to another payment the node
   holds (its own, a colluder's, an earlier one of the caller's); with ``chain`` the
   transaction must have consumed that nonce (item 4), so the caller's authorization,
   the transaction, the job and the signed claim are one chain of bindings.

Every returned output must be a JSON value of its dtype exactly (an integer for an
integer output, a number that is exactly a float32 for a float32 one, true/false for a
bool): a label ``1.9`` that numpy would truncate to the attested ``1`` is refused.

Never raises on a hostile answer: problems are listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ogkit.errors import OgkitError

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.verify import Allowlist

__all__ = [
    "PaidCallCheck",
    "check_payment_binding",
    "check_payment_transaction",
    "verify_paid_call",
]

_TRANSFER = "Transfer(address,address,uint256)"
_AUTH_USED = "AuthorizationUsed(address,bytes32)"


@dataclass(frozen=True)
class PaidCallCheck:
    ok: bool
    problems: tuple[str, ...]
    payer: str | None = None
    transaction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "payer": self.payer,
            "transaction": self.transaction,
        }


def _topic(signature: str) -> bytes:
    from ogkit.crypto.keccak import keccak256

    return keccak256(signature.encode())


def verify_paid_call(
    answer: Any,
    allowlist: Allowlist | None = None,
    *,
    chain: ChainClient | None = None,
    price_per_row: int | None = None,
    model: Any = None,
    request: bytes | Mapping[str, Any] | None = None,
    payer: str | None = None,
    nonce: str | None = None,
) -> PaidCallCheck:
    """Check a ``POST /v1/infer`` answer; see the module docstring."""
    from ogkit.attest import BatchClaim
    from ogkit.verify import verify_receipt

    problems: list[str] = []
    caller, paid_nonce = payer, nonce
    payer = tx = None
    try:
        if not isinstance(answer, Mapping):
            raise ValueError("the answer is not a JSON object")
        payment = answer["payment"]
        binding = answer["binding"]
        receipts = answer["receipts"]
        payer = str(payment["payer"])
        tx = str(payment["transaction"])
        if caller is not None and payer.lower() != str(caller).lower():
            problems.append(f"the answer is bound to a payment by {payer}, not by {caller}")
        if paid_nonce is not None and str(payment["nonce"]).lower() != str(paid_nonce).lower():
            problems.append(
                f"the answer is bound to authorization {payment['nonce']!r:.80}, not to the "
                f"caller's {paid_nonce}"
            )
        if not isinstance(receipts, list) or not receipts:
            raise ValueError("the answer has no receipts")
        if len(receipts) != int(answer["rows"]) or len(answer["outputs"]) != len(receipts):
            problems.append("the answer's rows, outputs and receipts differ in number")
        for i, receipt in enumerate(receipts):
            check = verify_receipt(receipt, allowlist)
            problems += [f"receipt {i}: {p}" for p in check.problems]
        problems += _output_problems(answer, receipts)
        claims = {repr(sorted(r["claim"].items())) for r in receipts}
        if len(claims) != 1:
            problems.append("the receipts are not all of one claim")
        rows = sorted(int(r["leaf_values"]["rowIndex"]) for r in receipts)
        claim = BatchClaim.from_dict(receipts[0]["claim"])
        if rows != list(range(claim.row_count)):
            problems.append(f"the receipts cover rows {rows[:10]}, not 0..{claim.row_count - 1}")
        domain = receipts[0]["domain"]
        problems += check_payment_binding(claim, binding, domain, payer, tx)
        value = int(payment["value"])
        if price_per_row is not None and value != claim.row_count * int(price_per_row):
            problems.append(f"the payment {value} is not {claim.row_count} rows × {price_per_row}")
        if chain is not None:
            problems += check_payment_transaction(
                chain, payment, payer, tx, value, int(domain["chain_id"])
            )
            problems += _chain_binding_problems(chain, claim.attester, payment, domain)
        if model is not None:
            problems += _model_problems(answer, receipts, claim, model)
            if request is not None:
                problems += _request_problems(request, model, receipts, claim, binding)
        elif request is not None:
            problems.append("the request cannot be checked without the model it was sent to")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OgkitError) as exc:
        problems.append(f"the answer is malformed: {exc}")
    return PaidCallCheck(not problems, tuple(problems), payer, tx)


def _output_problems(answer: Mapping[str, Any], receipts: list[Any]) -> list[str]:
    """Each returned output against the output hash its receipt commits to."""
    import numpy as np

    from ogkit.crypto.encoding import tensor_row_hashes

    outputs, dtypes = answer.get("outputs"), answer.get("output_dtypes")
    if not isinstance(outputs, list) or not isinstance(dtypes, Mapping) or not dtypes:
        return ["the answer lacks its outputs or their output_dtypes: its outputs cannot be "
                "checked against the receipts"]  # fmt: skip
    by_row = {}
    for receipt in receipts:
        by_row[int(receipt["leaf_values"]["rowIndex"])] = str(
            receipt["leaf_values"]["outputHash"]
        ).lower()
    problems = []
    for i, output in enumerate(outputs):
        if not isinstance(output, Mapping) or set(output) != set(dtypes):
            problems.append(f"output {i} does not have the outputs {sorted(dtypes)}")
            continue
        try:
            inexact = [str(name) for name, dtype in dtypes.items()
                       if not _exact_json(output[name], np.dtype(str(dtype)))]  # fmt: skip
            if inexact:
                problems.append(
                    f"output {i}: {', '.join(inexact[:5])} is not exactly a value of its dtype "
                    "(a number the dtype would round or truncate, a string or a boolean)"
                )  # and on: the hash below says whether it is even the attested value
            tensors = {
                str(name): np.asarray([output[name]], dtype=np.dtype(str(dtype)))
                for name, dtype in dtypes.items()
            }
            digest = "0x" + bytes(tensor_row_hashes(tensors)[0]).hex()
        except (TypeError, ValueError, OverflowError, OgkitError) as exc:
            problems.append(f"output {i} is not a tensor of its dtype: {exc}")
            continue
        if digest != by_row.get(i):
            problems.append(
                f"output {i} is not the output its receipt attests (hash {digest[:18]}…, "
                f"the receipt says {str(by_row.get(i))[:18]}…)"
            )
    return problems


def _model_problems(
    answer: Mapping[str, Any], receipts: list[Any], claim: Any, model: Any
) -> list[str]:
    """The claim, every receipt and the answer name the model the caller paid for."""
    want = str(model.model_id).lower()
    problems = []
    if claim.model_id.lower() != want:
        problems.append(f"the claim is of model {claim.model_id}, not the one paid for {want}")
    # the leaves name no model (spec 3.1): each receipt's own signed claim does
    if any(str(r["claim"]["model_id"]).lower() != want for r in receipts):
        problems.append(f"a receipt is of another model than {want}")
    if str(answer.get("model_id", want)).lower() != want:
        problems.append(f"the answer names model {answer.get('model_id')!r:.80}, not {want}")
    outputs = {t.name: t.dtype for t in model.outputs}
    stated = answer.get("output_dtypes")
    if not isinstance(stated, Mapping) or dict(stated) != outputs:
        problems.append(f"the answer's output_dtypes {stated!r:.120} are not the model's {outputs}")
    for i, output in enumerate(answer.get("outputs") or []):
        for spec in model.outputs:
            value = output.get(spec.name) if isinstance(output, Mapping) else None
            if value is None or not _fits(value, tuple(spec.shape[1:])):
                problems.append(
                    f"output {i}'s {spec.name} does not have the model's per-row shape "
                    f"{list(spec.shape[1:])}"
                )
                break
    return problems


def _fits(value: Any, dims: tuple[Any, ...]) -> bool:
    """Whether nested lists ``value`` have the per-row shape ``dims`` (a dim that is not a
    fixed integer, a symbolic or unknown one, takes any length)."""
    level = [value]
    for dim in dims:
        if not all(isinstance(v, list) for v in level):
            return False
        fixed = isinstance(dim, int) and not isinstance(dim, bool)
        if fixed and any(len(v) != dim for v in level):
            return False
        level = [x for v in level for x in v]
    return not any(isinstance(v, list) for v in level)


def _request_problems(
    request: bytes | Mapping[str, Any],
    model: Any,
    receipts: list[Any],
    claim: Any,
    binding: Mapping[str, Any],
) -> list[str]:
    """The receipts' input hashes and the binding's dataset id against the caller's own
    rows, converted to the model's inputs as the node must convert them."""
    from ogkit.dataset import bind_features, commit_inputs, open_source, plan_inputs
    from ogkit.node.paid import RequestRefused, parse_rows, strict_json

    try:
        doc = strict_json(bytes(request)) if isinstance(request, bytes | bytearray) else request
        data = parse_rows(doc, model, max_rows=2**31)
        source = open_source(data)
        plan = plan_inputs(source, model.inputs, bind_features(model, None))
        commitment, hashes = commit_inputs(source, plan)
    except (RequestRefused, OgkitError, ValueError, TypeError) as exc:
        return [f"the request given cannot be read as the model's rows: {exc}"]
    problems = []
    if commitment.row_count != claim.row_count:
        problems.append(f"the request has {commitment.row_count} rows; the claim {claim.row_count}")
    if commitment.input_root != str(binding["dataset_id"]).lower():
        problems.append(
            f"the request's rows give input root {commitment.input_root}; the receipts are "
            f"bound to {binding['dataset_id']}: they are of other inputs"
        )
    for receipt in receipts:
        row = int(receipt["leaf_values"]["rowIndex"])
        if not 0 <= row < len(hashes):
            continue  # outside the request: already a problem above
        mine = "0x" + bytes(hashes[row]).hex()
        if str(receipt["leaf_values"]["inputHash"]).lower() != mine:
            problems.append(f"receipt {row}'s inputHash is not the hash of request row {row}")
    return problems


def _exact_json(value: Any, dtype: Any) -> bool:
    """Whether a JSON value (nested lists of numbers) is exactly a tensor of ``dtype``:
    no truncation, rounding, strings or booleans standing in for numbers. Iterative, so
    a hostile nesting depth is only a False."""
    import numpy as np

    kind = dtype.kind
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if kind == "b":
            if not isinstance(item, bool):
                return False
        elif isinstance(item, bool) or not isinstance(item, int | float):
            return False
        elif kind in "iu":
            if not isinstance(item, int):
                return False
        elif kind == "f":
            with np.errstate(over="ignore"):
                if float(dtype.type(item)) != float(item):
                    return False
        else:
            return False
    return True


def _chain_binding_problems(
    chain: ChainClient, attester: str, payment: Mapping[str, Any], domain: Mapping[str, Any]
) -> list[str]:
    """The claim's attester is the payee node's, per the chain; the claim is of this
    chain's settlement contract."""
    from eth_utils import to_checksum_address

    from ogkit.settle import claim_domain

    problems = []
    expected = claim_domain(chain)
    if str(domain["verifying_contract"]).lower() != expected.verifying_contract.lower():
        problems.append(
            f"the claim is for contract {domain['verifying_contract']}, not this chain's "
            f"settlement {expected.verifying_contract}"
        )
    registry = chain.contract("NodeRegistry")
    node = str(chain.call(registry.functions.nodeOfAttester(to_checksum_address(attester))))
    if node.lower() != str(payment["payTo"]).lower():
        problems.append(
            f"attester {attester} is bound on chain to node {node}, not to the payee "
            f"{payment['payTo']}: it cannot sign for this node"
        )
    return problems


def check_payment_binding(
    claim: Any, binding: Mapping[str, Any], domain: Mapping[str, Any], payer: str, tx: str
) -> list[str]:
    """Item 3 above, for a paid call of any kind: the claim's requester is the payer, the
    job is ``x402:<tx>``, and the batch id derives from the model, the ``binding``
    (dataset id, execution hash), the payer, the claim ``domain`` and that job."""
    from ogkit.attest import derive_batch_id

    problems = []
    if claim.requester.lower() != payer.lower():
        problems.append(f"the claim's requester {claim.requester} is not the payer {payer}")
    job = str(binding["job"])
    if not (len(tx) == 66 and tx.startswith("0x") and all(c in "0123456789abcdef" for c in tx[2:])):
        # One spelling per transaction (spec §11.2: lower-case hex), so one payment binds
        # one batch id, not one per way of writing its hash.
        problems.append(f"the payment transaction {tx!r:.80} is not 0x + 64 lower-case hex")
    if job != "x402:" + tx:
        problems.append(f"the batch's job {job!r} is not the payment x402:{tx}")
    derived = derive_batch_id(
        model_id=claim.model_id,
        dataset_id=str(binding["dataset_id"]),
        requester=claim.requester,
        chain_id=int(domain["chain_id"]),
        verifying_contract=str(domain["verifying_contract"]),
        job=job,
        execution=str(binding["execution_hash"]),
    )
    if derived.lower() != claim.batch_id.lower():
        problems.append(
            "the batch id does not derive from the payment's job and the binding given: "
            "the receipts are not bound to this payment"
        )
    return problems


def check_payment_transaction(
    chain: ChainClient, payment: Mapping[str, Any], payer: str, tx: str, value: int, chain_id: int
) -> list[str]:
    """Problems with ``tx`` as the settlement of ``payment`` (``asset``, ``payTo``,
    ``nonce``) of ``value`` by ``payer``: it must have succeeded and, in the OPG token,
    consumed the payer's nonce and moved exactly ``value`` to ``payTo``."""
    from eth_utils import to_checksum_address

    if chain_id != chain.chain_id:
        return [f"the receipts are for chain {chain_id}, not {chain.chain_id}"]
    try:
        receipt = chain.w3.eth.get_transaction_receipt(tx)
    except Exception as exc:  # web3 raises TransactionNotFound and friends
        return [f"the payment transaction {tx} is not on chain {chain.name}: {exc}"]
    if int(receipt["status"]) != 1:
        return [f"the payment transaction {tx} reverted"]
    token = chain.contract("OPGToken").address.lower()
    if str(payment.get("asset", token)).lower() != token:
        return [f"the payment's asset {payment.get('asset')} is not the OPG token {token}"]
    pay_to = to_checksum_address(str(payment["payTo"]))
    nonce = str(payment["nonce"]).lower()
    moved = authorised = False
    for log in receipt["logs"]:
        if str(log["address"]).lower() != token or not log["topics"]:
            continue
        topics = [bytes(t) for t in log["topics"]]
        if topics[0] == _topic(_TRANSFER) and len(topics) == 3:
            sender = "0x" + topics[1][-20:].hex()
            to = "0x" + topics[2][-20:].hex()
            amount = int.from_bytes(bytes(log["data"]), "big")
            if sender == payer.lower() and to == pay_to.lower() and amount == value:
                moved = True
        if (
            topics[0] == _topic(_AUTH_USED)
            and len(topics) == 3
            and "0x" + topics[1][-20:].hex() == payer.lower()
            and "0x" + topics[2].hex() == nonce
        ):
            authorised = True
    problems = []
    if not moved:
        problems.append(f"transaction {tx} did not move {value} OPG units {payer} -> {pay_to}")
    if not authorised:
        problems.append(f"transaction {tx} did not consume authorization {nonce} of {payer}")
    return problems
