"""The settlement game on an in-process eth-tester chain (py-evm), for the contract tests.

:class:`Game` owns one chain and one deployment of the four contracts and plays every
role through real transactions and real EIP-712 signatures, made with ogkit's own
definitions of the typed data (:mod:`ogkit.order`, :mod:`ogkit.attest`,
:mod:`ogkit.verdict`, :mod:`ogkit.settle`):

- players: funded eth-tester accounts (unlocked, so sending needs no local signing) with
  their keys for signing orders, registrations, verdicts and permits
  (:meth:`Game.player`), and unfunded enclave keys (:func:`attester`);
- set-up: :meth:`Game.fund`, :meth:`Game.stake` (with the attester's proof of possession),
  :meth:`Game.register_model` (with the owner's signature), :meth:`Game.allow`;
- a batch: :meth:`Game.order` and :meth:`Game.sign_order` (the requester's JobOrder),
  :meth:`Game.batch` (the receipt tree of :class:`Receipts` and the attester-signed
  claim), :meth:`Game.commit`, :meth:`Game.verdict`, :meth:`Game.finalize`;
- disputes: :meth:`Game.challenge` (commit, then reveal in a later block),
  :meth:`Game.vote`;
- the chain: :meth:`Game.advance` (time travel), :meth:`Game.isolated` (a snapshot put
  back afterwards), :meth:`Game.expect_revert` (asserts the decoded custom error and its
  arguments) and :meth:`Game.in_one_block` (several transactions mined together);
- ogkit itself: :meth:`Game.client` (a :class:`~ogkit.chain.client.ChainClient` on the
  same chain, for the ``ogkit.settle`` and ``ogkit.verdict`` functions that read it);
- money: :meth:`Game.balance`, :meth:`Game.burned` (what slashes sent to the settlement's
  ``BURN_ADDRESS``).

``finalize`` has taken two forms: ``Verdict`` structs sorted by verifier, and EIP-2098
compact pass signatures whose signers the contract recovers. :meth:`Game.finalize_fn`
reads the deployed ABI and passes verdicts in the form it takes
(:attr:`Game.compact_passes`), sorted as a finaliser would sort them.

Nothing here is a pytest fixture: a test module builds a ``Game`` in a module-scoped
fixture and reverts to a snapshot around each test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from web3.logs import DISCARD

from ogkit.attest import BatchClaim, ClaimDomain, execution_hash
from ogkit.chain.bindings import OPG
from ogkit.chain.client import ChainClient
from ogkit.chain.deployments import Deployment, DeployParams, deploy_contracts
from ogkit.chain.records import OnChainBatch, from_event
from ogkit.chain.rpc import decode_revert
from ogkit.chain.transactions import transact
from ogkit.crypto.merkle import MerkleTree, leaf_hash
from ogkit.errors import SettlementError
from ogkit.keys import Signer, parse_signature
from ogkit.order import JobOrder
from ogkit.settle import attester_binding_typed_data, registration_typed_data
from ogkit.verdict import SignedVerdict, sign_verdict, verdict_typed_data

__all__ = [
    "BPS",
    "GAME_PARAMS",
    "RUNTIME_ID",
    "ZERO_ADDRESS",
    "ArtefactView",
    "Batch",
    "Game",
    "Player",
    "Receipts",
    "assert_reason",
    "attester",
    "b32",
    "hex32",
    "revert_reason",
    "sorted_verdicts",
    "typed_digest",
]

BPS = 10_000
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
RUNTIME_ID = "0x" + keccak(b"ogkit software enclave runtime v1").hex()
"""The software enclave's measurement, approved at deployment in :data:`GAME_PARAMS`."""

SEND_GAS = 10_000_000
"""Gas given to transactions expected to succeed. eth-tester estimates gas by bisection
(many executions), so nothing is estimated unless a revert is expected; a transaction
that reverts anyway still raises SettlementError with its reason (replayed)."""

