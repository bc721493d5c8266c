"""Verifying a chat batch: every call's structure, prompt, hashes and leaf; the roots;
and a secret sample of calls decoded again, token for token (docs/spec.md §12.5).

The node is the adversary (spec §10): it holds its attester key and writes whatever the
manifest allows. A completion it did not decode, tokens padded after a stop token, a
changed prompt or template, another model's id, usage that does not match the ids, or a
seed that does not give the completion — each is a finding, never an exception.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ogkit.crypto.keccak import keccak256
from ogkit.crypto.merkle import MerkleTree
from ogkit.dataset import DatasetCommitment
from ogkit.errors import ArtifactError, ConfigError, HubError, OgkitError
from ogkit.llm.batch import ChatBatch, call_leaves, input_root, load_chat_batch
from ogkit.llm.calls import USAGE_KEYS, ChatCall, ChatRequest
from ogkit.store import ContentStore
from ogkit.verify import (
    Finding,
    Verdict,
    VerifyPolicy,
    check_claim,
    check_order,
    detection_probability,
    sample_mask,
    unreadable_verdict,
)

__all__ = ["verify_chat_batch"]

log = logging.getLogger(__name__)


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


def _as_request(r: Any) -> ChatRequest:
    if isinstance(r, ChatRequest):
        return r
    if isinstance(r, Mapping) and "messages" in r:
        return ChatRequest.make(
            r["messages"],
            max_tokens=r.get("max_tokens", 64),
            temperature=r.get("temperature", 0.0),
            seed=r.get("seed"),
        )
    raise ConfigError("requests must be ChatRequest objects or {messages, max_tokens, ...}")


def _structure(call: ChatCall, stop_ids: frozenset[int] | None) -> list[tuple[str, str]]:
    """What is wrong with a call on its face (no model needed but its stop tokens)."""
    problems = []
    ids = call.completion_ids
    counts = {
        "prompt_tokens": len(call.prompt_ids),
        "completion_tokens": len(ids),
        "total_tokens": len(call.prompt_ids) + len(ids),
    }
    wrong = [f"{k} {call.usage[k]} (the ids give {counts[k]})" for k in USAGE_KEYS
             if call.usage[k] != counts[k]]  # fmt: skip
    if wrong:
        problems.append(("usage-mismatch", "; ".join(wrong)))
    if not ids or len(ids) > call.request.max_tokens:
        problems.append(
            ("completion-malformed", f"{len(ids)} tokens for max_tokens {call.request.max_tokens}")
        )
    elif stop_ids is not None:
        early = [i for i, t in enumerate(ids[:-1]) if t in stop_ids]
        if early:
            problems.append(
                (
                    "completion-malformed",
                    f"a stop token at position {early[0]} is followed by "
                    f"{len(ids) - 1 - early[0]} more tokens (padding)",
                )
            )
        want = "stop" if ids[-1] in stop_ids else "length"
        if want == "length" and len(ids) != call.request.max_tokens:
            problems.append(
                (
                    "completion-malformed",
                    f"the completion ends without a stop token after {len(ids)} of "
                    f"{call.request.max_tokens} tokens",
                )
            )
        elif call.finish_reason != want:
            problems.append(
                ("completion-malformed", f"finish_reason {call.finish_reason}, tokens say {want}")
            )
    return problems


def verify_chat_batch(
    artifact: str | Path | ChatBatch,
    policy: VerifyPolicy | None = None,
    *,
    store: ContentStore | str | None = None,
    hub: Any = None,
    requests: Sequence[Any] | None = None,
    commitment: DatasetCommitment | None = None,
    requester: str | None = None,
    job: str | None = None,
    model: str | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> Verdict:
    """Verify a chat batch; the :class:`~ogkit.verify.Verdict` names every failing call.

    ``requests`` (the requester's own requests, in order) or ``commitment`` bind the calls
    to what the requester asked; ``requester``, ``job`` and ``model`` to what it ordered.
    The model comes from the batch's store or the hub, checked against its id; ``cache``
    is where its bundle is unpacked. A fraction ``policy.sample_rate`` of the calls,
    drawn with the verifier's secret, is decoded again and compared token for token."""
    started = time.perf_counter()
    policy = policy or VerifyPolicy()
    if isinstance(artifact, ChatBatch):
        batch = artifact
    else:
        if store is None and hub is None:
            raise ConfigError("verify_chat_batch needs store= (a ContentStore or URL) or hub=")
        store = store if isinstance(store, ContentStore) else ContentStore(store or hub.store.url)
        try:
            batch = load_chat_batch(artifact, store)
        except ArtifactError as exc:
            return unreadable_verdict(str(artifact), str(exc), started)
    m = batch.manifest
    findings: list[Finding] = []
    notices: list[str] = []
    hardware = check_claim(batch, policy, findings, notices)

    # -- what the requester ordered --------------------------------------------------------
    check_order(m, hub, findings, requester=requester, job=job, model=model)

    # -- the model (by the batch's id: a swapped id gives another model or none) -----------
    chat_model = None
    try:
        chat_model = _load_model(batch, hub, cache)
    except (HubError, ArtifactError, ConfigError) as exc:
        findings.append(Finding("model-unavailable", str(exc)))
    stop_ids = chat_model.stop_ids if chat_model is not None else None

    # -- the requester's requests ----------------------------------------------------------
    given = None
    if requests is not None:
        try:
            given = [_as_request(r) for r in requests]
        except ConfigError as exc:
            raise ConfigError(f"the requester's requests: {exc}") from None
        if len(given) != m.row_count:
            findings.append(
                Finding(
                    "dataset-mismatch",
                    f"the requester sent {len(given)} requests; the batch holds {m.row_count}",
                )
            )
    if commitment is not None and (
        commitment.input_root.lower() != m.dataset_id.lower() or commitment.row_count != m.row_count
    ):
        findings.append(
            Finding(
                "dataset-mismatch",
                f"the requester committed to input root {commitment.input_root} over "
                f"{commitment.row_count:,} calls; the batch ran {m.dataset_id} over "
                f"{m.row_count:,}",
            )
        )

    # -- every call ------------------------------------------------------------------------
    secret = policy.verifier_secret if policy.verifier_secret is not None else os.urandom(32)
    key = keccak256(bytes.fromhex(m.claim.batch_root[2:]) + secret)
    drawn = sample_mask(key, np.arange(m.row_count, dtype=np.uint64), policy.sample_rate)
    if chat_model is None:
        drawn[:] = False
    sampled = [int(i) for i in np.flatnonzero(drawn)]
    reexecuted: list[int] = []
    rows = range(m.row_count)
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="verify chat calls", unit="call", leave=False)
    for i in rows:
        call = m.calls[i]
        for reason, detail in _structure(call, stop_ids):
            findings.append(Finding(reason, detail, i, 0))
        if given is not None and i < len(given) and given[i] != call.request:
            findings.append(
                Finding("request-mismatch", "the request differs from the sent one", i, 0)
            )
        prompt = call.prompt_ids
        if chat_model is not None:
            try:
                prompt = chat_model.prompt_ids(call.request)
            except (ConfigError, OgkitError) as exc:
                findings.append(
                    Finding("prompt-mismatch", f"cannot render the request: {exc}", i, 0)
                )
            else:
                if prompt != call.prompt_ids:
                    findings.append(
                        Finding(
                            "prompt-mismatch",
                            f"the template and tokenizer give {len(prompt)} prompt tokens "
                            f"{_first_difference(prompt, call.prompt_ids)}; the call states "
                            f"{len(call.prompt_ids)}",
                            i,
                            0,
                        )
                    )
        if drawn[i]:
            try:
                again = list(chat_model.tokens(call.request, prompt))
            except OgkitError as exc:
                findings.append(Finding("reexecution-failed", str(exc), i, 0))
            else:
                reexecuted.append(i)
                if again != call.completion_ids:
                    findings.append(
                        Finding(
                            "reexecution-mismatch",
                            f"decoding again gives {len(again)} tokens "
                            f"{_first_difference(again, call.completion_ids)}; the call states "
                            f"{len(call.completion_ids)}",
                            i,
                            0,
                        )
                    )

    # -- roots -----------------------------------------------------------------------------
    try:
        ins, leaves = call_leaves(m.calls)
    except (ConfigError, ValueError) as exc:
        findings.append(Finding("manifest-malformed", f"the calls cannot be hashed: {exc}"))
    else:
        root = _hex(MerkleTree.from_leaf_hashes(leaves).root)
        if root != m.claim.batch_root.lower():
            findings.append(
                Finding("batch-root-mismatch", f"the calls give {root}, the claim signs "
                        f"{m.claim.batch_root}")
            )  # fmt: skip
        in_root = input_root([bytes(r) for r in ins])
        if in_root != m.dataset_id.lower():
            findings.append(
                Finding("input-root-mismatch", f"the calls give input root {in_root}; the batch "
                        f"commits to {m.dataset_id}")
            )  # fmt: skip
        if given is not None and chat_model is not None and len(given) == m.row_count:
            from ogkit.llm.batch import commit_requests

            theirs = commit_requests(given, chat_model).input_root
            if theirs != m.dataset_id.lower():
                findings.append(
                    Finding("dataset-mismatch", f"the requests give input root {theirs}; the "
                            f"batch ran {m.dataset_id}")
                )  # fmt: skip
    missed = sorted(set(sampled) - set(reexecuted))
    for r in missed[:1000]:
        if not any(f.row_index == r and f.reason == "reexecution-failed" for f in findings):
            findings.append(Finding("sample-not-reexecuted", "drawn but not re-executed", r, 0))

    bound = given is not None or commitment is not None
    inputs_bound = bound and not any(
        f.reason in ("dataset-mismatch", "request-mismatch", "input-root-mismatch")
        for f in findings
    )
    if not bound:
        unbound = (
            "the calls were checked against the batch's own commitment only; give the "
            "requester's requests or commitment to bind them"
        )
        if policy.require_bound_inputs:
            findings.append(Finding("inputs-unbound", unbound))
        else:
            notices.append(unbound)
    q = policy.sample_rate if chat_model is not None else 0.0
    verdict = Verdict(
        passed=not findings,
        batch_id=m.batch_id,
        artifact_id=batch.artifact_id,
        row_count=m.row_count,
        rows_checked=m.row_count,
        findings=findings,
        sample_rate=q,
        sample_size=len(reexecuted),
        sampled_rows=sorted(reexecuted),
        seed_commitment=_hex(keccak256(key)),
        max_abs_error=0.0,
        detection={f"k={k}": detection_probability(q, k) for k in (1, 10, 100, 1000)},
        inputs_bound=inputs_bound,
        notices=notices,
        seconds=time.perf_counter() - started,
        hardware=hardware,
    )
    log.info("%s", verdict.summary())
    return verdict


