"""The requester's signed job order: what a node may run and commit on the requester's behalf.

The settlement contract accepts a batch only through an order its requester signed
(EIP-712, in the settlement contract's claim domain, :class:`~ogkit.attest.ClaimDomain`:
``name = "ogkit"``, ``version = "1"``)::

    JobOrder(address requester,bytes32 modelId,address modelOwner,bytes32 datasetId,
             bytes32 jobHash,uint64 maxRows,uint256 maxPricePerRow,address node,
             uint64 deadline,uint256 nonce)

- ``datasetId`` is the dataset commitment's input root; ``jobHash`` is keccak256 of the
  job string (UTF-8), the same string :func:`~ogkit.attest.derive_batch_id` hashes. The
  order keeps ``job`` itself, and derives ``jobHash`` from it.
- ``maxRows`` caps the rows billed (the commitment's row count by default);
  ``maxPricePerRow`` is in OPG base units (1 OPG = 10**18).
- ``node`` is the only inference node that may commit the order. The zero address lets
  *any* staked node take it: avoid it unless that is what you want.
- ``deadline`` is the unix second after which the order cannot be committed; ``nonce``
  is a uint256 the contract marks used in a per-requester bitmap (word ``nonce >> 8``,
  bit ``nonce & 255``), so the random 128-bit default never collides in practice.

On chain the batch id derives from the order (:meth:`JobOrder.batch_id`): the requester,
model, dataset and job of a committed batch are the ones the requester signed.

An order on disk is one JSON document, ``{"schema": "ogkit.order.v1", "order": {...},
"signature": "0x…" | null}``. The uint256 fields (``max_price_per_row``, ``nonce``) are
decimal strings there, so JSON readers that hold numbers as doubles do not round them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address

from ogkit.attest import EIP712_DOMAIN_TYPE, ClaimDomain, derive_batch_id, is_address, is_hex32
from ogkit.crypto.keccak import keccak256
from ogkit.dataset import DatasetCommitment
from ogkit.errors import OrderError, SignatureError
from ogkit.keys import Signer, parse_signature, recover_typed_data

__all__ = [
    "DEFAULT_TTL",
    "ORDER_SCHEMA",
    "ORDER_TYPES",
    "ORDER_TYPE_STRING",
    "JobOrder",
    "SignedOrder",
    "check_order_matches",
    "load_order",
    "new_order",
    "save_order",
]

log = logging.getLogger(__name__)

ORDER_SCHEMA = "ogkit.order.v1"
DEFAULT_TTL = 24 * 60 * 60  # an order is good for one day unless told otherwise
MAX_ORDER_FILE_BYTES = 64 * 1024
MAX_JOB_CHARS = 1024

ORDER_TYPES = {
    "EIP712Domain": EIP712_DOMAIN_TYPE,
    "JobOrder": [
        {"name": "requester", "type": "address"},
        {"name": "modelId", "type": "bytes32"},
        {"name": "modelOwner", "type": "address"},
        {"name": "datasetId", "type": "bytes32"},
        {"name": "jobHash", "type": "bytes32"},
        {"name": "maxRows", "type": "uint64"},
        {"name": "maxPricePerRow", "type": "uint256"},
        {"name": "node", "type": "address"},
        {"name": "deadline", "type": "uint64"},
        {"name": "nonce", "type": "uint256"},
    ],
}

# What the contract hashes into its type hash, spelled out once.
ORDER_TYPE_STRING = (
    "JobOrder(" + ",".join(f"{f['type']} {f['name']}" for f in ORDER_TYPES["JobOrder"]) + ")"
)

# Field -> (what it is on chain, bits) for the integer fields; the rest are checked by kind.
_UINTS = {"max_rows": 64, "max_price_per_row": 256, "deadline": 64, "nonce": 256, "chain_id": 256}
_ADDRESSES = ("requester", "model_owner", "node", "verifying_contract")
_HEX32S = ("model_id", "dataset_id")
_DECIMAL_FIELDS = ("max_price_per_row", "nonce")  # uint256: decimal strings in JSON


def _job_hash(job: str) -> str:
    return "0x" + keccak256(job.encode("utf-8")).hex()


def _address_problem(value: Any) -> str | None:
    if not is_address(value):
        return f"must be a 20-byte address (0x + 40 hex digits), got {value!r:.80}"
    body = value[2:]
    if body not in (body.lower(), body.upper()) and value != to_checksum_address(value):
        return f"{value} has mixed case that is not its EIP-55 checksum (a typo?)"
    return None


def _uint_problem(value: Any, bits: int) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        return f"must be a uint{bits} (an integer 0 <= n < 2**{bits}), got {value!r:.80}"
    return None


def _problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every (field, problem) in the order's values, in the struct's order."""
    found: list[tuple[str, str]] = []
    for name in (f.name for f in fields(JobOrder)):
        value = values[name]
        if name in _ADDRESSES:
            problem = _address_problem(value)
        elif name in _HEX32S:
            problem = None if is_hex32(value) else f"must be 0x + 64 hex digits, got {value!r:.80}"
        elif name == "job":
            if not isinstance(value, str) or not value:
                problem = f"must be a non-empty string, got {value!r:.80}"
            elif len(value) > MAX_JOB_CHARS:
                problem = f"is {len(value)} characters; at most {MAX_JOB_CHARS}"
            else:
                problem = None
        else:
            problem = _uint_problem(value, _UINTS[name])
            if problem is None and name == "max_rows" and value < 1:
                problem = "must be at least 1"
            if problem is None and name == "chain_id" and value < 1:
                problem = "must be at least 1"
        if problem:
            found.append((name, problem))
    return found


