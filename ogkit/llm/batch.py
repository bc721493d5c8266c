"""Chat calls as a batch: leaves in the same format as tabular rows, one signed claim,
a stored artefact, receipts, and the requester's commitment to its requests.

A chat batch (schema ``ogkit.chat.v2``, docs/spec.md §12) is one tree over its calls'
leaves (spec §3.1, with ``rowIndex`` the call's index, ``inputHash`` and ``outputHash``
as §12.3 defines). Its manifest holds every call inline (the canonical request, prompt
and completion token ids, usage, finish reason), so the artefact id covers all of it.
It offers the attributes :func:`ogkit.settle.settle`, :func:`ogkit.settle.attest_batch`
and the audit read from a tabular batch (``batch_id``, ``claim``, ``signature``,
``domain``, ``manifest.dataset_id`` / ``job`` / ``execution()``, ``artifact_id``,
``store``), so chat settles through the normal path.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ogkit.attest import (
    Attester,
    BatchClaim,
    ClaimDomain,
    derive_batch_id,
    execution_hash,
    is_address,
    is_hex32,
)
from ogkit.batch import ARTIFACTS, RECEIPT_SCHEMA, parse_document
from ogkit.crypto.merkle import LEAF_TYPES, MerkleTree, input_leaf_hashes, leaf_hashes
from ogkit.dataset import DatasetCommitment
from ogkit.errors import ArtifactError, ConfigError, ReceiptError
from ogkit.hub.manifest import canonical_json
from ogkit.llm.calls import FINISH_REASONS, USAGE_KEYS, ChatCall, ChatRequest
from ogkit.store import ContentStore, content_id
from ogkit.version import __version__

__all__ = [
    "CHAT_SCHEMA",
    "ChatBatch",
    "ChatManifest",
    "attest_calls",
    "call_leaves",
    "commit_requests",
    "input_root",
    "is_chat_artifact",
    "load_any_batch",
    "load_chat_batch",
    "store_chat_batch",
]

CHAT_SCHEMA = "ogkit.chat.v2"
#: Earlier chat layouts, refused by name (v1: leaves carried the batch, model and runtime ids).
RETIRED_CHAT_SCHEMAS = ("ogkit.chat.v1",)
MAX_CALLS = 1 << 20
MAX_IDS = 1 << 20


def _hex(b: bytes | np.ndarray) -> str:
    return "0x" + bytes(b).hex()


def input_root(input_hashes: Sequence[bytes]) -> str:
    """The dataset commitment's root over calls' input hashes (spec §4.1 leaves)."""
    arr = np.frombuffer(b"".join(input_hashes), np.uint8).reshape(-1, 32)
    leaves = input_leaf_hashes(np.arange(len(arr), dtype=np.uint64), arr)
    return _hex(MerkleTree.from_leaf_hashes(leaves).root)


def commit_requests(requests: Sequence[ChatRequest], model: Any) -> DatasetCommitment:
    """The requester's commitment to its chat requests: each request rendered with the
    model's template and tokenized (``model`` a :class:`~ogkit.llm.model.ChatModel`),
    hashed as the leaf's input hash, then the input root over them (spec §4.1, §12.3)."""
    from ogkit.llm.calls import input_hash

    if not requests:
        raise ConfigError("a chat batch needs at least one request")
    hashes = [input_hash(r, model.prompt_ids(r)) for r in requests]
    return DatasetCommitment(input_root(hashes), len(hashes))


def execution(decoder: str) -> dict[str, Any]:
    """How a chat batch was run (hashed into the batch id): the schema and the decoder."""
    return {"decoder": decoder, "schema": CHAT_SCHEMA}


def call_leaves(calls: Sequence[ChatCall]) -> tuple[np.ndarray, np.ndarray]:
    """The calls' input hashes and leaves (spec §3.1: call ``i`` is row ``i``; the batch,
    model and runtime ids are the signed claim's, not the leaf's)."""
    ins = np.frombuffer(b"".join(c.input_hash() for c in calls), np.uint8).reshape(-1, 32)
    outs = np.frombuffer(b"".join(c.output_hash() for c in calls), np.uint8).reshape(-1, 32)
    return ins, leaf_hashes(np.arange(len(calls), dtype=np.uint64), ins, outs)