def _first_difference(a: Sequence[int], b: Sequence[int]) -> str:
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"(first difference at token {k}: {x} vs {y})"
    return "(one is a prefix of the other)" if len(a) != len(b) else ""


_LOADED: dict[tuple[str, str, int], Any] = {}  # the last models verified, by id and options


def _load_model(batch: ChatBatch, hub: Any, cache: str | Path | None) -> Any:
    """The model named by the batch's id (from its store or the hub, hash-checked), kept
    for the next batch of the same model: a real model takes seconds to load."""
    from ogkit.llm.model import ChatModel

    model_id = batch.model_id
    threads = batch.manifest.fingerprint.get("intra_op_num_threads", 1)
    if not (isinstance(threads, int) and not isinstance(threads, bool) and 1 <= threads <= 64):
        threads = 1
    key = (model_id, str(cache), threads)
    if key in _LOADED:
        return _LOADED[key]
    if batch.store.has("models", model_id):
        data = batch.store.get("models", model_id)
    elif hub is not None:
        data = hub.blob(model_id)
    else:
        raise ArtifactError(f"model {model_id} is in neither the batch's store nor a hub")
    if cache is None:
        import tempfile

        cache = (
            Path(hub.home) / "llm" if hub is not None else Path(tempfile.gettempdir()) / "ogkit-llm"
        )
    try:
        model = ChatModel(data, cache=cache, threads=threads, model_id=model_id)
    except OgkitError as exc:
        raise ArtifactError(
            f"model {model_id} is not a language model ogkit can load: {exc}"
        ) from None
    _LOADED.clear()  # one model at a time: a real one holds hundreds of MB
    _LOADED[key] = model
    return model