def _raise(problems: list[tuple[str, str]], where: str = "order") -> None:
    lines = [f"{where} {name} {problem}" for name, problem in problems]
    if len(lines) == 1:
        raise OrderError(lines[0], field=problems[0][0])
    text = "\n".join(f"  - {line}" for line in lines)
    raise OrderError(
        f"{len(lines)} problems in the {where}:\n{text}", field=problems[0][0], problems=lines
    )


@dataclass(frozen=True)
class JobOrder:
    """What a requester authorises: a model, a dataset, a job, a node, a price cap and a
    deadline, for one settlement contract. Values are checked when the order is built
    (:class:`~ogkit.errors.OrderError` names every field at fault); addresses are kept
    checksummed and ids lower-case."""

    requester: str
    model_id: str
    model_owner: str
    dataset_id: str
    job: str
    max_rows: int
    max_price_per_row: int
    node: str
    deadline: int
    nonce: int
    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        problems = _problems({f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            _raise(problems)
        for name in _ADDRESSES:
            object.__setattr__(self, name, to_checksum_address(getattr(self, name)))
        for name in _HEX32S:
            object.__setattr__(self, name, getattr(self, name).lower())

    @property
    def job_hash(self) -> str:
        """``keccak256(job)`` (UTF-8), as ``0x`` + 64 hex digits."""
        return _job_hash(self.job)

    @property
    def domain(self) -> ClaimDomain:
        return ClaimDomain(self.chain_id, self.verifying_contract)

    @property
    def open_to_any_node(self) -> bool:
        """True when ``node`` is the zero address: any staked node may commit the order."""
        return int(self.node, 16) == 0

    def as_tuple(self) -> tuple[Any, ...]:
        """The ABI tuple in the struct's field order (bytes32 as bytes), for web3 calls."""
        return (
            self.requester,
            bytes.fromhex(self.model_id[2:]),
            self.model_owner,
            bytes.fromhex(self.dataset_id[2:]),
            bytes.fromhex(self.job_hash[2:]),
            self.max_rows,
            self.max_price_per_row,
            self.node,
            self.deadline,
            self.nonce,
        )

    def typed_data(self) -> dict[str, Any]:
        """The full EIP-712 message (``types``, ``primaryType``, ``domain``, ``message``)."""
        names = [f["name"] for f in ORDER_TYPES["JobOrder"]]
        return {
            "types": ORDER_TYPES,
            "primaryType": "JobOrder",
            "domain": self.domain.to_dict(),
            "message": dict(zip(names, self.as_tuple(), strict=True)),
        }

    def digest(self) -> str:
        """The EIP-712 hash the requester signs: ``keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖
        hashStruct(order))``, as ``0x`` + 64 hex digits."""
        signable = encode_typed_data(full_message=self.typed_data())
        return "0x" + keccak256(b"\x19" + signable.version + signable.header + signable.body).hex()

    def batch_id(self, execution_hash: str) -> str:
        """The batch id the contract derives from this order and the node's execution hash
        (:func:`ogkit.attest.execution_hash`): :func:`~ogkit.attest.derive_batch_id` over
        the order's model, dataset, requester, domain and job."""
        return derive_batch_id(
            model_id=self.model_id,
            dataset_id=self.dataset_id,
            requester=self.requester,
            chain_id=self.chain_id,
            verifying_contract=self.verifying_contract,
            job=self.job,
            execution=execution_hash,
        )

    def sign(self, signer: Signer) -> SignedOrder:
        """Sign as the requester; refuses any other key."""
        if signer.address.lower() != self.requester.lower():
            raise OrderError(
                f"key {signer.name!r} is {signer.address}, but the order's requester is "
                f"{self.requester}: sign with the requester's key "
                "(`ogkit order sign ORDER.json --key REQUESTER`)",
                field="requester",
            )
        signed = SignedOrder(self, signer.sign_typed_data(self.typed_data()))
        log.info("signed order %s for node %s as %s", self.digest(), self.node, self.requester)
        return signed

    def expired(self, now: int | None = None) -> bool:
        return (int(time.time()) if now is None else now) > self.deadline

    def to_dict(self) -> dict[str, Any]:
        """The order's fields, JSON-ready: uint256 values as decimal strings, plus the
        derived ``job_hash`` (checked again by :meth:`from_dict`)."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _DECIMAL_FIELDS:
            d[name] = str(d[name])
        d["job_hash"] = self.job_hash
        return d

    @classmethod
    def from_dict(cls, d: Any) -> JobOrder:
        """Parse what :meth:`to_dict` wrote, refusing any other type, range, format or key
        (:class:`~ogkit.errors.OrderError` names the field)."""
        if not isinstance(d, Mapping):
            raise OrderError(f"order must be a JSON object, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [k for k in [*names, "job_hash"] if k not in d]
        if missing:
            raise OrderError(f"order lacks {', '.join(missing)}", field=missing[0])
        unknown = sorted(str(k) for k in d if k not in names and k != "job_hash")
        if unknown:
            raise OrderError(f"order has unknown fields: {', '.join(unknown)}", field=unknown[0])
        values = {k: d[k] for k in names}
        for name in _DECIMAL_FIELDS:
            text = values[name]
            if not isinstance(text, str) or not text.isascii() or not text.isdigit():
                raise OrderError(
                    f"order {name} must be a decimal string (a uint256), got {text!r:.80}",
                    field=name,
                )
            if len(text) > 1 and text.startswith("0"):
                raise OrderError(f"order {name} has leading zeros: {text!r:.80}", field=name)
            values[name] = int(text) if len(text) <= 78 else 2**256  # out of range below
        order = cls(**values)
        if d["job_hash"] != order.job_hash:
            raise OrderError(
                f"order job_hash {d['job_hash']!r:.80} is not keccak256 of its job "
                f"{order.job!r:.80} ({order.job_hash}): the file was edited",
                field="job_hash",
            )
        return order


@dataclass(frozen=True)
class SignedOrder:
    """A :class:`JobOrder` with the requester's EIP-712 signature (``0x`` + 130 hex)."""

    order: JobOrder
    signature: str

    def recover_signer(self) -> str:
        """The address that signed, accepting only canonical signatures (what
        OpenZeppelin's ECDSA accepts); raises :class:`~ogkit.errors.SignatureError`."""
        return recover_typed_data(self.order.typed_data(), self.signature)

    def verify(self) -> str:
        """The requester's address, if and only if the requester signed this order;
        :class:`~ogkit.errors.SignatureError` otherwise."""
        signer = self.recover_signer()
        if signer.lower() != self.order.requester.lower():
            raise SignatureError(
                f"order {self.order.digest()} is signed by {signer}, not by its requester "
                f"{self.order.requester}: the order was altered or signed with another key; "
                "re-sign it with `ogkit order sign ORDER.json --key REQUESTER`"
            )
        return signer

    def to_dict(self) -> dict[str, Any]:
        return {"schema": ORDER_SCHEMA, "order": self.order.to_dict(), "signature": self.signature}

    @classmethod
    def from_dict(cls, d: Any) -> SignedOrder:
        """Parse a signed order document. The signature must be canonical (65 bytes, low
        s, v in {27, 28}); who signed it is checked by :meth:`verify`."""
        parsed = _from_document(d)
        if not isinstance(parsed, SignedOrder):
            raise OrderError(
                "the order is not signed: sign it with `ogkit order sign ORDER.json --key "
                "REQUESTER`",
                field="signature",
            )
        return parsed

    def save(self, path: str | os.PathLike[str]) -> Path:
        return save_order(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SignedOrder:
        """Read a signed order file (:func:`load_order`); an unsigned one is refused."""
        order = load_order(path)
        if not isinstance(order, SignedOrder):
            raise OrderError(
                f"order {path} is not signed: sign it with `ogkit order sign {path} "
                "--key REQUESTER`",
                field="signature",
            )
        return order


def _from_document(d: Any) -> JobOrder | SignedOrder:
    if not isinstance(d, Mapping):
        raise OrderError(f"an order document must be a JSON object, got {type(d).__name__}")
    if d.get("schema") != ORDER_SCHEMA:
        raise OrderError(
            f"not an ogkit order: schema is {d.get('schema')!r:.80}, expected {ORDER_SCHEMA!r}",
            field="schema",
        )
    unknown = sorted(str(k) for k in d if k not in ("schema", "order", "signature"))
    if unknown:
        raise OrderError(f"order document has unknown keys: {', '.join(unknown)}")
    if "order" not in d or "signature" not in d:
        raise OrderError("an order document needs both 'order' and 'signature' (null if unsigned)")
    order = JobOrder.from_dict(d["order"])
    signature = d["signature"]
    if signature is None:
        return order
    if not isinstance(signature, str) or not signature.startswith("0x"):
        raise OrderError(
            f"order signature must be 0x + 130 hex digits or null, got {signature!r:.80}",
            field="signature",
        )
    try:
        parse_signature(signature)
    except SignatureError as exc:
        raise OrderError(f"order signature is malformed: {exc}", field="signature") from None
    return SignedOrder(order, signature.lower())


def save_order(order: JobOrder | SignedOrder, path: str | os.PathLike[str]) -> Path:
    """Write an order document (signed or not) to ``path`` atomically: a temporary file
    beside it, then moved into place."""
    doc = (
        order.to_dict()
        if isinstance(order, SignedOrder)
        else {"schema": ORDER_SCHEMA, "order": order.to_dict(), "signature": None}
    )
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    kind = "signed" if isinstance(order, SignedOrder) else "unsigned"
    log.info("wrote %s order to %s", kind, dest)
    return dest


def load_order(path: str | os.PathLike[str]) -> JobOrder | SignedOrder:
    """Read an order file: a :class:`SignedOrder`, or a :class:`JobOrder` if unsigned.
    A missing, oversized, garbled or malformed file is an :class:`~ogkit.errors.OrderError`
    naming the file and what is wrong with it."""
    source = Path(path)
    try:
        size = source.stat().st_size
        if size > MAX_ORDER_FILE_BYTES:
            raise OrderError(f"order file {source} is {size:,} bytes: not an ogkit order")
        data = source.read_bytes()
    except FileNotFoundError:
        raise OrderError(
            f"no order file at {source}: create one with `ogkit order new … --out {source}`"
        ) from None
    except OSError as exc:
        raise OrderError(f"cannot read order file {source}: {exc}") from None
    try:
        doc = json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise OrderError(
            f"order file {source} is not valid JSON ({exc}); ask the requester for it again "
            "or recreate it with `ogkit order new`"
        ) from None
    try:
        return _from_document(doc)
    except OrderError as exc:
        raise OrderError(
            f"order file {source}: {exc}", field=exc.field, problems=exc.problems
        ) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("an object repeats a key")
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def new_order(
    *,
    requester: str,
    model_id: str,
    model_owner: str,
    commitment: DatasetCommitment | tuple[str, int],
    job: str,
    node: str,
    max_price_per_row: int,
    chain_id: int,
    verifying_contract: str,
    deadline: int | None = None,
    ttl: int | None = None,
    nonce: int | None = None,
    max_rows: int | None = None,
    now: int | None = None,
) -> JobOrder:
    """A new order for the rows of ``commitment`` (a :class:`~ogkit.dataset.DatasetCommitment`
    or ``(input_root, rows)``).

    ``deadline`` is absolute (unix seconds) or ``ttl`` seconds from ``now`` (default: one
    day from now); ``nonce`` defaults to a random 128-bit number; ``max_rows`` to the
    commitment's row count (never fewer: the batch could not be committed). Every problem
    is reported at once in one :class:`~ogkit.errors.OrderError`.
    """
    if isinstance(commitment, DatasetCommitment):
        root, rows = commitment.input_root, commitment.row_count
    else:
        try:
            root, rows = commitment
        except (TypeError, ValueError):
            raise OrderError(
                f"commitment must be a DatasetCommitment or (input_root, rows), got "
                f"{commitment!r:.80}",
                field="dataset_id",
            ) from None
    clock = int(time.time()) if now is None else now
    problems: list[tuple[str, str]] = []
    if deadline is not None and ttl is not None:
        problems.append(("deadline", "and ttl were both given: give one"))
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        problems.append(("ttl", f"must be a positive number of seconds, got {ttl!r:.80}"))
    if deadline is None:
        deadline = clock + (ttl if isinstance(ttl, int) and ttl > 0 else DEFAULT_TTL)
    elif isinstance(deadline, int) and not isinstance(deadline, bool) and deadline <= clock:
        problems.append(("deadline", f"{deadline} is not in the future (now is {clock})"))
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        problems.append(("max_rows", f"the commitment must have at least one row, got {rows!r}"))
    elif max_rows is None:
        max_rows = rows
    elif isinstance(max_rows, int) and not isinstance(max_rows, bool) and max_rows < rows:
        problems.append(
            ("max_rows", f"{max_rows} is below the commitment's {rows} rows: no batch of it fits")
        )
    values = {
        "requester": requester,
        "model_id": model_id,
        "model_owner": model_owner,
        "dataset_id": root,
        "job": job,
        "max_rows": max_rows if max_rows is not None else 1,
        "max_price_per_row": max_price_per_row,
        "node": node,
        "deadline": deadline,
        "nonce": secrets.randbits(128) if nonce is None else nonce,
        "chain_id": chain_id,
        "verifying_contract": verifying_contract,
    }
    seen = {name for name, _ in problems}
    problems += [(n, p) for n, p in _problems(values) if n not in seen]
    if problems:
        _raise(problems)
    order = JobOrder(**values)
    if order.open_to_any_node:
        log.warning(
            "order %s names no node: any staked node may commit it", order.digest()[:18] + "…"
        )
    return order


def check_order_matches(
    order: JobOrder | SignedOrder,
    *,
    model_id: str,
    dataset_id: str,
    requester: str,
    job: str,
    row_count: int,
    chain_id: int,
    verifying_contract: str,
    node: str | None = None,
    model_owner: str | None = None,
    price_per_row: int | None = None,
    now: int | None = None,
) -> JobOrder:
    """Raise :class:`~ogkit.errors.OrderError` naming the first field in which ``order``
    does not authorise this job; returns the order when it does.

    A node runs this before inference and again before commit. A :class:`SignedOrder`
    is verified first (:meth:`SignedOrder.verify`). ``row_count`` must not exceed the
    order's ``max_rows``; with ``node``, the order must name that node (or any node); with
    ``price_per_row``, the order's cap must cover it; and the deadline must not have
    passed at ``now`` (default: the clock).
    """
    if isinstance(order, SignedOrder):
        order.verify()
        order = order.order

    def mismatch(field: str, ordered: Any, actual: Any, hint: str = "") -> OrderError:
        return OrderError(
            f"the order's {field} is {ordered}, but this job's is {actual}"
            + (f": {hint}" if hint else "; ask the requester for an order for this job"),
            field=field,
        )

    def same_hex(a: str, b: str) -> bool:
        return isinstance(b, str) and a.lower() == b.lower()

    if order.chain_id != chain_id:
        raise mismatch("chain_id", order.chain_id, chain_id)
    if not same_hex(order.verifying_contract, verifying_contract):
        raise mismatch("verifying_contract", order.verifying_contract, verifying_contract)
    if not same_hex(order.requester, requester):
        raise mismatch("requester", order.requester, requester)
    if not same_hex(order.model_id, model_id):
        raise mismatch("model_id", order.model_id, model_id)
    if model_owner is not None and not same_hex(order.model_owner, model_owner):
        raise mismatch("model_owner", order.model_owner, model_owner)
    if not same_hex(order.dataset_id, dataset_id):
        raise mismatch(
            "dataset_id", order.dataset_id, dataset_id, "the data is not the data ordered"
        )
    if order.job != job:
        raise mismatch("job", repr(order.job), repr(job))
    if row_count < 1 or row_count > order.max_rows:
        raise OrderError(
            f"this job has {row_count} rows; the order allows 1 to {order.max_rows} (max_rows)",
            field="max_rows",
        )
    if price_per_row is not None and price_per_row > order.max_price_per_row:
        raise OrderError(
            f"the price per row is {price_per_row} base units, above the order's "
            f"max_price_per_row {order.max_price_per_row}",
            field="max_price_per_row",
        )
    if node is not None and not order.open_to_any_node and not same_hex(order.node, node):
        raise mismatch("node", order.node, node, "the order names another node")
    clock = int(time.time()) if now is None else now
    if order.expired(clock):
        raise OrderError(
            f"the order's deadline {order.deadline} has passed (now {clock}): ask the "
            "requester for a new order (`ogkit order new`)",
            field="deadline",
        )
    return order