@dataclass(frozen=True)
class ChatManifest:
    """The typed manifest of a chat batch; field names as in a tabular ``BatchManifest``
    where they mean the same thing."""

    batch_id: str
    model_id: str
    model_ref: str | None
    runtime_id: str
    fingerprint: dict[str, Any]
    dataset_id: str
    job: str
    requester: str
    domain: ClaimDomain
    row_count: int
    batch_root: str
    decoder: str
    calls: tuple[ChatCall, ...]
    claim: BatchClaim
    signature: str
    attester: dict[str, Any]
    ogkit_version: str = __version__
    schema: str = CHAT_SCHEMA

    float_ulp = 0  # token ids compare exactly

    def execution(self) -> dict[str, Any]:
        return execution(self.decoder)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "batch_root": self.batch_root,
            "calls": [c.to_dict() for c in self.calls],
            "claim": self.claim.to_dict(),
            "dataset_id": self.dataset_id,
            "decoder": self.decoder,
            "domain": {
                "chain_id": self.domain.chain_id,
                "verifying_contract": self.domain.verifying_contract,
            },
            "fingerprint": self.fingerprint,
            "job": self.job,
            "model_id": self.model_id,
            "model_ref": self.model_ref,
            "ogkit_version": self.ogkit_version,
            "requester": self.requester,
            "row_count": self.row_count,
            "runtime_id": self.runtime_id,
            "schema": self.schema,
            "signature": self.signature,
            "attester": self.attester,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ChatManifest:
        """Parse strictly; :class:`ArtifactError` names the first field that is wrong."""
        if not isinstance(d, Mapping):
            raise ArtifactError("a chat manifest must be a JSON object")
        want = set(cls.__dataclass_fields__)
        if set(d) != want:
            extra, missing = sorted(set(d) - want), sorted(want - set(d))
            raise ArtifactError(f"chat manifest fields: missing {missing}, unexpected {extra}")
        if d["schema"] in RETIRED_CHAT_SCHEMAS:
            raise ArtifactError(
                f"chat manifest is {d['schema']}, an earlier layout (its leaves carried the "
                f"batch, model and runtime ids); this ogkit reads {CHAT_SCHEMA}: run the "
                "calls again (`ogkit chat ...`) to get a new artefact"
            )
        if d["schema"] != CHAT_SCHEMA:
            raise ArtifactError(f"schema must be {CHAT_SCHEMA}, got {d['schema']!r:.40}")
        for key in ("batch_id", "model_id", "runtime_id", "dataset_id", "batch_root"):
            if not is_hex32(d[key]):
                raise ArtifactError(f"{key} must be 0x + 64 hex digits")
        if not is_address(d["requester"]):
            raise ArtifactError("requester must be an address")
        for key in ("job", "decoder", "signature", "ogkit_version"):
            if not isinstance(d[key], str):
                raise ArtifactError(f"{key} must be a string")
        if d["model_ref"] is not None and not isinstance(d["model_ref"], str):
            raise ArtifactError("model_ref must be a string or null")
        for key in ("fingerprint", "attester", "domain"):
            if not isinstance(d[key], Mapping):
                raise ArtifactError(f"{key} must be an object")
        dom = d["domain"]
        if (
            set(dom) != {"chain_id", "verifying_contract"}
            or not _uint(dom["chain_id"], 1 << 63)
            or not is_address(dom["verifying_contract"])
        ):
            raise ArtifactError("domain must hold chain_id and verifying_contract")
        if not _uint(d["row_count"], MAX_CALLS + 1) or d["row_count"] < 1:
            raise ArtifactError(f"row_count must be an integer in [1, {MAX_CALLS}]")
        if not isinstance(d["calls"], list) or len(d["calls"]) != d["row_count"]:
            raise ArtifactError("calls must be a list of row_count calls")
        calls = tuple(_parse_call(c, i) for i, c in enumerate(d["calls"]))
        return cls(
            batch_id=d["batch_id"],
            model_id=d["model_id"],
            model_ref=d["model_ref"],
            runtime_id=d["runtime_id"],
            fingerprint=dict(d["fingerprint"]),
            dataset_id=d["dataset_id"],
            job=d["job"],
            requester=d["requester"],
            domain=ClaimDomain(dom["chain_id"], dom["verifying_contract"]),
            row_count=d["row_count"],
            batch_root=d["batch_root"],
            decoder=d["decoder"],
            calls=calls,
            claim=BatchClaim.from_dict(d["claim"]),
            signature=d["signature"],
            attester=dict(d["attester"]),
            ogkit_version=d["ogkit_version"],
        )