GAME_PARAMS = DeployParams(initial_measurements=(bytes.fromhex(RUNTIME_ID[2:]),))
"""The documented defaults (docs/contracts.md) with the software runtime approved."""


def hex32(value: bytes | str) -> str:
    """``0x`` + 64 lower-case hex digits."""
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return "0x" + raw.hex()


def b32(value: str | bytes) -> bytes:
    return bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)


def typed_digest(typed: dict[str, Any]) -> str:
    """The EIP-712 digest of a full typed-data message, as ``0x`` + 64 hex digits."""
    signable = encode_typed_data(full_message=typed)
    return "0x" + keccak(b"\x19" + signable.version + signable.header + signable.body).hex()


@dataclass(frozen=True)
class Player:
    """A named key. Funded eth-tester accounts send transactions as unlocked addresses."""

    name: str
    account: Any  # eth_account LocalAccount

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def signer(self) -> Signer:
        return Signer(self.name, self.account)

    def sign(self, typed: dict[str, Any]) -> bytes:
        """Sign a full EIP-712 message; the 65-byte signature."""
        return b32(self.signer.sign_typed_data(typed))

    def __repr__(self) -> str:
        return f"Player({self.name}, {self.address})"


def attester(name: str) -> Player:
    """An enclave key (no ETH, no OPG: it only signs claims and binding proofs)."""
    return Player(name, Account.from_key(keccak(b"ogkit game attester " + name.encode())))


def _shown(value: Any) -> str:
    """``value`` as :func:`ogkit.chain.rpc.decode_revert` renders an argument."""
    if isinstance(value, Player):
        return value.address
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else value
    return str(value)


def revert_reason(exc: SettlementError) -> str:
    """The decoded custom error behind ``exc``, from the raw revert data where the chain
    gave it: eth-tester words a revert whose only argument is a string as if it were
    ``Error(string)`` ("execution reverted: requester"), and ``exc.reason`` then holds just
    that string."""
    seen: list[BaseException] = []
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        for item in e.args:
            if isinstance(item, bytes | bytearray) and len(item) >= 4:
                return decode_revert(Exception(bytes(item))) or ""
        stack.extend([e.__cause__, e.__context__])
    return exc.reason or ""


def assert_reason(reason: str, error: str, **args: Any) -> None:
    """Assert a decoded revert ``reason`` is custom error ``error`` with these arguments."""
    assert reason.split("(")[0] == error, f"expected {error}, got {reason!r}"
    for name, value in args.items():
        assert f"{name}={_shown(value)}" in reason, f"expected {name}={_shown(value)} in {reason}"


def sorted_verdicts(verdicts: Iterable[SignedVerdict]) -> list[tuple[str, bool, bytes]]:
    """Verdict tuples sorted by verifier address, as finalize / resolveChallenge take them."""
    return [v.as_tuple() for v in sorted(verdicts, key=lambda v: int(v.verifier, 16))]


# --------------------------------------------------------------------------- receipts