def _uint(value: Any, bound: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < bound


def _parse_call(c: Any, i: int) -> ChatCall:
    where = f"call {i}"
    keys = {"completion_ids", "finish_reason", "prompt_ids", "request", "usage"}
    if not isinstance(c, Mapping) or set(c) != keys:
        raise ArtifactError(f"{where} must hold exactly {', '.join(sorted(keys))}")
    for key in ("prompt_ids", "completion_ids"):
        ids = c[key]
        if (
            not isinstance(ids, list)
            or len(ids) > MAX_IDS
            or not all(_uint(t, 1 << 32) for t in ids)
        ):
            raise ArtifactError(f"{where}: {key} must be a list of token ids in [0, 2**32)")
    if c["finish_reason"] not in FINISH_REASONS:
        raise ArtifactError(f"{where}: finish_reason must be one of {', '.join(FINISH_REASONS)}")
    usage = c["usage"]
    if (
        not isinstance(usage, Mapping)
        or set(usage) != set(USAGE_KEYS)
        or not all(_uint(usage[k], 1 << 32) for k in USAGE_KEYS)
    ):
        raise ArtifactError(f"{where}: usage must give {', '.join(USAGE_KEYS)} as integers")
    try:
        request = ChatRequest.from_dict(c["request"])
    except ConfigError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    return ChatCall(
        request, list(c["prompt_ids"]), list(c["completion_ids"]), c["finish_reason"], dict(usage)
    )


class ChatBatch:
    """A stored, signed chat batch: manifest, calls, tree and receipts."""

    def __init__(self, manifest: ChatManifest, artifact_id: str, store: ContentStore) -> None:
        self.manifest = manifest
        self.artifact_id = artifact_id
        self.store = store

    def __repr__(self) -> str:
        return f"ChatBatch({self.artifact_id[:18]}…, calls={self.row_count:,})"

    batch_id = property(lambda self: self.manifest.batch_id)
    batch_root = property(lambda self: self.manifest.batch_root)
    row_count = property(lambda self: self.manifest.row_count)
    model_id = property(lambda self: self.manifest.model_id)
    runtime_id = property(lambda self: self.manifest.runtime_id)
    claim = property(lambda self: self.manifest.claim)
    signature = property(lambda self: self.manifest.signature)
    domain = property(lambda self: self.manifest.domain)
    calls = property(lambda self: self.manifest.calls)

    @functools.cached_property
    def _tree(self) -> tuple[np.ndarray, np.ndarray, MerkleTree]:
        m = self.manifest
        ins, leaves = call_leaves(m.calls)
        return ins, leaves, MerkleTree.from_leaf_hashes(leaves)

    def receipt(self, index: int) -> dict[str, Any]:
        """The receipt of call ``index`` (spec §8; one partition, so ``proof`` leads from
        the leaf straight to the batch root)."""
        if not 0 <= index < self.row_count:
            raise ReceiptError(f"call {index} is not in batch {self.batch_id}")
        _, leaves, tree = self._tree
        call = self.calls[index]
        return {
            "schema": RECEIPT_SCHEMA,
            "leaf_types": list(LEAF_TYPES),
            "leaf_values": {
                "rowIndex": str(index),
                "inputHash": _hex(call.input_hash()),
                "outputHash": _hex(call.output_hash()),
            },
            "leaf": _hex(leaves[index]),
            "proof": [_hex(p) for p in tree.proof(index)],
            "batch_root": self.batch_root,
            "partition": {"index": 0, "root": self.batch_root},
            "claim": self.claim.to_dict(),
            "domain": {
                "chain_id": self.domain.chain_id,
                "verifying_contract": self.domain.verifying_contract,
            },
            "signature": self.signature,
            "artifact_id": self.artifact_id,
        }

    def receipts(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self.receipt(int(i)) for i in indices]


def attest_calls(
    calls: Sequence[ChatCall],
    *,
    model: Any,
    attester: Attester,
    requester: str,
    store: ContentStore,
    job: str,
    domain: ClaimDomain | None = None,
    timestamp: int | None = None,
) -> ChatBatch:
    """Turn decoded calls into a signed, stored chat batch: input root (the requester's
    commitment), batch id, leaves, root, the attester's signed claim, the manifest
    (content-addressed in ``artifacts/``) and a copy of the model bundle beside it."""
    if not calls:
        raise ConfigError("a chat batch needs at least one call")
    if len(calls) > MAX_CALLS:
        raise ConfigError(f"a chat batch holds at most {MAX_CALLS:,} calls")
    domain = domain or ClaimDomain()
    ins = [c.input_hash() for c in calls]
    dataset_id = input_root(ins)
    from ogkit.llm.model import DECODER

    batch_id = derive_batch_id(
        model_id=model.model_id,
        dataset_id=dataset_id,
        requester=requester,
        chain_id=domain.chain_id,
        verifying_contract=domain.verifying_contract,
        job=job,
        execution=execution_hash(execution(DECODER)),
    )
    runtime_id = model.runtime_id
    _, leaves = call_leaves(calls)
    root = _hex(MerkleTree.from_leaf_hashes(leaves).root)
    claim = BatchClaim(
        batch_id=batch_id,
        model_id=model.model_id,
        runtime_id=runtime_id,
        batch_root=root,
        row_count=len(calls),
        requester=requester,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        attester=attester.address,
    )
    manifest = ChatManifest(
        batch_id=batch_id,
        model_id=model.model_id,
        model_ref=model.ref,
        runtime_id=runtime_id,
        fingerprint=model.fingerprint.to_dict(),
        dataset_id=dataset_id,
        job=job,
        requester=requester,
        domain=domain,
        row_count=len(calls),
        batch_root=root,
        decoder=DECODER,
        calls=tuple(calls),
        claim=claim,
        signature=attester.sign_claim(claim, domain),
        attester=attester.evidence(runtime_id),
    )
    if not store.has("models", model.model_id) and getattr(model, "bundle", None) is not None:
        store.put("models", model.bundle)
    return store_chat_batch(manifest, store)


def store_chat_batch(manifest: ChatManifest, store: ContentStore) -> ChatBatch:
    return ChatBatch(manifest, store.put(ARTIFACTS, canonical_json(manifest.to_dict())), store)


def _read(artifact: str | Path, store: ContentStore) -> tuple[bytes, str]:
    artifact = str(artifact)
    if artifact.startswith("0x") and len(artifact) == 66:
        return store.get(ARTIFACTS, artifact.lower()), artifact.lower()
    path = Path(artifact)
    if not path.is_file():
        raise ArtifactError(f"{artifact} is neither an artefact id (0x + 64 hex) nor a file")
    data = path.read_bytes()
    return data, content_id(data)


def is_chat_artifact(
    artifact: Any, store: ContentStore | str | None = None, hub: Any = None
) -> bool:
    """True when ``artifact`` (a batch object, an id or a manifest path, read from
    ``store`` or the ``hub``'s) is a chat batch: a look at its schema, never an exception."""
    if isinstance(artifact, ChatBatch):
        return True
    if not isinstance(artifact, str | Path):
        return False
    try:
        if not isinstance(store, ContentStore):
            store = ContentStore(store or hub.store.url)
        data, _ = _read(artifact, store)
        doc = parse_document(data, "artefact")
    except Exception:
        return False
    # a retired chat schema is still a chat artefact: its loader refuses it by name
    return isinstance(doc, Mapping) and doc.get("schema") in (CHAT_SCHEMA, *RETIRED_CHAT_SCHEMAS)


def load_chat_batch(artifact: str | Path, store: ContentStore) -> ChatBatch:
    """Load a chat batch by artefact id or manifest path, parsed strictly."""
    data, artifact_id = _read(artifact, store)
    doc = parse_document(data, f"artefact {artifact_id}")
    try:
        manifest = ChatManifest.from_dict(doc)
    except ArtifactError as exc:
        raise ArtifactError(f"artefact {artifact_id}: {exc}") from None
    return ChatBatch(manifest, artifact_id, store)


def load_any_batch(artifact: str | Path, store: ContentStore) -> Any:
    """A stored batch of either kind: a :class:`ChatBatch` for a chat artefact, else the
    tabular :class:`~ogkit.batch.AttestedBatch` (what ``settle``, ``attest_batch`` and the
    CLI commands that load an artefact take)."""
    from ogkit.batch import load_batch

    if is_chat_artifact(artifact, store):
        return load_chat_batch(artifact, store)
    return load_batch(artifact, store)