@dataclass(frozen=True)
class Receipts:
    """Receipt rows ``(row index, input hash, output hash)`` of one batch and their
    OpenZeppelin SimpleMerkleTree (:class:`ogkit.crypto.merkle.MerkleTree`)."""

    batch_id: str
    model_id: str
    runtime_id: str
    rows: tuple[tuple[int, bytes, bytes], ...]
    tree: MerkleTree

    @classmethod
    def build(
        cls,
        batch_id: str,
        model_id: str,
        runtime_id: str,
        rows: int | Sequence[tuple[int, bytes, bytes]],
        *,
        tag: bytes = b"",
    ) -> Receipts:
        """``rows`` receipts with made-up hashes (or the given rows) and their tree."""
        if isinstance(rows, int):
            rows = [
                (i, keccak(tag + b"input %d" % i), keccak(tag + b"output %d" % i))
                for i in range(rows)
            ]
        leaves = b"".join(leaf_hash(i, x, y) for i, x, y in rows)
        tree = MerkleTree.from_leaf_hashes(np.frombuffer(leaves, dtype=np.uint8).reshape(-1, 32))
        return cls(batch_id, model_id, runtime_id, tuple(rows), tree)

    @property
    def root(self) -> str:
        return hex32(self.tree.root)

    def leaf(self, i: int) -> bytes:
        return self.tree.leaf(i)

    def proof(self, i: int) -> list[bytes]:
        """The proof of the ``i``-th row given (not necessarily row index ``i``)."""
        return self.tree.proof(i)


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """An order, a claim over a receipt tree, their signatures and, once committed, what
    the chain recorded (``onchain``)."""

    order: JobOrder
    order_signature: bytes
    execution: dict[str, Any]
    artifact_id: str
    receipts: Receipts
    claim: BatchClaim
    claim_signature: bytes
    domain: ClaimDomain
    onchain: OnChainBatch | None = None

    @property
    def execution_hash(self) -> str:
        return execution_hash(self.execution)

    @property
    def batch_id(self) -> str:
        return self.claim.batch_id

    @property
    def key(self) -> bytes:
        return b32(self.claim.batch_id)

    @property
    def claim_digest(self) -> str:
        """The EIP-712 digest of the claim: what the chain records and verdicts sign."""
        return typed_digest(self.claim.typed_data(self.domain))

    @property
    def record(self) -> tuple:
        """The committed ``Record`` as contract calls take it."""
        if self.onchain is None:
            raise AssertionError(f"batch {self.batch_id} is not committed")
        return self.onchain.as_tuple

    def claim_tuple(self) -> tuple:
        c = self.claim
        return (
            b32(c.batch_id),
            b32(c.model_id),
            b32(c.runtime_id),
            b32(c.batch_root),
            c.row_count,
            c.requester,
            c.timestamp,
            c.attester,
        )

    def commit_args(self) -> tuple:
        """``commitBatch``'s arguments."""
        return (
            self.order.as_tuple(),
            self.order_signature,
            self.claim_tuple(),
            self.claim_signature,
            b32(self.execution_hash),
            b32(self.artifact_id),
        )

    def view(self) -> ArtefactView:
        return ArtefactView(self)


class _ManifestView:
    def __init__(self, batch: Batch) -> None:
        self.dataset_id = batch.order.dataset_id
        self.job = batch.order.job
        self._execution = dict(batch.execution)

    def execution(self) -> dict[str, Any]:
        return dict(self._execution)


class ArtefactView:
    """The fields of an :class:`ogkit.batch.AttestedBatch` that ogkit.settle's chain checks
    (``claim_digest``, ``check_committed_is_ours``, ``compare_with_chain``) read, for a
    batch that exists only in a test (no stored records)."""

    def __init__(self, batch: Batch) -> None:
        self.batch_id = batch.batch_id
        self.claim = batch.claim
        self.domain = batch.domain
        self.manifest = _ManifestView(batch)
        self.artifact_id = batch.artifact_id
        self.batch_root = batch.claim.batch_root
        self.row_count = batch.claim.row_count
        self.model_id = batch.claim.model_id
        self.runtime_id = batch.claim.runtime_id


# --------------------------------------------------------------------------- the game


class Game:
    """One eth-tester chain with ``num_accounts`` funded accounts and one deployment."""

    def __init__(self, params: DeployParams = GAME_PARAMS, num_accounts: int = 16) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider, Web3

        self.params = params
        state = PyEVMBackend.generate_genesis_state(num_accounts=num_accounts)
        self.tester = EthereumTester(PyEVMBackend(genesis_state=state))
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        accounts = [Account.from_key(i.to_bytes(32, "big")) for i in range(1, 1 + num_accounts)]
        assert [a.address for a in accounts] == list(self.w3.eth.accounts)[:num_accounts]
        self.deployer = Player("deployer", accounts[0])
        self._free = accounts[1:]
        self.players: dict[str, Player] = {}
        self.d: Deployment = deploy_contracts(self.w3, self.deployer.address, params)

    # -- players -----------------------------------------------------------------------

    def player(self, name: str) -> Player:
        """The funded account called ``name`` (the next free one the first time)."""
        if name not in self.players:
            if not self._free:
                raise AssertionError(f"no free account left for {name}: raise num_accounts")
            self.players[name] = Player(name, self._free.pop(0))
        return self.players[name]

    @property
    def domain(self) -> ClaimDomain:
        return ClaimDomain(self.d.chain_id, self.d.settlement.address)

    def client(self) -> ChainClient:
        """An ogkit :class:`~ogkit.chain.client.ChainClient` on this chain and deployment
        (as ``ogkit.chain.connection.connect`` makes one for the embedded chain)."""
        return ChainClient(
            self.w3,
            self.d,
            name="embedded",
            kind="embedded",
            tester=self.tester,
            first_block=self.d.block_number,
        )

    # -- chain -------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def advance(self, seconds: int) -> int:
        """Mine a block ``seconds`` after the latest one; its timestamp."""
        target = self.now() + seconds
        self.tester.time_travel(target)
        return target

    def mine(self, blocks: int = 1) -> None:
        self.tester.mine_blocks(blocks)

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        self.tester.revert_to_snapshot(snapshot)

    def send(self, fn: Any, sender: Player | str, *, gas: int | None = SEND_GAS) -> Any:
        """Send ``fn`` from ``sender`` with ``gas`` (None: estimated first); the receipt.
        A revert raises SettlementError with its reason."""
        address = sender.address if isinstance(sender, Player) else sender
        return transact(self.w3, fn, address, gas=gas)

    def expect_revert(self, fn: Any, sender: Player | str, error: str, **args: Any) -> str:
        """Send ``fn`` and assert it reverts with custom error ``error`` and, for each
        keyword, that argument's value; the decoded reason (``Name(arg=value, ...)``)."""
        with pytest.raises(SettlementError) as info:
            self.send(fn, sender, gas=None)  # refused at estimation, in the pending block
        reason = revert_reason(info.value)
        assert_reason(reason, error, **args)
        return reason

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """Run the block, then put the chain (state and clock) back as it was."""
        snapshot = self.snapshot()
        try:
            yield
        finally:
            self.revert(snapshot)

    def replay_reason(self, receipt: Any) -> str | None:
        """Why a mined transaction reverted: it is re-run as a call on its parent block."""
        tx = self.w3.eth.get_transaction(receipt["transactionHash"])
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"]}
        try:
            self.w3.eth.call(call, block_identifier=int(receipt["blockNumber"]) - 1)
        except Exception as exc:
            return decode_revert(exc)
        return None

    def in_one_block(self, calls: Sequence[tuple[Any, Player]], gas: int = 3_000_000) -> list:
        """Send ``calls`` (in this order) into one block and mine it; their receipts (a
        reverted one has status 0). Gas is given, so nothing is estimated ahead. One call per
        sender: eth-tester checks each nonce against the last mined block."""
        senders = [who.address for _, who in calls]
        if len(set(senders)) != len(senders):
            raise AssertionError("in_one_block takes one transaction per sender")
        self.tester.disable_auto_mine_transactions()
        try:
            hashes = [fn.transact({"from": who.address, "gas": gas}) for fn, who in calls]
            self.mine()
        finally:
            self.tester.enable_auto_mine_transactions()
        return [self.w3.eth.get_transaction_receipt(h) for h in hashes]

    def events(self, contract: Any, name: str, receipt: Any) -> list[Any]:
        return list(getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD))

    # -- tokens ------------------------------------------------------------------------

    def balance(self, who: Player | str) -> int:
        address = who.address if isinstance(who, Player) else who
        return int(self.d.token.functions.balanceOf(address).call())

    @property
    def burn_address(self) -> str:
        """Where the settlement sends slashed stake that nobody may receive."""
        return str(self.d.settlement.functions.BURN_ADDRESS().call())

    def burned(self) -> int:
        """OPG held at :attr:`burn_address` (no key holds it: burned)."""
        return self.balance(self.burn_address)

    def fund(self, who: Player, amount: int) -> None:
        self.send(self.d.token.functions.transfer(who.address, amount), self.deployer)

    def allow(self, who: Player, amount: int, spender: str | None = None) -> None:
        spender = spender or self.d.settlement.address
        self.send(self.d.token.functions.approve(spender, amount), who)

    def permit(
        self, owner: Player, value: int, deadline: int
    ) -> tuple[int, int, int, bytes, bytes]:
        """An ERC-2612 permit of ``owner`` for the settlement: ``(value, deadline, v, r, s)``."""
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": "OpenGradient Token",
                "version": "1",
                "chainId": self.d.chain_id,
                "verifyingContract": self.d.token.address,
            },
            "message": {
                "owner": owner.address,
                "spender": self.d.settlement.address,
                "value": value,
                "nonce": self.d.token.functions.nonces(owner.address).call(),
                "deadline": deadline,
            },
        }
        sig = owner.sign(typed)
        return (value, deadline, sig[64], sig[:32], sig[32:64])

    # -- nodes -------------------------------------------------------------------------

    def binding_signature(
        self, node: Player | str, key: Player, measurement: str, *, signer: Player | None = None
    ) -> bytes:
        """The EIP-712 AttesterBinding of ``key`` to ``node`` under ``measurement``, signed by
        ``key`` itself (its proof of possession) unless a forger ``signer`` is given."""
        node_address = node.address if isinstance(node, Player) else node
        typed = attester_binding_typed_data(
            self.d.chain_id, self.d.node_registry.address, node_address, key.address, measurement
        )
        return (signer or key).sign(typed)

    def stake(
        self,
        who: Player,
        role: int,
        amount: int,
        *,
        attester: Player | None = None,
        measurement: str = RUNTIME_ID,
        fund: bool = True,
    ) -> Any:
        """Fund ``who`` (unless ``fund`` is False) and register it with ``amount`` stake;
        an inference node binds ``attester`` with its proof of possession."""
        reg = self.d.node_registry
        if fund:
            self.fund(who, amount)
        self.allow(who, amount, reg.address)
        if attester is None:
            return self.send(
                reg.functions.registerNode(role, amount, ZERO_ADDRESS, b"\x00" * 32, b""),
                who,
            )
        proof = self.binding_signature(who, attester, measurement)
        return self.send(
            reg.functions.registerNode(role, amount, attester.address, b32(measurement), proof),
            who,
        )

    def delegate(self, who: Player, node: Player, amount: int) -> Any:
        self.fund(who, amount)
        self.allow(who, amount, self.d.node_registry.address)
        fn = self.d.node_registry.functions.delegate(node.address, amount)
        return self.send(fn, who)

    # -- models ------------------------------------------------------------------------

    def registration_signature(
        self,
        signer: Player,
        model_id: str,
        owner: str,
        price: int,
        manifest_hash: str,
        deadline: int,
    ) -> bytes:
        chain = _ChainView(self.d.chain_id, {"ModelRegistry": self.d.model_registry})
        typed = registration_typed_data(chain, model_id, owner, price, manifest_hash, deadline)
        return signer.sign(typed)

    def registration(
        self, owner: str, model_id: str, price: int, *, manifest_hash: str | None = None
    ) -> tuple:
        """``registerModel``'s Registration tuple (valid for an hour)."""
        manifest_hash = manifest_hash or "0x" + keccak(b"manifest " + b32(model_id)).hex()
        return (
            b32(model_id),
            owner,
            price,
            b32(manifest_hash),
            self.now() + 3600,
            "tiny-mlp",
            "1.0.0",
            "ogkit://manifests/tiny-mlp/1.0.0.json",
        )

    def register_model(
        self, owner: Player, model_id: str, price: int, *, sender: Player | None = None
    ) -> Any:
        """Register ``model_id`` for ``owner`` with the owner's signature."""
        reg = self.registration(owner.address, model_id, price)
        sig = self.registration_signature(
            owner, model_id, owner.address, price, hex32(reg[3]), reg[4]
        )
        return self.send(self.d.model_registry.functions.registerModel(reg, sig), sender or owner)

    # -- orders and batches --------------------------------------------------------------

    def order(
        self,
        requester: Player | str,
        *,
        model_id: str,
        model_owner: Player | str,
        node: Player | str = ZERO_ADDRESS,
        max_rows: int = 5,
        max_price_per_row: int = 1 * OPG,
        dataset_id: str | None = None,
        job: str = "classify",
        deadline: int | None = None,
        nonce: int | None = None,
    ) -> JobOrder:
        """A JobOrder for this deployment (valid for a day unless told otherwise)."""

        def address(p: Player | str) -> str:
            return p.address if isinstance(p, Player) else to_checksum_address(p)

        return JobOrder(
            requester=address(requester),
            model_id=model_id,
            model_owner=address(model_owner),
            dataset_id=dataset_id or "0x" + keccak(b"dataset " + job.encode()).hex(),
            job=job,
            max_rows=max_rows,
            max_price_per_row=max_price_per_row,
            node=address(node),
            deadline=deadline if deadline is not None else self.now() + 24 * 3600,
            nonce=nonce if nonce is not None else secrets.randbits(128),
            chain_id=self.d.chain_id,
            verifying_contract=self.d.settlement.address,
        )

    @staticmethod
    def sign_order(order: JobOrder, signer: Player) -> bytes:
        """``signer``'s EIP-712 signature of ``order`` (the requester's, unless forged)."""
        return signer.sign(order.typed_data())

    def batch(
        self,
        order: JobOrder,
        attester_key: Player,
        *,
        order_signer: Player | None = None,
        order_signature: bytes | None = None,
        rows: int | Sequence[tuple[int, bytes, bytes]] = 5,
        row_count: int | None = None,
        execution: dict[str, Any] | None = None,
        batch_id: str | None = None,
        batch_root: str | None = None,
        model_id: str | None = None,
        requester: str | None = None,
        runtime_id: str = RUNTIME_ID,
        timestamp: int | None = None,
        claim_attester: str | None = None,
        tag: bytes = b"",
    ) -> Batch:
        """A batch for ``order``: receipts for ``rows``, a claim signed by ``attester_key``
        (naming ``claim_attester``, default the key's address) and the order signed by
        ``order_signer`` (or given as ``order_signature``). Every claim field the contract
        checks can be overridden, as an attacker would."""
        if order_signature is None:
            if order_signer is None:
                raise AssertionError("give order_signer or order_signature")
            order_signature = self.sign_order(order, order_signer)
        execution = execution or {"partition_rows": 4, "batch_size": 2, "tag": tag.hex()}
        derived = order.batch_id(execution_hash(execution))
        batch_id = batch_id or derived
        model_id = model_id or order.model_id
        receipts = Receipts.build(batch_id, model_id, runtime_id, rows, tag=tag)
        claim = BatchClaim(
            batch_id=batch_id,
            model_id=model_id,
            runtime_id=runtime_id,
            batch_root=batch_root or receipts.root,
            row_count=row_count if row_count is not None else len(receipts.rows),
            requester=requester or order.requester,
            timestamp=timestamp if timestamp is not None else self.now(),
            attester=claim_attester or attester_key.address,
        )
        signature = attester_key.sign(claim.typed_data(self.domain))
        artifact_id = "0x" + keccak(b"artefact " + b32(batch_id) + b32(claim.batch_root)).hex()
        return Batch(
            order, order_signature, execution, artifact_id, receipts, claim, signature, self.domain
        )

    def commit_fn(self, batch: Batch) -> Any:
        return self.d.settlement.functions.commitBatch(*batch.commit_args())

    def commit(self, batch: Batch, node: Player) -> OnChainBatch:
        """Commit ``batch`` from ``node``; what the chain recorded (also ``batch.onchain``)."""
        receipt = self.send(self.commit_fn(batch), node)
        (event,) = self.events(self.d.settlement, "BatchCommitted", receipt)
        batch.onchain = from_event(event)
        return batch.onchain

    def verdict(self, verifier: Player, batch: Batch, passed: bool = True) -> SignedVerdict:
        """``verifier``'s verdict on the claim ``batch`` carries (committed or not)."""
        return sign_verdict(
            verifier.signer, self.domain, batch.batch_id, batch.claim_digest, passed
        )

    @property
    def compact_passes(self) -> bool:
        """Whether ``finalize`` takes EIP-2098 compact pass signatures whose signers it
        recovers (``PassSignature(r, vs)``) rather than ``Verdict`` structs."""
        for item in self.d.settlement.abi:
            if item.get("type") == "function" and item.get("name") == "finalize":
                components = item["inputs"][2].get("components", [])
                return [c["name"] for c in components] == ["r", "vs"]
        raise AssertionError("InferenceSettlement has no finalize")

    def finalize_fn(self, batch: Batch, verdicts: Iterable[SignedVerdict]) -> Any:
        """``finalize`` with ``verdicts``, as a finaliser passes them: Verdict structs sorted
        by verifier, or (:attr:`compact_passes`) compact signatures sorted by the signer
        they recover to over the committed claim."""
        if not self.compact_passes:
            return self.d.settlement.functions.finalize(
                batch.key, batch.record, sorted_verdicts(verdicts)
            )
        committed = batch.onchain.record["claimDigest"] if batch.onchain else batch.claim_digest
        signable = encode_typed_data(
            full_message=verdict_typed_data(self.domain, batch.batch_id, committed, True)
        )
        passes = []
        for v in verdicts:
            sig = parse_signature(v.signature)
            signer = Account.recover_message(signable, signature=sig)
            vs = ((sig[64] - 27) << 255) | int.from_bytes(sig[32:64], "big")
            passes.append((int(signer, 16), (sig[:32], vs.to_bytes(32, "big"))))
        passes.sort(key=lambda p: p[0])
        return self.d.settlement.functions.finalize(batch.key, batch.record, [p for _, p in passes])

    def verifiers_paid(self, receipt: Any) -> dict[str, int]:
        """Verifier -> fee credited by a finalize, from its VerifierPaid or VerifiersPaid
        events."""
        events = self.d.settlement.events
        if hasattr(events, "VerifiersPaid"):
            out: dict[str, int] = {}
            for e in self.events(self.d.settlement, "VerifiersPaid", receipt):
                for who, amount in zip(e.args.verifiers, e.args.amounts, strict=True):
                    if amount:
                        out[who] = out.get(who, 0) + int(amount)
            return out
        return {
            e.args.verifier: int(e.args.amount)
            for e in self.events(self.d.settlement, "VerifierPaid", receipt)
        }

    def finalize(self, batch: Batch, verdicts: Iterable[SignedVerdict], sender: Player) -> Any:
        return self.send(self.finalize_fn(batch, verdicts), sender)

    def status(self, batch: Batch | str) -> int:
        key = batch.key if isinstance(batch, Batch) else b32(batch)
        return int(self.d.settlement.functions.statusOf(key).call())

    # -- disputes ----------------------------------------------------------------------

    def challenge_args(
        self, batch: Batch, row: int, claimed_output: bytes, salt: bytes
    ) -> tuple[bytes, tuple, tuple, list[bytes]]:
        """``challenge``'s arguments for the ``row``-th receipt of ``batch``."""
        i, x, y = batch.receipts.rows[row]
        return batch.key, batch.record, (i, x, y, claimed_output, salt), batch.receipts.proof(row)

    def commitment(
        self, challenger: Player, batch: Batch, row: int, claimed_output: bytes, salt: bytes
    ) -> bytes:
        i = batch.receipts.rows[row][0]
        return bytes(
            self.d.settlement.functions.challengeCommitment(
                challenger.address, batch.key, i, claimed_output, salt
            ).call()
        )

    def challenge(
        self,
        batch: Batch,
        challenger: Player,
        *,
        row: int = 0,
        claimed_output: bytes | None = None,
        fund: bool = True,
    ) -> int:
        """Challenge the ``row``-th receipt: commit, then reveal in the next block, posting
        the bond (funded and allowed unless ``fund`` is False). The dispute id."""
        s = self.d.settlement
        claimed_output = claimed_output or keccak(b"re-executed output %d" % row)
        salt = keccak(b"salt " + challenger.address.encode() + batch.key)
        bond = int(s.functions.challengeBond().call())
        if fund and bond:
            self.fund(challenger, bond)
            self.allow(challenger, bond)
        commitment = self.commitment(challenger, batch, row, claimed_output, salt)
        self.send(s.functions.commitChallenge(commitment), challenger)
        self.send(
            s.functions.challenge(*self.challenge_args(batch, row, claimed_output, salt)),
            challenger,
        )
        return int(s.functions.stateOf(batch.key).call()[1])

    def vote(self, dispute_id: int, batch: Batch, verifier: Player, upheld: bool) -> Any:
        fn = self.d.settlement.functions.voteDispute(dispute_id, batch.record, upheld)
        return self.send(fn, verifier)


@dataclass(frozen=True)
class _ChainView:
    """The two things :func:`ogkit.settle.registration_typed_data` reads from a client."""

    chain_id: int
    contracts: dict[str, Any]

    def contract(self, name: str) -> Any:
        return self.contracts[name]


# -- a world of attackers (tests/chain/test_redteam*.py) ---------------------------------------
ATTACK_NODE_STAKE = 100_000 * OPG
ATTACK_VERIFIER_STAKES = (12_000 * OPG, 31_900 * OPG, 56_100 * OPG)
"""The first and third verifiers hold 68.1 % (above the 2/3 quorum), the last two 88 %, the
third alone 56.1 % (not enough)."""


@dataclass(frozen=True)
class AttackWorld:
    g: Game
    model: str  # the registered model id
    owner: Player
    requester: Player
    attacker: Player  # a staked inference node turned attacker
    attacker_key: Player
    sock: Player  # a challenger key the attacker holds
    verifiers: tuple[Player, Player, Player]
    challenger: Player  # an honest watcher

    def commit(self, job: str, rows: int = 5) -> Batch:
        """A batch the requester ordered from the attacker's node, committed."""
        order = self.g.order(
            self.requester, model_id=self.model, model_owner=self.owner, node=self.attacker,
            max_rows=rows, job=job,
        )  # fmt: skip
        batch = self.g.batch(order, self.attacker_key, order_signer=self.requester, rows=rows)
        self.g.commit(batch, self.attacker)
        return batch


def attack_world(model_bytes: bytes, price: int) -> AttackWorld:
    """A fresh chain: a model registered at ``price``, the attacker's node staked, three
    verifiers staked (:data:`ATTACK_VERIFIER_STAKES`), a funded requester."""
    g = Game(num_accounts=24)
    w = AttackWorld(
        g=g,
        model=hex32(keccak(model_bytes)),
        owner=g.player("owner"),
        requester=g.player("requester"),
        attacker=g.player("attacker"),
        attacker_key=attester("attacker"),
        sock=g.player("attacker's sock"),
        verifiers=(g.player("verifier 1"), g.player("verifier 2"), g.player("verifier 3")),
        challenger=g.player("challenger"),
    )
    g.register_model(w.owner, w.model, price)
    g.stake(w.attacker, 1, ATTACK_NODE_STAKE, attester=w.attacker_key)
    for v, stake in zip(w.verifiers, ATTACK_VERIFIER_STAKES, strict=True):
        g.stake(v, 2, stake)
    g.fund(w.requester, 1_000_000 * OPG)
    g.allow(w.requester, 2**255)
    g.mine()
    return w
